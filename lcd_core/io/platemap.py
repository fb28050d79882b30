"""Plate maps and the run registry, loaded from ``$LCD_HOME/metadata`` (see docs/ARCHITECTURE.md).

Files (CSV, or Parquet for the three tables):

- ``compounds.csv``: ``compound, moa, smiles``
- ``layouts.csv``: ``layout, well, compound, moa, smiles, role``
- ``registry.csv``: ``barcode, replica, layout, dose_um, dosed_at``
- ``screen.json``: :class:`ScreenConfig`

Bad metadata fails loudly: :class:`PlateMapError` names the file and every offending row (line
numbers as in the file, the header being line 1), never silently dropping or duplicating a well.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import polars as pl

from lcd_core.keys import (
    dose_key,
    layout_key,
    parse_dose_key,
    parse_well,
    plate_key,
    replica_key,
    timepoint_key,
    well_name,
)

COMPOUND_COLUMNS: tuple[str, ...] = ("compound", "moa", "smiles")
# optional column of compounds.csv: which compound set (training / holdout) a compound belongs to;
# missing values default to "control" for the control compound and "training" otherwise
COMPOUND_SETS: tuple[str, ...] = ("training", "holdout", "control")
LAYOUT_COLUMNS: tuple[str, ...] = ("layout", "well", "compound", "moa", "smiles", "role")
REGISTRY_COLUMNS: tuple[str, ...] = ("barcode", "replica", "layout", "dose_um", "dosed_at")
ROLES: frozenset[str] = frozenset({"treatment", "negative_control"})
MAX_LISTED = 20

_LAYOUT_RE = re.compile(r"^L\d{2,}$")
_REPLICA_RE = re.compile(r"^R\d{2,}$")


class PlateMapError(ValueError):
    """Invalid or inconsistent plate-map / registry metadata.

    Attributes
    ----------
    path : Path or None
        The offending file.
    lines : list of int
        Line numbers (header = line 1) of the offending rows, where rows are to blame.
    """

    def __init__(self, message: str, path: Path | None = None, lines: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.path = path
        self.lines = list(lines)


@dataclass(frozen=True)
class ScreenConfig:
    """Contents of ``screen.json``."""

    name: str
    plate_type: str
    plate_rows: int
    plate_columns: int
    timepoints_h: tuple[float, ...]
    control: str = "DMSO"
    min_control_wells: int = 32
    timepoint_tolerance_h: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``timepoints_h`` as a list)."""
        d = asdict(self)
        d["timepoints_h"] = list(self.timepoints_h)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: Path | None = None) -> "ScreenConfig":
        """Validate and build from a parsed ``screen.json``; raises :class:`PlateMapError`."""
        where = str(source) if source else "screen config"
        if not isinstance(d, Mapping):
            raise PlateMapError(f"{where}: expected a JSON object, got {type(d).__name__}", source)
        missing = [k for k in ("name", "plate_type", "plate_rows", "plate_columns", "timepoints_h") if k not in d]
        if missing:
            raise PlateMapError(f"{where}: missing required key(s) {missing}", source)
        problems: list[str] = []

        def _int(key: str, minimum: int) -> int:
            v = d.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                problems.append(f"{key}={v!r} must be an integer >= {minimum}")
                return minimum
            return v

        rows = _int("plate_rows", 1)
        cols = _int("plate_columns", 1)
        min_ctrl = _int("min_control_wells", 0) if "min_control_wells" in d else 32
        tps_raw = d.get("timepoints_h")
        tps: list[float] = []
        if not isinstance(tps_raw, list) or not tps_raw:
            problems.append(f"timepoints_h={tps_raw!r} must be a non-empty list of hours")
        else:
            for v in tps_raw:
                try:
                    timepoint_key(v)
                    tps.append(float(v))
                except (TypeError, ValueError):
                    problems.append(f"timepoints_h entry {v!r} is not a whole, non-negative number of hours")
            if len(set(tps)) != len(tps):
                problems.append(f"timepoints_h={tps_raw!r} has duplicates")
        tol = d.get("timepoint_tolerance_h", 1.0)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            problems.append(f"timepoint_tolerance_h={tol!r} must be a positive number")
            tol = 1.0
        for key in ("name", "plate_type", "control"):
            if key in d and (not isinstance(d[key], str) or not d[key].strip()):
                problems.append(f"{key}={d[key]!r} must be a non-empty string")
        if problems:
            raise PlateMapError(f"{where}: invalid screen config:\n  " + "\n  ".join(problems), source)
        return cls(
            name=d["name"].strip(),
            plate_type=d["plate_type"].strip(),
            plate_rows=rows,
            plate_columns=cols,
            timepoints_h=tuple(sorted(tps)),
            control=str(d.get("control", "DMSO")).strip(),
            min_control_wells=min_ctrl,
            timepoint_tolerance_h=float(tol),
        )


