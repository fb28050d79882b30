"""Batch correction on arrays: Harmony (harmonypy) and our fastMNN (SPEC §4.4).

The ``"harmony"``, ``"mad_harmony_fov"`` and ``"fastmnn"`` steps of
:func:`lcd_core.profiling.normalize.normalize`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["harmony", "fastmnn"]


def harmony(
    X: np.ndarray,
    meta,
    vars_use: list[str],
    *,
    seed: int = 0,
    **kwargs,
) -> np.ndarray:
    """harmonypy's ``run_harmony`` on ``X`` (n, d); returns the corrected (n, d) matrix.

    ``meta`` is a pandas frame or dict of arrays holding ``vars_use``. ``Z_corr`` is n × d in
    harmonypy 2.x and d × n in 0.0.x: both are handled.
    """
    import harmonypy

    X = np.ascontiguousarray(X, dtype=np.float64)
    n, d = X.shape
    meta = {v: np.asarray(meta[v]).astype(str) for v in vars_use}
    # a variable with one level carries nothing to correct; harmonypy would still run
    kw = dict(verbose=False, random_state=seed)
    kw.update(kwargs)
    h = harmonypy.run_harmony(X, meta, list(vars_use), **kw)
    Z = np.asarray(h.Z_corr, dtype=np.float64)
    if Z.shape == (n, d):
        return Z
    if Z.shape == (d, n):
        return Z.T.copy()
    raise RuntimeError(f"unexpected harmonypy Z_corr shape {Z.shape} for data {X.shape}")


def _cosine_normalise(X: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(nrm == 0):
        raise ValueError(f"{int((nrm == 0).sum())} all-zero profile row(s): cosine norm undefined")
    return X / nrm


def _knn(A: np.ndarray, B: np.ndarray, k: int) -> np.ndarray:
    """Indices (len(A), k) of the k nearest rows of B to each row of A (Euclidean)."""
    d2 = (A * A).sum(1)[:, None] - 2 * A @ B.T + (B * B).sum(1)[None, :]
    k = min(k, B.shape[0])
    idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
    return idx


def _batch_weighted_pca(X: np.ndarray, b: np.ndarray, n_batches: int, n_pcs: int) -> np.ndarray:
    """Every row projected on ``min(n_pcs, n − 1, d)`` PCs fitted with each batch weighted
    equally (rows centred on the mean of batch means, scaled by 1/sqrt(n_batch) for the SVD)."""
    n, d = X.shape
    mu = np.mean([X[b == i].mean(0) for i in range(n_batches)], axis=0)
    Xc = X - mu
    w = 1.0 / np.sqrt(np.bincount(b)[b])
    npc = int(max(1, min(n_pcs, n - 1, d)))
    _, _, vt = np.linalg.svd(Xc * w[:, None], full_matrices=False)
    return Xc @ vt[:npc].T


def _mnn_pairs(R: np.ndarray, B: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbour pairs (rows of B, rows of R), ``k`` capped at the smaller side."""
    kk = max(1, min(k, len(R), len(B)))
    nn_b2r = _knn(B, R, kk)  # for each B row, its k nearest R rows
    nn_r2b = _knn(R, B, kk)
    r_has = np.zeros((len(R), len(B)), bool)
    r_has[np.repeat(np.arange(len(R)), kk), nn_r2b.ravel()] = True
    bi_idx = np.repeat(np.arange(len(B)), kk)
    ri_idx = nn_b2r.ravel()
    mutual = r_has[ri_idx, bi_idx]
    return bi_idx[mutual], ri_idx[mutual]


def _gaussian_weights(B: np.ndarray, Bp: np.ndarray, sigma: float) -> np.ndarray:
    """(len(B), len(Bp)) weights ``exp(−‖B[i] − Bp[j]‖² / sigma)``, normalised per row in log
    space (never all zero)."""
    d2 = (B * B).sum(1)[:, None] - 2 * B @ Bp.T + (Bp * Bp).sum(1)[None, :]
    logw = -np.maximum(d2, 0) / sigma
    logw -= logw.max(axis=1, keepdims=True)
    wts = np.exp(logw)
    wts /= wts.sum(axis=1, keepdims=True)
    return wts


def _merge_batch(R: np.ndarray, B: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """Batch ``B`` corrected towards the reference ``R`` (unchanged without any MNN pair)."""
    pb, pr = _mnn_pairs(R, B, k)
    if not pb.size:
        return B
    paired = np.unique(pb)
    csum = np.zeros(B.shape)
    np.add.at(csum, pb, R[pr] - B[pb])
    cnt = np.bincount(pb, minlength=len(B))
    vec = csum[paired] / cnt[paired, None]  # mean correction per paired row
    return B + _gaussian_weights(B, B[paired], sigma) @ vec


def fastmnn(
    X: np.ndarray,
    batches: np.ndarray,
    *,
    k: int = 20,
    n_pcs: int = 50,
    sigma: float = 0.1,
) -> np.ndarray:
    """fastMNN on ``X`` (n, d) with batch labels ``batches`` (n,); returns corrected PCs.

    1. Rows are L2 (cosine) normalised.
    2. PCA with each batch weighted equally (rows centred on the mean of batch means, each
       batch's rows scaled by 1/sqrt(n_batch) for the SVD), ``min(n_pcs, n-1, d)`` components;
       every row is projected.
    3. Batches (sorted labels) are merged in order into the reference (the first batch, then the
       growing corrected union). For batch B: mutual nearest neighbours between reference R and
       B (k nearest each way, ``k`` capped at the smaller side); correction of pair (r, b) is
       ``R[r] − B[b]``; averaged per paired row b; then every row of B gets the Gaussian-weighted
       mean of those per-row corrections, weights ``exp(−‖B[i] − B[b]‖² / sigma)`` over the paired
       rows b (normalised per row, log-space). A batch without any MNN pair is left unchanged.

    Batchelor's orthogonalisation against the batch vector and automatic merge order are not
    implemented.
    """
    X = _cosine_normalise(np.asarray(X, dtype=np.float64))
    labels, b = np.unique(np.asarray(batches).astype(str), return_inverse=True)
    P = _batch_weighted_pca(X, b, len(labels), n_pcs)
    out = P.copy()
    ref_rows = np.flatnonzero(b == 0)
    for bi in range(1, len(labels)):
        rows = np.flatnonzero(b == bi)
        out[rows] = _merge_batch(out[ref_rows], P[rows], k, sigma)
        ref_rows = np.concatenate([ref_rows, rows])
    return out
