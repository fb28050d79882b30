"""Partition and well keys shared by every module (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import re

_WELL_RE = re.compile(r"^([A-Za-z]{1,2})(\d{1,2})$")
_PLATE_RE = re.compile(r"^R(\d{2,})-L(\d{2,})$")
_TIMEPOINT_RE = re.compile(r"^(\d{2,})h$")


def replica_key(replica: int | str) -> str:
    """Return ``R{nn}`` for a replica number (or pass a key through)."""
    if isinstance(replica, str) and replica.startswith("R"):
        return replica
    return f"R{int(replica):02d}"


def layout_key(layout: int | str) -> str:
    """Return ``L{nn}`` for a layout number (or pass a key through)."""
    if isinstance(layout, str) and layout.startswith("L"):
        return layout
    return f"L{int(layout):02d}"


def plate_key(replica: int | str, layout: int | str) -> str:
    """Partition key of a plate: ``R03-L05``."""
    return f"{replica_key(replica)}-{layout_key(layout)}"


def parse_plate_key(key: str) -> tuple[str, str]:
    """Split ``R03-L05`` into ``("R03", "L05")``."""
    m = _PLATE_RE.match(key)
    if not m:
        raise ValueError(f"plate key {key!r} is not of the form R<nn>-L<nn>")
    return f"R{m.group(1)}", f"L{m.group(2)}"


def timepoint_key(hours: float) -> str:
    """Partition key of a timepoint: hours after dosing, ``04h``."""
    h = float(hours)
    if h < 0 or abs(h - round(h)) > 1e-9:
        raise ValueError(f"timepoint {hours!r} h is not a whole, non-negative number of hours")
    return f"{int(round(h)):02d}h"


def parse_timepoint_key(key: str) -> int:
    """Hours of a timepoint key: ``"04h"`` -> 4."""
    m = _TIMEPOINT_RE.match(key)
    if not m:
        raise ValueError(f"timepoint key {key!r} is not of the form <hh>h")
    return int(m.group(1))


def dose_key(dose_um: float) -> str:
    """Partition key of a dose in µM: ``0.156uM``, ``10uM`` (shortest exact decimal)."""
    d = float(dose_um)
    if not d > 0:
        raise ValueError(f"dose {dose_um!r} µM must be positive")
    text = f"{d:.6f}".rstrip("0").rstrip(".")
    return f"{text}uM"


def parse_dose_key(key: str) -> float:
    """Dose in µM of a dose key: ``"2.5uM"`` -> 2.5."""
    if not key.endswith("uM"):
        raise ValueError(f"dose key {key!r} does not end in 'uM'")
    return float(key[:-2])


def well_name(row: int, col: int) -> str:
    """``(2, 7)`` -> ``"B07"`` (1-based row and column)."""
    if row < 1 or col < 1:
        raise ValueError(f"row {row} / column {col} must be 1-based")
    letters = ""
    r = row
    while r:
        r, rem = divmod(r - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return f"{letters}{col:02d}"


def parse_well(well: str) -> tuple[int, int]:
    """``"B07"`` -> ``(2, 7)``; raises ValueError naming the well."""
    m = _WELL_RE.match(well.strip())
    if not m:
        raise ValueError(f"well {well!r} is not of the form <row letter><column>")
    row = 0
    for ch in m.group(1).upper():
        row = row * 26 + (ord(ch) - ord("A") + 1)
    return row, int(m.group(2))