# --------------------------------------------------------------------------------------------
# reading raw tables


@dataclass
class _RawTable:
    """A metadata table as strings, with the file line of each row."""

    path: Path
    rows: list[dict[str, str | None]]
    lines: list[int]
    line_word: str  # "line" for CSV, "row" for Parquet


def _clean(value: Any) -> str | None:
    """Normalise one cell to a stripped string, empty -> None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, float):
        if math.isnan(value):
            return None
        text = repr(value)
    else:
        text = str(value)
    text = text.strip()
    return text or None


def _find_table(metadata_dir: Path, stem: str) -> Path:
    csv_path = metadata_dir / f"{stem}.csv"
    pq_path = metadata_dir / f"{stem}.parquet"
    if csv_path.exists() and pq_path.exists():
        raise PlateMapError(f"both {csv_path} and {pq_path} exist; keep only one", csv_path)
    if csv_path.exists():
        return csv_path
    if pq_path.exists():
        return pq_path
    raise PlateMapError(f"missing metadata file {csv_path} (or {pq_path.name})", csv_path)


def _read_table(metadata_dir: Path, stem: str, required: Sequence[str]) -> _RawTable:
    """Read ``<stem>.csv`` / ``<stem>.parquet`` as stripped strings; check required columns."""
    path = _find_table(metadata_dir, stem)
    rows: list[dict[str, str | None]] = []
    lines: list[int] = []
    if path.suffix == ".csv":
        word = "line"
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise PlateMapError(f"{path} is empty (no header line)", path)
            columns = [h.strip().lower() for h in header]
            too_long: list[int] = []
            for rec in reader:
                if not rec or all(not c.strip() for c in rec):
                    continue
                if len(rec) > len(columns):
                    too_long.append(reader.line_num)
                rec = rec + [""] * (len(columns) - len(rec))
                rows.append({c: _clean(v) for c, v in zip(columns, rec)})
                lines.append(reader.line_num)
            if too_long:
                raise PlateMapError(
                    f"{path}: {len(too_long)} row(s) have more fields than the header "
                    f"({len(columns)}): lines {_cap_list(too_long)}",
                    path,
                    too_long,
                )
    else:
        word = "row"
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any read failure is a metadata error
            raise PlateMapError(f"cannot read {path}: {exc}", path) from exc
        columns = [c.strip().lower() for c in df.columns]
        for i, rec in enumerate(df.iter_rows()):
            rows.append({c: _clean(v) for c, v in zip(columns, rec)})
            lines.append(i + 1)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise PlateMapError(f"{path}: duplicate column(s) {dupes}", path)
    missing = [c for c in required if c not in columns]
    if missing:
        raise PlateMapError(
            f"{path}: missing required column(s) {missing}; found {columns}", path
        )
    return _RawTable(path=path, rows=rows, lines=lines, line_word=word)


def _cap_list(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    rest = len(items) - MAX_LISTED
    return shown + (f" ... and {rest} more" if rest > 0 else "")


class _Problems:
    """Collects offending rows of one file, grouped by kind, and raises them all at once."""

    def __init__(self, table: _RawTable) -> None:
        self.table = table
        self.kinds: dict[str, list[tuple[int, str]]] = defaultdict(list)

    def add(self, kind: str, index: int | None, detail: str) -> None:
        line = self.table.lines[index] if index is not None else 0
        self.kinds[kind].append((line, detail))

    def row(self, kind: str, index: int, columns: Sequence[str], extra: str = "") -> None:
        rec = self.table.rows[index]
        values = ", ".join(f"{c}={rec.get(c)!r}" for c in columns)
        self.add(kind, index, values + (f" ({extra})" if extra else ""))

    def raise_if_any(self) -> None:
        if not self.kinds:
            return
        word = self.table.line_word
        parts = [f"{self.table.path}: invalid metadata"]
        all_lines: list[int] = []
        for kind, items in self.kinds.items():
            items = sorted(items, key=lambda t: t[0])
            parts.append(f"  {kind} ({len(items)}):")
            for line, detail in items[:MAX_LISTED]:
                parts.append(f"    {word} {line}: {detail}" if line else f"    {detail}")
            if len(items) > MAX_LISTED:
                parts.append(f"    ... and {len(items) - MAX_LISTED} more")
            all_lines.extend(line for line, _ in items if line)
        raise PlateMapError("\n".join(parts), self.table.path, sorted(set(all_lines)))


# --------------------------------------------------------------------------------------------
# validation


def _load_config(metadata_dir: Path) -> ScreenConfig:
    path = metadata_dir / "screen.json"
    if not path.exists():
        raise PlateMapError(f"missing metadata file {path}", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlateMapError(f"{path}: not valid JSON: {exc}", path) from exc
    return ScreenConfig.from_dict(data, path)


def _validate_compounds(raw: _RawTable, config: ScreenConfig) -> pl.DataFrame:
    probs = _Problems(raw)
    seen: dict[str, int] = {}
    for i, rec in enumerate(raw.rows):
        name = rec["compound"]
        if name is None:
            probs.row("empty compound name", i, COMPOUND_COLUMNS)
        elif name in seen:
            probs.row("duplicate compound", i, COMPOUND_COLUMNS,
                      f"first at {raw.line_word} {raw.lines[seen[name]]}")
        else:
            seen[name] = i
        if rec.get("set") is not None and rec["set"] not in COMPOUND_SETS:
            probs.row(f"set not one of {COMPOUND_SETS}", i, (*COMPOUND_COLUMNS, "set"))
    probs.raise_if_any()
    if config.control not in seen:
        raise PlateMapError(
            f"{raw.path}: control compound {config.control!r} (screen.json) is not listed", raw.path
        )
    sets = [
        r.get("set") or ("control" if r["compound"] == config.control else "training")
        for r in raw.rows
    ]
    return pl.DataFrame(
        {**{c: [r[c] for r in raw.rows] for c in COMPOUND_COLUMNS}, "set": sets},
        schema={c: pl.String for c in (*COMPOUND_COLUMNS, "set")},
    )


def _validate_layouts(raw: _RawTable, config: ScreenConfig, compounds: pl.DataFrame) -> pl.DataFrame:
    probs = _Problems(raw)
    ref = {r["compound"]: r for r in compounds.iter_rows(named=True)}
    out: dict[str, list[Any]] = {c: [] for c in ("layout", "well", "row", "col", "compound", "moa", "smiles", "role")}
    first_at: dict[tuple[str, str], int] = {}
    dup_idx: set[int] = set()
    for i, rec in enumerate(raw.rows):
        lay = rec["layout"]
        try:
            lay = layout_key(lay) if lay is not None else None
        except ValueError:
            pass
        if lay is None or not _LAYOUT_RE.match(lay):
            probs.row("malformed layout (expected L<nn>)", i, ("layout", "well"))
        well = rec["well"]
        r = c = None
        try:
            if well is None:
                raise ValueError("empty")
            r, c = parse_well(well)
        except ValueError:
            probs.row("malformed well name", i, ("layout", "well"))
        if r is not None and c is not None:
            if r > config.plate_rows or c > config.plate_columns or c < 1:
                probs.row(f"well not on a {config.plate_type} plate "
                          f"({config.plate_rows} rows x {config.plate_columns} columns)", i, ("layout", "well"))
                r = c = None
            else:
                well = well_name(r, c)
                key = (str(lay), well)
                if key in first_at:
                    dup_idx.update((first_at[key], i))
                else:
                    first_at[key] = i
        comp = rec["compound"]
        role = (rec["role"] or "").lower() or None
        if comp is None:
            probs.row("empty compound", i, ("layout", "well", "compound"))
        elif comp not in ref:
            probs.row("compound not in compounds file", i, ("layout", "well", "compound"))
        else:
            for attr in ("moa", "smiles"):
                if rec[attr] != ref[comp][attr]:
                    probs.row(f"{attr} disagrees with compounds file", i, ("layout", "well", "compound", attr),
                              f"compounds file says {ref[comp][attr]!r}")
        if role not in ROLES:
            probs.row(f"role not one of {sorted(ROLES)}", i, ("layout", "well", "role"))
        elif comp == config.control and role != "negative_control":
            probs.row(f"control compound {config.control!r} without role negative_control", i,
                      ("layout", "well", "compound", "role"))
        elif comp is not None and comp != config.control and role == "negative_control":
            probs.row(f"role negative_control on a compound other than the control {config.control!r}", i,
                      ("layout", "well", "compound", "role"))
        out["layout"].append(lay)
        out["well"].append(well)
        out["row"].append(r)
        out["col"].append(c)
        out["compound"].append(comp)
        out["moa"].append(rec["moa"])
        out["smiles"].append(rec["smiles"])
        out["role"].append(role)
    for i in sorted(dup_idx):
        probs.row("duplicate well within a layout", i, ("layout", "well", "compound"))
    probs.raise_if_any()

    layouts = pl.DataFrame(
        out,
        schema={"layout": pl.String, "well": pl.String, "row": pl.Int32, "col": pl.Int32,
                "compound": pl.String, "moa": pl.String, "smiles": pl.String, "role": pl.String},
    )
    counts = (
        layouts.group_by("layout")
        .agg((pl.col("role") == "negative_control").sum().alias("n_control"))
        .sort("layout")
    )
    for lay, n in counts.iter_rows():
        if n < config.min_control_wells:
            probs.add(f"layout with fewer than min_control_wells={config.min_control_wells} "
                      f"{config.control} wells", None, f"layout {lay}: {n} control wells")
    probs.raise_if_any()
    return layouts.sort("layout", "row", "col")


def _parse_dosed_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    if ts.tzinfo is None or ts.utcoffset() is None:
        return None
    return ts.astimezone(timezone.utc)


def _validate_registry(raw: _RawTable, layouts: pl.DataFrame) -> pl.DataFrame:
    probs = _Problems(raw)
    known_layouts = set(layouts["layout"].unique().to_list())
    cols = REGISTRY_COLUMNS
    out: dict[str, list[Any]] = {c: [] for c in ("barcode", "replica", "layout", "plate", "dose_um", "dose", "dosed_at")}
    by_barcode: dict[str, list[int]] = defaultdict(list)
    by_plate: dict[str, list[int]] = defaultdict(list)
    doses_of: dict[str, dict[float, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, rec in enumerate(raw.rows):
        bc = rec["barcode"]
        if bc is None:
            probs.row("empty barcode", i, cols)
        else:
            by_barcode[bc].append(i)
        rep = rec["replica"]
        try:
            rep = replica_key(rep) if rep is not None else None
        except ValueError:
            pass
        rep_ok = rep is not None and bool(_REPLICA_RE.match(rep))
        if not rep_ok:
            probs.row("malformed replica (expected R<nn> or a number)", i, ("barcode", "replica"))
        lay = rec["layout"]
        try:
            lay = layout_key(lay) if lay is not None else None
        except ValueError:
            pass
        lay_ok = lay in known_layouts
        if not lay_ok:
            probs.row("layout not in layouts file", i, ("barcode", "layout"))
        plate = plate_key(rep, lay) if rep_ok and lay_ok else None
        if plate is not None:
            by_plate[plate].append(i)
        dose: float | None
        try:
            dose = float(rec["dose_um"]) if rec["dose_um"] is not None else None
        except ValueError:
            dose = None
        if dose is None or not math.isfinite(dose) or dose <= 0:
            probs.row("dose_um not a positive number", i, ("barcode", "dose_um"))
            dose = None
        elif rep_ok:
            doses_of[rep][dose].append(i)
        ts = _parse_dosed_at(rec["dosed_at"])
        if ts is None:
            probs.row("dosed_at not an ISO 8601 timestamp with UTC offset", i, ("barcode", "dosed_at"))
        out["barcode"].append(bc)
        out["replica"].append(rep)
        out["layout"].append(lay)
        out["plate"].append(plate)
        out["dose_um"].append(dose)
        out["dose"].append(dose_key(dose) if dose is not None else None)
        out["dosed_at"].append(ts)
    for bc, idx in by_barcode.items():
        if len(idx) > 1:
            for i in idx:
                probs.row("duplicate barcode", i, ("barcode", "replica", "layout"))
    for plate, idx in by_plate.items():
        if len(idx) > 1:
            for i in idx:
                probs.row("several barcodes for one replica + layout", i, ("barcode", "replica", "layout"),
                          f"plate {plate}")
    for rep, by_dose in doses_of.items():
        if len(by_dose) > 1:
            for idx in by_dose.values():
                for i in idx:
                    probs.row("replica with more than one dose (every plate of a run gets the same dose)",
                              i, ("barcode", "replica", "dose_um"))
    probs.raise_if_any()
    return pl.DataFrame(
        out,
        schema={"barcode": pl.String, "replica": pl.String, "layout": pl.String, "plate": pl.String,
                "dose_um": pl.Float64, "dose": pl.String, "dosed_at": pl.Datetime("us", "UTC")},
    ).sort("plate")


# --------------------------------------------------------------------------------------------
# the screen


@dataclass
class Screen:
    """A validated screen: config plus normalised compounds, layouts and registry tables.

    ``layouts`` has ``layout, well, row, col, compound, moa, smiles, role``; ``registry`` has
    ``barcode, replica, layout, plate, dose_um, dose, dosed_at`` (UTC).
    """

    config: ScreenConfig
    compounds: pl.DataFrame
    layouts: pl.DataFrame
    registry: pl.DataFrame
    source: Path | None = None
    _by_barcode: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)
    _by_plate: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for rec in self.registry.iter_rows(named=True):
            self._by_barcode[rec["barcode"]] = rec
            self._by_plate[rec["plate"]] = rec

    def _registry_name(self) -> str:
        return str(self.source / "registry.csv") if self.source else "the run registry"

    def plate_for_barcode(self, barcode: str) -> dict[str, Any]:
        """Registry row (``barcode, replica, layout, plate, dose_um, dose, dosed_at``) of a barcode."""
        rec = self._by_barcode.get(barcode)
        if rec is None:
            raise PlateMapError(f"barcode {barcode!r} is not in the run registry {self._registry_name()}",
                                self.source)
        return dict(rec)

    def plate_row(self, plate: str) -> dict[str, Any]:
        """Registry row of a plate key (``R03-L05``)."""
        rec = self._by_plate.get(plate)
        if rec is None:
            raise PlateMapError(f"plate {plate!r} is not in the run registry {self._registry_name()}",
                                self.source)
        return dict(rec)

    def barcode_for_plate(self, plate: str) -> str:
        """Barcode of a plate key."""
        return str(self.plate_row(plate)["barcode"])

    def layout_of(self, plate: str) -> pl.DataFrame:
        """Wells of the layout of a plate key, sorted by row and column."""
        lay = self.plate_row(plate)["layout"]
        return self.layouts.filter(pl.col("layout") == lay).sort("row", "col")

    def hours_since_dosing(self, barcode: str, abs_time: datetime) -> float:
        """Hours between the dosing of a barcode's plate and ``abs_time`` (tz-aware)."""
        if abs_time.tzinfo is None or abs_time.utcoffset() is None:
            raise PlateMapError(f"acquisition time {abs_time!r} of barcode {barcode!r} has no UTC offset")
        dosed = self.plate_for_barcode(barcode)["dosed_at"]
        return (abs_time - dosed).total_seconds() / 3600.0

    def timepoint_for(self, barcode: str, abs_time: datetime) -> str:
        """Timepoint key (``04h``) of an image: hours since dosing snapped to ``timepoints_h``.

        Raises
        ------
        PlateMapError
            When no configured timepoint is within ``timepoint_tolerance_h``.
        """
        hours = self.hours_since_dosing(barcode, abs_time)
        nearest = min(self.config.timepoints_h, key=lambda t: abs(t - hours))
        if abs(nearest - hours) > self.config.timepoint_tolerance_h:
            raise PlateMapError(
                f"barcode {barcode!r} imaged at {abs_time.isoformat()} is {hours:.2f} h after dosing "
                f"({self.plate_for_barcode(barcode)['dosed_at'].isoformat()}); no configured timepoint "
                f"{list(self.config.timepoints_h)} h is within {self.config.timepoint_tolerance_h} h",
                self.source,
            )
        return timepoint_key(nearest)

    def doses(self) -> list[str]:
        """Dose keys of the registry, sorted by value."""
        return sorted(set(self.registry["dose"].to_list()), key=parse_dose_key)

    def plates(self) -> list[str]:
        """Plate keys of the registry, sorted."""
        return sorted(self._by_plate)

    def barcodes(self) -> list[str]:
        """Barcodes of the registry, sorted."""
        return sorted(self._by_barcode)

    def timepoints(self) -> list[str]:
        """Timepoint keys of the config, in time order."""
        return [timepoint_key(t) for t in sorted(self.config.timepoints_h)]


