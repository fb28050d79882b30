"""Handcrafted tile features (lcd_core.handcrafted.features): shape, errors, and that they measure what they name."""

from __future__ import annotations

import numpy as np
import pytest

from lcd_core.handcrafted.features import FEATURE_NAMES, N_FEATURES, tile_features, tiles_features

T = 224


def _background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.5 + 0.02 * rng.standard_normal((3, T, T))).astype(np.float32)


def _disks(tile: np.ndarray, centres: list[tuple[int, int]], radius: float, value: float) -> np.ndarray:
    yy, xx = np.mgrid[:T, :T]
    out = tile.copy()
    for cy, cx in centres:
        out[:, (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = value
    return out


def _grid(n: int, step: int = 40, offset: int = 30) -> list[tuple[int, int]]:
    return [(offset + step * (i // 4), offset + step * (i % 4)) for i in range(n)]


def _f(tile: np.ndarray, name: str) -> float:
    return float(tile_features(tile)[FEATURE_NAMES.index(name)])


def test_one_finite_float32_value_per_named_feature():
    f = tile_features(_background())
    assert f.shape == (N_FEATURES,) == (len(FEATURE_NAMES),)
    assert f.dtype == np.float32 and np.isfinite(f).all()
    assert len(set(FEATURE_NAMES)) == N_FEATURES and all(n.startswith("hc_") for n in FEATURE_NAMES)


def test_a_flat_tile_gives_finite_features():
    assert np.isfinite(tile_features(np.full((3, 64, 64), 0.3, np.float32))).all()


@pytest.mark.parametrize("shape", [(224, 224), (2, 224, 224), (3, 16, 16)])
def test_a_tile_of_the_wrong_shape_is_named(shape):
    with pytest.raises(ValueError, match=r"\(3, T, T\)"):
        tile_features(np.zeros(shape, np.float32))


def test_non_finite_pixels_are_an_error():
    t = _background()
    t[1, 5, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        tile_features(t)


def test_dark_bodies_are_counted():
    counts = [_f(_disks(_background(), _grid(n), 7, 0.1), "hc_dark_bodies_count") for n in (0, 3, 9)]
    assert counts == [0.0, 3.0, 9.0]


def test_larger_objects_move_energy_to_coarser_bands():
    small = _disks(_background(), [(y, x) for y in range(12, T, 24) for x in range(12, T, 24)], 3, 0.2)
    large = _disks(_background(), [(y, x) for y in range(40, T, 80) for x in range(40, T, 80)], 18, 0.2)

    def coarse_share(t):
        return _f(t, "hc_z1_dog_8_16") / _f(t, "hc_z1_dog_1_2")

    assert coarse_share(large) > 3 * coarse_share(small)


def test_z_scored_features_ignore_the_exposure():
    t = _disks(_background(), _grid(5), 8, 0.15)
    a, b = tile_features(t), tile_features(t * 1.7)
    scale_free = [i for i, n in enumerate(FEATURE_NAMES) if not n.endswith(("_mean", "_std"))
                  or "log_area" in n or "grad" in n]
    np.testing.assert_allclose(a[scale_free], b[scale_free], rtol=1e-3, atol=1e-4)
    assert b[FEATURE_NAMES.index("hc_z1_mean")] == pytest.approx(1.7 * a[FEATURE_NAMES.index("hc_z1_mean")], rel=1e-4)


def test_batches_stream_one_array_each():
    batches = [np.stack([_background(i) for i in range(3)]), np.zeros((0, 3, T, T), np.float32),
               np.stack([_background(9)])]
    out = list(tiles_features(iter(batches)))
    assert [o.shape for o in out] == [(3, N_FEATURES), (0, N_FEATURES), (1, N_FEATURES)]
    np.testing.assert_array_equal(out[2][0], tile_features(batches[2][0]))


def test_coherence_sees_texture_that_runs_one_way():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:T, :T]
    stripes = np.broadcast_to(0.5 + 0.1 * np.sin(2 * np.pi * (xx + 0.3 * yy) / 12), (3, T, T))
    stripes = (stripes + 0.01 * rng.standard_normal((3, T, T))).astype(np.float32)
    noise = _background(2)
    for name in ("hc_coherence_s2", "hc_coherence_s4"):
        assert _f(stripes, name) > 0.8 and _f(noise, name) < 0.3, name
    assert _f(stripes, "hc_glcm_contrast_anisotropy_d4") > 3 * _f(noise, "hc_glcm_contrast_anisotropy_d4")


@pytest.mark.parametrize("kind", ["uniform noise", "grey tile", "three levels (ties)", "flat", "tiny"])
def test_lbp_equals_scikit_image_pixel_for_pixel(kind):
    """The array version of the uniform LBP (P = 8, R = 2) gives scikit-image's codes exactly:
    the diagonal neighbours are interpolated with the same float64 arithmetic, ties included."""
    from skimage.feature import local_binary_pattern

    from lcd_core.handcrafted.features import lbp_uniform

    rng = np.random.default_rng(3)
    image = {"uniform noise": lambda: rng.integers(0, 256, (T, T)),
             "grey tile": lambda: np.clip(_disks(_background(), _grid(9), 8, 0.2)[1] * 255, 0, 255),
             "three levels (ties)": lambda: rng.integers(0, 3, (T, T)) * 100,
             "flat": lambda: np.full((T, T), 7),
             "tiny": lambda: rng.integers(0, 256, (5, 7))}[kind]().astype(np.uint8)
    ours = lbp_uniform(image, 8, 2)
    np.testing.assert_array_equal(ours, local_binary_pattern(image, 8, 2, "uniform").astype(np.int64))
    assert ours.min() >= 0 and ours.max() <= 9
