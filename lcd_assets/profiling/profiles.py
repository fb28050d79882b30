"""Profiling assets (SPEC §4.4): raw well profiles per dose × timepoint, in the cytomining convention."""


import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.partitions import condition_partitions, measurement_to_condition, partitioned_check
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome
from lcd_core.io.warehouse import Warehouse
from lcd_core.profiling.profiles import to_cytomining

GROUP = "analysis"


@dg.asset(
    partitions_def=condition_partitions,
    group_name=GROUP,
    kinds={"parquet", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=[dg.AssetDep("well_embeddings", partition_mapping=measurement_to_condition)],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        partitioned_check(
            "every_compound_present",
            asset="condition_profiles",
            description=(
                "Every compound on the layouts registered at this dose has at least one well here "
                "(fails while a registered plate is not ingested)."
            ),
            partitions_def=condition_partitions,
        ),
        partitioned_check(
            "every_acquired_plate_profiled",
            asset="condition_profiles",
            description=(
                "Every plate tiled at this dose × timepoint has well profiles here (fails, naming the "
                "plates, when QC kept no tile of any of a plate's wells)."
            ),
            partitions_def=condition_partitions,
        ),
    ],
    description=(
        "Raw (not yet normalized) well profiles of one dose × timepoint, gathered from every plate "
        "whose replica received that dose, in the cytomining convention (`Metadata_*` columns + "
        "features `emb_000`…), ready for pycytominer / copairs. Parquet dataset `condition_profiles`."
    ),
)
def condition_profiles(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    dose, timepoint = keys["dose"], keys["timepoint"]
    wh = lcd.warehouse()
    wells = wh.query(
        "SELECT * FROM well_embeddings WHERE dose = $dose AND timepoint = $timepoint "
        "ORDER BY plate, well",
        {"dose": dose, "timepoint": timepoint},
    )
    profiles = to_cytomining(wells)
    wh.write_parquet_partition("condition_profiles", {"dose": dose, "timepoint": timepoint}, profiles)
    screen = lcd.screen()
    layouts = screen.registry.filter(pl.col("dose") == dose)["layout"].unique().to_list()
    expected = set(screen.layouts.filter(pl.col("layout").is_in(layouts))["compound"].to_list())
    present = set(wells["compound"].to_list()) if wells.height else set()
    missing = sorted(expected - present)
    per_plate = (
        wells.group_by(["plate", "replica"]).agg(
            pl.len().alias("wells"),
            (pl.col("role") == "negative_control").sum().alias("control_wells"),
        ).sort("plate")
        if wells.height
        else pl.DataFrame()
    )
    return dg.MaterializeResult(
        metadata={
            "wells": profiles.height,
            "plates": per_plate.height,
            "replicas": wells["replica"].n_unique() if wells.height else 0,
            "compounds": len(present),
            "plates_table": md.table(per_plate),
        },
        check_results=[
            _plates_profiled_check(wh, dose, timepoint, wells),
            dg.AssetCheckResult(
                check_name="every_compound_present",
                passed=not missing,
                description=f"{len(missing)} compounds missing: {missing[:10]}" if missing else "all present",
            )
        ],
    )


def acquired_plates_without_profiles(wh: Warehouse, dose: str, timepoint: str, wells: pl.DataFrame) -> list[str]:
    """Plates with rows in ``tiles`` at ``dose`` × ``timepoint`` but no well among ``wells``: QC kept no
    tile of theirs, so they would drop out of the normalization and activity silently."""
    if "tiles" not in wh.tables():
        return []
    tiled = wh.query("SELECT DISTINCT plate FROM tiles WHERE dose = $dose AND timepoint = $timepoint",
                     {"dose": dose, "timepoint": timepoint})["plate"].to_list()
    profiled = set(wells["plate"].to_list()) if wells.height else set()
    return sorted(set(tiled) - profiled)


def _plates_profiled_check(wh: Warehouse, dose: str, timepoint: str, wells: pl.DataFrame) -> dg.AssetCheckResult:
    lost = acquired_plates_without_profiles(wh, dose, timepoint, wells)
    return dg.AssetCheckResult(
        check_name="every_acquired_plate_profiled",
        passed=not lost,
        description=(f"plates {', '.join(lost)} were tiled at dose {dose} × {timepoint} but have no well "
                     "profile (QC kept none of their tiles): they are left out of the normalization and activity"
                     if lost else "every tiled plate has well profiles"),
    )
