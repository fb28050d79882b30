"""Numeric kernels of mAP / mAP-ES (no pandas, no polars): similarity, AP, effect size.

The AP definition is copairs' (``copairs.compute.ap_contiguous`` after
``copairs.map.average_precision.build_rank_lists``): a query's rank list holds its positive and
negative pairs sorted by decreasing similarity, with ties kept in input order (copairs sorts the
key ``1 − sim`` with a stable lexsort and lists positive pairs before negative ones, so a positive
ranks above a negative of equal similarity); ``AP = Σ_k precision@k · rel_k / n_pos``. The kernel
here sorts the same key ``1 − sim`` stably, so, with positives in the leading columns, it
reproduces copairs to rounding (tests pin 1e-9).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "cosine_similarity_matrix",
    "average_precision",
    "cohens_d",
    "map_es",
    "percentile_ci",
]


def cosine_similarity_matrix(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity (float64) between the rows of ``X`` and of ``Y`` (default ``X``).

    Raises ``ValueError`` on an all-zero or non-finite row (cosine undefined).
    """
    def _unit(A):
        A = np.asarray(A, dtype=np.float64)
        if not np.isfinite(A).all():
            raise ValueError("profiles contain NaN/inf: cosine similarity undefined")
        n = np.linalg.norm(A, axis=1, keepdims=True)
        if np.any(n == 0):
            raise ValueError(f"{int((n == 0).sum())} all-zero profile row(s): cosine undefined")
        return A / n

    Xn = _unit(X)
    Yn = Xn if Y is None else _unit(Y)
    return Xn @ Yn.T


