"""Distance from DMSO (lcd_core.trajectories.distance): the statistic, its interval, the null."""

from __future__ import annotations

import numpy as np
import polars as pl

from lcd_assets_tests.test_trajectories_conditions import (
    AMPLITUDE,
    DOSES,
    PLANTED,
    TIMEPOINTS,
    amplitude,
    features,
    planted_screen,
)
from lcd_core.trajectories.conditions import Condition, split_conditions
from lcd_core.trajectories.distance import (
    DISTANCE_SCHEMA,
    centroid_distance,
    condition_distances,
    distances,
    dmso_null,
)


def gaussian_condition(a: float, *, p: int, n_wells: int, n_dmso: int, rng,
                       extra: dict | None = None) -> Condition:
    """One condition: DMSO ~ N(0, I), compound ``C`` shifted by ``a`` MAD units per feature."""
    u = np.zeros(p)
    u[0] = 1.0
    wells = {"C": rng.normal(size=(n_wells, p)) + a * np.sqrt(p) * u, **(extra or {})}
    return Condition("1uM", "04h", 4.0, rng.normal(size=(n_dmso, p)), wells, {k: None for k in wells})


def test_statistic_is_the_debiased_centroid_distance():
    rng = np.random.default_rng(0)
    Xc, Xd = rng.normal(size=(6, 10)) + 0.7, rng.normal(size=(40, 10))
    p = 10
    plain2 = np.sum((Xc.mean(0) - Xd.mean(0)) ** 2) / p
    noise = (np.trace(np.cov(Xc.T)) / 6 + np.trace(np.cov(Xd.T)) / 40) / p
    assert np.isclose(centroid_distance(Xc, Xd), np.sqrt(plain2 - noise))
    assert np.isclose(centroid_distance(Xc, Xd, debias=False), np.sqrt(plain2))
    # one compound well borrows the DMSO wells' spread
    one = Xc[:1]
    want = np.sum((one[0] - Xd.mean(0)) ** 2) / p - (np.trace(np.cov(Xd.T)) * (1 + 1 / 40)) / p
    assert np.isclose(centroid_distance(one, Xd), np.sqrt(max(want, 0.0)))
    # never negative: DMSO against itself is 0
    assert centroid_distance(Xd[:20], Xd[20:]) >= 0.0


def test_planted_distances_lie_in_their_intervals_and_inert_ones_in_the_null():
    conds = split_conditions(planted_screen(), features())
    table = distances(conds, n_boot=1000, seed=0)
    assert table.schema == pl.Schema(DISTANCE_SCHEMA)
    assert table.height == len(PLANTED) * len(DOSES) * len(TIMEPOINTS)
    assert set(table["n_wells"]) == {8} and set(table["n_dmso"]) == {96}
    planted = np.array([amplitude(c, d, t) for c, d, t in
                        table.select("compound", "dose", "timepoint").iter_rows()])
    on = planted > 0
    lo, hi, dist = (table[c].to_numpy() for c in ("ci_low", "ci_high", "distance"))
    inside = (lo <= planted) & (planted <= hi)
    assert inside[on].mean() >= 0.85, table  # 95 % intervals, 19 planted conditions.filter(pl.Series(on & ~inside))
    assert np.all(np.abs(dist[on] - AMPLITUDE) < 0.4)
    assert np.all(lo <= dist) and np.all(dist <= hi)
    # every planted condition leaves the DMSO noise, none of the others does
    np.testing.assert_array_equal(table["active_distance"].to_numpy(), on)
    assert np.all(table["null_p95"].to_numpy() < 0.5)


def test_debiased_interval_covers_where_the_plain_one_does_not():
    """64 features, 6 wells: the plain distance sits on the noise floor √(1/6 + 1/60) ≈ 0.43."""
    rng = np.random.default_rng(1)
    hits = {True: 0, False: 0}
    n = 40
    for _ in range(n):
        cond = gaussian_condition(0.5, p=64, n_wells=6, n_dmso=60, rng=rng)
        for debias in hits:
            d = condition_distances(cond, n_boot=300, seed=int(rng.integers(1 << 30)), debias=debias)["C"]
            hits[debias] += d.ci_low <= 0.5 <= d.ci_high
    assert hits[True] / n >= 0.85
    assert hits[False] / n <= 0.3


def test_null_is_the_distance_of_dmso_like_wells():
    """Fresh DMSO-like compounds exceed the null's 95th percentile about 5 % of the time."""
    rng = np.random.default_rng(2)
    dmso = rng.normal(size=(96, 16))
    null = dmso_null(dmso, 8, np.random.default_rng(0), 2000)
    assert null.shape == (2000,) and np.all(null >= 0)
    p95 = np.quantile(null, 0.95)
    fresh = np.array([centroid_distance(rng.normal(size=(8, 16)), dmso) for _ in range(400)])
    assert 0.01 <= np.mean(fresh > p95) <= 0.10
    # a real shift is far outside it
    assert centroid_distance(rng.normal(size=(8, 16)) + 1.0, dmso) > 3 * p95
    # too few DMSO wells for the rest: no null
    assert dmso_null(dmso[:9], 8, np.random.default_rng(0), 10).size == 0


def test_rows_are_seeded_per_compound_and_a_single_well_has_no_interval():
    rng = np.random.default_rng(3)
    cond = gaussian_condition(1.0, p=16, n_wells=8, n_dmso=48, rng=rng,
                              extra={"B": rng.normal(size=(8, 16)), "ONE": rng.normal(size=(1, 16)) + 2})
    full = condition_distances(cond, n_boot=200, seed=7)
    alone = condition_distances(Condition("1uM", "04h", 4.0, cond.dmso, {"C": cond.compounds["C"]}),
                                n_boot=200, seed=7)
    assert full["C"] == alone["C"]  # the other compounds do not change C's row
    assert condition_distances(cond, n_boot=200, seed=8)["C"].ci_low != full["C"].ci_low
    one = full["ONE"]
    assert one.n_wells == 1 and one.distance > 1.0
    assert np.isnan(one.ci_low) and np.isnan(one.ci_high) and not one.active
    assert condition_distances(Condition("1uM", "04h", 4.0, cond.dmso), n_boot=10) == {}
