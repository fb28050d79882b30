"""The 2-D map of trajectories (lcd_core.trajectories.projection): DMSO at the origin, paths apart."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_assets_tests.test_trajectories_conditions import directions, features, planted_screen
from lcd_core.trajectories.conditions import split_conditions
from lcd_core.trajectories.projection import centred_centroids, centroid_map, fit_map


@pytest.fixture(scope="module")
def planted():
    conds = split_conditions(planted_screen(), features())
    coords, tmap = centroid_map(conds, features())
    return conds, coords, tmap


def _at(coords: pl.DataFrame, compound: str, dose: str, tp: str) -> np.ndarray:
    row = coords.filter((pl.col("compound") == compound) & (pl.col("dose") == dose) & (pl.col("timepoint") == tp))
    return row.select("pc1", "pc2").to_numpy()[0]


def test_dmso_sits_at_the_origin(planted):
    conds, _, tmap = planted
    for cond in conds:
        centred = cond.dmso - cond.dmso_mean
        np.testing.assert_allclose(tmap.project(centred).mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(tmap.project(np.zeros(16)), [[0.0, 0.0]])
    # single DMSO wells scatter around it, well inside the planted shifts (1.5 MAD units)
    wells = tmap.project(conds[0].dmso - conds[0].dmso_mean)
    assert np.median(np.hypot(*wells.T)) < 0.5


def test_planted_directions_are_apart(planted):
    _, coords, _ = planted
    early, late = _at(coords, "EARLY", "10uM", "20h"), _at(coords, "LATE", "10uM", "20h")
    assert np.linalg.norm(early) > 1.0 and np.linalg.norm(late) > 1.0
    cos = early @ late / (np.linalg.norm(early) * np.linalg.norm(late))
    assert abs(cos) < 0.3  # planted orthogonal, seen near-orthogonal
    # before their onsets / after the washout they are back near DMSO
    for c, tp in [("LATE", "04h"), ("TRANSIENT", "20h"), ("INERT", "12h")]:
        assert np.linalg.norm(_at(coords, c, "10uM", tp)) < 0.4
    # the path of LATE runs along its own direction: same side at 12h and 20h
    assert _at(coords, "LATE", "10uM", "12h") @ late > 0.8 * late @ late


def test_map_keeps_its_axes_and_places_new_points(planted):
    conds, coords, tmap = planted
    C = tmap.components
    np.testing.assert_allclose(C @ C.T, np.eye(2), atol=1e-12)
    assert tmap.explained[0] >= tmap.explained[1] > 0 and tmap.explained.sum() <= 1
    # the first two axes lie in the span of the two most visited planted directions
    U = directions(16)[:2]
    np.testing.assert_allclose(np.linalg.norm(C @ U.T, axis=1), 1.0, atol=0.05)
    keys, shifts = centred_centroids(conds)
    assert keys.rows() == coords.select("compound", "dose", "timepoint").rows()
    np.testing.assert_allclose(tmap.project(shifts), coords.select("pc1", "pc2").to_numpy())
    # coordinates are in MAD units: at most the plain centroid distance
    plain = np.linalg.norm(shifts, axis=1) / 4.0
    assert np.all(np.hypot(coords["pc1"], coords["pc2"]).to_numpy() <= plain + 1e-12)
    with pytest.raises(ValueError, match="15 features, the map 16"):
        tmap.project(np.zeros((2, 15)))


def test_fit_is_about_the_origin_and_signs_are_fixed():
    u = np.array([0.0, 0.6, -0.8])
    shifts = np.outer([1.0, 2.0, 3.0], u)  # all along u, their mean (2u) away from the origin
    m = fit_map(shifts, ["a", "b", "c"])
    np.testing.assert_allclose(m.components[0], -u)  # largest loading positive
    np.testing.assert_allclose(m.components[1], 0.0)  # one direction only
    np.testing.assert_allclose(m.explained, [1.0, 0.0])
    # a centred PCA would send the origin to -mean; this map keeps it at 0
    np.testing.assert_allclose(m.project(np.zeros(3)), [[0.0, 0.0]])
    np.testing.assert_allclose(m.project(shifts)[:, 0], -np.array([1.0, 2.0, 3.0]) / np.sqrt(3))
    np.testing.assert_allclose(fit_map(-shifts, ["a", "b", "c"]).components, m.components)
    assert fit_map(np.zeros((0, 3)), ["a", "b", "c"]).explained.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="do not match 2 features"):
        fit_map(shifts, ["a", "b"])
