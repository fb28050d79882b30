"""Tests of lcd_core.synth.fov: one rendered field of view, its truth rows and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lcd_core.synth.compounds import make_compounds
from lcd_core.synth.design import make_spec
from lcd_core.synth.fov import MeasurementTask, render_fov
from lcd_core.synth.plates import make_layouts, make_plate_batches, make_plates, make_replica_batches
from lcd_core.synth.screen import _phenotypes
from lcd_core.synth.truth import CELL_COLUMNS


def _task(tmp_path: Path) -> MeasurementTask:
    spec = make_spec("small")
    compounds = make_compounds(spec, 0)
    plate = make_plates(spec)[0]
    return MeasurementTask(
        spec, 0, plate, make_replica_batches(spec, 0)[plate.replica], make_plate_batches(spec, [plate], 0)[plate.barcode],
        tuple(make_layouts(spec, compounds, 0)[plate.layout]), _phenotypes(compounds, plate.dose_um, 20), 20,
        tmp_path, tmp_path, 0,
    )


def test_render_fov_is_deterministic_with_consistent_truth(tmp_path: Path) -> None:
    task = _task(tmp_path)
    well = task.wells[0]
    planes, cells, fov, pos = render_fov(task, well, 2)
    spec = task.spec
    assert len(planes) == len(spec.planes_um) and all(p.shape == (224, 224) and p.dtype == np.uint16 for p in planes)
    assert set(cells) == set(CELL_COLUMNS) - {"barcode", "plate", "timepoint", "well", "field"}
    assert fov["n_cells"] == len(set(cells["cell_id"][cells["in_fov"] & (cells["state"] != "dead")]))
    assert fov["focus_offset_um"] == pytest.approx(fov["focus_replica_um"] + fov["focus_plate_um"] + fov["focus_fov_um"])
    assert fov["artifact"] in ("none", "debris", "defocus") and 0.0 <= fov["confluency"] <= 1.0
    assert pos != (0.0, 0.0)  # field 2 is off-centre
    again = render_fov(task, well, 2)
    for a, b in zip(planes, again[0]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(planes[0], render_fov(task, well, 1)[0][0])
