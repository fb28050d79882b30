"""Cut one preprocessed FOV into a centred grid of QC'd 224 × 224 tiles.

Preprocessing (binning, background, flat-field, normalisation) is
:mod:`lcd_core.tiles.preprocess`; the QC rules are :mod:`lcd_core.tiles.qc`; PNG previews for the
UI are :mod:`lcd_core.tiles.preview`.

Tiles: a centred, non-overlapping grid of as many whole ``tile_size`` tiles as fit
(:func:`tile_grid`); the planes are the tile's channels (plane order = ``PlaneID`` order). A
1-plane stack (e.g. the real Harmony-5 fixture, one brightfield plane) is replicated to 3 identical
channels; 2 or more than 3 planes raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lcd_core.tiles.preprocess import TileConfig, _prepare, _Prepared
from lcd_core.tiles.qc import _corr, _decide, _focus_band, _qc_maps

__all__ = ["tile_grid", "tile_fov"]


def tile_grid(height: int, width: int, tile_size: int) -> list[tuple[int, int]]:
    """Top-left ``(y, x)`` of a centred non-overlapping grid, row-major.

    As many whole tiles as fit in each direction; the leftover margin is split evenly (the extra
    pixel of an odd margin goes to the bottom/right). Empty when the image is smaller than a tile.
    """
    if tile_size <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    ny, nx = height // tile_size, width // tile_size
    y0, x0 = (height - ny * tile_size) // 2, (width - nx * tile_size) // 2
    return [(y0 + i * tile_size, x0 + j * tile_size) for i in range(ny) for j in range(nx)]



def tile_fov(
    stack: np.ndarray, config: TileConfig = TileConfig()
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Preprocess one FOV and cut it into tiles with QC.

    ``stack``: ``(planes, H, W)`` uint16 with 3 planes in ``PlaneID`` order (they become the
    tile's 3 channels), or 1 plane (or a 2-D image), which is replicated to 3 identical channels;
    2 or more than 3 planes raise ``ValueError``.

    Returns ``(tiles, records)``: ``tiles`` is ``(n, 3, T, T)`` (``config.out_dtype``, values in
    [0, 1]) holding *all* grid tiles, kept and rejected, in grid order; ``records[i]`` describes
    ``tiles[i]``: ``tile_index``, ``y``, ``x`` (top-left in binned pixels), ``qc_reason`` (``None``
    when kept), ``mean`` / ``std`` (of the normalised tile over all channels), ``fg_fraction``
    (foreground fraction used by the empty rule), ``dark_fraction`` (debris rule),
    ``saturated_fraction``, ``rel_std``, ``focus_corr`` (out-of-focus rule; ``None`` for a 1-plane
    stack). Callers keep ``tiles[[r["qc_reason"] is None for r in records]]``.
    """
    prep = _prepare(stack, config, want_qc=True)
    T = config.tile_size
    grid = tile_grid(*prep.image.shape[1:], T)
    tiles = np.empty((len(grid), 3, T, T), dtype=np.dtype(config.out_dtype))
    maps = _fov_maps(prep, config)
    records: list[dict[str, Any]] = []
    for i, (y, x) in enumerate(grid):
        sl = (slice(y, y + T), slice(x, x + T))
        tile = prep.image[(slice(None), *sl)]
        tiles[i] = tile if tile.shape[0] == 3 else np.broadcast_to(tile, (3, T, T))
        qc = _tile_qc(maps, sl)
        records.append({"tile_index": i, "y": int(y), "x": int(x),
                        "qc_reason": _decide(**qc, config=config),
                        "mean": float(tile.mean()), "std": float(tile.std()), **qc})
    return tiles, records


@dataclass
class _FovMaps:
    """Whole-FOV QC maps, computed once (cheaper than per-tile filtering, and no tile-border
    effects; the per-tile numbers can therefore differ slightly from ``qc_tile`` on a cropped
    tile)."""

    rel: np.ndarray  # (P, H, W) relative contrast
    sat: np.ndarray  # (H, W) saturated fraction
    dark: np.ndarray  # (H, W) bool, debris rule
    fg: np.ndarray  # (H, W) bool, empty rule
    band: tuple[np.ndarray, np.ndarray] | None  # out-of-focus rule (None for a 1-plane stack)


def _fov_maps(prep: _Prepared, config: TileConfig) -> _FovMaps:
    dark, fg = _qc_maps(prep.rel, config, prep.rel.shape[0] // 2)
    return _FovMaps(prep.rel, prep.sat_fraction, dark, fg, _focus_band(prep.rel, config))


def _tile_qc(m: _FovMaps, sl: tuple[slice, slice]) -> dict[str, Any]:
    """The QC statistics of the tile at ``sl`` (the keyword arguments of the QC decision)."""
    return {
        "fg_fraction": float(m.fg[sl].mean()),
        "dark_fraction": float(m.dark[sl].mean()),
        "saturated_fraction": float(m.sat[sl].mean()),
        "rel_std": float(m.rel[(slice(None), *sl)].std(axis=(1, 2)).max()),
        "focus_corr": None if m.band is None else _corr(m.band[0][sl], m.band[1][sl]),
    }
