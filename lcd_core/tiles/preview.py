"""PNG previews for the Dagster UI: a FOV with its tile grid, a strip of kept / rejected tiles."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["render_preview", "render_tile_strip"]

_GREEN = (40, 200, 60)
_RED = (230, 40, 40)
_GREY_LEVELS = 64  # previews are palette PNGs: 64 grey levels + green + red (small files)
_I_GREEN, _I_RED = _GREY_LEVELS, _GREY_LEVELS + 1
_PALETTE = [v for g in range(_GREY_LEVELS) for v in (round(g * 255 / (_GREY_LEVELS - 1)),) * 3] + [*_GREEN, *_RED]


def _to_index(image: np.ndarray) -> np.ndarray:
    """(P, H, W) or (H, W) in [0, 1] → (H, W) uint8 palette indices of the middle plane."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a[a.shape[0] // 2]
    return (np.clip(a, 0, 1) * (_GREY_LEVELS - 1) + 0.5).astype(np.uint8)


def _pimage(index: np.ndarray):
    from PIL import Image

    im = Image.fromarray(index).convert("P")
    im.putpalette(_PALETTE)
    return im


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def render_preview(
    image: np.ndarray,
    records: list[dict[str, Any]],
    tile_size: int,
    *,
    max_width: int = 480,
) -> bytes:
    """PNG of a preprocessed FOV (``preprocess_stack`` output, middle plane shown) with the tile grid.

    Kept tiles are outlined green, rejected ones red with the reason written in the box.
    Downscaled to at most ``max_width`` px; a palette PNG (64 grey levels), typically 50–130 KB.
    """
    from PIL import Image, ImageDraw

    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a[a.shape[0] // 2]
    h, w = a.shape
    scale = min(1.0, max_width / max(w, 1))
    if scale < 1.0:
        a = np.asarray(
            Image.fromarray(a, mode="F").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        )
    im = _pimage(_to_index(a))
    draw = ImageDraw.Draw(im)
    for r in records:
        x0, y0 = r["x"] * scale, r["y"] * scale
        x1, y1 = (r["x"] + tile_size) * scale - 1, (r["y"] + tile_size) * scale - 1
        bad = r.get("qc_reason")
        draw.rectangle([x0 + 1, y0 + 1, x1 - 1, y1 - 1], outline=_I_RED if bad else _I_GREEN, width=2)
        if bad:
            draw.text((x0 + 5, y0 + 4), str(bad), fill=_I_RED)
    return _png(im)


def render_tile_strip(
    tiles: np.ndarray,
    records: list[dict[str, Any]],
    *,
    n_max: int = 8,
    thumb: int = 70,
) -> bytes:
    """PNG of two rows of thumbnails: up to ``n_max`` kept tiles (green frame, top) and up to
    ``n_max`` rejected tiles (red frame, bottom, reason written). Middle channel shown; width
    ``n_max × (thumb + 4)`` px (592 px with the defaults)."""
    from PIL import Image, ImageDraw

    pad = 2
    cell = thumb + 2 * pad
    kept = [i for i, r in enumerate(records) if r.get("qc_reason") is None][:n_max]
    rej = [i for i, r in enumerate(records) if r.get("qc_reason") is not None][:n_max]
    canvas = np.full((2 * cell, max(1, n_max) * cell), _GREY_LEVELS - 1, dtype=np.uint8)
    for row, idx in enumerate((kept, rej)):
        for col, i in enumerate(idx):
            t = np.asarray(tiles[i], dtype=np.float32)
            t = t[t.shape[0] // 2] if t.ndim == 3 else t
            t = np.asarray(Image.fromarray(t, mode="F").resize((thumb, thumb), Image.BILINEAR))
            canvas[row * cell + pad : row * cell + pad + thumb, col * cell + pad : col * cell + pad + thumb] = _to_index(t)
    im = _pimage(canvas)
    draw = ImageDraw.Draw(im)
    for row, (idx, color) in enumerate(((kept, _I_GREEN), (rej, _I_RED))):
        for col, i in enumerate(idx):
            ox, oy = col * cell, row * cell
            draw.rectangle([ox, oy, ox + cell - 1, oy + cell - 1], outline=color, width=pad)
            if row == 1:
                draw.text((ox + pad + 2, oy + pad + 1), str(records[i]["qc_reason"]), fill=_I_RED)
    return _png(im)
