"""The sensitivity comparison (lcd_core.pipeline.sensitivity): fractions called, Wilson intervals,
truth scores, paired model − cell count differences, unscorable / missing conditions counted, the
figure, and errors naming the readout."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from lcd_core import plots
from lcd_core.pipeline.sensitivity import (CELL_COUNT, MODEL, auroc_bootstrap, sensitivity_comparison,
                                           wilson_interval)

COMPOUNDS = [f"C{i}" for i in range(8)]


def _readout(calls: dict[tuple[str, str], list[bool]], scores: dict | None = None) -> pl.DataFrame:
    rows = []
    for (dose, tp), act in calls.items():
        sc = (scores or {}).get((dose, tp), [float(a) for a in act])
        rows += [dict(compound=c, dose=dose, timepoint=tp, active=a, score=s)
                 for c, a, s in zip(COMPOUNDS, act, sc)]
    return pl.DataFrame(rows)


# two conditions, 8 compounds; C0–C3 truly active at 10uM, C0 only at 0.156uM
TRUTH = pl.DataFrame([dict(compound=c, dose=d, timepoint="04h", truly_active=(i < 4 if d == "10uM" else i == 0))
                      for d in ("0.156uM", "10uM") for i, c in enumerate(COMPOUNDS)])
MODEL_CALLS = {("0.156uM", "04h"): [True, True, False, False, False, False, False, False],
               ("10uM", "04h"): [True, True, True, True, True, False, False, False]}
COUNT_CALLS = {("0.156uM", "04h"): [False] * 8,
               ("10uM", "04h"): [True, True, False, False, False, False, False, False]}


def _table(**kw) -> pl.DataFrame:
    return sensitivity_comparison({MODEL: _readout(MODEL_CALLS), CELL_COUNT: _readout(COUNT_CALLS)}, TRUTH, **kw)


def _row(t: pl.DataFrame, readout: str, dose: str) -> dict:
    return t.filter((pl.col("readout") == readout) & (pl.col("dose") == dose)).row(0, named=True)


def test_fractions_and_wilson_intervals_per_dose_timepoint_and_all():
    t = _table()
    assert t.filter(pl.col("kind") == "readout")["dose"].to_list() == ["0.156uM", "0.156uM", "10uM", "10uM",
                                                                      "all", "all"]  # numeric dose order
    m10 = _row(t, MODEL, "10uM")
    assert (m10["n_compounds"], m10["n_active"], m10["fraction_active"]) == (8, 5, 5 / 8)
    lo, hi = proportion_confint(5, 8, alpha=0.05, method="wilson")
    assert (m10["fraction_ci_low"], m10["fraction_ci_high"]) == pytest.approx((lo, hi))
    everything = _row(t, CELL_COUNT, "all")
    assert (everything["n_compounds"], everything["n_active"], everything["timepoint"]) == (16, 2, "all")
    assert wilson_interval(0, 0) == (None, None) and wilson_interval(0, 8)[0] == 0.0


def test_truth_counts_recall_and_auroc():
    t = _table()
    m10, c10 = _row(t, MODEL, "10uM"), _row(t, CELL_COUNT, "10uM")
    assert (m10["n_truly_active"], m10["true_calls"], m10["false_calls"], m10["recall"]) == (4, 4, 1, 1.0)
    assert (c10["true_calls"], c10["false_calls"], c10["recall"]) == (2, 0, 0.5)
    y = np.array([True] * 4 + [False] * 4)
    assert m10["auroc"] == pytest.approx(roc_auc_score(y, [1, 1, 1, 1, 1, 0, 0, 0]))  # ties count one half
    assert m10["auroc_ci_low"] <= m10["auroc"] <= m10["auroc_ci_high"]
    assert _row(t, MODEL, "0.156uM")["recall"] == 1.0 and _row(t, CELL_COUNT, "0.156uM")["recall"] == 0.0
    no_truth = sensitivity_comparison({MODEL: _readout(MODEL_CALLS)}, None)
    assert no_truth["auroc"].is_null().all() and no_truth["true_calls"].is_null().all()


def test_paired_model_minus_cell_count_with_bootstrap_intervals():
    t = _table(n_boot=2000)
    pairs = t.filter(pl.col("kind") == "paired difference")
    assert pairs["readout"].unique().to_list() == [f"{MODEL} − {CELL_COUNT}"] and pairs.height == 3
    low = _row(pairs, f"{MODEL} − {CELL_COUNT}", "0.156uM")
    assert low["fraction_active"] == pytest.approx(2 / 8) and low["n_compounds"] == 8
    assert low["fraction_ci_low"] == pytest.approx(0.0) and low["fraction_ci_high"] >= 0.5
    high = _row(pairs, f"{MODEL} − {CELL_COUNT}", "10uM")
    assert high["fraction_active"] == pytest.approx(3 / 8)
    assert 0 < high["fraction_ci_low"] < 3 / 8 < high["fraction_ci_high"]
    assert (high["true_calls"], high["false_calls"], high["recall"]) == (2, 1, pytest.approx(0.5))
    same = sensitivity_comparison({MODEL: _readout(MODEL_CALLS), CELL_COUNT: _readout(MODEL_CALLS)}, TRUTH)
    s = _row(same.filter(pl.col("kind") == "paired difference"), f"{MODEL} − {CELL_COUNT}", "all")
    assert (s["fraction_active"], s["fraction_ci_low"], s["fraction_ci_high"], s["auroc"]) == (0, 0, 0, 0)


def test_unscorable_and_missing_conditions_are_counted():
    model = _readout(MODEL_CALLS).with_columns(
        pl.when(pl.col("compound") == "C7").then(float("nan")).otherwise(pl.col("score")).alias("score"))
    count = _readout(COUNT_CALLS).filter(pl.col("compound") != "C6")
    t = sensitivity_comparison({MODEL: model, CELL_COUNT: count}, TRUTH)
    m10, c10 = _row(t, MODEL, "10uM"), _row(t, CELL_COUNT, "10uM")
    assert (m10["n_conditions"], m10["n_compounds"], m10["n_unscorable"], m10["n_missing"]) == (8, 7, 1, 0)
    assert (c10["n_compounds"], c10["n_unscorable"], c10["n_missing"]) == (7, 0, 1)
    p10 = _row(t.filter(pl.col("kind") == "paired difference"), f"{MODEL} − {CELL_COUNT}", "10uM")
    assert (p10["n_compounds"], p10["n_unscorable"]) == (6, 2)
    assert _row(t, MODEL, "all")["n_unscorable"] == 2


def test_auroc_bootstrap_is_stratified_paired_and_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.4
    s1, s2 = y + rng.normal(size=60), rng.normal(size=60)
    auc, boot = auroc_bootstrap([s1, s2], y, np.random.default_rng(1), n_boot=3000)
    assert auc == pytest.approx([roc_auc_score(y, s1), roc_auc_score(y, s2)])
    assert boot.shape == (2, 3000) and abs(boot[0].mean() - auc[0]) < 0.02
    assert 0.02 < boot[0].std() < 0.12
    one_class = auroc_bootstrap([s1], np.ones(60, bool), np.random.default_rng(1), n_boot=10)
    assert np.isnan(one_class[0]).all()


def test_errors_name_the_readout_and_the_figure_renders():
    with pytest.raises(ValueError, match=r"'cell count'.*score"):
        sensitivity_comparison({MODEL: _readout(MODEL_CALLS), CELL_COUNT: _readout(COUNT_CALLS).drop("score")}, None)
    dup = pl.concat([_readout(COUNT_CALLS), _readout(COUNT_CALLS).head(1)])
    with pytest.raises(ValueError, match=r"'cell count'.*duplicated.*C0"):
        sensitivity_comparison({CELL_COUNT: dup}, None)
    with pytest.raises(ValueError, match="no readouts"):
        sensitivity_comparison({}, None)
    png = plots.sensitivity_figure(_table())
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
