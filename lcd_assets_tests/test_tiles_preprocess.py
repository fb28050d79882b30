"""lcd_core.tiles.preprocess: binning, background, flat-field, normalisation; the tile tests'
stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lcd_core.tiles.preprocess import TileConfig, _bin, preprocess_stack, relative_contrast

FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/phenix/harmony-v5/r01c01f01p01-ch2sk1fk1fl1.tiff"
if not FIXTURE.exists():
    FIXTURE = Path("/work/shared/fixtures/phenix/harmony-v5/r01c01f01p01-ch2sk1fk1fl1.tiff")


def cells_stack(size: int = 672, seed: int = 0, planes: int = 3, bg: float = 8000.0) -> np.ndarray:
    """Brightfield-like uint16 stack: cell-scale texture of a few % contrast, camera noise."""
    rng = np.random.default_rng(seed)
    tex = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 6.0)
    tex /= tex.std()
    out = []
    for sign in (-1.0, 0.3, 1.0)[:planes] if planes <= 3 else [1.0] * planes:
        img = bg * (1 + 0.05 * sign * tex) + rng.normal(0, 30, (size, size))
        out.append(np.clip(img, 0, 65535).astype(np.uint16))
    return np.stack(out)


def rel_of(tile_u16: np.ndarray) -> np.ndarray:
    """Relative contrast of a raw tile against a known flat background."""
    return tile_u16.astype(np.float32) / 8000.0 - 1.0


def test_binning_is_mean_pooling_and_drops_partial_bins():
    rng = np.random.default_rng(0)
    raw = rng.integers(1000, 60000, (1, 9, 11), dtype=np.uint16)
    b = _bin(raw, 2)
    assert b.shape == (1, 4, 5) and b.dtype == np.float32
    expected = raw[:, :8, :10].astype(np.float64).reshape(1, 4, 2, 5, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(b, expected, rtol=1e-6)
    st = cells_stack(448)
    out = preprocess_stack(st, TileConfig(binning=2))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    with pytest.raises(ValueError):
        TileConfig(binning=0)


def test_percentile_normalisation_range():
    st = cells_stack(448)
    out = preprocess_stack(st, TileConfig())
    assert out.min() >= 0.0 and out.max() <= 1.0
    for p in out:
        lo, hi = np.percentile(p, [1, 99])
        assert lo < 0.02 and hi > 0.98  # stretched to the 1st/99th percentiles, clipped
    # flat-field removes a strong illumination gradient: both halves end up alike
    grad = (np.linspace(0.6, 1.4, 448)[None, None, :] * st).astype(np.uint16)
    ff = preprocess_stack(grad, TileConfig(flatfield=True))
    raw = preprocess_stack(grad, TileConfig(flatfield=False))
    assert abs(ff[1, :, :100].mean() - ff[1, :, -100:].mean()) < 0.1
    assert abs(raw[1, :, :100].mean() - raw[1, :, -100:].mean()) > 0.5
    fixed = preprocess_stack(st, TileConfig(normalization="fixed", flatfield=False))
    np.testing.assert_allclose(fixed, st / 65535.0, atol=1e-6)


def test_relative_contrast_is_zero_on_the_background():
    """An illumination gradient alone is background: its relative contrast is ≈ 0 everywhere,
    while the cells' texture (5 % contrast) is kept."""
    ramp = np.linspace(0.6, 1.4, 448)[None, None, :]
    flat = (np.full((3, 448, 448), 8000.0) * ramp).astype(np.uint16)
    rel = relative_contrast(flat)
    assert rel.shape == (3, 448, 448) and rel.dtype == np.float32
    assert np.abs(rel).max() < 0.01
    cells = relative_contrast((cells_stack(448) * ramp).astype(np.uint16))
    assert 0.02 < cells[2].std() < 0.08
    assert relative_contrast(flat, TileConfig(binning=2)).shape == (3, 224, 224)
