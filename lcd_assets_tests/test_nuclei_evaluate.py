"""Scoring nucleus label images (lcd_core.nuclei.evaluate)."""

from __future__ import annotations

import numpy as np
import pytest

from lcd_core.nuclei.evaluate import block_counts, count_r, score_masks


def _disks(centres, r, shape=(64, 64)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for k, (x, y) in enumerate(centres, 1):
        lab[(xx - x) ** 2 + (yy - y) ** 2 <= r * r] = k
    return lab


def test_perfect_match_and_relabelling():
    t = _disks([(10, 10), (40, 40), (10, 50)], 5)
    p = np.where(t > 0, 10 - t, 0)  # other ids
    s = score_masks(t, p)
    assert (s.n_true, s.n_pred) == (3, 3)
    assert s.median_iou == pytest.approx(1.0) and s.recall() == 1.0 and s.precision() == 1.0


def test_partial_and_missing():
    t = _disks([(10, 10), (40, 40)], 6)
    p = _disks([(12, 10), (10, 55), (55, 10)], 6)
    s = score_masks(t, p)
    assert s.ious[1] == 0.0 and 0.3 < s.ious[0] < 0.9
    assert s.recall(0.5) == pytest.approx(0.5 if s.ious[0] >= 0.5 else 0.0)
    assert s.precision() <= 1 / 3 + 1e-9


def test_empty_and_shape_mismatch():
    s = score_masks(np.zeros((8, 8), int), np.zeros((8, 8), int))
    assert np.isnan(s.median_iou) and np.isnan(s.precision())
    with pytest.raises(ValueError, match="shape"):
        score_masks(np.zeros((8, 8), int), np.zeros((8, 9), int))


def test_block_counts_and_count_r():
    c = np.array([[1, 1], [300, 10], [300, 300], [511, 511], [600, 5]])
    counts = block_counts(c, (512, 512), 256)
    assert counts.tolist() == [[1, 1], [0, 2]]
    assert count_r([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert np.isnan(count_r([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        count_r([1, 2, 3], [1, 2])
