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
            step = max(1, 2**24 // max(1, cols.size * sim.shape[1]))  # bound the (m, P, L) mask
            return np.concatenate([
                _ap_few_positives(key[i:i + step], pos[i:i + step], cols)
                for i in range(0, sim.shape[0], step)
            ])
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
    kp = key[:, cols]  # (m, P) keys of the positive columns (inf where padded)
    j = np.arange(L)
    before = (key[:, None, :] < kp[:, :, None]) | (
        (key[:, None, :] == kp[:, :, None]) & (j[None, None, :] < cols[None, :, None])
    )  # (m, P, L): entry j ranks above positive column i
    finite = np.isfinite(key)
    rank = 1 + (before & finite[:, None, :]).sum(axis=2)
    tp = 1 + (before[:, :, cols] & pos[:, None, cols]).sum(axis=2)
    valid_pos = pos[:, cols]
    n_pos = valid_pos.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid_pos, tp / rank, 0.0).sum(axis=1) / n_pos


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
