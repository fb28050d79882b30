"""Preprocess one brightfield FOV z-stack: binning, background, flat-field, normalisation.

Steps for one FOV (``stack``: ``(planes, H, W)`` uint16, planes in ``PlaneID`` order); the
tiles are cut by :func:`lcd_core.tiles.grid.tile_fov` and QC'd by :mod:`lcd_core.tiles.qc`.

1. **Binning** (``TileConfig.binning``, integer ``b``): ``b × b`` mean pooling; rows/columns that do
   not fill a whole bin at the bottom/right edge are dropped. 2160² exports are usually binned 2×
   (1080² → a 4 × 4 grid of 224-px tiles, the paper's "about 13 tiles per FOV" after QC).
2. **Background (illumination) estimate** per plane: median of 16 × 16-pixel blocks of the binned
   plane (robust to cells and debris), then a robust least-squares fit of a smooth 2-D polynomial
   (total degree 4, like Harmony's own flat-field profiles; outlier blocks such as debris are
   dropped) evaluated at full size. It is always computed, because QC
   works on the *relative contrast* ``rel = plane / background − 1`` (0 = background), which does
   not depend on the exposure, the camera offset or the per-FOV stretch of step 4.
3. **Flat-field** (``TileConfig.flatfield``, default on): the plane is divided by its background
   estimate ("divide by a heavily smoothed copy"), which removes illumination gradients /
   vignetting / meniscus shading; with it off the plane is used as is.
4. **Normalisation** (``TileConfig.normalization``):

   * ``"percentile"`` (default): per FOV and per plane, ``(x − p_lo) / (p_hi − p_lo)`` with the
     ``TileConfig.percentiles`` (default 1st / 99th) of that plane, then clipped to [0, 1]. Robust
     to a few very bright/dark objects; percentiles are estimated on a regular sub-grid of at least
     ~120 k pixels (a sampling error far below one output grey level).
   * ``"fixed"``: ``x / 65535`` for raw planes (no flat-field), or ``x / 2`` when flat-fielded
     (background = 0.5), clipped to [0, 1]: keeps absolute intensity differences between FOVs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TileConfig", "preprocess_stack", "relative_contrast"]

_UINT16_MAX = 65535
_BG_BLOCK = 16  # block size (binned pixels) of the block-median background estimate
_BG_DEGREE = 4  # total degree of the polynomial background (Harmony's flat-field profiles: 4)
_N_TERMS = (_BG_DEGREE + 1) * (_BG_DEGREE + 2) // 2
_PCT_MIN_SAMPLES = 120_000

@dataclass(frozen=True)
class TileConfig:
    """Parameters of :func:`preprocess_stack` / :func:`tile_fov` (see the module docstring)."""

    tile_size: int = 224
    binning: int = 1
    flatfield: bool = True
    normalization: str = "percentile"  # "percentile" | "fixed"
    percentiles: tuple[float, float] = (1.0, 99.0)
    out_dtype: str = "float16"  # dtype of the tiles returned by tile_fov ("float16" | "float32")
    # QC: saturated
    max_saturated_fraction: float = 0.01
    ceiling_min_fraction: float = 1e-4
    # QC: debris
    dark_threshold: float = 0.15
    max_dark_fraction: float = 0.004
    debris_smooth: int = 9
    max_rel_std: float = 0.25
    # QC: empty
    fg_threshold: float = 0.01
    min_foreground_fraction: float = 0.03
    # QC: out of focus (3-plane stacks only)
    focus_band: tuple[float, float] = (1.0, 4.0)
    max_outer_plane_correlation: float = 0.1

    def __post_init__(self) -> None:
        if self.tile_size < 16:
            raise ValueError(f"tile_size must be >= 16, got {self.tile_size}")
        if int(self.binning) != self.binning or self.binning < 1:
            raise ValueError(f"binning must be a positive integer, got {self.binning!r}")
        if self.normalization not in ("percentile", "fixed"):
            raise ValueError(f"normalization must be 'percentile' or 'fixed', got {self.normalization!r}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {self.percentiles}")
        s_lo, s_hi = self.focus_band
        if not 0 < s_lo < s_hi:
            raise ValueError(f"focus_band must satisfy 0 < sigma_lo < sigma_hi, got {self.focus_band}")
        if not -1.0 <= self.max_outer_plane_correlation <= 1.0:
            raise ValueError(f"max_outer_plane_correlation must be in [-1, 1], got {self.max_outer_plane_correlation}")
        if self.out_dtype not in ("float16", "float32"):
            raise ValueError(f"out_dtype must be 'float16' or 'float32', got {self.out_dtype!r}")



# --------------------------------------------------------------------------------------------
# preprocessing


def _check_stack(stack: np.ndarray) -> np.ndarray:
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ValueError(f"stack must be (planes, H, W), got shape {stack.shape}")
    if stack.shape[0] not in (1, 3):
        raise ValueError(
            f"a brightfield FOV must have 3 planes (or 1, replicated to 3 channels), got {stack.shape[0]}"
        )
    return stack


def _bin(a: np.ndarray, b: int, dtype=np.float32) -> np.ndarray:
    """Mean-pool the last two axes by ``b`` (dropping partial bins); always returns ``dtype``.

    Sums the ``b²`` strided sub-grids (one pass over the data; a reshape + multi-axis ``sum`` is
    several times slower in NumPy). uint16 sums of up to 256 bins are exact in float32."""
    if b == 1:
        return a.astype(dtype, copy=False)
    *lead, h, w = a.shape
    h2, w2 = h // b, w // b
    if h2 == 0 or w2 == 0:
        raise ValueError(f"image {h}×{w} is smaller than the binning factor {b}")
    a = a[..., : h2 * b, : w2 * b]
    acc = a[..., 0::b, 0::b].astype(dtype)
    for i in range(b):
        for j in range(b):
            if i or j:
                acc += a[..., i::b, j::b]
    acc *= dtype(1.0 / (b * b)) if isinstance(dtype, type) else np.float32(1.0 / (b * b))
    return acc


def _inv_background(plane: np.ndarray) -> np.ndarray:
    """``1 / background`` of one plane, full size (see module docstring, step 2).

    Block medians (about 32 × 32 blocks of ≥ 16 px, ~12 × 12 strided samples per block) → robust
    least-squares fit of a 2-D polynomial of total degree ``_BG_DEGREE`` (blocks off by more than 3 robust σ, e.g.
    debris, are dropped and the fit repeated) → evaluated at full size as ``Y @ C @ Xᵀ``.
    A polynomial follows linear gradients, vignetting and meniscus shading right up to the image
    edges (a Gaussian blur would flatten them there), like Harmony's own polynomial flat-field
    profiles, and is far smoother than any cell."""
    h, w = plane.shape
    # ~32 blocks per side of >= 16 px: enough for a degree-4 surface, cheap to fit
    bs = max(1, min(max(_BG_BLOCK, max(h, w) // 32), h // 4, w // 4))
    sub = max(1, bs // 12)  # ~12 × 12 samples per block are plenty for a median
    bs -= bs % sub
    hb, wb = h // bs, w // bs
    k = bs // sub
    blocks = plane[: hb * bs : sub, : wb * bs : sub].reshape(hb, k, wb, k).transpose(0, 2, 1, 3)
    low = np.median(blocks.reshape(hb, wb, k * k), axis=-1).astype(np.float64)
    scale = max(float(np.median(low)), 1e-6)
    # block centres in normalised coordinates [-1, 1] of the full image
    cy = ((np.arange(hb) + 0.5) * bs - 0.5) / max(h - 1, 1) * 2 - 1
    cx = ((np.arange(wb) + 0.5) * bs - 0.5) / max(w - 1, 1) * 2 - 1
    deg = _BG_DEGREE if hb * wb >= 4 * _N_TERMS else 1
    terms = [(i, j) for i in range(deg + 1) for j in range(deg + 1 - i)]
    py = cy[:, None] ** np.arange(deg + 1)[None, :]  # (hb, deg+1)
    px = cx[:, None] ** np.arange(deg + 1)[None, :]  # (wb, deg+1)
    A = np.stack([np.outer(py[:, i], px[:, j]).ravel() for i, j in terms], axis=1)
    z = (low / scale).ravel()
    keep = np.ones(z.shape, dtype=bool)
    coef = np.zeros(len(terms))
    for _ in range(3):
        # normal equations (≤ 15 unknowns): far cheaper than an SVD lstsq, and no BLAS threading
        Ak = A[keep]
        G = Ak.T @ Ak
        G[np.diag_indices_from(G)] += 1e-9 * np.trace(G)
        coef = np.linalg.solve(G, Ak.T @ z[keep])
        res = z - A @ coef
        mad = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep])))
        new = np.abs(res) <= max(3 * mad, 1e-4)
        if new.sum() < len(terms) * 2 or np.array_equal(new, keep):
            break
        keep = new
    C = np.zeros((deg + 1, deg + 1))
    for (i, j), c in zip(terms, coef):
        C[i, j] = c
    yy = (np.linspace(-1, 1, h)[:, None] ** np.arange(deg + 1)[None, :]).astype(np.float32)
    xx = (np.linspace(-1, 1, w)[:, None] ** np.arange(deg + 1)[None, :]).astype(np.float32)
    bg = yy @ (C.astype(np.float32) @ xx.T)
    floor = 1e-3 * max(float(np.max(low / scale)), 1e-6)  # no division by ~0 on black frames
    np.maximum(bg, floor, out=bg)
    return np.divide(np.float32(1.0 / scale), bg, out=bg)


def _saturation_mask(stack: np.ndarray, config: TileConfig) -> np.ndarray:
    """Raw (unbinned) ``(H, W)`` bool mask: saturated in any plane (see module docstring)."""
    mask = np.zeros(stack.shape[1:], dtype=bool)
    n = stack.shape[1] * stack.shape[2]
    for plane in stack:
        ceiling = int(plane.max())
        if ceiling >= _UINT16_MAX:
            mask |= plane >= _UINT16_MAX
        else:
            at_max = plane == ceiling
            if ceiling > 0 and np.count_nonzero(at_max) >= max(2, config.ceiling_min_fraction * n):
                mask |= at_max
    return mask


def _percentiles(plane: np.ndarray, q: tuple[float, float]) -> tuple[float, float]:
    step = max(1, int(np.sqrt(plane.size / _PCT_MIN_SAMPLES)))
    lo, hi = np.percentile(plane[::step, ::step], q)
    return float(lo), float(hi)


@dataclass
class _Prepared:
    image: np.ndarray  # (P, H', W') float32 normalised to [0, 1]
    rel: np.ndarray  # (P, H', W') float32 relative contrast (plane / background − 1)
    sat_fraction: np.ndarray  # (H', W') float32 fraction of saturated raw pixels per binned pixel
    planes_in: int


def _prepare(stack: np.ndarray, config: TileConfig, *, want_qc: bool) -> _Prepared:
    stack = _check_stack(stack)
    b = int(config.binning)
    planes = _bin(stack, b)
    out = np.empty_like(planes)
    rel = np.empty_like(planes) if want_qc else None
    for i, plane in enumerate(planes):
        ratio = plane * _inv_background(plane)
        if rel is not None:
            np.subtract(ratio, 1.0, out=rel[i])
        x = ratio if config.flatfield else plane
        if config.normalization == "percentile":
            lo, hi = _percentiles(x, config.percentiles)
            scale = 1.0 / max(hi - lo, 1e-6 * max(abs(hi), 1.0))
            np.subtract(x, lo, out=out[i])
            out[i] *= scale
        else:
            np.multiply(x, 0.5 if config.flatfield else 1.0 / _UINT16_MAX, out=out[i])
        np.clip(out[i], 0.0, 1.0, out=out[i])
    sat = None
    if want_qc:
        sat = _bin(_saturation_mask(stack, config), b)
    return _Prepared(out, rel, sat, stack.shape[0])


def preprocess_stack(stack: np.ndarray, config: TileConfig = TileConfig()) -> np.ndarray:
    """Bin, flat-field (optional) and normalise one FOV.

    ``stack``: ``(planes, H, W)`` (or ``(H, W)``) uint16, 1 or 3 planes. Returns float32
    ``(planes, H // binning, W // binning)`` in [0, 1] (planes are *not* replicated here).
    """
    return _prepare(stack, config, want_qc=False).image



def relative_contrast(stack: np.ndarray, config: TileConfig = TileConfig()) -> np.ndarray:
    """``(planes, H', W')`` float32 ``plane / background − 1`` of the binned stack (what QC uses)."""
    return _prepare(stack, config, want_qc=True).rel

