"""Tests of lcd_core.synth.metadata: the written metadata loads with lcd_core.io.platemap."""

from __future__ import annotations

from pathlib import Path

from lcd_core.io.platemap import load_screen
from lcd_core.synth.compounds import make_compounds
from lcd_core.synth.design import make_spec
from lcd_core.synth.metadata import write_metadata
from lcd_core.synth.plates import make_layouts, make_plates


def test_metadata_loads_and_lists_moa_as_listed(tmp_path: Path) -> None:
    spec = make_spec("small")
    compounds = make_compounds(spec, 0)
    write_metadata(tmp_path, spec, compounds, make_layouts(spec, compounds, 0), make_plates(spec))
    screen = load_screen(tmp_path)
    assert screen.config.min_control_wells == spec.control_wells
    assert screen.layouts.height == spec.n_layouts * spec.wells_per_layout + spec.holdout_wells_per_layout
    assert screen.registry["dosed_at"][0].isoformat() == "2024-03-04T08:00:00+00:00"
    hidden = next(c for c in compounds if c.moa_hidden)
    row = screen.compounds.filter(screen.compounds["compound"] == hidden.name).row(0, named=True)
    assert row["moa"] is None and row["set"] == "holdout"
