"""Partitions of the platform.

Acquisition assets are partitioned by **plate × timepoint** (a measurement: what the microscope
delivers and what normalization works on); analysis assets by **dose × timepoint**. All three
dimensions are dynamic: the inbox sensor (or ``lcd demo``) adds keys as plates arrive.
"""

import dagster as dg

plate_partitions = dg.DynamicPartitionsDefinition(name="plates")
timepoint_partitions = dg.DynamicPartitionsDefinition(name="timepoints")
dose_partitions = dg.DynamicPartitionsDefinition(name="doses")

measurement_partitions = dg.MultiPartitionsDefinition(
    {"plate": plate_partitions, "timepoint": timepoint_partitions}
)
condition_partitions = dg.MultiPartitionsDefinition(
    {"dose": dose_partitions, "timepoint": timepoint_partitions}
)

# A dose × timepoint partition reads every plate of its timepoint (same timepoint, identity) and
# keeps the plates whose replica received that dose: which plates those are is data (the run
# registry), so the plate → dose dimension maps to all plates and the asset filters.
measurement_to_condition = dg.MultiPartitionMapping(
    {
        "plate": dg.DimensionPartitionMapping("dose", dg.AllPartitionMapping()),
        "timepoint": dg.DimensionPartitionMapping("timepoint", dg.IdentityPartitionMapping()),
    }
)


def measurement_key(plate: str, timepoint: str) -> dg.MultiPartitionKey:
    """Partition key of a measurement asset."""
    return dg.MultiPartitionKey({"plate": plate, "timepoint": timepoint})


def condition_key(dose: str, timepoint: str) -> dg.MultiPartitionKey:
    """Partition key of an analysis asset."""
    return dg.MultiPartitionKey({"dose": dose, "timepoint": timepoint})


def measurement_of(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """``(plate, timepoint)`` of the partition a measurement asset runs for."""
    keys = context.partition_key.keys_by_dimension
    return keys["plate"], keys["timepoint"]


def condition_of(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """``(dose, timepoint)`` of the partition an analysis asset runs for."""
    keys = context.partition_key.keys_by_dimension
    return keys["dose"], keys["timepoint"]


def partitioned_check(
    name: str,
    *,
    asset: str,
    description: str,
    partitions_def: dg.PartitionsDefinition,
    blocking: bool = False,
) -> dg.AssetCheckSpec:
    """An asset check evaluated per partition, so one bad plate or condition stays visible in
    the UI however many good ones run after it (a Dagster preview feature, chosen deliberately)."""
    return dg.AssetCheckSpec(
        name, asset=asset, description=description, blocking=blocking, partitions_def=partitions_def
    )
