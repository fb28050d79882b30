"""Draws of query / positives / negatives (lcd_core.profiling.draws): rules, sampling, APs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from lcd_assets_tests.test_profiling_activity import make_screen
from lcd_core.profiling.average_precision import cosine_similarity_matrix
from lcd_core.profiling.draws import (
    ActivityColumns,
    DrawSizes,
    _ConditionIndex,
    _draw_planned,
    _plan,
    draw_aps,
    draw_sets,
)


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
        ds = draw_sets(df, compound, rng, DrawSizes(3, 31, 150))
        assert ds.fallback == fallback_design
        ours = ds.aps(S)
        ref = _copairs_ap_for_draws(feats, ds)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# draw rules


def test_draw_rules_strict():
    df = make_screen(seed=1)
    sub = df.filter(pl.col("Metadata_dose") == "10uM")
    ds = draw_sets(sub, "STRONG", np.random.default_rng(0), DrawSizes(3, 31, 300))
    assert not ds.fallback and ds.pos.shape == (300, 3) and ds.neg.shape == (300, 16)
    plate, rep, lay, cmp, role = (sub[c].to_numpy() for c in (
        "Metadata_plate", "Metadata_replica", "Metadata_layout", "Metadata_compound",
        "Metadata_role"))
    for q, P, N in zip(ds.query, ds.pos, ds.neg):
        assert cmp[q] == "STRONG"
        assert all(cmp[p] == "STRONG" and rep[p] != rep[q] and lay[p] != lay[q] for p in P)
        assert len(set(P)) == len(P) and len(set(N)) == len(N)
        assert all(role[n] == "negative_control" and plate[n] == plate[q] for n in N)
    nd = draw_sets(sub, None, np.random.default_rng(0), DrawSizes(3, 15, 300))
    for q, P, N in zip(nd.query, nd.pos, nd.neg):
        assert role[q] == "negative_control" and q not in N
        assert all(role[p] == "negative_control" and rep[p] != rep[q] and lay[p] != lay[q]
                   for p in P)
        assert all(plate[n] == plate[q] for n in N)


# ---------------------------------------------------------------------------------------------
# sampling (vectorised draws)


def test_batched_draws_equal_single_draws():
    """compute_activity draws all sets of a condition at once; each equals its lone draw_sets."""
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
        lone = draw_sets(sub, c, np.random.default_rng(s), DrawSizes(3, 8, 200), fallback=fb)
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
        ds = draw_sets(sub, compound, np.random.default_rng(5), DrawSizes(3, n_neg, n))
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


def test_draw_aps_of_several_sets_equal_each_alone():
    """One kernel call over sets of different list sizes gives each set's own APs."""
    df = make_screen(seed=14, n_dmso=9)
    sub = df.filter(pl.col("Metadata_dose") == "10uM")
    S = cosine_similarity_matrix(sub.select([c for c in sub.columns
                                             if not c.startswith("Metadata_")]).to_numpy())
    sets = [draw_sets(sub, "MID", np.random.default_rng(0), DrawSizes(3, 8, 50)),
            draw_sets(sub, None, np.random.default_rng(1), DrawSizes(2, 5, 70))]
    together = draw_aps(sets, S)
    assert [a.shape for a in together] == [(50,), (70,)]
    for a, ds in zip(together, sets):
        np.testing.assert_array_equal(a, ds.aps(S))
    assert np.all((together[1] > 0) & (together[1] <= 1))


def test_list_sizes_capped_by_the_design():
    """Asked for more than the condition holds: every draw uses the fewest available."""
    df = make_screen(replica_doses=(("R01", "1uM"),), n_layouts=2, n_dmso=4, seed=4)
    ds = draw_sets(df, "MID", np.random.default_rng(0), DrawSizes(3, 31, 40))
    assert ds.fallback and ds.n_draws == 40 and ds.n_queries == 2
    assert ds.pos.shape == (40, 1) and ds.neg.shape == (40, 4)
    assert (ds.n_pos_used == 1).all() and (ds.n_neg_used == 4).all()
    empty = draw_sets(df.filter(pl.col("Metadata_layout") == "L01"), "MID",
                      np.random.default_rng(0), DrawSizes(3, 31, 40))
    assert empty.n_draws == 0 and empty.n_queries == 0