def load_screen(metadata_dir: Path | str) -> Screen:
    """Load and validate a metadata folder.

    Parameters
    ----------
    metadata_dir : Path
        Folder with ``compounds``, ``layouts``, ``registry`` (``.csv`` or ``.parquet``) and
        ``screen.json``.

    Returns
    -------
    Screen

    Raises
    ------
    PlateMapError
        Naming the file and all offending rows of the first file found invalid.
    """
    metadata_dir = Path(metadata_dir)
    if not metadata_dir.is_dir():
        raise PlateMapError(f"metadata folder {metadata_dir} does not exist", metadata_dir)
    config = _load_config(metadata_dir)
    compounds = _validate_compounds(_read_table(metadata_dir, "compounds", COMPOUND_COLUMNS), config)
    layouts = _validate_layouts(_read_table(metadata_dir, "layouts", LAYOUT_COLUMNS), config, compounds)
    registry = _validate_registry(_read_table(metadata_dir, "registry", REGISTRY_COLUMNS), layouts)
    return Screen(config=config, compounds=compounds, layouts=layouts, registry=registry, source=metadata_dir)


def validate_barcodes(screen: Screen, barcodes: Iterable[str]) -> None:
    """Raise :class:`PlateMapError` listing every barcode missing from the registry."""
    known = set(screen.registry["barcode"].to_list())
    missing = sorted({b for b in barcodes if b not in known})
    if missing:
        raise PlateMapError(
            f"{len(missing)} barcode(s) are not in the run registry {screen._registry_name()}: "
            f"{_cap_list(missing)}",
            screen.source,
        )


