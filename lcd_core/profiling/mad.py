"""Robust per-measurement scaling against DMSO, and sphering (array level, SPEC §4.4).

:func:`mad_robustize` is the ``"mad"`` step of :func:`lcd_core.profiling.normalize.normalize`
(with its zero-MAD floor and the dropping of features constant over every control row);
:func:`spherize` is the sphering of ``"mad_spherize"``. The policy is the module doc of
:mod:`lcd_core.profiling.normalize`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAD_SCALE", "mad_robustize", "spherize"]

MAD_SCALE = 1.4826


def _mad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    med = np.median(x, axis=0)
    return med, np.median(np.abs(x - med), axis=0)


def _pooled_scale(Xc: np.ndarray) -> np.ndarray:
    """Scale of each feature over every control row: 1.4826·MAD, or the SD where the MAD is 0."""
    _, pmad = _mad(Xc)
    pooled = MAD_SCALE * pmad
    zero = pooled == 0
    if zero.any():
        pooled[zero] = Xc[:, zero].std(axis=0)
    return pooled


def mad_robustize(
    X: np.ndarray,
    groups: np.ndarray,
    is_control: np.ndarray,
    *,
    mad_floor: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group robust z-score against the group's control rows (array level).

    Parameters
    ----------
    X
        (n, d) features.
    groups
        (n,) integer group id (e.g. plate × timepoint).
    is_control
        (n,) bool, control (DMSO) rows.
    mad_floor
        Floor of each group's scale as a fraction of the pooled control scale (see
        :mod:`lcd_core.profiling.normalize`).

    Returns
    -------
    Z, keep_features, n_floored
        ``Z`` (n, d_kept) float64; ``keep_features`` (d,) bool; ``n_floored`` (n_groups,) features
        floored per group.
    """
    X = np.asarray(X, dtype=np.float64)
    ctrl = np.asarray(is_control, bool)
    if not ctrl.any():
        raise ValueError("no control rows: MAD normalization needs DMSO (negative_control) rows")
    pooled = _pooled_scale(X[ctrl])
    keep = pooled > 0
    X = X[:, keep]
    floor = mad_floor * pooled[keep]
    ng = int(groups.max()) + 1 if groups.size else 0
    Z = np.empty_like(X)
    n_floored = np.zeros(ng, np.int64)
    for g in range(ng):
        rows = groups == g
        med, mad = _mad(X[rows & ctrl])
        scale = MAD_SCALE * mad
        low = scale < floor
        n_floored[g] = int(low.sum())
        Z[rows] = (X[rows] - med) / np.where(low, floor, scale)
    return Z, keep, n_floored


def spherize(X: np.ndarray, is_control: np.ndarray, *, epsilon: float = 1e-6) -> np.ndarray:
    """ZCA-cor sphering of ``X`` fitted on its control rows (pycytominer's ``Spherize``).

    Parameters
    ----------
    X
        (n, d) features (e.g. MAD-robustized).
    is_control
        (n,) bool, the rows the transform is fitted on (DMSO).
    epsilon
        Added to the singular values (pycytominer's default 1e-6).

    Returns
    -------
    numpy.ndarray
        (n, d) float64: the control rows have identity correlation afterwards.
    """
    import pandas as pd
    from pycytominer.operations.transform import Spherize

    ctrl = np.asarray(is_control, dtype=bool)
    if ctrl.sum() < 3:
        raise ValueError(f"sphering needs ≥ 3 control rows, got {int(ctrl.sum())}")
    spherer = Spherize(epsilon=epsilon, method="ZCA-cor", return_numpy=True)
    spherer.fit(pd.DataFrame(X[ctrl]))
    return np.asarray(spherer.transform(pd.DataFrame(X)), dtype=np.float64)
