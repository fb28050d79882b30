"""The run registry (``registry.csv``): which barcode is which replica x layout, its dose and dosing time.

Validated row by row against the layouts: every offending row is named (see
:class:`lcd_core.io.tables.Problems`), then each barcode, each plate (replica + layout) and each
replica's dose must be unique.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import polars as pl

from lcd_core.io.tables import Problems, RawTable
from lcd_core.keys import dose_key, layout_key, plate_key, replica_key

REGISTRY_COLUMNS: tuple[str, ...] = ("barcode", "replica", "layout", "dose_um", "dosed_at")
REGISTRY_SCHEMA: dict[str, Any] = {
    "barcode": pl.String,
    "replica": pl.String,
    "layout": pl.String,
    "plate": pl.String,
    "dose_um": pl.Float64,
    "dose": pl.String,
    "dosed_at": pl.Datetime("us", "UTC"),
}

_REPLICA_RE = re.compile(r"^R\d{2,}$")


def normalised_key(value: str | None, key: Any) -> str | None:
    """``key(value)`` (e.g. ``layout_key("5")`` = ``"L05"``); the value as given when ``key`` rejects it."""
    try:
        return key(value) if value is not None else None
    except ValueError:
        return value


def parse_dosed_at(text: str | None) -> datetime | None:
    """An ISO 8601 time with UTC offset, in UTC; None when empty, unparsable or naive."""
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    if ts.tzinfo is None or ts.utcoffset() is None:
        return None
    return ts.astimezone(timezone.utc)


@dataclass
class _Seen:
    """Row indices by barcode, by plate and by replica and dose: what must be unique."""

    barcodes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    plates: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    doses: dict[str, dict[float, list[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))


def _plate_of(rec: dict[str, str | None], i: int, known_layouts: set[str], probs: Problems) -> tuple[Any, ...]:
    """``(replica, layout, plate)`` of a row; the plate is None unless replica and layout are valid."""
    rep = normalised_key(rec["replica"], replica_key)
    rep_ok = rep is not None and bool(_REPLICA_RE.match(rep))
    if not rep_ok:
        probs.row("malformed replica (expected R<nn> or a number)", i, ("barcode", "replica"))
    lay = normalised_key(rec["layout"], layout_key)
    lay_ok = lay in known_layouts
    if not lay_ok:
        probs.row("layout not in layouts file", i, ("barcode", "layout"))
    return rep, lay, plate_key(rep, lay) if rep_ok and lay_ok else None


def _dose_of(rec: dict[str, str | None], i: int, probs: Problems) -> float | None:
    """``dose_um`` as a positive number, or None (and a problem)."""
    try:
        dose = float(rec["dose_um"]) if rec["dose_um"] is not None else None
    except ValueError:
        dose = None
    if dose is None or not math.isfinite(dose) or dose <= 0:
        probs.row("dose_um not a positive number", i, ("barcode", "dose_um"))
        return None
    return dose


def _registry_row(
    rec: dict[str, str | None], i: int, known_layouts: set[str], probs: Problems, seen: _Seen
) -> tuple[Any, ...]:
    """One row in :data:`REGISTRY_SCHEMA` order; records what must be unique in ``seen``."""
    bc = rec["barcode"]
    if bc is None:
        probs.row("empty barcode", i, REGISTRY_COLUMNS)
    else:
        seen.barcodes[bc].append(i)
    rep, lay, plate = _plate_of(rec, i, known_layouts, probs)
    if plate is not None:
        seen.plates[plate].append(i)
    dose = _dose_of(rec, i, probs)
    if dose is not None and rep is not None and _REPLICA_RE.match(rep):
        seen.doses[rep][dose].append(i)
    ts = parse_dosed_at(rec["dosed_at"])
    if ts is None:
        probs.row("dosed_at not an ISO 8601 timestamp with UTC offset", i, ("barcode", "dosed_at"))
    return bc, rep, lay, plate, dose, dose_key(dose) if dose is not None else None, ts


def _check_unique(seen: _Seen, probs: Problems) -> None:
    """One barcode per row, one barcode per plate, one dose per replica."""
    for idx in seen.barcodes.values():
        if len(idx) > 1:
            for i in idx:
                probs.row("duplicate barcode", i, ("barcode", "replica", "layout"))
    for plate, idx in seen.plates.items():
        if len(idx) > 1:
            for i in idx:
                probs.row("several barcodes for one replica + layout", i, ("barcode", "replica", "layout"),
                          f"plate {plate}")
    for by_dose in seen.doses.values():
        if len(by_dose) > 1:
            for idx in by_dose.values():
                for i in idx:
                    probs.row("replica with more than one dose (every plate of a run gets the same dose)",
                              i, ("barcode", "replica", "dose_um"))


def validate_registry(raw: RawTable, layouts: pl.DataFrame) -> pl.DataFrame:
    """The run registry as a table (:data:`REGISTRY_SCHEMA`, sorted by plate).

    Raises
    ------
    PlateMapError
        Naming every offending row of ``registry.csv``.
    """
    probs = Problems(raw)
    known_layouts = set(layouts["layout"].unique().to_list())
    seen = _Seen()
    rows = [_registry_row(rec, i, known_layouts, probs, seen) for i, rec in enumerate(raw.rows)]
    _check_unique(seen, probs)
    probs.raise_if_any()
    return pl.DataFrame(rows, schema=REGISTRY_SCHEMA, orient="row").sort("plate")
