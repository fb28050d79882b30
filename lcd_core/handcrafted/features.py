"""Handcrafted tile features: the image part of the CellProfiler-style baseline of SPEC §4.7.

The paper's baseline is a CellProfiler run (single-cell segmentation, 284 features, median per
image). The single cells are segmented by :mod:`lcd_core.cells` (a trained network: brightfield
cells do not segment reliably with classical tools); this module measures the image-level
families of quantities directly on each tile, with scipy / scikit-image:

* **intensity** per z-plane: mean and std of the tile, then percentiles (1, 5, 50, 95, 99),
  skewness and kurtosis of the tile z-scored by its own mean and std;
* **granularity / size spectrum** per z-plane: mean absolute band energy of a difference-of-
  Gaussians pyramid (σ = 1→2, 2→4, 4→8, 8→16 px; the two coarse bands on a 4× block-mean image),
  CellProfiler's granularity idea: where object sizes sit;
* **edges / focus** per z-plane: mean and std of the Sobel gradient magnitude and the variance of
  the Laplacian, of the σ = 1 image;
* **texture** of the middle plane: uniform local binary patterns (P = 8, R = 2; the 9 uniform
  bins: the 10th is 1 − their sum, and an exact linear dependency would break sphering),
  Haralick GLCM contrast, homogeneity, energy and correlation at distances 1 and 4 (32 grey
  levels, 4 angles averaged) with the contrast's anisotropy (max / min over the angles);
* **orientation** of the middle plane: structure-tensor coherence at integration scales 2 and
  4 px (elongated cells give texture that runs one way);
* **objects** of the middle plane: connected components of the σ = 2 image below −2.5 σ (dark
  round bodies: dead, rounded and mitotic cells), below −1 σ (nuclei and dense cytoplasm) and
  above +1 σ (halos): count (≥ 20 px), mean and std of log area, area fraction;
* **z-stack**: mean |plane 0 − plane 2| over the tile std, and their correlation (cell thickness
  and focus).

Every feature is a function of one tile, so profiles aggregate like embeddings (tile → FOV → well,
:func:`lcd_core.embedding.aggregate.aggregate_embeddings`) and go through the same normalization, activity and
MoA steps. Entry points: :data:`FEATURE_NAMES`, :func:`tile_features`, :func:`tiles_features`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from scipy import ndimage as ndi

__all__ = ["FEATURE_NAMES", "N_FEATURES", "lbp_uniform", "tile_features", "tiles_features"]

_PLANE_FEATURES = ("mean", "std", "p01", "p05", "p50", "p95", "p99", "skew", "kurtosis",
                   "dog_1_2", "dog_2_4", "dog_4_8", "dog_8_16", "grad_mean", "grad_std", "lap_var")
_GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
_COHERENCE_SIGMAS = (2.0, 4.0)
_GLCM_DISTANCES = (1, 4)
_OBJECT_SETS = (("dark_bodies", -2.5), ("dark", -1.0), ("bright", 1.0))
_OBJECT_FEATURES = ("count", "log_area_mean", "log_area_std", "area_fraction")
_MIN_OBJECT_PX = 20
_LBP_BINS = 9  # of the 10 uniform-LBP bins; the 10th (non-uniform) is 1 − their sum
_N_PLANES = 3


def _names() -> tuple[str, ...]:
    names = [f"hc_z{p}_{f}" for p in range(_N_PLANES) for f in _PLANE_FEATURES]
    names += [f"hc_lbp_{i}" for i in range(_LBP_BINS)]
    names += [f"hc_glcm_{p}_d{d}" for p in _GLCM_PROPS for d in _GLCM_DISTANCES]
    names += [f"hc_glcm_contrast_anisotropy_d{d}" for d in _GLCM_DISTANCES]
    names += [f"hc_coherence_s{int(s)}" for s in _COHERENCE_SIGMAS]
    names += [f"hc_{s}_{f}" for s, _ in _OBJECT_SETS for f in _OBJECT_FEATURES]
    names += ["hc_zstack_diff", "hc_zstack_corr"]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names()
N_FEATURES = len(FEATURE_NAMES)


def _block_mean(x: np.ndarray, k: int) -> np.ndarray:
    h, w = (x.shape[0] // k) * k, (x.shape[1] // k) * k
    return x[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3))


def _plane_features(x: np.ndarray) -> tuple[list[float], np.ndarray]:
    """The 16 per-plane features and the plane z-scored by its own mean / std."""
    m, s = float(x.mean()), float(x.std())
    z = (x - m) / (s + 1e-6)
    p01, p05, p50, p95, p99 = np.percentile(z, [1, 5, 50, 95, 99])
    z2 = z * z
    skew = float((z2 * z).mean())
    kurt = float((z2 * z2).mean() - 3.0)
    g1, g2 = ndi.gaussian_filter(z, 1.0), ndi.gaussian_filter(z, 2.0)
    small = _block_mean(z, 4)  # σ 4, 8, 16 px of the tile = σ 1, 2, 4 px here
    s4, s8, s16 = (ndi.gaussian_filter(small, sg) for sg in (1.0, 2.0, 4.0))
    g2s = _block_mean(g2, 4)
    dog = [np.abs(g1 - g2).mean(), np.abs(g2s - s4).mean(), np.abs(s4 - s8).mean(), np.abs(s8 - s16).mean()]
    grad = np.hypot(ndi.sobel(g1, 0), ndi.sobel(g1, 1))
    lap = float(ndi.laplace(g1).var())
    return [m, s, p01, p05, p50, p95, p99, skew, kurt, *dog, float(grad.mean()), float(grad.std()), lap], z


def _texture_features(z: np.ndarray) -> list[float]:
    from skimage.feature import graycomatrix, graycoprops

    img8 = np.clip(z * 40 + 128, 0, 255).astype(np.uint8)
    lbp = lbp_uniform(img8, 8, 2)
    hist = np.bincount(lbp.ravel(), minlength=10)[:_LBP_BINS] / lbp.size
    q = np.clip((z + 3) / 6 * 31, 0, 31).astype(np.uint8)
    glcm = graycomatrix(q, list(_GLCM_DISTANCES), [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], 32,
                        symmetric=True, normed=True)
    out = list(hist)
    for prop in _GLCM_PROPS:
        out += list(graycoprops(glcm, prop).mean(axis=1))
    contrast = graycoprops(glcm, "contrast")  # (distances, angles)
    out += list(contrast.max(axis=1) / (contrast.min(axis=1) + 1e-6))
    out += _coherences(z, _COHERENCE_SIGMAS)
    return [float(v) for v in out]


def lbp_uniform(image: np.ndarray, points: int = 8, radius: float = 2.0) -> np.ndarray:
    """``skimage.feature.local_binary_pattern(image, points, radius, "uniform")`` as whole-image
    array operations: the same bilinear interpolation in float64 (zero outside), the same
    ``neighbour − centre ≥ 0`` bits and the same count of 0/1 changes along the ring (not
    closed), so equal pixel for pixel; int64 codes 0 … ``points + 1``."""
    img = np.ascontiguousarray(image, dtype=np.float64)
    rows, cols = img.shape
    k = np.arange(points, dtype=np.float64)
    rp, cp = np.round(-radius * np.sin(2 * np.pi * k / points), 5), np.round(radius * np.cos(2 * np.pi * k / points), 5)
    pad = int(np.ceil(radius)) + 1
    padded = np.pad(img, pad)
    r, c = np.arange(rows, dtype=np.float64)[:, None], np.arange(cols, dtype=np.float64)[None, :]
    ones, changes, prev = np.zeros(img.shape, np.int64), np.zeros(img.shape, np.int64), None
    for i in range(points):
        rr, cc = r + rp[i], c + cp[i]
        dr, dc = rr - np.floor(rr), cc - np.floor(cc)
        r0, r1 = _shift(np.floor(rr) - r), _shift(np.ceil(rr) - r)
        c0, c1 = _shift(np.floor(cc) - c), _shift(np.ceil(cc) - c)

        def win(a: int, b: int) -> np.ndarray:
            return padded[pad + a: pad + a + rows, pad + b: pad + b + cols]

        top = (1 - dc) * win(r0, c0) + dc * win(r0, c1)
        bottom = (1 - dc) * win(r1, c0) + dc * win(r1, c1)
        bit = ((1 - dr) * top + dr * bottom) - img >= 0
        ones += bit
        if prev is not None:
            changes += bit != prev
        prev = bit
    return np.where(changes <= 2, ones, points + 1)


def _shift(offsets: np.ndarray) -> int:
    """The one integer offset of a ring neighbour's interpolation corner from every pixel."""
    values = np.unique(offsets)
    if len(values) != 1:
        raise ValueError(f"LBP ring offsets differ across the image: {values}")
    return int(values[0])


