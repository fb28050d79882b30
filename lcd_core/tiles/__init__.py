"""Preprocessing and tiling (SPEC 4.1): binning, normalisation, the tile grid, QC, previews; per-partition tiling."""
