"""Incremental aggregation over doses (lcd_core.moa.aggregation)."""

from __future__ import annotations

import polars as pl
import pytest

from lcd_assets_tests.moa_screen import SCREEN_CLASSES, A, B, per_condition_rows
from lcd_core.moa import aggregate_incremental, single_highest


def _row(agg: pl.DataFrame, cpd: str, mode: str, step: int) -> dict:
    sel = agg.filter((pl.col("compound") == cpd) & (pl.col("mode") == mode) & (pl.col("step") == step))
    assert sel.height == 1
    return sel.row(0, named=True)


def test_aggregate_weights_by_effect_size_and_falls_back():
    pc = per_condition_rows([
        ("X", "0.5uM", "04h", {A: 1.0}),
        ("X", "5uM", "04h", {B: 1.0}),
        ("X", "5uM", "20h", {A: 0.5, "DMSO": 0.5}),
        ("Y", "0.5uM", "04h", {"DMSO": 1.0}),
        ("Y", "5uM", "04h", {A: 1.0}),
    ])
    act = pl.DataFrame({
        "compound": ["X", "X", "X", "Y", "Y"], "dose": ["0.5uM", "5uM", "5uM", "0.5uM", "5uM"],
        "timepoint": ["04h", "04h", "20h", "04h", "04h"], "map_es": [1.0, 3.0, -2.0, float("nan"), 0.0],
        "active": [True, True, False, False, False],
    })
    agg = aggregate_incremental(pc, act, classes=SCREEN_CLASSES)
    x3 = _row(agg, "X", "incremental", 2)
    assert x3[f"p_{A}"] == pytest.approx(0.25) and x3[f"p_{B}"] == pytest.approx(0.75)  # (1·A + 3·B + 0·…) / 4
    assert x3["predicted"] == B and x3["top2_2"] == A and x3["n_conditions"] == 3
    assert _row(agg, "X", "single", 2)[f"p_{B}"] == pytest.approx(1.0)
    y1 = _row(agg, "Y", "incremental", 2)
    assert y1["fallback"] and y1[f"p_{A}"] == pytest.approx(0.5) and y1["p_DMSO"] == pytest.approx(0.5)
    uni = aggregate_incremental(pc, act, weighting="uniform", classes=SCREEN_CLASSES)
    assert _row(uni, "X", "incremental", 2)[f"p_{A}"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="weighting"):
        aggregate_incremental(pc, act, weighting="max", classes=SCREEN_CLASSES)


def test_an_active_call_takes_dmso_out_of_its_condition():
    pc = per_condition_rows([
        ("X", "1uM", "04h", {A: 0.2, B: 0.1, "DMSO": 0.7}),  # active: DMSO dropped → A 2/3, B 1/3
        ("X", "1uM", "20h", {A: 0.1, "DMSO": 0.9}),  # inactive: DMSO kept
        ("Y", "1uM", "04h", {"DMSO": 1.0}),  # active but no MoA mass: left as it is
    ])
    act = pl.DataFrame({
        "compound": ["X", "X", "Y"], "dose": ["1uM"] * 3, "timepoint": ["04h", "20h", "04h"],
        "map_es": [3.0, 1.0, 2.0], "active": [True, False, True],
    })
    agg = aggregate_incremental(pc, act, classes=SCREEN_CLASSES)
    x = _row(agg, "X", "incremental", 1)
    # (3·(2/3, 1/3, 0) + 1·(0.1, 0, 0.9)) / 4
    assert x[f"p_{A}"] == pytest.approx((3 * 2 / 3 + 0.1) / 4) and x[f"p_{B}"] == pytest.approx(0.25)
    assert x["p_DMSO"] == pytest.approx(0.9 / 4) and x["predicted"] == A
    assert _row(agg, "Y", "incremental", 1)["p_DMSO"] == pytest.approx(1.0)
    plain = _row(aggregate_incremental(pc, act, active_not_dmso=False, classes=SCREEN_CLASSES), "X", "incremental", 1)
    assert plain["p_DMSO"] == pytest.approx((3 * 0.7 + 0.9) / 4) and plain["predicted"] == "DMSO"


def test_steps_follow_dose_value_and_single_highest_is_the_top_single_step():
    pc = per_condition_rows([
        ("X", "10uM", "04h", {B: 1.0}),
        ("X", "2uM", "04h", {A: 1.0}),
        ("H", "2uM", "04h", {A: 1.0}, False),
    ]).with_columns(source=pl.Series(["cv", "cv", "holdout"]))
    act = pl.DataFrame({"compound": ["X", "X", "H"], "dose": ["10uM", "2uM", "2uM"], "timepoint": ["04h"] * 3,
                        "map_es": [1.0, 1.0, 1.0], "active": [True, True, False]})
    agg = aggregate_incremental(pc, act, classes=SCREEN_CLASSES)
    assert _row(agg, "X", "incremental", 1)["dose"] == "2uM" and _row(agg, "X", "incremental", 2)["dose"] == "10uM"
    assert dict(agg.select("compound", "set").unique().iter_rows()) == {"X": "train", "H": "holdout"}
    assert dict(agg.select("compound", "n_active_conditions").unique().iter_rows()) == {"X": 2, "H": 0}
    top3 = _row(agg, "X", "incremental", 2)["top3"]
    assert top3 == [A, B, SCREEN_CLASSES.probe[2]]  # ties (A = B, then zeros): the earlier class first
    sh = single_highest(agg)
    assert dict(sh.select("compound", "dose").iter_rows()) == {"X": "10uM", "H": "2uM"}
    assert sh.filter(pl.col("compound") == "X")["predicted"][0] == B


def test_no_trainable_probe_gives_the_columns_and_no_rows():
    """Every condition skipped (nothing active to train on): an empty, fully typed table that the
    scores and the confusion matrix accept."""
    from lcd_core.moa import confusion, metrics

    pc = per_condition_rows([("X", "0.5uM", "04h", {A: 1.0}), ("Y", "5uM", "04h", {B: 1.0})])
    pc = pc.with_columns(status=pl.lit("skipped"), reason=pl.lit("no active training compound"))
    act = pl.DataFrame({"compound": ["X", "Y"], "dose": ["0.5uM", "5uM"], "timepoint": ["04h", "04h"],
                        "map_es": [0.0, 0.0], "active": [False, False]})
    agg = aggregate_incremental(pc, act, classes=SCREEN_CLASSES)
    assert agg.height == 0 and {"compound", "moa", "set", "mode", "step", "predicted", "top3"} <= set(agg.columns)
    assert set(SCREEN_CLASSES.columns) <= set(agg.columns)
    m, c = metrics(agg, classes=SCREEN_CLASSES), confusion(agg, classes=SCREEN_CLASSES)
    assert m.height == 0 and m.columns == ["set", "mode", "step", "n", "weighted_f1", "accuracy", "top3_accuracy"]
    assert c.height == 0 and c.columns == ["set", "mode", "step", "true", "predicted", "n"]  # writable tables
