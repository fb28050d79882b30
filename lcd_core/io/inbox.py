"""The inbox: measurement folders as the microscope delivers them.

A measurement is *ready* when its index file is present, every file the index lists is on disk,
and nothing in the folder changed between two looks (sizes and modification times equal, and the
newest change older than a settle time). The sensor of ``lcd_assets`` calls :func:`survey` on each
tick with the fingerprints of the previous tick; this module never launches anything itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from lcd_core.io.phenix import INDEX_NAMES, Measurement, PhenixError, read_index
from lcd_core.io.platemap import Screen
from lcd_core.io.tables import PlateMapError

@dataclass(frozen=True)
class MeasurementTimepoint:
    """One timepoint of one measurement, resolved against the run registry.

    Attributes
    ----------
    plate, timepoint : str
        Partition keys (``R03-L05``, ``04h``).
    timepoint_id : int
        ``TimepointID`` of the images in the index.
    """

    path: Path
    barcode: str
    measurement_id: str
    start_time: datetime | None
    plate: str
    timepoint: str
    timepoint_id: int
    dose: str
    n_images: int


@dataclass
class InboxReport:
    """What one survey of the inbox found.

    ``ready`` measurements are complete, stable and registered; the other lists say why a
    measurement is not ready, one human-readable reason each.
    """

    ready: list[MeasurementTimepoint] = field(default_factory=list)
    ready_folders: list[str] = field(default_factory=list)  # inbox folder names of ``ready``
    incomplete: dict[str, str] = field(default_factory=dict)
    unstable: dict[str, str] = field(default_factory=dict)
    unregistered: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)


def find_index(folder: Path) -> Path | None:
    """Index file of a measurement folder (itself or its ``Images/`` subfolder), or None."""
    for base in (folder / "Images", folder):
        for name in INDEX_NAMES:
            candidate = base / name
            if candidate.is_file():
                return candidate
    return None


def find_measurements(inbox: Path) -> list[Path]:
    """Measurement folders directly under ``inbox`` that hold an index file, sorted by name."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_dir() and find_index(p) is not None)


def fingerprint(measurement: Measurement) -> tuple[str, float]:
    """Fingerprint of a measurement's files and the time of its newest change.

    The fingerprint changes whenever a listed file appears, grows or is rewritten.
    """
    total = 0
    newest = os.stat(measurement.index_path).st_mtime
    count = 0
    for p in measurement.images["path"].to_list():
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        count += 1
        total += st.st_size
        newest = max(newest, st.st_mtime)
    return f"{count}:{total}:{newest:.3f}", newest


