"""Scores of MoA predictions (lcd_core.moa.scoring): F1, top-3, confusion, McNemar, feature-set comparison."""

from __future__ import annotations

import polars as pl
import pytest
from scipy import stats

from lcd_assets_tests.moa_screen import CLASSES, SCREEN_CLASSES, A, B
from lcd_core.moa import compare_feature_sets, confusion, final_predictions, mcnemar, mcnemar_predictions, metrics


def test_mcnemar_hand_values():
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 3
    r = mcnemar(a, b)
    assert (r.b, r.c, r.n_both, r.n_neither, r.method) == (10, 2, 5, 3, "exact")
    assert r.p_value == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 0.03857
    assert mcnemar(b, a).p_value == pytest.approx(r.p_value)
    big = mcnemar([True] * 30 + [False] * 10, [False] * 30 + [True] * 10)
    assert big.method == "chi2" and big.statistic == pytest.approx(19**2 / 40)
    assert big.p_value == pytest.approx(stats.chi2.sf(9.025, 1))
    same = mcnemar([True, False], [True, False])
    assert (same.b, same.c, same.p_value) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="length"):
        mcnemar([True], [True, False])


def test_metrics_and_confusion_hand_values():
    rows = []
    for cpd, true, top in [("a", A, [A, B, "DMSO"]), ("b", A, [B, A, "DMSO"]),
                           ("c", B, [B, A, "DMSO"]), ("d", B, ["DMSO", CLASSES[2], CLASSES[3]])]:
        p = dict.fromkeys(SCREEN_CLASSES.columns, 0.0) | {f"p_{k}": v for k, v in zip(top, (0.5, 0.3, 0.2))}
        rows.append({"compound": cpd, "moa": true, "set": "train", "mode": "incremental",
                     "step": 1, "predicted": top[0], "n_active_conditions": 1, **p})
    rows.append({**rows[0], "compound": "u", "moa": None})  # unlabelled: not scored
    rows.append({**rows[1], "compound": "z", "n_active_conditions": 0})  # never active: scored unless active_only
    df = pl.DataFrame(rows)
    m = metrics(df.filter(pl.col("compound") != "z"), classes=SCREEN_CLASSES).row(0, named=True)
    assert m["n"] == 4 and m["accuracy"] == pytest.approx(0.5) and m["top3_accuracy"] == pytest.approx(0.75)
    # F1: A p=1 r=.5 → 2/3; B p=.5 r=.5 → .5; weighted by support 2/2 → 7/12
    assert m["weighted_f1"] == pytest.approx(7 / 12)
    assert metrics(df, classes=SCREEN_CLASSES, active_only=True).row(0, named=True)["n"] == 4
    assert metrics(df, classes=SCREEN_CLASSES)["n"][0] == 5
    cm = confusion(df.filter(pl.col("compound") != "z"), classes=SCREEN_CLASSES)
    assert cm.height == len(SCREEN_CLASSES.probe) ** 2 and cm["n"].sum() == 4
    cell = lambda t, p: cm.filter((pl.col("true") == t) & (pl.col("predicted") == p))["n"][0]  # noqa: E731
    assert (cell(A, A), cell(A, B), cell(B, B), cell(B, "DMSO")) == (1, 1, 1, 1)


def _final_rows(calls: dict[str, str], set_: str = "train") -> pl.DataFrame:
    """Prediction rows (incremental steps 1-2 and single steps 1-2) whose last step predicts ``calls``."""
    rows = []
    for cpd, pred in calls.items():
        true = A if cpd.startswith("a") else B
        for mode, step in [("incremental", 1), ("incremental", 2), ("single", 1), ("single", 2)]:
            p = pred if step == 2 else "DMSO"
            probs = dict.fromkeys(SCREEN_CLASSES.columns, 0.0) | {f"p_{p}": 1.0}
            rows.append({"compound": cpd, "moa": true, "set": set_, "mode": mode, "step": step,
                         "predicted": p, "n_active_conditions": 1, **probs})
    return pl.DataFrame(rows)


def test_final_predictions_and_mcnemar_between_tables():
    x, y = _final_rows({"a1": A, "b1": B}), _final_rows({"a1": B, "b1": B})
    fx = final_predictions(x)
    assert sorted(fx["mode"].unique()) == ["incremental", "single_highest"] and set(fx["step"]) == {2}
    t = mcnemar_predictions(fx.filter(pl.col("mode") == "incremental"),
                            final_predictions(y).filter(pl.col("mode") == "incremental"))
    assert (t.b, t.c, t.n_both) == (1, 0, 1)
    with pytest.raises(ValueError, match="one row per compound"):
        mcnemar_predictions(fx, fx)
    with pytest.raises(ValueError, match="different compounds: b1"):
        mcnemar_predictions(fx.filter(pl.col("mode") == "incremental"),
                            fx.filter((pl.col("mode") == "incremental") & (pl.col("compound") == "a1")))


def test_compare_feature_sets_scores_final_calls_and_pairs_them():
    # x right on a1 a2 b1, wrong on b2; y right on a1 only
    x = _final_rows({"a1": A, "a2": A, "b1": B, "b2": A})
    y = _final_rows({"a1": A, "a2": B, "b1": A, "b2": A})
    scores, tests = compare_feature_sets({"x": x, "y": y}, classes=SCREEN_CLASSES)
    assert set(scores["mode"]) == {"incremental", "single_highest"}
    acc = {(r["features"], r["mode"]): r["accuracy"] for r in scores.iter_rows(named=True)}
    assert acc[("x", "incremental")] == pytest.approx(0.75) and acc[("y", "incremental")] == pytest.approx(0.25)
    assert acc[("x", "single_highest")] == pytest.approx(0.75)  # the last step, not the DMSO step 1
    t = tests.filter(pl.col("mode") == "incremental").row(0, named=True)
    assert (t["features_a"], t["features_b"], t["n"], t["b"], t["c"]) == ("x", "y", 4, 2, 0)
    assert t["p_value"] == pytest.approx(0.5) and t["method"] == "exact"  # 2·P[Bin(2,½) ≤ 0] = 0.5
    # one feature set: its scores, and an empty table of tests with the columns
    one_scores, none = compare_feature_sets({"x": x}, classes=SCREEN_CLASSES)
    assert one_scores.height == 2 and none.height == 0 and "p_value" in none.columns


def test_a_feature_set_that_classified_nothing_keeps_its_rows():
    from lcd_core.moa.aggregation import _empty_predictions

    x = _final_rows({"a1": A, "a2": A, "b1": B, "b2": A})
    scores, tests = compare_feature_sets({"x": x, "nothing": _empty_predictions(SCREEN_CLASSES)},
                                         classes=SCREEN_CLASSES)
    none = scores.filter(pl.col("features") == "nothing")
    assert set(none["mode"]) == set(scores.filter(pl.col("features") == "x")["mode"])
    assert (none["n"] == 0).all() and none["accuracy"].is_null().all()
    assert tests.height == 0  # no compound in common: no test


def test_no_feature_set_classified_anything():
    from lcd_core.moa.aggregation import _empty_predictions

    empty = _empty_predictions(SCREEN_CLASSES)
    scores, tests = compare_feature_sets({"x": empty, "y": empty}, classes=SCREEN_CLASSES)
    assert scores["features"].to_list() == ["x", "y"] and (scores["n"] == 0).all()
    assert {"weighted_f1", "accuracy", "top3_accuracy"} <= set(scores.columns) and tests.height == 0
