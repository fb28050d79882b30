"""Scoring a nucleus label image against reference masks: object matching by IoU, the median IoU
of the reference nuclei, and count correlation over fields or blocks of a field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix

__all__ = ["MaskScore", "block_counts", "count_r", "score_masks"]


@dataclass(frozen=True)
class MaskScore:
    """How a predicted label image matches the reference.

    Attributes
    ----------
    n_true, n_pred
        Objects in the reference and in the prediction.
    ious
        ``(n_true,)`` IoU of each reference nucleus with its matched prediction (0 if unmatched);
        matching is one-to-one, maximising the summed IoU (Hungarian).
    """

    n_true: int
    n_pred: int
    ious: np.ndarray

    @property
    def median_iou(self) -> float:
        """Median over the reference nuclei (unmatched count as 0), NaN without any."""
        return float(np.median(self.ious)) if self.ious.size else float("nan")

    def recall(self, at: float = 0.5) -> float:
        """Fraction of reference nuclei matched at IoU ≥ ``at``."""
        return float((self.ious >= at).mean()) if self.ious.size else float("nan")

    def precision(self, at: float = 0.5) -> float:
        """Fraction of predicted nuclei matched at IoU ≥ ``at``."""
        return float((self.ious >= at).sum() / self.n_pred) if self.n_pred else float("nan")


def _overlaps(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``(n_true + 1, n_pred + 1)`` pixel counts of each pair of labels (row / column 0: background)."""
    t, p = true.ravel().astype(np.int64), pred.ravel().astype(np.int64)
    shape = (int(t.max(initial=0)) + 1, int(p.max(initial=0)) + 1)
    return coo_matrix((np.ones_like(t), (t, p)), shape=shape).toarray()


def score_masks(true: np.ndarray, pred: np.ndarray) -> MaskScore:
    """Match predicted to reference nuclei one-to-one by IoU.

    Parameters
    ----------
    true, pred
        Label images of one shape, 0 background; ids need not be consecutive.
    """
    if true.shape != pred.shape:
        raise ValueError(f"reference {true.shape} and prediction {pred.shape} differ in shape")
    inter = _overlaps(true, pred)
    t_ids = np.flatnonzero(inter[1:].sum(1)) + 1
    p_ids = np.flatnonzero(inter[:, 1:].sum(0)) + 1
    inter = inter[np.ix_(t_ids, p_ids)].astype(np.float64)
    area_t = np.bincount(true.ravel().astype(np.int64))[t_ids]
    area_p = np.bincount(pred.ravel().astype(np.int64))[p_ids]
    iou = inter / (area_t[:, None] + area_p[None, :] - inter) if inter.size else inter
    ious = np.zeros(t_ids.size)
    if inter.size:
        rows, cols = linear_sum_assignment(-iou)
        ious[rows] = iou[rows, cols]
    return MaskScore(int(t_ids.size), int(p_ids.size), ious)


def block_counts(centres: np.ndarray, shape: tuple[int, int], block: int) -> np.ndarray:
    """Objects per ``block × block`` pixel block, by the block holding each centre.

    Parameters
    ----------
    centres
        ``(n, 2)`` centres, ``x`` = column, ``y`` = row (as :class:`~lcd_core.nuclei.objects.Nuclei`).
    shape
        ``(H, W)`` of the image; partial blocks at the right and bottom edges are dropped.
    block
        Block side in pixels.

    Returns
    -------
    np.ndarray
        ``(H // block, W // block)`` counts.
    """
    nb_y, nb_x = shape[0] // block, shape[1] // block
    counts = np.zeros((nb_y, nb_x), np.int64)
    if len(centres):
        bx = (np.asarray(centres)[:, 0] // block).astype(int)
        by = (np.asarray(centres)[:, 1] // block).astype(int)
        inside = (bx < nb_x) & (by < nb_y) & (bx >= 0) & (by >= 0)
        np.add.at(counts, (by[inside], bx[inside]), 1)
    return counts


def count_r(true_counts, pred_counts) -> float:
    """Pearson r of two count vectors (NaN if either is constant or they hold < 3 values)."""
    t, p = np.asarray(true_counts, float).ravel(), np.asarray(pred_counts, float).ravel()
    if t.size != p.size:
        raise ValueError(f"{t.size} reference counts against {p.size} predicted")
    if t.size < 3 or t.std() == 0 or p.std() == 0:
        return float("nan")
    return float(np.corrcoef(t, p)[0, 1])
