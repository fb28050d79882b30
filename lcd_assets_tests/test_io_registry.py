"""Tests of lcd_core.io.registry: the run registry validated row by row, on in-memory tables."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from lcd_core.io.registry import normalised_key, parse_dosed_at, validate_registry
from lcd_core.io.tables import PlateMapError, RawTable
from lcd_core.keys import layout_key

LAYOUTS = pl.DataFrame({"layout": ["L01", "L02"]})
GOOD = {"barcode": "B1", "replica": "1", "layout": "L01", "dose_um": "2.5", "dosed_at": "2024-03-04T09:00:00+01:00"}


def _table(*rows: dict[str, str | None]) -> RawTable:
    return RawTable(Path("registry.csv"), list(rows), [i + 2 for i in range(len(rows))], "line")


def test_valid_rows_are_normalised_and_sorted_by_plate() -> None:
    other = {**GOOD, "barcode": "B0", "replica": "R02", "layout": "2"}
    out = validate_registry(_table(other, GOOD), LAYOUTS)
    assert out.columns == ["barcode", "replica", "layout", "plate", "dose_um", "dose", "dosed_at"]
    assert out["plate"].to_list() == ["R01-L01", "R02-L02"]
    assert out["replica"].to_list() == ["R01", "R02"] and out["layout"].to_list() == ["L01", "L02"]
    assert out["dosed_at"][0] == datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
    assert out.schema["dosed_at"] == pl.Datetime("us", "UTC")


def test_every_offending_row_is_named() -> None:
    rows = (
        GOOD,
        {**GOOD, "replica": "X", "layout": "L09", "dose_um": "-1", "dosed_at": "2024-03-04T09:00:00"},
        {**GOOD, "layout": "L02", "dose_um": "10"},  # same barcode; R01 with a second dose
    )
    with pytest.raises(PlateMapError) as info:
        validate_registry(_table(*rows), LAYOUTS)
    msg = str(info.value)
    for kind in ("malformed replica", "layout not in layouts file", "dose_um not a positive number",
                 "dosed_at not an ISO 8601", "duplicate barcode", "replica with more than one dose"):
        assert kind in msg
    assert info.value.lines == [2, 3, 4]


def test_one_barcode_per_plate() -> None:
    with pytest.raises(PlateMapError, match="several barcodes for one replica \\+ layout"):
        validate_registry(_table(GOOD, {**GOOD, "barcode": "B2"}), LAYOUTS)


def test_helpers() -> None:
    assert normalised_key("5", layout_key) == "L05"
    assert normalised_key("bad", layout_key) == "bad" and normalised_key(None, layout_key) is None
    assert parse_dosed_at("2024-03-04T09:00:00+01:00") == datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
    assert parse_dosed_at("2024-03-04T09:00:00") is None and parse_dosed_at("x") is None
