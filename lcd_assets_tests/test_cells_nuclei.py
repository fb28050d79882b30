"""Nuclei from the transport-of-intensity phase (lcd_core.cells.nuclei)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from lcd_core.cells.nuclei import detect_nuclei, tie_phase
from lcd_core.cells.train import _live_nuclei, render_annotated_fov


def _tie_stack(phase: np.ndarray, k: float = 0.5) -> np.ndarray:
    """A stack obeying the transport-of-intensity equation: ±∇²φ contrast below / above focus."""
    lap = ndi.laplace(phase)
    return np.stack([1 + k * lap, np.ones_like(phase), 1 - k * lap])


def test_tie_phase_recovers_a_phase_bump():
    yy, xx = np.mgrid[0:128, 0:128]
    phase = np.exp(-((yy - 50) ** 2 + (xx - 70) ** 2) / (2 * 8.0**2))
    rec = tie_phase(_tie_stack(phase))
    assert np.unravel_index(rec.argmax(), rec.shape) == (50, 70)
    assert np.corrcoef(rec.ravel(), phase.ravel())[0, 1] > 0.95


def test_tie_phase_sign_follows_the_plane_order():
    yy, xx = np.mgrid[0:64, 0:64]
    phase = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 50.0)
    flipped = tie_phase(_tie_stack(phase)[::-1])
    assert np.unravel_index(flipped.argmin(), flipped.shape) == (32, 32)


def test_tie_phase_rejects_a_stack_without_three_planes():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        tie_phase(np.zeros((2, 16, 16)))


def test_detect_nuclei_finds_the_rendered_nuclei():
    rng = np.random.default_rng(5)
    hits = trues = dets = 0
    for _ in range(4):
        image, pop = render_annotated_fov(rng)
        truth = pop.nuc[_live_nuclei(pop, image.shape[-1])][:, [2, 1]]  # (row, col)
        found = detect_nuclei(image)
        d = np.hypot(*(found[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
        hits += len(np.unique(d.argmin(axis=1)[d.min(axis=1) <= 8]))
        trues, dets = trues + len(truth), dets + len(found)
    assert hits / trues > 0.7 and hits / dets > 0.6, (hits, trues, dets)
