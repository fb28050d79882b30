"""lcd_core.tiles.preview: the FOV preview and the tile strip are small PNGs."""

from __future__ import annotations

import io

import numpy as np

from lcd_assets_tests.test_tiles_preprocess import cells_stack
from lcd_core.tiles.grid import tile_fov
from lcd_core.tiles.preprocess import TileConfig, preprocess_stack
from lcd_core.tiles.preview import render_preview, render_tile_strip


def test_previews_are_small_pngs():
    from PIL import Image

    st = cells_stack(672)
    st[:, 224:448, 224:448] = 8000
    cfg = TileConfig()
    tiles, rec = tile_fov(st, cfg)
    png = render_preview(preprocess_stack(st, cfg), rec, cfg.tile_size)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 150_000
    im = Image.open(io.BytesIO(png))
    assert im.width <= 600
    arr = np.asarray(im.convert("RGB"))
    assert (arr[..., 0] > 200).any() and (arr[..., 1] > 180).any()  # red and green outlines
    strip = render_tile_strip(tiles, rec)
    im2 = Image.open(io.BytesIO(strip))
    assert im2.width <= 600 and len(strip) < 150_000
