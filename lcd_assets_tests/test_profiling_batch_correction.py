"""Batch correction on arrays (lcd_core.profiling.batch_correction): fastMNN's PCA and merge."""

from __future__ import annotations

import numpy as np

from lcd_core.profiling.batch_correction import _mnn_pairs, fastmnn


def test_fastmnn_single_batch_is_cosine_pca():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8))
    out = fastmnn(X, np.zeros(60), n_pcs=8)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    # full-rank PCA is a rotation of the centred data: distances preserved
    D1 = np.linalg.norm(out[:, None] - out[None], axis=2)
    D2 = np.linalg.norm(Xn[:, None] - Xn[None], axis=2)
    np.testing.assert_allclose(D1, D2, atol=1e-10)


def test_fastmnn_removes_a_batch_shift():
    """Batch b is batch a shifted: the merge brings its mean onto batch a's."""
    rng = np.random.default_rng(2)
    A = rng.normal(size=(40, 6))
    X = np.concatenate([A, A + 0.6 * rng.normal(size=(1, 6))])
    labels = np.repeat(["a", "b"], 40)
    gap = lambda P: np.linalg.norm(P[40:].mean(0) - P[:40].mean(0))  # noqa: E731
    before = gap(fastmnn(X, np.zeros(80), k=20, n_pcs=6))  # same PCA, nothing merged
    after = gap(fastmnn(X, labels, k=20, n_pcs=6, sigma=1.0))
    assert before > 0.3 and after < before / 5


def test_mnn_pairs_are_mutual():
    R = np.array([[0.0], [10.0], [20.0]])
    B = np.array([[0.5], [10.4], [30.0]])
    pb, pr = _mnn_pairs(R, B, 1)
    assert sorted(zip(pb.tolist(), pr.tolist())) == [(0, 0), (1, 1)]  # B[2]'s nearest R[2] ≠ mutual
