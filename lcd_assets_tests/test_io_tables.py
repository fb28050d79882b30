"""Tests of lcd_core.io.tables: reading metadata tables as strings with line numbers, and Problems."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lcd_core.io.tables import PlateMapError, Problems, cap_list, read_table


def test_csv_rows_keep_their_file_lines(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("A, b\n x ,1\n\n,2.0\n", encoding="utf-8")
    t = read_table(tmp_path, "t", ("a",))
    assert t.rows == [{"a": "x", "b": "1"}, {"a": None, "b": "2.0"}]
    assert t.lines == [2, 4] and t.line_word == "line"


def test_parquet_rows_count_from_one(tmp_path: Path) -> None:
    pl.DataFrame({"a": ["x", None], "b": [1.5, float("nan")]}).write_parquet(tmp_path / "t.parquet")
    t = read_table(tmp_path, "t", ("a", "b"))
    assert t.rows == [{"a": "x", "b": "1.5"}, {"a": None, "b": None}]
    assert t.lines == [1, 2] and t.line_word == "row"


def test_bad_tables(tmp_path: Path) -> None:
    with pytest.raises(PlateMapError, match="missing metadata file"):
        read_table(tmp_path, "t", ())
    (tmp_path / "t.csv").write_text("a,a\n1,2\n", encoding="utf-8")
    with pytest.raises(PlateMapError, match="duplicate column"):
        read_table(tmp_path, "t", ())
    (tmp_path / "t.csv").write_text("a\n1,2\n", encoding="utf-8")
    with pytest.raises(PlateMapError, match="more fields than the header") as info:
        read_table(tmp_path, "t", ())
    assert info.value.lines == [2]
    (tmp_path / "t.csv").write_text("a\n1\n", encoding="utf-8")
    with pytest.raises(PlateMapError, match=r"missing required column\(s\) \['b'\]"):
        read_table(tmp_path, "t", ("b",))
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "t.parquet")
    with pytest.raises(PlateMapError, match="keep only one"):
        read_table(tmp_path, "t", ())


def test_problems_group_by_kind_and_name_lines(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a\nx\ny\nz\n", encoding="utf-8")
    probs = Problems(read_table(tmp_path, "t", ("a",)))
    probs.raise_if_any()  # nothing collected: no error
    probs.row("bad", 2, ("a",))
    probs.row("bad", 0, ("a",), "first")
    probs.add("global", None, "whole file")
    with pytest.raises(PlateMapError) as info:
        probs.raise_if_any()
    assert str(info.value).splitlines() == [
        f"{tmp_path / 't.csv'}: invalid metadata",
        "  bad (2):",
        "    line 2: a='x' (first)",
        "    line 4: a='z'",
        "  global (1):",
        "    whole file",
    ]
    assert info.value.lines == [2, 4]
    assert cap_list(list(range(25))).endswith("19 ... and 5 more")
