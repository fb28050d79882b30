"""lcd_core.tiles.tiling: grid geometry, binning, normalisation, QC rules, real-fixture sanity, previews."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lcd_core.tiles.tiling import (
    TileConfig,
    preprocess_stack,
    qc_tile,
    relative_contrast,
    render_preview,
    render_tile_strip,
    tile_fov,
    tile_grid,
)

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


# ---------------------------------------------------------------------------------------------
# geometry and preprocessing


def test_tile_grid_centred_non_overlapping():
    g = tile_grid(1080, 1080, 224)
    assert len(g) == 16
    assert g[0] == (92, 92) and g[-1] == (764, 764)
    ys = sorted({y for y, _ in g})
    assert np.all(np.diff(ys) == 224)
    # margins split evenly (odd leftover: extra pixel bottom/right)
    g = tile_grid(500, 700, 224)
    assert g == [(26, 14), (26, 238), (26, 462), (250, 14), (250, 238), (250, 462)]
    assert tile_grid(100, 1000, 224) == []
    assert tile_grid(224, 224, 224) == [(0, 0)]
    with pytest.raises(ValueError):
        tile_grid(10, 10, 0)


def test_binning_is_mean_pooling_and_drops_partial_bins():
    rng = np.random.default_rng(0)
    raw = rng.integers(1000, 60000, (1, 9, 11), dtype=np.uint16)
    from lcd_core.tiles.tiling import _bin

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


def test_plane_replication_and_plane_count_errors():
    st = cells_stack(448, planes=1)
    tiles, rec = tile_fov(st[0])  # a 2-D image is one plane
    assert tiles.shape == (4, 3, 224, 224)
    assert np.array_equal(tiles[:, 0], tiles[:, 1]) and np.array_equal(tiles[:, 0], tiles[:, 2])
    tiles3, _ = tile_fov(cells_stack(448))
    assert not np.array_equal(tiles3[:, 0], tiles3[:, 2])  # 3 planes stay 3 distinct channels
    with pytest.raises(ValueError, match="planes"):
        tile_fov(np.zeros((4, 448, 448), np.uint16))
    with pytest.raises(ValueError, match="planes"):
        tile_fov(np.zeros((2, 448, 448), np.uint16))


def test_tile_fov_records_and_dtype():
    st = cells_stack(672)
    tiles, rec = tile_fov(st, TileConfig())
    assert tiles.dtype == np.float16 and tiles.shape == (9, 3, 224, 224)
    assert [r["tile_index"] for r in rec] == list(range(9))
    assert all(r["qc_reason"] is None for r in rec)
    r = rec[4]
    assert (r["y"], r["x"]) == (224, 224)
    np.testing.assert_allclose(r["mean"], tiles[4].astype(np.float32).mean(), atol=1e-3)
    np.testing.assert_allclose(r["std"], tiles[4].astype(np.float32).std(), atol=1e-3)
    t32, _ = tile_fov(st, TileConfig(out_dtype="float32"))
    assert t32.dtype == np.float32
    np.testing.assert_allclose(t32, tiles.astype(np.float32), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# QC


def test_qc_blank_tile_is_empty():
    rng = np.random.default_rng(1)
    blank = np.clip(8000 + rng.normal(0, 40, (3, 224, 224)), 0, 65535).astype(np.uint16)
    assert qc_tile(rel_of(blank)) == "empty"
    # the same through tile_fov: the middle of an otherwise populated FOV is blank
    st = cells_stack(672)
    st[:, 224:448, 224:448] = blank
    _, rec = tile_fov(st)
    assert [r["qc_reason"] for r in rec].count("empty") == 1 and rec[4]["qc_reason"] == "empty"


def test_qc_saturated_tile():
    st = cells_stack(672)
    st[:, 224:448, 224:400] = 65535  # a blown-out region
    _, rec = tile_fov(st)
    assert rec[4]["qc_reason"] == "saturated"
    assert sum(r["qc_reason"] is None for r in rec) == 8
    # a dynamic-range ceiling below 65535 (12-bit camera clipping at 4095) counts too
    st12 = (cells_stack(672).astype(np.float32) / 2).astype(np.uint16)
    st12[:, :224, :224] = np.minimum(st12[:, :224, :224] + 600, 4095)
    st12 = np.minimum(st12, 4095)
    _, rec = tile_fov(st12)
    assert rec[0]["qc_reason"] == "saturated"
    assert qc_tile(rel_of(cells_stack(224)), saturated_fraction=0.5) == "saturated"


def test_qc_dark_blob_is_debris():
    st = cells_stack(672)
    yy, xx = np.mgrid[:672, :672]
    blob = (yy - 336) ** 2 + (xx - 336) ** 2 < 45**2
    st[:, blob] = (st[:, blob] * 0.4).astype(np.uint16)  # absorbing debris, dark in every plane
    _, rec = tile_fov(st)
    assert rec[4]["qc_reason"] == "debris"
    assert sum(r["qc_reason"] is None for r in rec) == 8
    tile = cells_stack(224, seed=3)
    b = (yy[:224, :224] - 112) ** 2 + (xx[:224, :224] - 112) ** 2 < 40**2
    tile[:, b] = (tile[:, b] * 0.5).astype(np.uint16)
    assert qc_tile(rel_of(tile)) == "debris"
    assert qc_tile(rel_of(cells_stack(224, seed=3))) is None


@pytest.mark.skipif(not FIXTURE.exists(), reason="real Phenix fixture not available")
def test_real_fixture_brightfield_mostly_kept():
    import tifffile

    img = tifffile.imread(FIXTURE)
    assert img.shape == (1080, 1080) and img.dtype == np.uint16
    tiles, rec = tile_fov(img)
    assert tiles.shape == (16, 3, 224, 224)
    kept = [r for r in rec if r["qc_reason"] is None]
    assert len(kept) >= 14, [r["qc_reason"] for r in rec]
    # the fixture's big dark out-of-focus blob (bottom left) is caught when a tile covers it
    rel = relative_contrast(img)
    assert qc_tile(rel[:, 856:1080, 200:424]) == "debris"
    # with 2x binning (as for 2160² exports) the image still tiles (2×2) and passes
    _, rec2 = tile_fov(img, TileConfig(binning=2))
    assert len(rec2) == 4 and sum(r["qc_reason"] is None for r in rec2) >= 3


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


# ---------------------------------------------------------------------------------------------
# out of focus (3-plane stacks)


def phase_stack(focus_um: float, size: int = 224, seed: int = 0, n_cells: int = 12) -> np.ndarray:
    """3-plane brightfield stack (planes at focus + (−3.6, 0, +3.6) µm) of weak phase objects,
    rendered with the synthetic screen's partially coherent defocus model (lcd_core.synth.optics)."""
    from lcd_core.synth import optics

    rng = np.random.default_rng(seed)
    px = 0.598
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    phi = np.zeros((size, size))
    fine = np.zeros((size, size))
    for _ in range(n_cells):
        cx, cy = rng.uniform(0, size, 2)
        r = rng.uniform(12, 22)  # cell radius, px (7–13 µm)
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
        phi += 0.45 * np.clip(1 - d2, 0, None) + 0.7 * np.clip(1 - 4 * d2, 0, None) ** 1.6  # body + nucleus
        gx, gy = (cx + rng.normal(0, r / 2, 8)).astype(int) % size, (cy + rng.normal(0, r / 2, 8)).astype(int) % size
        fine[gy, gx] += rng.uniform(0.3, 0.9, 8)  # granules / nucleoli
    alpha = 0.003 * phi
    rel = optics.defocus_planes(phi, alpha, fine, np.zeros_like(phi), [focus_um + z for z in (-3.6, 0.0, 3.6)], optics.Optics(px))
    cam = np.random.default_rng(seed + 1)
    return np.stack([optics.camera(8000.0 * np.exp(r), cam, 1.6, 2.0, 100.0) for r in rel])


