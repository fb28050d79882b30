"""The inbox sensor: launch each measurement once, when it is complete and registered."""


import json
import os
from dataclasses import asdict

import dagster as dg

from lcd_assets.partitions import (
    dose_partitions,
    measurement_key,
    plate_partitions,
    timepoint_partitions,
)
from lcd_assets.resources import LcdHome
from lcd_core.io.inbox import Delivered, InboxReport, MeasurementTimepoint, Verdict, survey
from lcd_core.io.tables import PlateMapError


def settle_seconds() -> float:
    """How long a measurement's newest file must be untouched: ``$LCD_INBOX_SETTLE_S``, 10 s."""
    return float(os.environ.get("LCD_INBOX_SETTLE_S", "10"))


def _already_ingested(instance: dg.DagsterInstance, mt: MeasurementTimepoint) -> bool:
    """True if ``image_index`` of this partition was last materialized from this measurement."""
    pk = str(measurement_key(mt.plate, mt.timepoint))
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("image_index"), asset_partitions=[pk]), limit=1
    ).records
    if not records:
        return False
    meta = records[0].asset_materialization.metadata
    return getattr(meta.get("measurement_id"), "value", None) == mt.measurement_id


def _new_keys(instance: dg.DagsterInstance, name: str, keys: set[str]) -> list[str]:
    return sorted(keys - set(instance.get_dynamic_partitions(name)))


def _log_problems(context: dg.SensorEvaluationContext, report: InboxReport,
                  reported: dict[str, str]) -> dict[str, str]:
    """Log each measurement's problem once (again only when its reason changes); the problems now."""
    now = {}
    for kind, items in (
        ("incomplete", report.incomplete),
        ("unregistered", report.unregistered),
        ("unreadable", report.invalid),
        ("duplicate", report.duplicate),
        ("changed", report.changed),
    ):
        for name, reason in items.items():
            now[name] = line = f"{kind} measurement {name}: {reason}"
            if reported.get(name) != line:
                context.log.warning(line)
    return now


def _run_requests(instance: dg.DagsterInstance, ready: list[MeasurementTimepoint]) -> list[dg.RunRequest]:
    """One run per ready measurement not already ingested."""
    return [
        dg.RunRequest(
            run_key=f"{mt.measurement_id}:{mt.timepoint_id}",
            partition_key=measurement_key(mt.plate, mt.timepoint),
            tags={"lcd/measurement": str(mt.path), "lcd/barcode": mt.barcode},
        )
        for mt in ready
        if not _already_ingested(instance, mt)
    ]


def _partition_requests(instance: dg.DagsterInstance, ready: list[MeasurementTimepoint]) -> list:
    """Add the plate, timepoint and dose keys of the ready measurements that are new."""
    return [
        defn.build_add_request(new)
        for defn, keys in (
            (plate_partitions, {m.plate for m in ready}),
            (timepoint_partitions, {m.timepoint for m in ready}),
            (dose_partitions, {m.dose for m in ready}),
        )
        if (new := _new_keys(instance, defn.name, keys))
    ]


def _done_of(cursor: dict) -> dict[str, Delivered]:
    """Launched folders from the cursor (a list of names in cursors written before fingerprints were kept)."""
    done = cursor.get("done", {})
    if isinstance(done, list):  # older cursor: adopted on the next look without a report
        return {name: Delivered("", "", "") for name in done}
    return {name: Delivered(**d) for name, d in done.items()}


def _cursor_of(report: InboxReport, reported: dict[str, str]) -> str:
    """The next tick's cursor: fingerprints, launched folders, bad folders' verdicts, what was logged."""
    return json.dumps({
        "fingerprints": report.fingerprints,
        "done": {name: asdict(d) for name, d in sorted(report.done.items())},
        "verdicts": {name: asdict(v) for name, v in sorted(report.verdicts.items())},
        "reported": reported,
    })


def _skip_reason(report: InboxReport) -> dg.SkipReason:
    waiting = len(report.incomplete) + len(report.unstable)
    return dg.SkipReason(
        f"nothing new ready ({waiting} waiting, {len(report.unregistered)} unregistered, "
        f"{len(report.invalid)} unreadable, {len(report.duplicate)} duplicate, {len(report.changed)} changed)"
    )


def inbox_sensor_factory(job) -> dg.SensorDefinition:
    """The ``inbox_sensor`` launching ``job`` per ready measurement."""

    @dg.sensor(
        name="inbox_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Watches `$LCD_HOME/inbox`. A measurement is launched once its index is present, every "
            "listed file is on disk and nothing changed since the last tick (nor for "
            "$LCD_INBOX_SETTLE_S, default 10 s); exactly once (run key = measurement id + timepoint). Its plate, "
            "timepoint and dose partitions are added. Incomplete, unregistered, unreadable or duplicate "
            "measurements (a MeasurementID already delivered by another folder), and launched folders "
            "whose content changed, are reported once in the tick log, not launched. To retry a failed "
            "run, re-execute it or launch its partition by hand (README: How to retry a measurement)."
        ),
    )
    def inbox_sensor(context: dg.SensorEvaluationContext, lcd: LcdHome):
        cursor = json.loads(context.cursor) if context.cursor else {}
        try:
            screen = lcd.metadata_screen()
        except (PlateMapError, ValueError, OSError) as exc:  # ValueError: a file in another encoding
            return dg.SkipReason(f"metadata in {lcd.metadata_dir} is not usable: {type(exc).__name__}: {exc}")
        try:
            report = survey(lcd.inbox, screen, previous=cursor.get("fingerprints"), settle_s=settle_seconds(),
                            done=_done_of(cursor),
                            verdicts={name: Verdict(**v) for name, v in cursor.get("verdicts", {}).items()})
        except OSError as exc:
            return dg.SkipReason(f"inbox {lcd.inbox} is not readable: {exc}")
        reported = _log_problems(context, report, cursor.get("reported", {}))
        requests = _run_requests(context.instance, report.ready)
        partition_requests = _partition_requests(context.instance, report.ready)
        new_cursor = _cursor_of(report, reported)
        if not requests and not partition_requests:
            context.update_cursor(new_cursor)
            return _skip_reason(report)
        return dg.SensorResult(
            run_requests=requests, dynamic_partitions_requests=partition_requests, cursor=new_cursor
        )

    return inbox_sensor
