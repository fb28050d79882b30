"""mAP / mAP-ES (lcd_core.profiling.activity, lcd_core.profiling.average_precision): copairs agreement, draw rules, ES."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from lcd_core.profiling.activity import (
    ActivityColumns,
    compute_activity,
    draw_sets,
    null_distribution,
    sensitivity,
)
from lcd_core.profiling.average_precision import average_precision, cohens_d, cosine_similarity_matrix, map_es


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
# kernel vs copairs


def _copairs_ap_for_draws(feats: np.ndarray, ds) -> np.ndarray:
    """copairs' public average_precision on a frame built so each draw's query sees exactly its
    drawn positives and negatives: rows are copies (query, positives, negatives) per draw;
    positives share ``poskey`` with their query (negatives get unique keys, so no DMSO–DMSO
    positive pairs), negatives pair with the draw's non-controls through ``neg_sameby=draw``,
    ``neg_diffby=is_ctrl``."""
    from copairs.map import average_precision as copairs_ap

    meta, X, qrows = [], [], []
    uid = 0
    for i in range(ds.n_draws):
        qrows.append(len(meta))
        members = [("q", int(ds.query[i]))] + [("p", int(j)) for j in ds.pos[i] if j >= 0] + [
            ("n", int(j)) for j in ds.neg[i] if j >= 0]
        for kind, j in members:
            if kind == "n":
                uid += 1
                poskey = f"neg{uid}"
            else:
                poskey = f"draw{i}"
            meta.append(dict(draw=i, poskey=poskey, is_ctrl=kind == "n"))
            X.append(feats[j])
    res = copairs_ap(pd.DataFrame(meta), np.array(X), pos_sameby=["poskey"], pos_diffby=[],
                     neg_sameby=["draw"], neg_diffby=["is_ctrl"], progress_bar=False)
    return res["average_precision"].to_numpy()[qrows]


@pytest.mark.parametrize("fallback_design", [False, True])
def test_ap_equals_copairs_on_drawn_sets(fallback_design):
    reps = (("R01", "10uM"),) if fallback_design else (("R01", "10uM"), ("R02", "10uM"))
    df = make_screen(replica_doses=reps, n_layouts=4, n_dmso=12, seed=3)
    feats = df.select([c for c in df.columns if not c.startswith("Metadata_")]).to_numpy()
    S = cosine_similarity_matrix(feats)
    rng = np.random.default_rng(7)
    for compound in ("MID", None):
        ds = draw_sets(df, compound, rng, n_pos=3, n_neg=31, n_draws=150)
        assert ds.fallback == fallback_design
        ours = ds.aps(S)
        ref = _copairs_ap_for_draws(feats, ds)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_ap_ties_match_copairs_rank_lists():
    """Heavily tied similarities: our stable order (positives first) equals copairs' lexsort."""
    from copairs.compute import ap_contiguous
    from copairs.map.average_precision import build_rank_lists

    rng = np.random.default_rng(1)
    m, P, N = 400, 3, 9
    sims = np.round(rng.uniform(-1, 1, size=(m, P + N)), 1)  # many exact ties
    ours = average_precision(sims, np.r_[np.ones(P, bool), np.zeros(N, bool)])
    q = np.arange(m)
    member = m + np.arange(m * (P + N)).reshape(m, P + N)  # each member its own profile id
    pos_pairs = np.stack([np.repeat(q, P), member[:, :P].ravel()], 1)
    neg_pairs = np.stack([np.repeat(q, N), member[:, P:].ravel()], 1)
    paired, rel, counts = build_rank_lists(pos_pairs, neg_pairs, sims[:, :P].ravel(),
                                           sims[:, P:].ravel())
    ap, _ = ap_contiguous(rel, counts)
    ref = ap[np.searchsorted(paired, q)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_ap_kernel_padding_and_edge_cases():
    sims = np.array([[0.9, 0.1, 0.5, 0.0], [0.2, 0.3, 0.1, 0.0]])
    is_pos = np.array([True, True, False, False])
    valid = np.array([[True, True, True, False], [True, False, True, True]])
    ap = average_precision(sims, is_pos, valid)
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)   # ranks: 0.9(P) 0.5(N) 0.1(P)
    assert ap[1] == pytest.approx(1.0)                    # 0.2(P) 0.1 0.0
    assert np.isnan(average_precision(np.zeros((1, 2)), np.array([False, False])))[0]