def _coherences(z: np.ndarray, sigmas: tuple[float, ...]) -> list[float]:
    """Mean structure-tensor coherence ((λ1 − λ2) / (λ1 + λ2))² at each integration scale in
    ``sigmas``, weighted by the local gradient energy: 0 for isotropic texture, → 1 where the
    texture runs one way (elongated, aligned cells). The tensor of
    ``skimage.feature.structure_tensor(z, sigma, order="rc")`` (Sobel derivatives, zero outside),
    the derivatives computed once for every scale."""
    d0, d1 = ndi.sobel(z, 0, mode="constant"), ndi.sobel(z, 1, mode="constant")
    products = (d0 * d0, d0 * d1, d1 * d1)
    out = []
    for sigma in sigmas:
        arr, arc, acc = (ndi.gaussian_filter(p, sigma, mode="constant") for p in products)
        tr = arr + acc
        coh = ((arr - acc) ** 2 + 4 * arc**2) / (tr**2 + 1e-12)
        out.append(float((coh * tr).sum() / (tr.sum() + 1e-12)))
    return out


def _object_features(z: np.ndarray) -> list[float]:
    smooth = ndi.gaussian_filter(z, 2.0)
    out: list[float] = []
    for _, thr in _OBJECT_SETS:
        mask = smooth < thr if thr < 0 else smooth > thr
        lab, n = ndi.label(mask)
        area = np.bincount(lab.ravel())[1:] if n else np.zeros(0)
        big = area[area >= _MIN_OBJECT_PX]
        la = np.log(big) if big.size else np.zeros(1)
        out += [float(big.size), float(la.mean()), float(la.std()), float(mask.mean())]
    return out


