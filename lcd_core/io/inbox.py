"""The inbox: measurement folders as the microscope delivers them.

A measurement is *ready* when its index file is present, every file the index lists is on disk,
and nothing in the folder changed between two looks (sizes, modification and status-change times
equal, and the newest change older than a settle time). The status-change time (``st_ctime``)
cannot be set from user space, so a file rewritten by a copier that restores its modification
time still counts as changed. The sensor of ``lcd_assets`` calls :func:`survey` on each tick with
the fingerprints of the previous tick and what it launched (:class:`Delivered`); this module never
launches anything itself.

A launched folder is re-checked with one ``stat`` of its index per tick. Only when that changes
is the index read again: the same bytes are accepted silently; a new ``MeasurementID`` is a new
measurement, surveyed (and launched) like any other; the same ``MeasurementID`` with a different
index is reported as changed after ingestion and not launched again (re-run its partition by hand
to ingest the new content). A second folder holding a ``MeasurementID`` already delivered by
another folder is reported as a duplicate naming both, never launched.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
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
    duplicate: dict[str, str] = field(default_factory=dict)
    changed: dict[str, str] = field(default_factory=dict)  # launched folders whose content changed since
    fingerprints: dict[str, str] = field(default_factory=dict)
    done: dict[str, "Delivered"] = field(default_factory=dict)  # launched folders, for the next survey
    verdicts: dict[str, "Verdict"] = field(default_factory=dict)  # bad folders, for the next survey


@dataclass(frozen=True)
class Delivered:
    """What the sensor keeps of a launched folder, to re-check it with one ``stat`` per tick.

    Attributes
    ----------
    measurement_id : str
        ``MeasurementID`` launched from the folder ("" when unknown: adopted without a report).
    index_stat : str
        :func:`index_stat` of its index file at the last look.
    digest : str
        SHA-256 of the index file's bytes at launch.
    """

    measurement_id: str
    index_stat: str
    digest: str

    @classmethod
    def of(cls, meas: Measurement) -> "Delivered":
        """The record of a measurement being launched now."""
        return cls(meas.measurement_id, index_stat(meas.index_path), _digest(meas.index_path))


@dataclass(frozen=True)
class Verdict:
    """A folder's problem that holds until its index changes (or, when unregistered, the metadata).

    The next survey reports it again without reading the index (a real index takes seconds).

    Attributes
    ----------
    index_stat : str
        :func:`index_stat` of the index file before it was read.
    kind : str
        ``"invalid"``, ``"unregistered"`` or ``"duplicate"``: the :class:`InboxReport` list.
    reason : str
        The problem, as reported.
    metadata : str
        :func:`metadata_stamp` of the screen, for ``unregistered``.
    """

    index_stat: str
    kind: str
    reason: str
    metadata: str = ""

    def holds(self, stat: str, stamp: str) -> bool:
        """True while the index (and, if unregistered, the metadata) is unchanged."""
        return stat == self.index_stat and (self.kind != "unregistered" or (stamp != "" and stamp == self.metadata))


VERDICT_KINDS: tuple[str, ...] = ("invalid", "unregistered", "duplicate")


def metadata_stamp(screen: Screen) -> str:
    """:func:`index_stat` of each file of the screen's metadata folder ("" when not loaded from one)."""
    if screen.source is None or not Path(screen.source).is_dir():
        return ""
    return ";".join(f"{p.name}={index_stat(p)}" for p in sorted(Path(screen.source).iterdir()) if p.is_file())


def index_stat(path: Path) -> str:
    """Size, modification and status-change times (ns) and inode of a file: one ``stat``."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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

    The fingerprint changes whenever the index or a listed file appears, grows or is rewritten,
    even by a copier that restores the modification time: each file's size, ``st_mtime_ns``,
    ``st_ctime_ns`` and inode are hashed. The newest change is the latest mtime or ctime.
    """
    h = hashlib.blake2b(digest_size=12)
    index = os.stat(measurement.index_path)
    newest = max(index.st_mtime, index.st_ctime)
    h.update(f"{index.st_size}:{index.st_mtime_ns}:{index.st_ctime_ns}:{index.st_ino};".encode())
    count = total = 0
    for p in measurement.images["path"].to_list():
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        count += 1
        total += st.st_size
        newest = max(newest, st.st_mtime, st.st_ctime)
        h.update(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino};".encode())
    return f"{count}:{total}:{h.hexdigest()}", newest


