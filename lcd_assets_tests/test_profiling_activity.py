"""mAP / mAP-ES (lcd_core.profiling.activity): rules and list sizes, ES, null, sensitivity."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.profiling.activity import compute_activity, null_distribution, sensitivity
from lcd_core.profiling.average_precision import cosine_similarity_matrix
from lcd_core.profiling.draws import ActivityColumns, DrawSizes, draw_sets


def make_screen(
    *,
    replica_doses=(("R01", "1uM"), ("R02", "10uM"), ("R03", "10uM")),
    n_layouts=4,
    n_dmso=16,
    d=24,
    effects=None,
    seed=0,
    timepoints=("04h",),
) -> pl.DataFrame:
    """Synthetic well profiles: plate offsets, DMSO ~ N(offset, I), compound = DMSO + effect."""
    rng = np.random.default_rng(seed)
    effects = effects if effects is not None else {"STRONG": 4.0, "LIKE_DMSO": 0.0, "MID": 0.8}
    dirs = {c: rng.normal(size=d) / np.sqrt(d) * np.sqrt(d) for c in effects}
    rows, X = [], []
    for rep, dose in replica_doses:
        for li in range(1, n_layouts + 1):
            lay = f"L{li:02d}"
            for tp in timepoints:
                off = rng.normal(scale=0.3, size=d)
                plate = f"{rep}-{lay}"
                wells = [("DMSO", "negative_control", None)] * n_dmso + [
                    (c, "treatment", "MOA_" + c) for c in effects
                ]
                for wi, (cmp, role, moa) in enumerate(wells):
                    x = off + rng.normal(size=d)
                    if role == "treatment":
                        x = x + effects[cmp] * dirs[cmp]
                    rows.append(dict(Metadata_plate=plate, Metadata_timepoint=tp,
                                     Metadata_replica=rep, Metadata_layout=lay,
                                     Metadata_dose=dose, Metadata_well=f"W{wi:03d}",
                                     Metadata_compound=cmp, Metadata_moa=moa,
                                     Metadata_role=role))
                    X.append(x)
    meta = pl.DataFrame(rows)
    feats = pl.DataFrame(np.array(X), schema=[f"f{i:02d}" for i in range(d)], orient="row")
    return pl.concat([meta, feats], how="horizontal")


# ---------------------------------------------------------------------------------------------
# rules and list sizes, as the activity table reports them


def test_fallback_when_single_replica():
    df = make_screen(seed=2)
    res = compute_activity(df, n_draws=200, seed=0)
    act = res.activity
    fb = dict(zip(act["dose"], act["fallback"]))
    assert fb["1uM"] is True and fb["10uM"] is False
    sub = df.filter(pl.col("Metadata_dose") == "1uM")
    ds = draw_sets(sub, "MID", np.random.default_rng(0), DrawSizes(3, 31, 100))
    plate, rep = sub["Metadata_plate"].to_numpy(), sub["Metadata_replica"].to_numpy()
    assert ds.fallback
    assert all(plate[p] != plate[q] and rep[p] == rep[q] for q, P in zip(ds.query, ds.pos)
               for p in P)
    # the null of each condition uses the same rule and list sizes as its compounds
    assert set(res.null.select("dose", "fallback").iter_rows()) == {("1uM", True),
                                                                    ("10uM", False)}


def test_small_design_caps_list_sizes():
    """2 layouts, 1 replica, 4 DMSO wells: 1 positive, 3 negatives, same for the null."""
    df = make_screen(replica_doses=(("R01", "1uM"),), n_layouts=2, n_dmso=4, seed=4)
    res = compute_activity(df, n_draws=100)
    assert set(res.activity["n_pos"]) == {1} and set(res.activity["n_neg"]) == {3}
    assert res.null.select("n_pos", "n_neg").row(0) == (1, 3)
    assert res.activity["fallback"].all()


def test_single_plate_compound_has_no_draws():
    df = make_screen(replica_doses=(("R01", "1uM"),), n_layouts=1, seed=5)
    act = compute_activity(df, n_draws=50).activity
    assert (act["n_draws"] == 0).all() and act["map_es"].is_nan().all()
    assert not act["active"].any()


# ---------------------------------------------------------------------------------------------
# mAP-ES behaviour


@pytest.fixture(scope="module")
def screen_result():
    df = make_screen(seed=11)
    return df, compute_activity(df, n_draws=1000, seed=0, keep_draws=True)


def test_map_es_separates_strong_from_dmso_like(screen_result):
    _, res = screen_result
    act = res.activity.filter(pl.col("dose") == "10uM")
    es = dict(zip(act["compound"], act["map_es"]))
    active = dict(zip(act["compound"], act["active"]))
    assert es["STRONG"] > 3 and active["STRONG"]
    assert abs(es["LIKE_DMSO"]) < 0.5 and not active["LIKE_DMSO"]
    row = act.filter(pl.col("compound") == "STRONG").row(0, named=True)
    assert row["map_ci_low"] <= row["map_mean"] <= row["map_ci_high"]
    assert row["n_draws"] == 1000 and row["n_pos"] == 3 and row["n_neg"] == 15
    assert row["moa"] == "MOA_STRONG"


def test_map_es_reproducible(screen_result):
    df, res = screen_result
    again = compute_activity(df, n_draws=1000, seed=0)
    assert again.activity.equals(res.activity) and again.null.equals(res.null)
    other = compute_activity(df, n_draws=1000, seed=1).activity
    assert not other["map_mean"].equals(res.activity["map_mean"])
    # independent of what else is in the frame: one condition alone gives the same rows
    alone = compute_activity(df.filter(pl.col("Metadata_dose") == "10uM"), n_draws=1000, seed=0)
    assert alone.activity.equals(res.activity.filter(pl.col("dose") == "10uM"))


def test_draws_table_and_null_distribution(screen_result):
    df, res = screen_result
    d = res.draws
    assert d.filter(pl.col("compound").is_null()).height == res.null["n_draws"].sum()
    strong = d.filter((pl.col("compound") == "STRONG") & (pl.col("dose") == "10uM"))["ap"]
    row = res.activity.filter((pl.col("compound") == "STRONG") & (pl.col("dose") == "10uM"))
    assert strong.mean() == pytest.approx(row["map_mean"][0])
    sub = df.filter(pl.col("Metadata_dose") == "10uM")
    S = cosine_similarity_matrix(sub.select([c for c in df.columns
                                             if not c.startswith("Metadata_")]).to_numpy())
    aps, ds = null_distribution(sub, S, np.random.default_rng(0), DrawSizes(3, 15, 500))
    assert aps.shape == (500,) and np.all((aps > 0) & (aps <= 1))


def test_long_form_input():
    df = make_screen(replica_doses=(("R01", "1uM"), ("R02", "1uM")), n_layouts=2, seed=6)
    feats = [c for c in df.columns if not c.startswith("Metadata_")]
    long = df.select(
        [pl.col(c).alias(c[9:]) for c in df.columns if c.startswith("Metadata_")]
        + [pl.concat_list(feats).list.to_array(len(feats)).alias("embedding")]
    )
    a = compute_activity(long, n_draws=100).activity
    b = compute_activity(df, n_draws=100).activity
    np.testing.assert_allclose(a["map_es"].to_numpy(), b["map_es"].to_numpy(), atol=1e-6)


def test_sensitivity(screen_result):
    _, res = screen_result
    sens = sensitivity(res.activity)
    assert sens.height == 2 * 19
    assert sens["threshold"].to_list()[:3] == [0.2, 0.3, 0.4]
    one = sens.filter(pl.col("dose") == "10uM")
    assert (one["n_compounds"] == 3).all()
    assert np.all(np.diff(one["sensitivity"].to_numpy()) <= 0)  # non-increasing in threshold
    es = res.activity.filter(pl.col("dose") == "10uM")["map_es"].to_numpy()
    at08 = one.filter(pl.col("threshold") == 0.8)["n_active"][0]
    assert at08 == int((es >= 0.8).sum())


def test_custom_columns():
    df = make_screen(replica_doses=(("R01", "1uM"), ("R02", "1uM")), n_layouts=2, seed=7)
    ren = df.rename({"Metadata_compound": "Metadata_pert"})
    cols = ActivityColumns(compound="Metadata_pert")
    a = compute_activity(ren, n_draws=50, cols=cols).activity
    assert a.height == 3
