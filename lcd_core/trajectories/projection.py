"""A 2-D map of the trajectories: principal axes of the DMSO-centred condition centroids.

Each compound × dose × timepoint centroid minus the DMSO centroid of its dose × timepoint is a
shift away from DMSO; DMSO itself is the origin at every condition. The map's two axes are the
top principal axes of these shifts *about the origin* (an SVD of the shift matrix without
re-centring): an ordinary PCA (e.g. ``sklearn.decomposition.PCA``) would centre on the mean of the
compounds and move DMSO off the origin, so a path would no longer start from it. ``explained``
is each axis's share of the shifts' total sum of squares (their squared distances from DMSO).

Coordinates are in MAD units like the distance (divided by √p), so ``hypot(pc1, pc2)`` is at
most the plain centroid distance ``‖shift‖ / √p``. :meth:`TrajectoryMap.project` places any
DMSO-centred profile (a well, a new compound's centroid) on the same map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from lcd_core.trajectories.conditions import Condition

__all__ = ["TrajectoryMap", "centred_centroids", "fit_map", "centroid_map"]


@dataclass(frozen=True)
class TrajectoryMap:
    """The fitted map: ``components`` ``(2, p)`` (orthonormal rows, or zero where the shifts
    span fewer than 2 directions), ``explained`` ``(2,)``, the ``features`` in column order."""

    components: np.ndarray
    explained: np.ndarray
    features: tuple[str, ...]

    def project(self, centred: np.ndarray) -> np.ndarray:
        """``(n, 2)`` map coordinates of DMSO-centred profiles ``(n, p)`` (or one ``(p,)``).

        Raises
        ------
        ValueError
            When the profiles do not have the map's number of features.
        """
        X = np.atleast_2d(np.asarray(centred, dtype=np.float64))
        if X.shape[1] != len(self.features):
            raise ValueError(f"profiles have {X.shape[1]} features, the map {len(self.features)}")
        return X @ self.components.T / np.sqrt(len(self.features))


def centred_centroids(conditions: Sequence[Condition]) -> tuple[pl.DataFrame, np.ndarray]:
    """Keys (compound, dose, timepoint) and the ``(n, p)`` DMSO-centred centroids, in order."""
    keys, rows = [], []
    for cond in conditions:
        origin = cond.dmso_mean
        for name, wells in cond.compounds.items():
            keys.append((name, cond.dose, cond.timepoint))
            rows.append(wells.mean(axis=0) - origin)
    schema = {"compound": pl.String, "dose": pl.String, "timepoint": pl.String}
    p = conditions[0].dmso.shape[1] if conditions else 0
    return (pl.DataFrame(keys, schema=schema, orient="row"),
            np.array(rows) if rows else np.zeros((0, p)))


def fit_map(shifts: np.ndarray, features: Sequence[str]) -> TrajectoryMap:
    """The two principal axes of ``shifts`` ``(n, p)`` about the origin (see the module doc).

    Signs are fixed (each axis's largest loading positive) so a refit gives the same map.
    """
    M = np.asarray(shifts, dtype=np.float64)
    if M.ndim != 2 or M.shape[1] != len(features):
        raise ValueError(f"shifts of shape {M.shape} do not match {len(features)} features")
    comps, explained = np.zeros((2, M.shape[1])), np.zeros(2)
    if M.size:
        _, s, vt = np.linalg.svd(M, full_matrices=False)
        k = min(2, int((s > s[0] * 1e-12).sum()) if s[0] > 0 else 0)
        signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
        comps[:k] = vt[:k] * signs[:, None]
        explained[:k] = s[:k] ** 2 / (s ** 2).sum()
    return TrajectoryMap(comps, explained, tuple(features))


def centroid_map(conditions: Sequence[Condition],
                 features: Sequence[str]) -> tuple[pl.DataFrame, TrajectoryMap]:
    """Per compound × dose × timepoint its map coordinates (compound, dose, timepoint, pc1, pc2)
    and the fitted :class:`TrajectoryMap`."""
    keys, shifts = centred_centroids(conditions)
    tmap = fit_map(shifts, features)
    xy = tmap.project(shifts) if len(shifts) else np.zeros((0, 2))
    return keys.with_columns(pl.Series("pc1", xy[:, 0], pl.Float64),
                             pl.Series("pc2", xy[:, 1], pl.Float64)), tmap