def test_cohens_d_pooled():
    a, b = np.array([1.0, 2, 3, 4]), np.array([0.0, 1, 1, 2])
    sp = np.sqrt((3 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 6)
    assert cohens_d(a, b) == pytest.approx((a.mean() - b.mean()) / sp)
    assert map_es(b, b) == 0.0
    assert cohens_d(np.ones(5), np.zeros(5)) == np.inf
    assert np.isnan(cohens_d(np.ones(1), np.zeros(5)))


# ---------------------------------------------------------------------------------------------
# draw rules


def test_draw_rules_strict():
    df = make_screen(seed=1)
    sub = df.filter(pl.col("Metadata_dose") == "10uM")
    ds = draw_sets(sub, "STRONG", np.random.default_rng(0), 3, 31, 300)
    assert not ds.fallback and ds.pos.shape == (300, 3) and ds.neg.shape == (300, 16)
    plate, rep, lay, cmp, role = (sub[c].to_numpy() for c in (
        "Metadata_plate", "Metadata_replica", "Metadata_layout", "Metadata_compound",
        "Metadata_role"))
    for q, P, N in zip(ds.query, ds.pos, ds.neg):
        assert cmp[q] == "STRONG"
        assert all(cmp[p] == "STRONG" and rep[p] != rep[q] and lay[p] != lay[q] for p in P)
        assert len(set(P)) == len(P) and len(set(N)) == len(N)
        assert all(role[n] == "negative_control" and plate[n] == plate[q] for n in N)
    nd = draw_sets(sub, None, np.random.default_rng(0), 3, 15, 300)
    for q, P, N in zip(nd.query, nd.pos, nd.neg):
        assert role[q] == "negative_control" and q not in N
        assert all(role[p] == "negative_control" and rep[p] != rep[q] and lay[p] != lay[q]
                   for p in P)
        assert all(plate[n] == plate[q] for n in N)


def test_fallback_when_single_replica():
    df = make_screen(seed=2)
    res = compute_activity(df, n_draws=200, seed=0)
    act = res.activity
    fb = dict(zip(act["dose"], act["fallback"]))
    assert fb["1uM"] is True and fb["10uM"] is False
    sub = df.filter(pl.col("Metadata_dose") == "1uM")
    ds = draw_sets(sub, "MID", np.random.default_rng(0), 3, 31, 100)
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
    aps, ds = null_distribution(sub, S, np.random.default_rng(0), 3, 15, 500)
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


# ---------------------------------------------------------------------------------------------
# sampling (vectorised draws)


def test_batched_draws_equal_single_draws():
    """compute_activity draws all sets of a condition at once; each equals its lone draw_sets."""
    from lcd_core.profiling.activity import _ConditionIndex, _draw_planned, _plan

    df = make_screen(seed=12, n_dmso=9)
    sub = df.filter(pl.col("Metadata_dose") == "10uM")
    ix = _ConditionIndex(sub, ActivityColumns())
    names = ["MID", "STRONG", None, "LIKE_DMSO", None]
    fbs = [None, None, False, None, True]
    plans = [_plan(ix, c, 3, 8, fb) for c, fb in zip(names, fbs)]
    batched, q, pos, neg = _draw_planned(ix, plans, [np.random.default_rng(s) for s in range(5)],
                                         200)
    off = 0
    for s, (c, fb, b) in enumerate(zip(names, fbs, batched)):
        lone = draw_sets(sub, c, np.random.default_rng(s), 3, 8, 200, fallback=fb)
        assert b.fallback == lone.fallback and b.n_queries == lone.n_queries
        for x, y in ((b.query, lone.query), (b.pos, lone.pos), (b.neg, lone.neg)):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(q[off:off + 200], b.query)
        np.testing.assert_array_equal(pos[off:off + 200, :b.pos.shape[1]], b.pos)
        off += 200


@pytest.mark.parametrize("n_neg", [8, 5])  # 8 = all but one DMSO (argmax path), 5 = partition
def test_sampling_without_replacement_eligible_and_uniform(n_neg):
    df = make_screen(seed=13, n_dmso=9)
    sub = df.filter(pl.col("Metadata_dose") == "10uM")
    plate, rep, lay, role = (sub[c].to_numpy() for c in (
        "Metadata_plate", "Metadata_replica", "Metadata_layout", "Metadata_role"))
    n = 6000
    for compound in ("MID", None):
        ds = draw_sets(sub, compound, np.random.default_rng(5), 3, n_neg, n)
        assert ds.pos.shape == (n, 3) and ds.neg.shape == (n, n_neg)
        assert (ds.pos >= 0).all() and (ds.neg >= 0).all()
        for M in (ds.pos, ds.neg):  # no repeats within a draw
            assert (np.diff(np.sort(M, axis=1), axis=1) > 0).all()
        q = ds.query[:, None]
        assert ((rep[ds.pos] != rep[q]) & (lay[ds.pos] != lay[q])).all()
        assert (role[ds.neg] == "negative_control").all() and (plate[ds.neg] == plate[q]).all()
        assert (ds.neg != q).all()
        # uniform: given the query well, every eligible candidate is picked equally often
        qw = np.bincount(ds.query).argmax()
        sel = ds.query == qw
        cands = np.flatnonzero((role == "negative_control") & (plate == plate[qw])
                               & (np.arange(len(role)) != qw))
        counts = np.array([(ds.neg[sel] == c).sum() for c in cands])
        expect = sel.sum() * n_neg / len(cands)
        assert len(counts) == 9 - (compound is None)
        if n_neg < len(cands):
            chi2 = ((counts - expect) ** 2 / expect).sum()
            assert chi2 < 30, (counts, expect)  # df ≤ 8: p ≈ 2e-4
        else:
            assert (counts == sel.sum()).all()
        elig = np.flatnonzero(
            (role == role[qw]) & (rep != rep[qw]) & (lay != lay[qw])
            & ((sub["Metadata_compound"].to_numpy() == sub["Metadata_compound"][int(qw)])))
        pc = np.array([(ds.pos[sel] == c).sum() for c in elig])
        pe = sel.sum() * 3 / len(elig)
        assert ((pc - pe) ** 2 / pe).sum() < len(elig) + 6 * np.sqrt(2 * len(elig)), (pc, pe)