def average_precision(
    sim_rows: np.ndarray,
    is_positive: np.ndarray,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Average precision of many rank lists at once (copairs' definition).

    Parameters
    ----------
    sim_rows
        (m, L) similarity of each query (row) to the L members of its list.
    is_positive
        (m, L) or (L,) bool: positive pair (else negative).
    valid
        Optional (m, L) bool: entries to use (padding for lists shorter than L is ``False``).

    Returns
    -------
    numpy.ndarray
        (m,) AP; NaN for a list without a valid positive.

    Notes
    -----
    Ties: entries are ranked by ``1 − sim`` ascending with a stable sort, so equal similarities
    keep column order — put positives first to match copairs.
    """
    sim = np.asarray(sim_rows, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError("sim_rows must be 2-D (queries × list members)")
    pos = np.broadcast_to(np.asarray(is_positive, bool), sim.shape)
    key = 1.0 - sim
    if valid is not None:
        valid = np.broadcast_to(np.asarray(valid, bool), sim.shape)
        key = np.where(valid, key, np.inf)  # padding sorts last
        pos = pos & valid
    if np.ndim(is_positive) == 1 and sim.shape[0] > 0:
        cols = np.flatnonzero(np.asarray(is_positive, bool))
        if cols.size * 4 <= sim.shape[1] or cols.size <= 8:
            return _ap_few_positives(key, pos, cols)
    order = np.argsort(key, axis=1, kind="stable")
    rel = np.take_along_axis(pos, order, axis=1)
    tp = np.cumsum(rel, axis=1, dtype=np.int64)
    k = np.arange(1, sim.shape[1] + 1, dtype=np.int64)
    n_pos = tp[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rel, tp / k, 0.0).sum(axis=1) / n_pos


def _ap_few_positives(key: np.ndarray, pos: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """AP without sorting, when the positives are the same few columns of every row.

    The stable sort puts entry j before positive column i iff ``key_j < key_i`` or
    (``key_j == key_i`` and ``j < i``); the rank of positive i is 1 + the number of such j, its
    true-positive count 1 + the number of such valid positives. Same values as the sort path
    (O(m · P · L) comparisons instead of an O(m · L log L) sort).
    """
    m, L = key.shape
    ncols = np.setdiff1d(np.arange(L), cols)
    return _ap_columns(key[:, cols], key[:, ncols], pos[:, cols], cols, ncols, finite_only=True)


def _ap_leading(key_pos: np.ndarray, key_neg_t: np.ndarray) -> np.ndarray:
    """AP of rank lists given as the keys (``1 − sim``; ``inf`` = padding) of their positives
    ``key_pos`` (m, P) and negatives ``key_neg_t`` (N, m) — transposed, so the counts below are
    vectorised over the m lists —, positives listed first (copairs' tie order).

    Same values as :func:`_ap_columns` (and the sort path): with positives first, a negative ranks
    before positive i iff its key is strictly smaller, positive j before positive i iff
    ``key_j < key_i`` (``≤`` for j < i); padding (``inf``) is never before a valid positive.
    Terms are summed over the positives in column order, like ``(…).sum(axis=1)``.
    """
    m, P = key_pos.shape
    kp = np.ascontiguousarray(key_pos.T)  # (P, m)
    vp = np.isfinite(kp)
    out = np.zeros(m, np.float64)
    for i in range(P):
        a = kp[i]
        tp = np.ones(m, np.int64)
        for j in range(P):
            if j != i:
                tp += ((kp[j] <= a) if j < i else (kp[j] < a)) & vp[j]
        rank = tp + (key_neg_t < a).sum(axis=0)
        term = np.where(vp[i], tp / rank, 0.0)
        out = term if i == 0 else out + term
    with np.errstate(divide="ignore", invalid="ignore"):
        return out / vp.sum(axis=0)


def _ap_columns(kp: np.ndarray, kn: np.ndarray, valid_pos: np.ndarray, pcols: np.ndarray,
                ncols: np.ndarray, finite_only: bool = False) -> np.ndarray:
    """Core of the no-sort AP: keys of the positives ``kp`` (m, P) at list columns ``pcols`` and
    of the negatives ``kn`` (m, N) at ``ncols``; padding / unusable entries have key ``inf``.

    rank_i = 1 + #{entries ranked before positive i}, tp_i = 1 + #{valid positives before i};
    an ``inf`` entry is never before a finite (valid) positive, so padding needs no mask.
    ``finite_only``: also ignore ``-inf`` / NaN entries (rows may hold non-finite similarities).
    """
    m, P = kp.shape
    out = np.empty(m, np.float64)
    # bound the (rows, P, N) comparison block
    step = max(1, 2**22 // max(1, P * max(kn.shape[1], P)))
    tie_neg = bool(ncols.size and pcols.size and ncols.min() < pcols.max())
    earlier_p = pcols[None, :] < pcols[:, None]  # (P, P): positive j is left of positive i
    for s in range(0, m, step):
        a, b = kp[s:s + step], kn[s:s + step]
        before_n = b[:, None, :] < a[:, :, None]  # (r, P, N)
        if tie_neg:
            before_n |= (b[:, None, :] == a[:, :, None]) & (ncols[None, :] < pcols[:, None])
        before_p = (a[:, None, :] < a[:, :, None]) | (
            (a[:, None, :] == a[:, :, None]) & earlier_p)  # (r, P, P): positive j before i
        if finite_only:  # rank counts finite entries, tp valid positives (the sort path's rule)
            before_n &= np.isfinite(b)[:, None, :]
            tp = 1 + (before_p & valid_pos[s:s + step, None, :]).sum(axis=2)
            rank = 1 + (before_p & np.isfinite(a)[:, None, :]).sum(axis=2) + before_n.sum(axis=2)
        else:  # valid positive == finite key
            before_p &= valid_pos[s:s + step, None, :]
            tp = 1 + before_p.sum(axis=2)
            rank = tp + before_n.sum(axis=2)
        vp = valid_pos[s:s + step]
        with np.errstate(divide="ignore", invalid="ignore"):
            out[s:s + step] = np.where(vp, tp / rank, 0.0).sum(axis=1) / vp.sum(axis=1)
    return out


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d of ``a`` vs ``b``: ``(mean a − mean b) / s_pooled``.

    ``s_pooled = sqrt(((n_a − 1) s_a² + (n_b − 1) s_b²) / (n_a + n_b − 2))`` (sample variances,
    ddof = 1). NaNs are ignored. NaN if either side has < 2 values; if ``s_pooled`` is 0 the result
    is 0 for equal means and ±inf otherwise (perfect separation).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        return float("nan")
    diff = a.mean() - b.mean()
    sp = np.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if sp == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / sp)


def map_es(compound_aps: np.ndarray, null_aps: np.ndarray) -> float:
    """mAP effect size: Cohen's d (pooled SD) of a compound's draw APs vs the null draw APs."""
    return cohens_d(compound_aps, null_aps)


def percentile_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central percentile interval of ``x`` (numpy's linear interpolation); NaNs ignored."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(x, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
