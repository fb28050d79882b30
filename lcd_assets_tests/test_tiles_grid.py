"""lcd_core.tiles.grid: grid geometry, plane channels, tile records, real-fixture sanity."""

from __future__ import annotations

import numpy as np
import pytest

from lcd_assets_tests.test_tiles_preprocess import FIXTURE, cells_stack
from lcd_core.tiles.grid import tile_fov, tile_grid
from lcd_core.tiles.preprocess import TileConfig, relative_contrast
from lcd_core.tiles.qc import qc_tile


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
