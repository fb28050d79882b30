"""Segment the cells of tiles and summarize them per tile: the single-cell-shape features.

For each tile: nuclei (:func:`~lcd_core.cells.nuclei.detect_nuclei`), a polygon per nucleus
(:class:`~lcd_core.cells.raynet.RayNet`), crops the network judges not centred on a live
nucleus dropped (probability < 0.5). Two nuclei are one cell (multinucleated cells, the
Aurora-kinase phenotype) when each centre lies inside the other's polygon and the two polygons
outline the same cell (intersection over union at least :data:`MIN_CELL_IOU`). Per-tile features,
CellProfiler's median-per-image idea with means and spreads of the cells:

* ``cs_nuclei``, ``cs_cells``: counts; ``cs_multinucleated``: fraction of cells with ≥ 2 nuclei;
* ``cs_log_area_mean`` / ``_sd``, ``cs_log_elongation_mean`` / ``_sd``: of the cells (a cell's
  value is the mean over its nuclei's polygons); ``cs_roundness_mean``: ``4πA / P²``;
  ``cs_round_fraction``: cells with a major / minor axis ratio below 1.1 (rounded, mitotic);
* ``cs_log_nucleus_area_mean``: of the nuclei's own polygons;
* ``cs_non_live_fraction``: phase peaks the network judged not a live cell's nucleus (dead cells,
  debris);
* ``cs_confluency``: fraction of the tile covered by the union of the polygons.

A tile without a live nucleus gets zeros (its counts say so; ``cs_non_live_fraction`` is 1 if it
had phase peaks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lcd_core.cells.nuclei import detect_nuclei
from lcd_core.cells.raynet import N_RAYS, THETA, RayNet, nucleus_crops, polygon_shape

__all__ = ["CELL_FEATURE_NAMES", "N_CELL_FEATURES", "SegmentedTile", "segment_tiles", "tile_cell_features",
           "tiles_cell_features"]

CELL_FEATURE_NAMES: tuple[str, ...] = (
    "cs_nuclei", "cs_cells", "cs_multinucleated", "cs_log_area_mean", "cs_log_area_sd",
    "cs_log_elongation_mean", "cs_log_elongation_sd", "cs_roundness_mean", "cs_round_fraction",
    "cs_log_nucleus_area_mean", "cs_non_live_fraction", "cs_confluency",
)
N_CELL_FEATURES = len(CELL_FEATURE_NAMES)
MIN_LIVE_PROB = 0.5
#: Polygons of two nuclei of one cell both outline that cell; a neighbour's polygon that only
#: reaches past a centre overlaps less. Demo screen, 20 h tiles, nucleus pairs inside each other's
#: polygons (matched to the generator's cells): IoU median 0.80 for one cell (10 % under 0.66),
#: 0.35 for two cells; at 0.5, 819 of 831 same-cell pairs join and 49 of 357 two-cell pairs.
MIN_CELL_IOU = 0.5
ROUND_LOG_ELONGATION = float(np.log(1.1))


@dataclass(frozen=True)
class SegmentedTile:
    """The live nuclei of one tile: ``centres`` (n, 2) row/col, cell polygon ``rays`` (n, N_RAYS)
    px, ``prob`` (n,) live-nucleus probability, ``shape`` (n, 3) of the cell polygon from
    :func:`polygon_shape`, ``cell`` (n,) cell index within the tile (nuclei of one multinucleated
    cell share it), the nucleus polygons' ``nucleus_rays`` and ``nucleus_shape``, and
    ``detected``: the phase peaks before the live filter."""

    centres: np.ndarray
    rays: np.ndarray
    prob: np.ndarray
    shape: np.ndarray
    cell: np.ndarray
    nucleus_rays: np.ndarray
    nucleus_shape: np.ndarray
    detected: int


def _inside(centres: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """``m[i, j]``: centre j lies inside the polygon of nucleus i (ray length interpolated)."""
    dy = centres[None, :, 0] - centres[:, None, 0]
    dx = centres[None, :, 1] - centres[:, None, 1]
    rho = np.hypot(dx, dy)
    pos = (np.arctan2(dy, dx) % (2 * np.pi)) / (2 * np.pi / N_RAYS)
    k0 = np.floor(pos).astype(int) % N_RAYS
    f = pos - np.floor(pos)
    rows = np.arange(len(centres))[:, None]
    r = (1 - f) * rays[rows, k0] + f * rays[rows, (k0 + 1) % N_RAYS]
    return rho < r


def _vertices(centre: np.ndarray, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the vertices of the polygon of ``rays`` around ``centre`` (row, col)."""
    return centre[0] + rays * np.sin(THETA), centre[1] + rays * np.cos(THETA)


