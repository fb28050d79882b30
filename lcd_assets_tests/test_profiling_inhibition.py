"""% inhibition (lcd_core.profiling.inhibition): the exact formula against each plate × timepoint's
DMSO mean, condition means, the count–confluency correlation and its intervals, the errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.profiling.inhibition import (condition_inhibition, fov_inhibition, inhibition_correlation,
                                           percent_inhibition)


def _row(plate, compound, n, conf, tp="04h", dose="1uM"):
    role = "negative_control" if compound == "DMSO" else "treatment"
    return dict(plate=plate, timepoint=tp, dose=dose, compound=compound, role=role, n_nuclei=n, confluency=conf)


def _table() -> pl.DataFrame:
    return pl.DataFrame([
        _row("P1", "DMSO", 90, 0.8), _row("P1", "DMSO", 110, 0.6),   # mean 100, 0.7
        _row("P1", "X", 50, 0.35), _row("P1", "X", 70, 0.7),         # 50, 30 % | 50, 0 %
        _row("P2", "DMSO", 200, 0.5), _row("P2", "DMSO", 200, 0.5),  # mean 200, 0.5
        _row("P2", "X", 100, 0.25), _row("P2", "Y", 240, 0.5),       # 50 % | 50 %; Y −20 % | 0 %
    ])


def test_the_formula_is_exact_per_fov_against_its_own_plate():
    per = fov_inhibition(_table()).filter(pl.col("role") == "treatment")
    assert per["count_inhibition"].to_list() == pytest.approx([50.0, 30.0, 50.0, -20.0])
    assert per["confluency_inhibition"].to_list() == pytest.approx([50.0, 0.0, 50.0, 0.0])
    assert percent_inhibition(80.0, 100.0) == pytest.approx(20.0)
    dmso = fov_inhibition(_table()).filter(pl.col("role") == "negative_control")
    assert dmso["count_inhibition"].mean() == pytest.approx(0.0)  # DMSO averages to 0 by construction


def test_condition_inhibition_is_the_mean_over_all_its_fovs():
    cond = condition_inhibition(_table())
    assert cond["compound"].to_list() == ["X", "Y"] and cond["n_fovs"].to_list() == [3, 1]
    assert cond["count_inhibition"].to_list() == pytest.approx([(50 + 30 + 50) / 3, -20.0])
    assert cond["confluency_inhibition"].to_list() == pytest.approx([(50 + 0 + 50) / 3, 0.0])
    only = condition_inhibition(_table().drop("confluency"), {"count": "n_nuclei"})
    assert "confluency_inhibition" not in only.columns and only.height == 2


def test_missing_values_are_counted_and_left_out():
    t = _table().with_columns(pl.when((pl.col("compound") == "X") & (pl.col("n_nuclei") == 70)).then(None)
                              .otherwise(pl.col("n_nuclei")).alias("n_nuclei"))
    x = condition_inhibition(t).filter(pl.col("compound") == "X")
    assert x["count_inhibition"][0] == pytest.approx(50.0) and x["count_n_missing"][0] == 1
    assert x["confluency_n_missing"][0] == 0


def test_zero_or_absent_dmso_mean_names_the_plate_and_timepoint():
    zero = _table().with_columns(pl.when((pl.col("plate") == "P2") & (pl.col("compound") == "DMSO")).then(0.0)
                                 .otherwise(pl.col("confluency")).alias("confluency"))
    with pytest.raises(ValueError, match=r"'confluency'.*P2 × 04h"):
        condition_inhibition(zero)
    with pytest.raises(ValueError, match=r"P1 × 04h"):
        condition_inhibition(_table().filter(~((pl.col("plate") == "P1") & (pl.col("compound") == "DMSO"))))


def test_correlation_r_and_its_intervals():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 0.8 * x + 0.6 * rng.normal(size=200)
    t = pl.DataFrame({"count_inhibition": x, "confluency_inhibition": y})
    res = inhibition_correlation(t, n_boot=2000).row(0, named=True)
    r = np.corrcoef(x, y)[0, 1]
    assert res["r"] == pytest.approx(r) and res["n"] == 200 and res["n_excluded"] == 0
    z, se = np.arctanh(r), 1 / np.sqrt(197)
    assert (res["fisher_ci_low"], res["fisher_ci_high"]) == pytest.approx((np.tanh(z - 1.959964 * se),
                                                                          np.tanh(z + 1.959964 * se)), rel=1e-5)
    assert res["boot_ci_low"] < r < res["boot_ci_high"]
    assert abs(res["boot_ci_low"] - res["fisher_ci_low"]) < 0.05  # the two intervals agree here
    noise = pl.DataFrame({"count_inhibition": x, "confluency_inhibition": rng.normal(size=200)})
    nres = inhibition_correlation(noise).row(0, named=True)
    assert nres["fisher_ci_low"] < 0 < nres["fisher_ci_high"] and nres["boot_ci_low"] < 0 < nres["boot_ci_high"]


def test_correlation_counts_excluded_rows_and_degenerate_cases():
    t = pl.DataFrame({"count_inhibition": [1.0, 2.0, None, 4.0, float("nan"), 6.0],
                      "confluency_inhibition": [2.0, 4.0, 1.0, 8.0, 1.0, 12.0]})
    res = inhibition_correlation(t).row(0, named=True)
    assert res["n"] == 4 and res["n_excluded"] == 2 and res["r"] == pytest.approx(1.0)
    flat = inhibition_correlation(pl.DataFrame({"count_inhibition": [1.0] * 5,
                                                "confluency_inhibition": [1.0, 2, 3, 4, 5]})).row(0, named=True)
    assert flat["r"] is None and flat["fisher_ci_low"] is None and flat["boot_ci_low"] is None