def resolve_timepoints(measurement: Measurement, screen: Screen) -> list[MeasurementTimepoint]:
    """Map each ``TimepointID`` of a measurement to its plate and timepoint partition keys.

    The timepoint is the median ``AbsTime`` of the images minus the plate's ``dosed_at``, snapped
    to the screen's timepoints (``Screen.timepoint_for``).

    Raises
    ------
    PlateMapError
        If the barcode is not registered or a timepoint matches none of the screen's.
    """
    reg = screen.plate_for_barcode(measurement.plate_id)
    out = []
    images = measurement.images
    for tid in sorted(images["timepoint"].unique().to_list()):
        sub = images.filter(pl.col("timepoint") == tid)
        times = sub["abs_time"].drop_nulls().sort()
        if times.len() == 0:
            raise PlateMapError(f"{measurement.index_path}: images of TimepointID {tid} carry no AbsTime")
        median_time = times[times.len() // 2]
        out.append(
            MeasurementTimepoint(
                path=measurement.root,
                barcode=measurement.plate_id,
                measurement_id=measurement.measurement_id,
                start_time=measurement.start_time,
                plate=reg["plate"],
                timepoint=screen.timepoint_for(measurement.plate_id, median_time),
                timepoint_id=int(tid),
                dose=reg["dose"],
                n_images=sub.height,
            )
        )
    return out


def survey(
    inbox: Path,
    screen: Screen,
    previous: dict[str, str] | None = None,
    settle_s: float = 10.0,
    now: float | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
) -> InboxReport:
    """Look at every measurement folder of the inbox once.

    Parameters
    ----------
    inbox
        Folder holding measurement folders.
    screen
        Validated plate maps and run registry.
    previous
        Fingerprints by folder name from the previous survey; a measurement is stable only if its
        fingerprint is unchanged since then.
    settle_s
        Minimum age, in seconds, of the newest file before a measurement counts as stable.
    now
        Current time (seconds since the epoch); defaults to ``time.time()``.
    skip
        Folder names already handled (launched); not read again.

    Returns
    -------
    InboxReport
    """
    previous = previous or {}
    now = time.time() if now is None else now
    report = InboxReport()
    for folder in find_measurements(inbox):
        name = folder.name
        if name in skip:
            continue
        try:
            _survey_one(report, folder, screen, previous.get(name), settle_s, now)
        except (ValueError, OSError) as exc:  # unreadable index (PhenixError), file, encoding: named, not raised
            report.invalid[name] = str(exc) if isinstance(exc, PhenixError) else f"{type(exc).__name__}: {exc}"
    return report


def _survey_one(report: InboxReport, folder: Path, screen: Screen, previous: str | None, settle_s: float,
                now: float) -> None:
    """File ``folder``'s measurement under one of ``report``'s lists."""
    name = folder.name
    meas = read_index(folder)
    if meas.images.height == 0:
        report.invalid[name] = f"{meas.index_path}: the index lists no images"
        return
    missing = meas.missing_files()
    fp, newest = fingerprint(meas)
    report.fingerprints[name] = fp
    if missing:
        report.incomplete[name] = f"{len(missing)} of {meas.images.height} listed files missing, e.g. {missing[0].name}"
        return
    if previous != fp or now - newest < settle_s:
        report.unstable[name] = "files changed since the last look; waiting for them to settle"
        return
    try:
        report.ready.extend(resolve_timepoints(meas, screen))
        report.ready_folders.append(name)
    except PlateMapError as exc:
        report.unregistered[name] = str(exc)


def catalog(inbox: Path, screen: Screen) -> list[MeasurementTimepoint]:
    """Every resolvable measurement timepoint in the inbox, complete or not.

    Used by assets to find the folder of a partition; unreadable or unregistered folders are
    skipped here (the sensor reports them).
    """
    out: list[MeasurementTimepoint] = []
    for folder in find_measurements(inbox):
        try:
            out.extend(resolve_timepoints(read_index(folder), screen))
        except (PhenixError, PlateMapError):
            continue
    return out


def locate(inbox: Path, screen: Screen, plate: str, timepoint: str) -> MeasurementTimepoint:
    """The measurement timepoint delivering partition ``plate`` × ``timepoint``.

    When a plate was imaged more than once at the same timepoint, the latest measurement wins.

    Raises
    ------
    FileNotFoundError
        Naming the inbox and the partition when no measurement delivers it.
    """
    hits = [m for m in catalog(inbox, screen) if m.plate == plate and m.timepoint == timepoint]
    if not hits:
        raise FileNotFoundError(
            f"no measurement in {inbox} delivers plate {plate} at timepoint {timepoint}"
        )
    return max(hits, key=lambda m: (m.start_time.timestamp() if m.start_time else 0.0, str(m.path)))


def resolve_partition(
    inbox: Path, screen: Screen, plate: str, timepoint: str, hint: Path | None = None
) -> MeasurementTimepoint:
    """Like :func:`locate`, trying the measurement folder ``hint`` first (e.g. from a run tag)."""
    if hint is not None and find_index(hint) is not None:
        for mt in resolve_timepoints(read_index(hint), screen):
            if mt.plate == plate and mt.timepoint == timepoint:
                return mt
    return locate(inbox, screen, plate, timepoint)
