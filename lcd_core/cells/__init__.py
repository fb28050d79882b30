"""Single-cell segmentation of brightfield z-stacks (the cell part of SPEC §4.7 and §4.9's outputs).

Three steps, each in its own module:

* :mod:`~lcd_core.cells.nuclei`: a phase image by the transport-of-intensity equation from the
  planes below and above focus, and nuclei as its peaks (classical, no training);
* :mod:`~lcd_core.cells.raynet`: the cell around each nucleus as a star-convex polygon, its
  32 ray lengths regressed by a small CNN from a nucleus-centred crop (StarDist's shape
  representation, Schmidt et al. 2018), with the polygon geometry (area, elongation, roundness);
* :mod:`~lcd_core.cells.train`: the annotation set (FOVs rendered by the synthetic generator
  with morphologies drawn from broad ranges, independent of any MoA program, with their cell
  ellipses as labels), the training loop and its validation against those labels;
* :mod:`~lcd_core.cells.features`: per-tile summaries of the segmented cells, the
  single-cell-shape features of the handcrafted baseline.
"""

from lcd_core.cells.features import CELL_FEATURE_NAMES, N_CELL_FEATURES, segment_tiles, tile_cell_features
from lcd_core.cells.nuclei import detect_nuclei, tie_phase
from lcd_core.cells.raynet import N_RAYS, RayNet, load_raynet, nucleus_crops, polygon_shape, save_raynet

__all__ = [
    "CELL_FEATURE_NAMES",
    "N_CELL_FEATURES",
    "N_RAYS",
    "RayNet",
    "detect_nuclei",
    "load_raynet",
    "nucleus_crops",
    "polygon_shape",
    "save_raynet",
    "segment_tiles",
    "tie_phase",
    "tile_cell_features",
]