def resolve_timepoints(measurement: Measurement, screen: Screen) -> list[MeasurementTimepoint]:
    """Map each ``TimepointID`` of a measurement to its plate and timepoint partition keys.

    The timepoint is the median ``AbsTime`` of the images minus the plate's ``dosed_at``, snapped
    to the screen's timepoints (``Screen.timepoint_for``). The barcode is looked up by
    :func:`~lcd_core.io.platemap.barcode_key` and given as the registry spells it.

    Raises
    ------
    PlateMapError
        If the barcode is not registered, a timepoint matches none of the screen's, or two
        ``TimepointID`` s snap to the same screen timepoint (which of them is that partition?).
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
                barcode=reg["barcode"],
                measurement_id=measurement.measurement_id,
                start_time=measurement.start_time,
                plate=reg["plate"],
                timepoint=screen.timepoint_for(measurement.plate_id, median_time),
                timepoint_id=int(tid),
                dose=reg["dose"],
                n_images=sub.height,
            )
        )
    _check_one_timepoint_each(measurement, out)
    return out


def _check_one_timepoint_each(measurement: Measurement, resolved: list[MeasurementTimepoint]) -> None:
    """Raise :class:`PlateMapError` when two TimepointIDs of ``measurement`` share a screen timepoint."""
    ids: dict[str, list[int]] = defaultdict(list)
    for mt in resolved:
        ids[mt.timepoint].append(mt.timepoint_id)
    clashes = [f"TimepointIDs {', '.join(map(str, v))} all snap to screen timepoint {tp}"
               for tp, v in ids.items() if len(v) > 1]
    if clashes:
        raise PlateMapError(
            f"{measurement.index_path}: measurement {measurement.measurement_id!r}: {'; '.join(clashes)} "
            f"(plate {resolved[0].plate}); which one is that partition is ambiguous, so none is launched"
        )


def survey(
    inbox: Path,
    screen: Screen,
    previous: dict[str, str] | None = None,
    settle_s: float = 10.0,
    now: float | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
    done: dict[str, Delivered] | None = None,
    verdicts: dict[str, Verdict] | None = None,
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
        Folder names not to look at at all.
    done
        Folders launched before (``report.done`` of the previous survey): each re-checked with one
        ``stat`` of its index (see the module docstring); kept when the folder is gone, so a
        re-delivery under the same name is compared with what was launched.
    verdicts
        Problems of bad folders (``report.verdicts`` of the previous survey): reported again
        without reading the index while :meth:`Verdict.holds`.

    Returns
    -------
    InboxReport
        ``done`` holds ``done`` updated plus the folders ready now, ``verdicts`` the bad folders.
    """
    previous, verdicts = previous or {}, verdicts or {}
    now = time.time() if now is None else now
    report = InboxReport(done=dict(done or {}))
    owners = {d.measurement_id: name for name, d in report.done.items() if d.measurement_id}
    stamp = metadata_stamp(screen)
    for folder in find_measurements(inbox):
        name = folder.name
        if name in skip:
            continue
        try:
            if name in report.done and _still_done(report, folder, owners):
                continue
            _look(report, folder, screen, previous.get(name), settle_s, now, owners, verdicts.get(name), stamp)
        except (ValueError, OSError) as exc:
            report.invalid[name] = _reason(exc)
    return report


def _reason(exc: Exception) -> str:
    """An unreadable index (PhenixError names its file), file or encoding, as reported."""
    return str(exc) if isinstance(exc, PhenixError) else f"{type(exc).__name__}: {exc}"


def _look(report: InboxReport, folder: Path, screen: Screen, previous: str | None, settle_s: float, now: float,
          owners: dict[str, str], verdict: Verdict | None, stamp: str) -> None:
    """Survey a folder not launched yet, unless its last :class:`Verdict` still holds; keep its verdict."""
    name, index = folder.name, find_index(folder)
    if index is None:  # gone since the listing
        return
    stat = index_stat(index)
    if verdict is not None and verdict.holds(stat, stamp):
        getattr(report, verdict.kind)[name] = verdict.reason
        report.verdicts[name] = verdict
        return
    try:
        _survey_one(report, folder, screen, previous, settle_s, now, owners)
    except ValueError as exc:  # the index's content (an OSError may pass: not kept)
        report.invalid[name] = _reason(exc)
    for kind in VERDICT_KINDS:
        if name in getattr(report, kind):
            reason = getattr(report, kind)[name]
            report.verdicts[name] = Verdict(stat, kind, reason, stamp if kind == "unregistered" else "")


def _still_done(report: InboxReport, folder: Path, owners: dict[str, str]) -> bool:
    """False if launched ``folder`` now holds a new measurement (to be surveyed); reports a change."""
    name, old = folder.name, report.done[folder.name]
    index = find_index(folder)
    if index is None or index_stat(index) == old.index_stat:
        return True
    meas = read_index(folder)
    new = Delivered.of(meas)
    if old.measurement_id and new.measurement_id != old.measurement_id:
        del report.done[name]
        owners.pop(old.measurement_id, None)
        report.changed[name] = (f"{meas.index_path}: re-delivered with MeasurementID {new.measurement_id!r} "
                                f"(launched before: {old.measurement_id!r}); launched as a new measurement once "
                                "complete and settled")
        return False
    if old.measurement_id and new.digest != old.digest:
        report.changed[name] = (
            f"{meas.index_path}: changed after ingestion: MeasurementID {new.measurement_id!r} was launched "
            "from this folder and its index now differs; not launched again. To ingest the new content re-run "
            "its partition by hand (README: How to retry a measurement); a new measurement needs a new "
            "MeasurementID")
    report.done[name] = new
    owners[new.measurement_id] = name
    return True


def _survey_one(report: InboxReport, folder: Path, screen: Screen, previous: str | None, settle_s: float,
                now: float, owners: dict[str, str]) -> None:
    """File ``folder``'s measurement under one of ``report``'s lists."""
    name = folder.name
    meas = read_index(folder)
    if meas.images.height == 0:
        report.invalid[name] = f"{meas.index_path}: the index lists no images"
        return
    first = owners.get(meas.measurement_id)
    if first is not None and first != name:
        report.duplicate[name] = (f"{meas.index_path}: MeasurementID {meas.measurement_id!r} was already "
                                  f"delivered by folder {first!r}; not launched again (keep one of the two)")
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
    except PlateMapError as exc:
        report.unregistered[name] = str(exc)
        return
    report.ready_folders.append(name)
    report.done[name] = Delivered.of(meas)
    owners[meas.measurement_id] = name


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
