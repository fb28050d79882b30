"""The cell-count baseline (lcd_core.profiling.cell_count): z-scores against each plate × timepoint's
DMSO, the bootstrap interval of the median z, the call, and the errors naming the measurement."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lcd_core.profiling.cell_count import bootstrap_median_ci, cell_count_activity, count_zscores

PLATES, TPS = ("R01-L01", "R01-L02"), ("04h", "08h")


def _fovs(seed: int = 0, kill_mean: float = 40.0) -> pl.DataFrame:
    """2 plates × 2 timepoints; 6 DMSO wells, a cell killer and a DMSO-like compound, 4 FOVs a well."""
    rng = np.random.default_rng(seed)
    rows = []
    for plate in PLATES:
        for tp in TPS:
            base = 100.0 if plate == PLATES[0] else 200.0  # plates differ: each needs its own DMSO
            dmso = rng.normal(base, 8, size=24).round()
            for i, n in enumerate(dmso):
                rows.append(dict(plate=plate, timepoint=tp, dose="10uM", compound="DMSO", role="negative_control",
                                 moa=None, well=f"A{i // 4 + 1:02d}", field=i % 4 + 1, n_nuclei=n))
            for comp, moa, counts in (("KILL", "HDAC", rng.normal(kill_mean * base / 100, 5, size=4).round()),
                                      ("LIKE", None, rng.permutation(dmso)[:4])):
                rows += [dict(plate=plate, timepoint=tp, dose="10uM", compound=comp, role="treatment", moa=moa,
                              well="B01", field=f + 1, n_nuclei=float(c)) for f, c in enumerate(counts)]
    return pl.DataFrame(rows)


def test_a_killer_is_active_and_a_dmso_like_compound_is_not():
    act = cell_count_activity(_fovs())
    assert act.height == 4 and "DMSO" not in act["compound"].to_list()
    kill, like = act.filter(pl.col("compound") == "KILL"), act.filter(pl.col("compound") == "LIKE")
    assert kill["active"].all() and (kill["ci_high"] < 0).all() and (kill["median_z"] < -5).all()
    assert not like["active"].any() and (like["ci_low"] < 0).all() and (like["ci_high"] > 0).all()
    assert (act["score"] == -act["median_z"]).all()
    assert kill["moa"].to_list() == ["HDAC", "HDAC"] and (act["n_fovs"] == 8).all()  # all FOVs of both plates
    assert set(act.columns) >= {"compound", "dose", "timepoint", "n_fovs", "median_z", "ci_low", "ci_high",
                                "active", "score"}


def test_z_is_exact_against_the_own_plate_and_timepoint_dmso():
    rows = [dict(plate=p, timepoint="04h", dose="1uM", compound="DMSO", role="negative_control", n_nuclei=v)
            for p, vals in (("P1", (90, 100, 110)), ("P2", (180, 200, 220))) for v in vals]
    rows += [dict(plate="P1", timepoint="04h", dose="1uM", compound="X", role="treatment", n_nuclei=80),
             dict(plate="P2", timepoint="04h", dose="1uM", compound="X", role="treatment", n_nuclei=160)]
    z = count_zscores(pl.DataFrame(rows)).filter(pl.col("compound") == "X")
    assert z["count_z"].to_list() == pytest.approx([-2.0, -2.0])  # (80 − 100) / 10, (160 − 200) / 20
    act = cell_count_activity(pl.DataFrame(rows))
    assert act["median_z"].to_list() == pytest.approx([-2.0]) and act["ci_high"][0] == pytest.approx(-2.0)


def test_cytomining_names_are_accepted():
    f = _fovs()
    meta = f.rename({c: f"Metadata_{c}" for c in f.columns if c != "n_nuclei"})
    assert cell_count_activity(meta).equals(cell_count_activity(f))


def test_bootstrap_is_seeded_order_free_and_equals_the_resample_loop():
    f = _fovs()
    a = cell_count_activity(f, seed=3)
    shuffled = cell_count_activity(f.sample(fraction=1.0, shuffle=True, seed=1), seed=3)
    assert_frame_equal(shuffled, a, check_exact=False, rel_tol=1e-9)  # DMSO sums in another order
    assert not cell_count_activity(f, seed=4)["ci_low"].equals(a["ci_low"])
    x = np.random.default_rng(0).normal(size=13)
    med, lo, hi = bootstrap_median_ci(x, np.random.default_rng(7), n_boot=500)
    r = np.random.default_rng(7)
    loop = [np.median(x[r.integers(0, x.size, size=x.size)]) for _ in range(500)]
    assert (med, lo, hi) == pytest.approx((np.median(x), *np.percentile(loop, [2.5, 97.5])))


def test_missing_counts_are_counted_not_used():
    f = _fovs().with_columns(
        pl.when((pl.col("compound") == "KILL") & (pl.col("field") == 1)).then(None)
        .otherwise(pl.col("n_nuclei")).alias("n_nuclei"))
    f = f.with_columns(pl.when((pl.col("compound") == "LIKE") & (pl.col("field") == 2)).then(float("nan"))
                       .otherwise(pl.col("n_nuclei")).alias("n_nuclei"))
    act = cell_count_activity(f)
    assert (act["n_fovs"] == 6).all() and (act["n_fovs_missing"] == 2).all()
    assert act.filter(pl.col("compound") == "KILL")["active"].all()


def test_no_dmso_in_a_measurement_names_the_plate_and_timepoint():
    f = _fovs().filter(~((pl.col("plate") == "R01-L02") & (pl.col("timepoint") == "08h")
                         & (pl.col("role") == "negative_control")))
    with pytest.raises(ValueError, match=r"R01-L02 × 08h"):
        cell_count_activity(f)


def test_dmso_without_spread_names_the_plate_and_timepoint():
    f = _fovs().with_columns(pl.when((pl.col("plate") == "R01-L01") & (pl.col("timepoint") == "04h")
                                     & (pl.col("role") == "negative_control")).then(100.0)
                             .otherwise(pl.col("n_nuclei")).alias("n_nuclei"))
    with pytest.raises(ValueError, match=r"SD of 0.*R01-L01 × 04h"):
        cell_count_activity(f)


def test_missing_columns_and_negative_counts_raise():
    with pytest.raises(ValueError, match="n_nuclei"):
        cell_count_activity(_fovs().drop("n_nuclei"))
    with pytest.raises(ValueError, match="negative"):
        cell_count_activity(_fovs().with_columns(pl.lit(-1.0).alias("n_nuclei")))
    assert cell_count_activity(_fovs().rename({"n_nuclei": "hoechst"}), count="hoechst").height == 4
