"""Tests of lcd_core.synth.plates on the ``small`` design: layouts, plates, batch effects, fields."""

from __future__ import annotations

import math

from lcd_core.synth.compounds import make_compounds
from lcd_core.synth.design import CONTROL, make_spec
from lcd_core.synth.plates import field_offset, make_layouts, make_plate_batches, make_plates, make_replica_batches

SPEC = make_spec("small")


def test_layouts_hold_their_compound_set_and_controls() -> None:
    compounds = make_compounds(SPEC, 0)
    layouts = make_layouts(SPEC, compounds, 0)
    assert list(layouts) == ["L01", "L02", "L03"]
    for lk, wells in layouts.items():
        assert len({w.well for w in wells}) == len(wells)
        assert sum(w.compound == CONTROL for w in wells) == SPEC.control_wells
        assert all(2 <= w.row <= SPEC.plate_rows - 1 and 2 <= w.col <= SPEC.plate_columns - 1 for w in wells)
    holdout = {c.name for c in compounds if c.compound_set == "holdout"}
    assert {w.compound for w in layouts["L03"]} - {CONTROL} == holdout


def test_plates_batches_and_fields() -> None:
    plates = make_plates(SPEC)
    assert [p.barcode for p in plates][:2] == ["LCD-R01-L01", "LCD-R01-L02"] and len(plates) == 6
    assert (plates[1].dosed_at - plates[0].dosed_at).total_seconds() == 600
    assert (plates[3].dosed_at - plates[0].dosed_at).days == 7 and plates[3].dose == "10uM"
    assert set(make_replica_batches(SPEC, 0)) == {"R01", "R02"}
    assert set(make_plate_batches(SPEC, plates, 0)) == {p.barcode for p in plates}
    assert field_offset(1) == (0.0, 0.0) and math.hypot(*field_offset(12)) > 2.0
