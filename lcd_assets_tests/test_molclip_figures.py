"""lcd_core.molclip.figures: PNG figures of the joint space, retrieval and losses."""

from __future__ import annotations

import numpy as np
import pytest

from lcd_core.molclip.figures import joint_space_figure, loss_curves, pca_2d, retrieval_curves

PNG = b"\x89PNG\r\n\x1a\n"


def test_pca_2d_keeps_the_dominant_axis():
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(0, 10, 200), rng.normal(0, 1, 200), rng.normal(0, 0.1, 200)]
    xy = pca_2d(x)
    assert xy.shape == (200, 2)
    assert abs(np.corrcoef(xy[:, 0], x[:, 0])[0, 1]) > 0.99


def test_joint_space_figure_is_a_png():
    rng = np.random.default_rng(1)
    png = joint_space_figure(rng.normal(size=(30, 8)), ["A", "B", None] * 10, rng.normal(size=(4, 8)),
                             ["A", "B", "A", ""], ["m1", "m2", "m3", "m4"])
    assert png.startswith(PNG)
    with pytest.raises(ValueError, match="length"):
        joint_space_figure(np.zeros((3, 2)), ["A"], np.zeros((1, 2)), ["A"])


def test_retrieval_and_loss_curves_are_pngs():
    assert retrieval_curves({"with": [1, 3, 7], "without": [2, 9, 12]}, n_molecules=12).startswith(PNG)
    history = [{"epoch": e, "metric": 2.0 / e, "clip": 1.0 / e, "total": 3.0 / e, "logit_scale": 14.0 + e}
               for e in (1, 2, 3)]
    assert loss_curves(history).startswith(PNG)
    assert loss_curves([{**h, "clip": None} for h in history]).startswith(PNG)
    with pytest.raises(ValueError):
        loss_curves([])
