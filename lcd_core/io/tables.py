"""Metadata tables as read from disk, and the error that names every offending row.

A table (``<stem>.csv`` or ``<stem>.parquet`` in the metadata folder) is read as stripped strings
with the file line of each row (CSV: the header is line 1; Parquet: rows count from 1), so a
validator can name each offending row. :class:`Problems` collects them by kind and raises one
:class:`PlateMapError` listing them all.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import polars as pl

MAX_LISTED = 20


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



@dataclass
class RawTable:
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


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str | None]], list[int]]:
    """Columns, rows and line numbers of a CSV table (blank lines skipped); a file that is not
    UTF-8 text is a :class:`PlateMapError` naming it."""
    try:
        return _parse_csv(path)
    except UnicodeDecodeError as exc:
        raise PlateMapError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8",
                            path) from exc


def _parse_csv(path: Path) -> tuple[list[str], list[dict[str, str | None]], list[int]]:
    rows: list[dict[str, str | None]] = []
    lines: list[int] = []
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
            f"({len(columns)}): lines {cap_list(too_long)}",
            path,
            too_long,
        )
    return columns, rows, lines


def _read_parquet(path: Path) -> tuple[list[str], list[dict[str, str | None]], list[int]]:
    """Columns, rows and row numbers (from 1) of a Parquet table."""
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any read failure is a metadata error
        raise PlateMapError(f"cannot read {path}: {exc}", path) from exc
    columns = [c.strip().lower() for c in df.columns]
    rows = [{c: _clean(v) for c, v in zip(columns, rec)} for rec in df.iter_rows()]
    return columns, rows, list(range(1, len(rows) + 1))


def read_table(metadata_dir: Path, stem: str, required: Sequence[str]) -> RawTable:
    """Read ``<stem>.csv`` / ``<stem>.parquet`` as stripped strings; check required columns."""
    path = _find_table(metadata_dir, stem)
    is_csv = path.suffix == ".csv"
    columns, rows, lines = _read_csv(path) if is_csv else _read_parquet(path)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise PlateMapError(f"{path}: duplicate column(s) {dupes}", path)
    missing = [c for c in required if c not in columns]
    if missing:
        raise PlateMapError(
            f"{path}: missing required column(s) {missing}; found {columns}", path
        )
    return RawTable(path=path, rows=rows, lines=lines, line_word="line" if is_csv else "row")


def cap_list(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    rest = len(items) - MAX_LISTED
    return shown + (f" ... and {rest} more" if rest > 0 else "")


class Problems:
    """Collects offending rows of one file, grouped by kind, and raises them all at once."""

    def __init__(self, table: RawTable) -> None:
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