# --------------------------------------------------------------------------------------------
# writing


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv_text(df: pl.DataFrame, columns: Sequence[str], name: str) -> str:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}")
    out = df.select(columns)
    exprs = []
    for c, dtype in out.schema.items():
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                raise ValueError(f"{name}.{c} must be a tz-aware datetime")
            exprs.append(pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%:z"))
    if exprs:
        out = out.with_columns(exprs)
    return out.write_csv()


def write_metadata(
    metadata_dir: Path | str,
    config: ScreenConfig,
    compounds: pl.DataFrame,
    layouts: pl.DataFrame,
    registry: pl.DataFrame,
) -> Path:
    """Write ``screen.json`` and the three CSVs into ``metadata_dir`` (each file atomically).

    Only the canonical columns are written (extra columns such as ``row``/``plate`` are
    dropped); ``dosed_at`` may be a tz-aware datetime or ISO 8601 text.

    Returns
    -------
    Path
        ``metadata_dir``.
    """
    metadata_dir = Path(metadata_dir)
    texts = {
        "compounds.csv": _csv_text(
            compounds, (*COMPOUND_COLUMNS, *(("set",) if "set" in compounds.columns else ())), "compounds"
        ),
        "layouts.csv": _csv_text(layouts, LAYOUT_COLUMNS, "layouts"),
        "registry.csv": _csv_text(registry, REGISTRY_COLUMNS, "registry"),
        "screen.json": json.dumps(config.to_dict(), indent=2) + "\n",
    }
    for name, text in texts.items():
        _atomic_write_text(metadata_dir / name, text)
    return metadata_dir


def write_screen(screen: Screen, metadata_dir: Path | str) -> Path:
    """Write a loaded :class:`Screen` back out with :func:`write_metadata`."""
    return write_metadata(metadata_dir, screen.config, screen.compounds, screen.layouts, screen.registry)
