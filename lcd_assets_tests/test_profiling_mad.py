"""MAD robustization and sphering on arrays (lcd_core.profiling.mad): floor, dropped features."""

from __future__ import annotations

import numpy as np
import pytest

from lcd_core.profiling.mad import MAD_SCALE, mad_robustize, spherize


def test_mad_robustize_per_group_against_its_controls():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) * [1.0, 2.0, 3.0]
    groups = np.repeat([0, 1], 20)
    X[groups == 1] += 10.0
    ctrl = np.tile(np.arange(20) < 12, 2)
    Z, keep, n_floored = mad_robustize(X, groups, ctrl)
    assert keep.all() and (n_floored == 0).all()
    for g in (0, 1):
        c = X[(groups == g) & ctrl]
        med = np.median(c, axis=0)
        mad = np.median(np.abs(c - med), axis=0)
        np.testing.assert_allclose(Z[groups == g], (X[groups == g] - med) / (MAD_SCALE * mad))


def test_zero_mad_floored_and_constant_feature_dropped():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3))
    groups = np.repeat([0, 1, 2], 10)
    ctrl = np.tile(np.arange(10) < 6, 3)
    X[ctrl, 2] = 4.0  # constant over every control row → dropped
    X[(groups == 1) & ctrl, 0] = 0.5  # zero MAD in group 1 only → floored
    Z, keep, n_floored = mad_robustize(X, groups, ctrl, mad_floor=0.1)
    assert keep.tolist() == [True, True, False] and Z.shape == (30, 2)
    assert n_floored.tolist() == [0, 1, 0]
    assert np.isfinite(Z).all()
    with pytest.raises(ValueError, match="no control rows"):
        mad_robustize(X, groups, np.zeros(30, bool))


def test_spherize_whitens_the_controls():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 4)) @ np.array([[1, 0.9, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0],
                                              [0, 0, 0, 1.0]])
    ctrl = np.arange(200) < 150
    S = spherize(X, ctrl)
    np.testing.assert_allclose(np.corrcoef(S[ctrl], rowvar=False), np.eye(4), atol=1e-6)
    with pytest.raises(ValueError, match="≥ 3 control rows"):
        spherize(X, np.arange(200) < 2)
