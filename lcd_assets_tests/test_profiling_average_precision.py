"""AP kernel, Cohen's d (lcd_core.profiling.average_precision): copairs' rank lists, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from lcd_core.profiling.average_precision import average_precision, cohens_d, map_es


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