def tile_features(tile: np.ndarray) -> np.ndarray:
    """The :data:`FEATURE_NAMES` features of one tile.

    Parameters
    ----------
    tile
        ``(3, T, T)`` z-planes (float16/32, any scale: every feature but the plane mean and std
        is computed on the plane z-scored by its own statistics). ``T`` ≥ 32.

    Returns
    -------
    numpy.ndarray
        ``(N_FEATURES,)`` float32, finite.
    """
    t = np.asarray(tile, dtype=np.float32)
    if t.ndim != 3 or t.shape[0] != _N_PLANES or min(t.shape[1:]) < 32:
        raise ValueError(f"a tile must be ({_N_PLANES}, T, T) with T ≥ 32, got {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("tile has non-finite pixels")
    feats: list[float] = []
    planes = []
    for p in range(_N_PLANES):
        f, z = _plane_features(t[p])
        feats += f
        planes.append(z)
    mid = planes[_N_PLANES // 2]
    feats += _texture_features(mid)
    feats += _object_features(mid)
    a, b = t[0].ravel(), t[-1].ravel()
    diff = float(np.abs(a - b).mean() / (t.std() + 1e-6))
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    feats += [diff, corr]
    out = np.asarray(feats, dtype=np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def tiles_features(batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """:func:`tile_features` of every tile of every ``(n, 3, T, T)`` batch, one ``(n, F)``
    array per batch (streams: memory is bounded by one batch)."""
    for batch in batches:
        arr = np.asarray(batch)
        if arr.ndim != 4:
            raise ValueError(f"a tile batch must be (n, 3, T, T), got {arr.shape}")
        yield (np.stack([tile_features(t) for t in arr]) if len(arr)
               else np.zeros((0, N_FEATURES), np.float32))
