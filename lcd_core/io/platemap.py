"""Plate maps and the run registry, loaded from ``$LCD_HOME/metadata`` (see docs/ARCHITECTURE.md).

Files (CSV, or Parquet for the three tables):

- ``compounds.csv``: ``compound, moa, smiles`` and optionally ``set`` (training / holdout /
  control) and ``drug`` (the drug's name, e.g. ``alisertib`` for ``AURK-1``)
- ``layouts.csv``: ``layout, well, compound, moa, smiles, role``
- ``registry.csv``: ``barcode, replica, layout, dose_um, dosed_at``
- ``screen.json``: :class:`ScreenConfig`

Bad metadata fails loudly: :class:`~lcd_core.io.tables.PlateMapError` names the file and every
offending row (line numbers as in the file, the header being line 1), never silently dropping or
duplicating a well. Tables are read by :mod:`lcd_core.io.tables`; the run registry is validated by
:mod:`lcd_core.io.registry`.

Structures: every SMILES (compounds.csv and layouts.csv) is canonicalised with
:func:`lcd_core.molecules.canonical_smiles`; an invalid one is an error naming the file, line,
compound and reason. A compound listed without a SMILES is accepted (``has_structure`` false in
``Screen.compounds``, :meth:`Screen.compounds_without_structure`), never dropped.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import polars as pl

from lcd_core.io.registry import REGISTRY_COLUMNS, normalised_key, validate_registry
from lcd_core.io.tables import PlateMapError, Problems, RawTable, cap_list, read_table
from lcd_core.keys import dose_key, layout_key, parse_dose_key, parse_well, timepoint_key, well_name
from lcd_core.molecules import InvalidStructure, canonical_smiles, structure_problem

COMPOUND_COLUMNS: tuple[str, ...] = ("compound", "moa", "smiles")
# optional column of compounds.csv: which compound set (training / holdout) a compound belongs to;
# missing values default to "control" for the control compound and "training" otherwise
COMPOUND_SETS: tuple[str, ...] = ("training", "holdout", "control")
# optional column of compounds.csv: the name of the drug a compound is (older metadata lacks it)
COMPOUND_DRUG = "drug"
_COMPOUND_SCHEMA: dict[str, Any] = {
    "compound": pl.String, "moa": pl.String, "smiles": pl.String, "set": pl.String,
    COMPOUND_DRUG: pl.String, "has_structure": pl.Boolean,
}
LAYOUT_COLUMNS: tuple[str, ...] = ("layout", "well", "compound", "moa", "smiles", "role")
ROLES: frozenset[str] = frozenset({"treatment", "negative_control"})

_LAYOUT_RE = re.compile(r"^L\d{2,}$")


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


def _structure(rec: dict[str, str | None], i: int, probs: Problems, columns: Sequence[str]) -> str | None:
    """Canonical SMILES of a row (None when empty or invalid; an invalid one is a problem)."""
    smiles = rec.get("smiles")
    if smiles is None:
        return None
    try:
        return canonical_smiles(smiles)
    except InvalidStructure:
        probs.row("invalid SMILES", i, columns, structure_problem(smiles) or "invalid")
        return None


def _validate_compounds(raw: RawTable, config: ScreenConfig) -> pl.DataFrame:
    probs = Problems(raw)
    seen: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
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
        smiles = _structure(rec, i, probs, ("compound", "smiles"))
        compound_set = rec.get("set") or ("control" if name == config.control else "training")
        rows.append((name, rec["moa"], smiles, compound_set, rec.get(COMPOUND_DRUG), smiles is not None))
    probs.raise_if_any()
    if config.control not in seen:
        raise PlateMapError(
            f"{raw.path}: control compound {config.control!r} (screen.json) is not listed", raw.path
        )
    return pl.DataFrame(rows, schema=_COMPOUND_SCHEMA, orient="row")


_LAYOUT_SCHEMA: dict[str, Any] = {
    "layout": pl.String, "well": pl.String, "row": pl.Int32, "col": pl.Int32,
    "compound": pl.String, "moa": pl.String, "smiles": pl.String, "role": pl.String,
}


def _layout_well(rec: dict[str, str | None], i: int, config: ScreenConfig, probs: Problems) -> tuple[Any, ...]:
    """``(well, row, col)`` of a layout row: the normalised name, or the name as given and no position."""
    well = rec["well"]
    try:
        if well is None:
            raise ValueError("empty")
        r, c = parse_well(well)
    except ValueError:
        probs.row("malformed well name", i, ("layout", "well"))
        return well, None, None
    if r > config.plate_rows or c > config.plate_columns or c < 1:
        probs.row(f"well not on a {config.plate_type} plate "
                  f"({config.plate_rows} rows x {config.plate_columns} columns)", i, ("layout", "well"))
        return well, None, None
    return well_name(r, c), r, c


def _check_layout_compound(
    rec: dict[str, str | None], smiles: str | None, i: int, ref: dict[str, dict], probs: Problems
) -> None:
    """The compound is listed in compounds.csv, with the same moa and structure (canonical ``smiles``)."""
    comp = rec["compound"]
    if comp is None:
        probs.row("empty compound", i, ("layout", "well", "compound"))
    elif comp not in ref:
        probs.row("compound not in compounds file", i, ("layout", "well", "compound"))
    else:
        if rec["moa"] != ref[comp]["moa"]:
            probs.row("moa disagrees with compounds file", i, ("layout", "well", "compound", "moa"),
                      f"compounds file says {ref[comp]['moa']!r}")
        valid = rec["smiles"] is None or smiles is not None
        if valid and smiles != ref[comp]["smiles"]:
            probs.row("smiles disagrees with compounds file", i, ("layout", "well", "compound", "smiles"),
                      f"compounds file says {ref[comp]['smiles']!r}")


def _check_role(comp: str | None, role: str | None, i: int, control: str, probs: Problems) -> None:
    """A known role; negative_control exactly on the control compound."""
    if role not in ROLES:
        probs.row(f"role not one of {sorted(ROLES)}", i, ("layout", "well", "role"))
    elif comp == control and role != "negative_control":
        probs.row(f"control compound {control!r} without role negative_control", i,
                  ("layout", "well", "compound", "role"))
    elif comp is not None and comp != control and role == "negative_control":
        probs.row(f"role negative_control on a compound other than the control {control!r}", i,
                  ("layout", "well", "compound", "role"))


def _check_control_wells(layouts: pl.DataFrame, config: ScreenConfig, probs: Problems) -> None:
    """Every layout has at least ``min_control_wells`` control wells."""
    counts = (
        layouts.group_by("layout")
        .agg((pl.col("role") == "negative_control").sum().alias("n_control"))
        .sort("layout")
    )
    for lay, n in counts.iter_rows():
        if n < config.min_control_wells:
            probs.add(f"layout with fewer than min_control_wells={config.min_control_wells} "
                      f"{config.control} wells", None, f"layout {lay}: {n} control wells")


def _validate_layouts(raw: RawTable, config: ScreenConfig, compounds: pl.DataFrame) -> pl.DataFrame:
    probs = Problems(raw)
    ref = {r["compound"]: r for r in compounds.iter_rows(named=True)}
    rows: list[tuple[Any, ...]] = []
    first_at: dict[tuple[str, str], int] = {}
    dup_idx: set[int] = set()
    for i, rec in enumerate(raw.rows):
        lay = normalised_key(rec["layout"], layout_key)
        if lay is None or not _LAYOUT_RE.match(lay):
            probs.row("malformed layout (expected L<nn>)", i, ("layout", "well"))
        well, r, c = _layout_well(rec, i, config, probs)
        first = first_at.setdefault((str(lay), well), i) if r is not None else i
        if first != i:
            dup_idx.update((first, i))
        role = (rec["role"] or "").lower() or None
        smiles = _structure(rec, i, probs, ("layout", "well", "compound", "smiles"))
        _check_layout_compound(rec, smiles, i, ref, probs)
        _check_role(rec["compound"], role, i, config.control, probs)
        rows.append((lay, well, r, c, rec["compound"], rec["moa"], smiles, role))
    for i in sorted(dup_idx):
        probs.row("duplicate well within a layout", i, ("layout", "well", "compound"))
    probs.raise_if_any()
    layouts = pl.DataFrame(rows, schema=_LAYOUT_SCHEMA, orient="row")
    _check_control_wells(layouts, config, probs)
    probs.raise_if_any()
    return layouts.sort("layout", "row", "col")


# --------------------------------------------------------------------------------------------
# keys of the run registry: barcodes and doses


def barcode_key(barcode: str) -> str:
    """The identity of a barcode: what two spellings must share to be the same plate.

    Unicode NFKC (composed accents, full-width letters as ASCII), format characters removed
    (zero-width space, zero-width joiner, byte-order mark, soft hyphen: category ``Cf``),
    surrounding white space stripped, case folded. The registry lookup uses it, and two registry
    rows with the same key are refused (:func:`check_registry_keys`), so an index whose ``PlateID``
    differs from the registry only in these ways finds its plate and never another one.
    """
    text = unicodedata.normalize("NFKC", barcode)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip().casefold()


#: two different doses closer than this (relative) are one dose typed twice, not a dilution step
DOSE_RTOL = 1e-3


def _same_key_rows(raw: RawTable, column: str, key: Any) -> dict[Any, list[int]]:
    """Row indices of ``raw`` by ``key(value of column)`` (rows with an empty or unusable value left out)."""
    groups: dict[Any, list[int]] = {}
    for i, rec in enumerate(raw.rows):
        try:
            k = key(rec[column]) if rec[column] is not None else None
        except ValueError:
            k = None
        if k is not None:
            groups.setdefault(k, []).append(i)
    return groups


def _check_barcode_keys(raw: RawTable, probs: Problems) -> None:
    """Barcodes that differ as text but are one barcode by :func:`barcode_key`."""
    for key, idx in _same_key_rows(raw, "barcode", barcode_key).items():
        if len({raw.rows[i]["barcode"] for i in idx}) > 1:
            spelled = ", ".join(f"{raw.line_word} {raw.lines[i]}: {ascii(raw.rows[i]['barcode'])}" for i in idx)
            for i in idx:
                probs.row("barcodes that are one barcode after Unicode NFKC, removing invisible characters and "
                          "ignoring case", i, ("barcode",), f"key {key!r}; {spelled}")


def _check_dose_keys(raw: RawTable, probs: Problems) -> None:
    """Different doses sharing a partition key, or closer than :data:`DOSE_RTOL` to each other."""
    by_value = _same_key_rows(raw, "dose_um", float)
    values = sorted(by_value)  # validated: positive, finite
    for key, idx in _same_key_rows(raw, "dose_um", lambda t: dose_key(float(t))).items():
        if len({float(raw.rows[i]["dose_um"]) for i in idx}) > 1:
            for i in idx:
                probs.row("different doses with the same dose partition key", i, ("barcode", "dose_um"),
                          f"key {key}")
    for low, high in zip(values, values[1:]):
        if high - low <= DOSE_RTOL * high and dose_key(low) != dose_key(high):
            for i in by_value[low] + by_value[high]:
                probs.row(f"doses within {DOSE_RTOL:.1%} of each other (one dose typed twice?)", i,
                          ("barcode", "dose_um"), f"keys {dose_key(low)} and {dose_key(high)}")


def check_registry_keys(raw: RawTable) -> None:
    """Refuse registry rows whose barcodes or doses collide as partition keys.

    Raises
    ------
    PlateMapError
        Naming ``registry.csv``, the colliding rows (lines) and the key they share.
    """
    probs = Problems(raw)
    _check_barcode_keys(raw, probs)
    _check_dose_keys(raw, probs)
    probs.raise_if_any()


# --------------------------------------------------------------------------------------------
# the screen


@dataclass
class Screen:
    """A validated screen: config plus normalised compounds, layouts and registry tables.

    ``compounds`` has ``compound, moa, smiles, set, drug, has_structure`` (``smiles`` canonical,
    null with ``has_structure`` false for a compound listed without a structure; ``drug`` null
    where compounds.csv has no ``drug`` column); ``layouts`` has ``layout, well, row, col,
    compound, moa, smiles, role``; ``registry`` has ``barcode, replica, layout, plate, dose_um,
    dose, dosed_at`` (UTC).
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
            self._by_barcode[barcode_key(rec["barcode"])] = rec
            self._by_plate[rec["plate"]] = rec

    def compounds_without_structure(self) -> list[str]:
        """Compounds listed without a SMILES (``has_structure`` false), in file order."""
        return self.compounds.filter(~pl.col("has_structure"))["compound"].to_list()

    def _registry_name(self) -> str:
        return str(self.source / "registry.csv") if self.source else "the run registry"

    def plate_for_barcode(self, barcode: str) -> dict[str, Any]:
        """Registry row (``barcode, replica, layout, plate, dose_um, dose, dosed_at``) of a barcode.

        Looked up by :func:`barcode_key`: the barcode of the row is the registry's spelling.
        """
        rec = self._by_barcode.get(barcode_key(barcode))
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
        """Barcodes of the registry as spelled there, sorted."""
        return sorted(rec["barcode"] for rec in self._by_barcode.values())

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
    compounds = _validate_compounds(read_table(metadata_dir, "compounds", COMPOUND_COLUMNS), config)
    layouts = _validate_layouts(read_table(metadata_dir, "layouts", LAYOUT_COLUMNS), config, compounds)
    raw_registry = read_table(metadata_dir, "registry", REGISTRY_COLUMNS)
    registry = validate_registry(raw_registry, layouts)
    check_registry_keys(raw_registry)
    return Screen(config=config, compounds=compounds, layouts=layouts, registry=registry, source=metadata_dir)


