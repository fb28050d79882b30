"""Per-tile cell features from the segmented nuclei (lcd_core.cells.features)."""

from __future__ import annotations

import numpy as np
import pytest

from lcd_core.cells import CELL_FEATURE_NAMES, load_raynet
from lcd_core.cells.features import (
    SegmentedTile,
    _group,
    _polygon_iou,
    segment_tiles,
    tile_cell_features,
    tiles_cell_features,
)
from lcd_core.cells.raynet import N_RAYS, polygon_shape
from lcd_core.cells.train import rays_to_ellipse, render_annotated_fov


def _tile(centres, radii, detected=None) -> SegmentedTile:
    """Circular cells of ``radii`` with circular nuclei of a third of the radius."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    rays = np.repeat(np.asarray(radii, dtype=np.float64)[:, None], N_RAYS, axis=1)
    return SegmentedTile(centres, rays, np.ones(len(centres)), polygon_shape(rays), _group(centres, rays),
                         rays / 3, polygon_shape(rays / 3), len(centres) if detected is None else detected)


def test_nuclei_inside_each_others_polygons_are_one_cell():
    assert _group(np.array([[50.0, 50.0], [50.0, 60.0], [150.0, 150.0]]),
                  np.full((3, N_RAYS), 20.0)).tolist() == [0, 0, 1]
    # one-sided containment (a big polygon around a small one) is not one cell
    assert len(set(_group(np.array([[50.0, 50.0], [50.0, 75.0]]),
                          np.array([[30.0] * N_RAYS, [5.0] * N_RAYS])).tolist())) == 2


def test_neighbours_reaching_past_each_others_centres_are_two_cells():
    # two round cells 30 px apart, each polygon with a narrow spur past the other's centre: each
    # centre lies inside the other's polygon, but the polygons outline different cells
    a, b = np.full(N_RAYS, 12.0), np.full(N_RAYS, 12.0)
    a[0], b[N_RAYS // 2] = 35.0, 35.0  # ray 0 points along +x (column), where b lies
    centres = np.array([[100.0, 100.0], [100.0, 130.0]])
    assert _polygon_iou(centres[0], a, centres[1], b) < 0.2
    assert len(set(_group(centres, np.stack([a, b])).tolist())) == 2
    # the same two nuclei in one long cell (an ellipse 45 × 15 px around both): one cell
    one = np.ones(2)
    rays = rays_to_ellipse(centres[:, ::-1], 115 * one, 100 * one, 45 * one, 15 * one, 0 * one)
    assert _polygon_iou(centres[0], rays[0], centres[1], rays[1]) > 0.9
    assert len(set(_group(centres, rays).tolist())) == 1


def test_polygon_iou_of_circles():
    r = np.full(N_RAYS, 20.0)
    c = np.array([50.0, 50.0])
    assert _polygon_iou(c, r, c, r) == pytest.approx(1.0)
    assert _polygon_iou(c, r, c + [100.0, 0.0], r) == 0.0
    overlap = 2 * 20**2 * np.arccos(10 / 40) - 5 * np.sqrt(4 * 20**2 - 10**2)
    assert _polygon_iou(c, r, c + [0.0, 10.0], r) == pytest.approx(overlap / (2 * np.pi * 20**2 - overlap), rel=0.05)


def test_tile_cell_features_hand_values():
    seg = _tile([[50, 50], [50, 60], [150, 150]], [20, 20, 10], detected=4)
    f = dict(zip(CELL_FEATURE_NAMES, tile_cell_features(seg, (224, 224))))
    assert f["cs_nuclei"] == 3 and f["cs_cells"] == 2 and f["cs_multinucleated"] == 0.5
    assert f["cs_non_live_fraction"] == pytest.approx(0.25) and f["cs_round_fraction"] == 1.0
    nuclei = polygon_shape(np.array([[20 / 3] * N_RAYS, [20 / 3] * N_RAYS, [10 / 3] * N_RAYS]))[:, 0]
    assert f["cs_log_nucleus_area_mean"] == pytest.approx(nuclei.mean(), rel=1e-5)
    areas = polygon_shape(np.array([[20.0] * N_RAYS, [10.0] * N_RAYS]))[:, 0]
    assert f["cs_log_area_mean"] == pytest.approx(areas.mean(), rel=1e-5)
    assert f["cs_log_elongation_mean"] == pytest.approx(0.0, abs=1e-6)
    assert f["cs_roundness_mean"] == pytest.approx(1.0, abs=0.01)
    union = np.pi * 20**2 * 2 - 2 * (20**2 * np.arccos(5 / 20) - 5 * np.sqrt(20**2 - 5**2)) + np.pi * 10**2
    assert f["cs_confluency"] == pytest.approx(union / 224**2, rel=0.05)


def test_an_empty_tile_has_zero_features():
    assert tile_cell_features(_tile(np.zeros((0, 2)), np.zeros(0)), (224, 224)).tolist() == [0.0] * len(
        CELL_FEATURE_NAMES)
    only_dead = dict(zip(CELL_FEATURE_NAMES, tile_cell_features(_tile(np.zeros((0, 2)), np.zeros(0), detected=2),
                                                                (224, 224))))
    assert only_dead["cs_non_live_fraction"] == 1.0 and only_dead["cs_nuclei"] == 0


def test_segment_tiles_with_the_trained_network(segmentation_dir):
    net, _ = load_raynet(segmentation_dir)
    rng = np.random.default_rng(11)
    tiles = np.stack([render_annotated_fov(rng)[0] for _ in range(3)])
    segs = segment_tiles(net, tiles)
    assert len(segs) == 3
    for s in segs:
        assert s.rays.shape == (len(s.centres), N_RAYS) and (s.rays > 0).all() and (s.prob >= 0.5).all()
        assert np.isfinite(s.shape).all() and len(s.cell) == len(s.centres) and s.detected >= len(s.centres)
        assert s.nucleus_rays.shape == s.rays.shape
    (feats, again), = list(tiles_cell_features(net, [tiles]))
    assert feats.shape == (3, len(CELL_FEATURE_NAMES)) and np.isfinite(feats).all()
    assert [len(s.centres) for s in again] == [len(s.centres) for s in segs]
