"""lcd_core.pipeline.nuclei: the per-FOV pass, its truth agreement and plausibility bounds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import tifffile

from lcd_core.nuclei.objects import Nuclei
from lcd_core.pipeline import nuclei as steps


def _fovs(tmp_path, n=3, size=64):
    rows = []
    for i in range(n):
        paths = []
        for p in range(3):
            path = tmp_path / f"f{i}p{p}.tiff"
            tifffile.imwrite(path, np.full((size, size), 1000 + i, np.uint16))
            paths.append(str(path))
        rows.append({"plate": "P1", "timepoint": "04h", "well": "B02", "field": i + 1, "compound": "X", "paths": paths})
    return pl.DataFrame(rows)


def _squares(planes: np.ndarray, pixel_um: float) -> Nuclei:
    """A fake detector: as many 8-px squares as the FOV's intensity offset + 1."""
    k = int(planes[0, 0, 0]) - 1000 + 1
    labels = np.zeros(planes.shape[1:], np.int32)
    for j in range(k):
        labels[4 + 12 * j: 12 + 12 * j, 4:12] = j + 1
    return Nuclei.from_labels(labels, labels > 0, pixel_um)


def test_pass_tables_per_fov_and_per_nucleus(tmp_path):
    done = steps.nuclei_pass(_fovs(tmp_path), 0.5, _squares, keep_labels=2)
    assert done.fovs["n_nuclei"].to_list() == [1, 2, 3]
    assert "paths" not in done.fovs.columns and done.fovs["compound"].to_list() == ["X"] * 3
    assert done.fovs["nucleus_area_um2_median"].to_list() == [16.0] * 3  # 64 px at 0.25 µm²
    assert done.nuclei.height == 6 and done.nuclei.schema == pl.Schema(steps.NUCLEUS_SCHEMA)
    first = done.nuclei.filter(pl.col("field") == 1).row(0, named=True)
    assert (first["x"], first["y"]) == (7.5, 7.5)  # centre in pixels, x = column
    assert list(done.labels) == [("B02", 1), ("B02", 2)] and done.overlay[1].n == 3


def test_pixel_size_comes_from_the_index_and_must_be_one():
    index = pl.DataFrame({"plate": ["P"] * 2, "timepoint": ["04h"] * 2, "resolution_x_m": [5.98e-7, 5.98e-7]})
    assert steps.pixel_size_um(index) == pytest.approx(0.598)
    with pytest.raises(ValueError, match=r"P × 04h.*2 pixel sizes"):
        steps.pixel_size_um(index.with_columns(pl.Series("resolution_x_m", [5.98e-7, 6.5e-7])))


def test_plausibility_bounds_counts_and_names_empty_kept_fovs():
    fovs = pl.DataFrame({"well": ["A01", "A02", "A03"], "field": [1, 1, 2], "n_nuclei": [5, 0, 900]})
    kept = pl.DataFrame({"well": ["A01", "A02"], "field": [1, 1]})
    p = steps.plausibility(fovs, (224, 224), 0.598, kept)
    assert p.max_count == int(np.ceil(224 * 224 * 0.598**2 / steps.MIN_NUCLEUS_AREA_UM2))
    assert p.over == ["A03 f2"] and p.empty_kept == ["A02 f1"] and not p.passed


def test_agreement_with_the_generators_live_nuclei(tmp_path):
    done = steps.nuclei_pass(_fovs(tmp_path, n=3), 0.5, _squares, keep_labels=1)
    truth_fovs = pl.DataFrame({"well": ["B02"] * 3, "field": [1, 2, 3], "n_nuclei": [1, 2, 3]})
    cell = {"cell_id": 1, "nucleus_x": 7.5, "nucleus_y": 7.5, "nucleus_a": 4.5, "nucleus_b": 4.5, "nucleus_angle": 0.0,
            "cell_x": 7.5, "cell_y": 7.5, "cell_a": 6.0, "cell_b": 6.0, "cell_angle": 0.0}
    cells = pl.DataFrame([{**cell, "well": "B02", "field": 1, "state": "normal"},
                          {**cell, "cell_id": 2, "nucleus_x": 40.0, "well": "B02", "field": 1, "state": "dead"}])
    score = steps.agreement_with_truth(done, truth_fovs, cells, (64, 64))
    assert score["count_r"] == pytest.approx(1.0) and score["fovs"] == 3
    assert score["scored_nuclei"] == 1 and 0.6 < score["median_iou"] <= 1.0  # the dead cell is not scored