def _polygon_iou(centre_a: np.ndarray, rays_a: np.ndarray, centre_b: np.ndarray, rays_b: np.ndarray) -> float:
    """Intersection over union of two star-convex polygons, rasterized at 1 px."""
    from skimage.draw import polygon

    (ya, xa), (yb, xb) = _vertices(centre_a, rays_a), _vertices(centre_b, rays_b)
    ys, xs = np.concatenate([ya, yb]), np.concatenate([xa, xb])
    top, left = np.floor(ys.min()), np.floor(xs.min())
    shape = (int(np.ceil(ys.max()) - top) + 1, int(np.ceil(xs.max()) - left) + 1)
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    a[polygon(ya - top, xa - left, shape)] = True
    b[polygon(yb - top, xb - left, shape)] = True
    return float((a & b).sum() / max((a | b).sum(), 1))


def _group(centres: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Cell index of each nucleus: connected components of the same-cell pairs (module docstring)."""
    if len(centres) == 0:
        return np.zeros(0, int)
    m = _inside(centres, rays)
    i, j = np.nonzero(np.triu(m & m.T, 1))
    iou = np.array([_polygon_iou(centres[a], rays[a], centres[b], rays[b]) for a, b in zip(i, j)])
    i, j = i[iou >= MIN_CELL_IOU], j[iou >= MIN_CELL_IOU]
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(centres),) * 2)
    return connected_components(graph, directed=False)[1]


@torch.no_grad()
def segment_tiles(net: RayNet, tiles: np.ndarray) -> list[SegmentedTile]:
    """Nuclei and cell polygons of each preprocessed ``(B, 3, H, W)`` tile (one CNN batch for all)."""
    tiles = np.asarray(tiles, dtype=np.float32)
    centres = [detect_nuclei(t) for t in tiles]
    crops = [nucleus_crops(t, c) for t, c in zip(tiles, centres)]
    n = sum(len(c) for c in centres)
    rays_all, nuc_all, prob_all = np.zeros((0, N_RAYS)), np.zeros((0, N_RAYS)), np.zeros(0)
    if n:
        log_cell, log_nucleus, logit = net.eval()(torch.from_numpy(np.concatenate(crops)))
        rays_all, nuc_all = np.exp(log_cell.double().numpy()), np.exp(log_nucleus.double().numpy())
        prob_all = torch.sigmoid(logit).double().numpy()
    out, start = [], 0
    for c in centres:
        stop = start + len(c)
        rays, nuc, prob = rays_all[start:stop], nuc_all[start:stop], prob_all[start:stop]
        keep = prob >= MIN_LIVE_PROB
        kept = c[keep].astype(np.float64)
        out.append(SegmentedTile(kept, rays[keep], prob[keep], polygon_shape(rays[keep]), _group(kept, rays[keep]),
                                 nuc[keep], polygon_shape(nuc[keep]), len(c)))
        start = stop
    return out


def _confluency(seg: SegmentedTile, shape: tuple[int, int]) -> float:
    from skimage.draw import polygon

    mask = np.zeros(shape, bool)
    for centre, rays in zip(seg.centres, seg.rays):
        mask[polygon(*_vertices(centre, rays), shape)] = True
    return float(mask.mean())


def tile_cell_features(seg: SegmentedTile, shape: tuple[int, int]) -> np.ndarray:
    """The :data:`CELL_FEATURE_NAMES` of one segmented tile of ``shape`` (H, W)."""
    n = len(seg.centres)
    if n == 0:
        out = np.zeros(N_CELL_FEATURES, np.float32)
        out[CELL_FEATURE_NAMES.index("cs_non_live_fraction")] = 1.0 if seg.detected else 0.0
        return out
    cells = np.unique(seg.cell)
    per_cell = np.array([seg.shape[seg.cell == c].mean(axis=0) for c in cells])
    size = np.array([(seg.cell == c).sum() for c in cells])
    def sd(v: np.ndarray) -> float:
        return float(v.std()) if len(v) > 1 else 0.0

    return np.array([n, len(cells), float((size > 1).mean()), per_cell[:, 0].mean(), sd(per_cell[:, 0]),
                     per_cell[:, 1].mean(), sd(per_cell[:, 1]), per_cell[:, 2].mean(),
                     float((per_cell[:, 1] < ROUND_LOG_ELONGATION).mean()), seg.nucleus_shape[:, 0].mean(),
                     1.0 - n / max(seg.detected, 1), _confluency(seg, shape)], dtype=np.float32)


def tiles_cell_features(net: RayNet, batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, list[SegmentedTile]]]:
    """For each ``(B, 3, H, W)`` batch: its ``(B, N_CELL_FEATURES)`` features and segmentations."""
    for batch in batches:
        segs = segment_tiles(net, batch)
        shape = tuple(np.asarray(batch).shape[-2:])
        yield np.stack([tile_cell_features(s, shape) for s in segs]) if segs else np.zeros((0, N_CELL_FEATURES),
                                                                                        np.float32), segs
