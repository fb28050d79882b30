"""Onsets against truth (lcd_core.trajectories.agreement): outcomes, summary, confusion."""

from __future__ import annotations

import polars as pl
import pytest

from lcd_assets_tests.test_trajectories_conditions import ONSETS, planted_truth
from lcd_core.trajectories.agreement import (
    PAIR_SCHEMA,
    SUMMARY_SCHEMA,
    agreement_summary,
    onset_confusion,
    onset_pairs,
    truth_onsets,
    wilson_interval,
)

TPS = ["04h", "08h", "12h", "16h", "20h"]


def test_wilson_interval_matches_statsmodels_values():
    # statsmodels.stats.proportion.proportion_confint(k, n, method="wilson")
    assert wilson_interval(6, 8) == pytest.approx((0.409275430, 0.928520787))
    assert wilson_interval(8, 8) == pytest.approx((0.675592435, 1.0))
    assert wilson_interval(0, 4) == pytest.approx((0.0, 0.489890836))
    assert wilson_interval(0, 0) == (None, None)


def test_truth_onsets_of_the_planted_truth():
    got = truth_onsets(planted_truth())
    assert {(c, d): (o, s) for c, d, o, s in
            got.select("compound", "dose", "onset_truth", "sustained_truth").iter_rows()} == ONSETS


def test_truth_onsets_read_only_the_profiled_conditions():
    truth = pl.DataFrame(dict(compound=["A"] * 3, dose=["1uM"] * 3, timepoint=["04h", "08h", "12h"],
                              truly_active=[True, False, True]))
    assert truth_onsets(truth)["onset_truth"].to_list() == ["04h"]
    profiled = pl.DataFrame(dict(dose=["1uM", "1uM"], timepoint=["08h", "12h"]))
    assert truth_onsets(truth, profiled)["onset_truth"].to_list() == ["12h"]
    with pytest.raises(ValueError, match="truly_active"):
        truth_onsets(truth.drop("truly_active"))
    with pytest.raises(ValueError, match=r"repeats compound × dose × timepoint \('A', '1uM', '04h'\)"):
        truth_onsets(pl.concat([truth, truth.head(1)]))


def onsets_by_hand() -> pl.DataFrame:
    """Five compound × doses, one per outcome of reading ``r`` (and a second reading ``s``)."""
    return pl.DataFrame({
        "compound": ["EX", "EARLY", "LATE2", "MISS", "SPUR", "NEV"],
        "dose": ["1uM", "1uM", "10uM", "10uM", "10uM", "1uM"],
        "onset_truth": ["08h", "12h", "04h", "16h", "never", "never"],
        "onset_r": ["08h", "08h", "12h", "never", "20h", "never"],
        "onset_s": ["08h", "12h", "04h", "16h", "never", "04h"],
    })


def test_each_outcome_by_hand():
    pairs = onset_pairs(onsets_by_hand(), ["r", "s"], TPS)
    assert pairs.schema == pl.Schema(PAIR_SCHEMA)
    r = {c: row for c, *row in pairs.filter(pl.col("reading") == "r")
         .select("compound", "steps", "lag_h", "outcome", "exact", "within_one").iter_rows()}
    assert r == {"EX": [0, 0.0, "exact", True, True], "EARLY": [-1, -4.0, "early", False, True],
                 "LATE2": [2, 8.0, "late", False, False], "MISS": [None, None, "missed", False, False],
                 "SPUR": [None, None, "spurious", False, False], "NEV": [None, None, "exact", True, True]}
    s = dict(pairs.filter(pl.col("reading") == "s").select("compound", "outcome").iter_rows())
    assert s == {"EX": "exact", "EARLY": "exact", "LATE2": "exact", "MISS": "exact",
                 "SPUR": "exact", "NEV": "spurious"}
    # a compound × dose the truth lacks is left out
    partial = onsets_by_hand().with_columns(
        pl.when(pl.col("compound") == "EX").then(None).otherwise(pl.col("onset_truth")).alias("onset_truth"))
    assert "EX" not in onset_pairs(partial, ["r"], TPS)["compound"].to_list()


def test_summary_by_hand():
    summary = agreement_summary(onset_pairs(onsets_by_hand(), ["r", "s"], TPS))
    assert summary.schema == pl.Schema(SUMMARY_SCHEMA)
    assert summary.select("reading", "dose").rows() == [
        ("r", "all"), ("r", "1uM"), ("r", "10uM"), ("s", "all"), ("s", "1uM"), ("s", "10uM")]
    r_all = summary.row(0, named=True)
    # r: exact EX, NEV = 2 / 6; within one: EX, EARLY, NEV = 3 / 6
    assert (r_all["n"], r_all["n_truth_onset"], r_all["n_exact"], r_all["n_within_one"]) == (6, 4, 2, 3)
    assert (r_all["n_early"], r_all["n_late"], r_all["n_missed"], r_all["n_spurious"]) == (1, 1, 1, 1)
    assert r_all["exact"] == pytest.approx(2 / 6) and r_all["within_one"] == pytest.approx(0.5)
    # statsmodels' Wilson intervals of 2/6 and 3/6
    assert (r_all["exact_ci_low"], r_all["exact_ci_high"]) == pytest.approx((0.096771, 0.700007), abs=1e-6)
    assert (r_all["within_one_ci_low"], r_all["within_one_ci_high"]) == pytest.approx(
        (0.187616, 0.812384), abs=1e-6)
    assert r_all["mean_lag_h"] == pytest.approx((0.0 - 4.0 + 8.0) / 3)
    r_1 = summary.row(1, named=True)  # EX, EARLY, NEV at 1uM
    assert (r_1["n"], r_1["n_exact"], r_1["n_within_one"], r_1["n_early"]) == (3, 2, 3, 1)
    s_all = summary.row(3, named=True)
    assert (s_all["n_exact"], s_all["n_spurious"], s_all["mean_lag_h"]) == (5, 1, 0.0)
    empty = agreement_summary(onset_pairs(onsets_by_hand().head(0), ["r"], TPS))
    assert empty.height == 0 and empty.schema == pl.Schema(SUMMARY_SCHEMA)


def test_confusion_in_time_order_never_last():
    conf = onset_confusion(onset_pairs(onsets_by_hand(), ["r", "s"], TPS))
    assert conf.filter(pl.col("reading") == "r").rows() == [
        ("r", "04h", "12h", 1), ("r", "08h", "08h", 1), ("r", "12h", "08h", 1),
        ("r", "16h", "never", 1), ("r", "never", "20h", 1), ("r", "never", "never", 1)]
    assert conf["reading"].to_list()[:6] == ["r"] * 6 and conf["n"].sum() == 12
