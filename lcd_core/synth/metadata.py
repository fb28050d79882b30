"""The metadata files of a synthetic screen: compounds.csv, layouts.csv, registry.csv, screen.json.

Written in the formats of docs/ARCHITECTURE.md, as :func:`lcd_core.io.platemap.load_screen` reads
them.  compounds.csv has an extra column ``set`` (``training`` / ``holdout`` / ``control`` for
DMSO); the moa of a compound is its *listed* moa (empty for unknown-MoA holdout compounds).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl

from lcd_core.synth.compounds import Compound
from lcd_core.synth.design import CONTROL, DMSO_SMILES, ScreenSpec
from lcd_core.synth.plates import Plate, WellAssignment


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def compounds_table(compounds: list[Compound]) -> pl.DataFrame:
    """compounds.csv: every compound, then DMSO."""
    return pl.DataFrame(
        {
            "compound": [c.name for c in compounds] + [CONTROL],
            "moa": [c.moa_listed or None for c in compounds] + [None],
            "smiles": [c.smiles for c in compounds] + [DMSO_SMILES],
            "set": [c.compound_set for c in compounds] + ["control"],
            "drug": [c.drug or None for c in compounds] + [None],
        },
        schema={"compound": pl.String, "moa": pl.String, "smiles": pl.String, "set": pl.String, "drug": pl.String},
    )


def layouts_table(compounds: list[Compound], layouts: dict[str, list[WellAssignment]]) -> pl.DataFrame:
    """layouts.csv: one row per assigned well, layout by layout."""
    by_name = {c.name: c for c in compounds}
    rows = []
    for lk, wells in layouts.items():
        for w in wells:
            c = by_name.get(w.compound)
            rows.append(
                {
                    "layout": lk,
                    "well": w.well,
                    "compound": w.compound,
                    "moa": (c.moa_listed or None) if c else None,
                    "smiles": c.smiles if c else DMSO_SMILES,
                    "role": w.role,
                }
            )
    return pl.DataFrame(rows, schema={k: pl.String for k in ("layout", "well", "compound", "moa", "smiles", "role")})


def registry_table(plates: list[Plate]) -> pl.DataFrame:
    """registry.csv: barcode, replica, layout, dose and dosing time (ISO 8601, whole seconds) of each plate."""
    return pl.DataFrame(
        {
            "barcode": [p.barcode for p in plates],
            "replica": [p.replica for p in plates],
            "layout": [p.layout for p in plates],
            "dose_um": [p.dose_um for p in plates],
            "dosed_at": [_iso(p.dosed_at) for p in plates],
        }
    )


def screen_config(spec: ScreenSpec) -> dict:
    """screen.json."""
    return {
        "name": spec.name,
        "plate_type": spec.plate_type,
        "plate_rows": spec.plate_rows,
        "plate_columns": spec.plate_columns,
        "timepoints_h": [int(t) for t in spec.timepoints_h],
        "control": CONTROL,
        "min_control_wells": int(spec.min_control_wells if spec.min_control_wells is not None else spec.control_wells),
    }


def write_metadata(
    meta_dir: Path,
    spec: ScreenSpec,
    compounds: list[Compound],
    layouts: dict[str, list[WellAssignment]],
    plates: list[Plate],
) -> None:
    """compounds.csv, layouts.csv, registry.csv, screen.json in the ARCHITECTURE.md formats."""
    meta_dir.mkdir(parents=True, exist_ok=True)
    compounds_table(compounds).write_csv(meta_dir / "compounds.csv")
    layouts_table(compounds, layouts).write_csv(meta_dir / "layouts.csv")
    registry_table(plates).write_csv(meta_dir / "registry.csv")
    (meta_dir / "screen.json").write_text(json.dumps(screen_config(spec), indent=2) + "\n")


__all__ = ["compounds_table", "layouts_table", "registry_table", "screen_config", "write_metadata"]