def validate_barcodes(screen: Screen, barcodes: Iterable[str]) -> None:
    """Raise :class:`PlateMapError` listing every barcode missing from the registry (by :func:`barcode_key`)."""
    known = {barcode_key(b) for b in screen.registry["barcode"].to_list()}
    missing = sorted({b for b in barcodes if barcode_key(b) not in known})
    if missing:
        raise PlateMapError(
            f"{len(missing)} barcode(s) are not in the run registry {screen._registry_name()}: "
            f"{cap_list(missing)}",
            screen.source,
        )


# --------------------------------------------------------------------------------------------
# writing


def atomic_write_text(path: Path, text: str) -> None:
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


def _compound_columns(compounds: pl.DataFrame) -> tuple[str, ...]:
    """Columns of compounds.csv: the required ones, ``set`` when present, ``drug`` when it names any drug."""
    has_set = "set" in compounds.columns
    has_drug = COMPOUND_DRUG in compounds.columns and compounds[COMPOUND_DRUG].null_count() < compounds.height
    return (*COMPOUND_COLUMNS, *(("set",) if has_set else ()), *((COMPOUND_DRUG,) if has_drug else ()))


def write_metadata(
    metadata_dir: Path | str,
    config: ScreenConfig,
    compounds: pl.DataFrame,
    layouts: pl.DataFrame,
    registry: pl.DataFrame,
) -> Path:
    """Write ``screen.json`` and the three CSVs into ``metadata_dir`` (each file atomically).

    Only the canonical columns are written (extra columns such as ``row``/``plate`` or
    ``has_structure`` are dropped; the optional ``set`` of compounds is kept when present, its
    ``drug`` when it names any drug); ``dosed_at`` may be a tz-aware datetime or ISO 8601 text.

    Returns
    -------
    Path
        ``metadata_dir``.
    """
    metadata_dir = Path(metadata_dir)
    texts = {
        "compounds.csv": _csv_text(compounds, _compound_columns(compounds), "compounds"),
        "layouts.csv": _csv_text(layouts, LAYOUT_COLUMNS, "layouts"),
        "registry.csv": _csv_text(registry, REGISTRY_COLUMNS, "registry"),
        "screen.json": json.dumps(config.to_dict(), indent=2) + "\n",
    }
    for name, text in texts.items():
        atomic_write_text(metadata_dir / name, text)
    return metadata_dir


def write_screen(screen: Screen, metadata_dir: Path | str) -> Path:
    """Write a loaded :class:`Screen` back out with :func:`write_metadata`."""
    return write_metadata(metadata_dir, screen.config, screen.compounds, screen.layouts, screen.registry)
