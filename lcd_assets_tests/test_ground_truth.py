"""Scores against the synthetic ground truth (lcd_core.ground_truth)."""

from __future__ import annotations

import math

import polars as pl
import pytest

from lcd_core.ground_truth import TRUTH_MORPHOLOGY_FEATURES, polypharmacology_against_truth, truth_morphology


def test_polypharmacology_against_truth_counts_each_reading():
    poly = pl.DataFrame({
        "compound": ["MIX", "MIX", "ONE", "TWO", "MIX2"],
        "stable_top2": [True, True, True, False, True],
        "stable_pair": ["A|C", "A|C", "A|B", None, "B|D"],
        "stable_residual": [True, True, False, True, False],
        "stable_residual_pair": ["A|B", "A|B", None, "C|D", None],
    })
    truth = pl.DataFrame({"compound": ["MIX", "ONE", "TWO", "MIX2", "ABSENT"], "moa": ["B", "A", "C", "D", "A"],
                          "moa_secondary": ["A", "", None, "B", "B"]})
    got = {r["flag"]: r for r in polypharmacology_against_truth(poly, truth).iter_rows(named=True)}
    top2, res = got["stable_top2"], got["stable_residual"]
    # top-2: MIX flagged with the wrong pair, MIX2 right, ONE a false flag
    assert (top2["planted"], top2["recovered"], top2["wrong_pair"], top2["false_flags"]) == (2, 1, 1, 1)
    assert top2["recall"] == 0.5 and top2["precision"] == pytest.approx(1 / 3) and top2["false_flagged"] == "ONE"
    # explain-away: MIX right (pair order does not matter), TWO a false flag, MIX2 missed
    assert (res["planted"], res["recovered"], res["wrong_pair"], res["false_flags"]) == (2, 1, 0, 1)
    assert res["recall"] == 0.5 and res["precision"] == 0.5 and res["false_flagged"] == "TWO"
    none = polypharmacology_against_truth(poly.with_columns(stable_residual=pl.lit(False)), truth)
    assert none.filter(pl.col("flag") == "stable_residual")["precision"][0] is None


def test_truth_morphology_per_fov():
    key = {"plate": "P", "timepoint": "20h", "well": "B02"}
    cells = pl.DataFrame([
        # cell 1: two nuclei (multinucleated), 4 × 1 µm → elongation 4
        {**key, "field": 1, "cell_id": 1, "cell_a": 4.0, "cell_b": 1.0, "nucleus_a": 1.0, "nucleus_b": 1.0,
         "n_nuclei": 2, "state": "normal", "in_fov": True},
        {**key, "field": 1, "cell_id": 1, "cell_a": 4.0, "cell_b": 1.0, "nucleus_a": 2.0, "nucleus_b": 2.0,
         "n_nuclei": 2, "state": "normal", "in_fov": True},
        # cell 2: round and mitotic
        {**key, "field": 1, "cell_id": 2, "cell_a": 2.0, "cell_b": 2.0, "nucleus_a": 1.0, "nucleus_b": 1.0,
         "n_nuclei": 1, "state": "mitotic", "in_fov": True},
        # outside the FOV: not counted
        {**key, "field": 1, "cell_id": 3, "cell_a": 9.0, "cell_b": 1.0, "nucleus_a": 1.0, "nucleus_b": 1.0,
         "n_nuclei": 1, "state": "dead", "in_fov": False},
    ])
    fovs = pl.DataFrame([{**key, "field": 1, "confluency": 0.4}, {**key, "field": 2, "confluency": 0.0}])
    out = truth_morphology(cells, fovs).sort("field")
    assert out.columns == ["plate", "timepoint", "well", "field", *TRUTH_MORPHOLOGY_FEATURES]
    f1 = out.row(0, named=True)
    assert f1["gt_n_cells"] == 2 and f1["gt_multinucleated"] == 0.5 and f1["gt_mitotic"] == 0.5
    assert f1["gt_dead"] == 0.0 and f1["gt_confluency"] == 0.4
    assert f1["gt_log_cell_area"] == pytest.approx(math.log(4.0))  # both cells 4 µm²
    assert f1["gt_log_elongation"] == pytest.approx(math.log(4.0) / 2)
    # nucleus area: cell 1's mean (1 + 4) / 2, cell 2's 1
    assert f1["gt_log_nucleus_area"] == pytest.approx((math.log(2.5) + 0.0) / 2)
    # an empty FOV is all zeros, not missing
    assert out.row(1, named=True)["gt_n_cells"] == 0.0 and out.row(1, named=True)["gt_log_elongation"] == 0.0