def test_qc_out_of_focus_stack_is_rejected():
    cfg = TileConfig()
    for focus in (0.0, -1.5, 2.0):  # normal focus scatter (clean screens: sd ≈ 1 µm) is kept
        _, rec = tile_fov(phase_stack(focus), cfg)
        assert rec[0]["qc_reason"] is None, (focus, rec[0])
        assert rec[0]["focus_corr"] < 0  # focus between the outer planes: opposite-signed contrast
    for focus in (-8.0, 6.0, 10.0):  # gross focus failure: all planes on one side of focus
        _, rec = tile_fov(phase_stack(focus), cfg)
        assert rec[0]["qc_reason"] == "out_of_focus", (focus, rec[0])
        assert rec[0]["focus_corr"] > cfg.max_outer_plane_correlation
    # qc_tile on the tile's relative contrast agrees
    assert qc_tile(relative_contrast(phase_stack(8.0))) == "out_of_focus"
    assert qc_tile(relative_contrast(phase_stack(0.0))) is None


def test_qc_out_of_focus_needs_three_planes_and_yields_to_empty():
    # one plane (e.g. the Harmony-5 fixture): the rule cannot apply, the statistic is None
    st = phase_stack(8.0)
    _, rec = tile_fov(st[1])
    assert rec[0]["qc_reason"] is None and rec[0]["focus_corr"] is None
    # a blank 3-plane tile is "empty", never "out_of_focus" (its outer planes are pure noise)
    rng = np.random.default_rng(1)
    blank = np.clip(8000 + rng.normal(0, 40, (3, 224, 224)), 0, 65535).astype(np.uint16)
    assert qc_tile(rel_of(blank)) == "empty"
    assert qc_tile(rel_of(blank), config=TileConfig(min_foreground_fraction=0.0)) is None
    # sparse tile (one small cell): kept when in focus
    _, rec = tile_fov(phase_stack(0.5, n_cells=1, seed=4))
    assert rec[0]["qc_reason"] in (None, "empty"), rec[0]


def test_debris_dark_in_every_plane_not_defocus_shading():
    # absorbing debris is dark in all 3 planes: a small blob (≈ 0.6 % of the tile) is caught
    st = cells_stack(224, seed=5)
    yy, xx = np.mgrid[:224, :224]
    b = (yy - 100) ** 2 + (xx - 120) ** 2 < 10**2
    st[:, b] = (st[:, b] * 0.6).astype(np.uint16)
    assert qc_tile(rel_of(st)) == "debris"
    # the same dark patch in the middle plane only, bright in an outer plane (phase-object
    # defocus shading, not an absorber) is not debris
    st = cells_stack(224, seed=5)
    st[1, b] = (st[1, b] * 0.6).astype(np.uint16)
    st[2, b] = (st[2, b] * 1.3).astype(np.uint16)
    assert qc_tile(rel_of(st)) != "debris"
