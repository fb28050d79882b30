"""Preprocess one brightfield FOV z-stack and cut it into QC'd 224 × 224 tiles.

Pipeline for one FOV (``stack``: ``(planes, H, W)`` uint16, planes in ``PlaneID`` order):

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

Tiles: a centred, non-overlapping grid of as many whole ``tile_size`` tiles as fit
(:func:`tile_grid`); the planes are the tile's channels (plane order = ``PlaneID`` order). A
1-plane stack (e.g. the real Harmony-5 fixture, one brightfield plane) is replicated to 3 identical
channels; 2 or more than 3 planes raise ``ValueError``.

QC (:func:`qc_tile`), evaluated in this order, first hit wins (reason strings are stable and stored
in the ``tiles`` table):

* ``"saturated"``: more than ``max_saturated_fraction`` of the tile's pixels are saturated in any
  plane. A raw pixel is saturated when it is at the 16-bit maximum (65535) *or* at the plane's
  dynamic-range ceiling: the plane's maximum value when at least ``ceiling_min_fraction`` of the
  plane's pixels sit exactly at it (a clipped sensor / 12-bit camera piles pixels up at its
  maximum, a well-exposed image reaches its maximum in a handful of pixels only). With binning, the
  saturated fraction is the mean of the raw mask over each bin.
* ``"debris"``: debris, dust, bubbles and dead-cell clumps absorb light, so they are *dark in the
  in-focus plane* where live cells (thin phase objects) are nearly invisible. Each plane is
  smoothed with a ``debris_smooth`` × ``debris_smooth`` box; a pixel is dark when the smoothed
  in-focus plane (the middle plane; the only plane of a 1-plane stack) is darker than
  ``1 − dark_threshold`` × background *and so is every other plane* of a 3-plane stack (an
  absorber is dark in every plane, while the defocus shading of a phase object flips sign
  between the planes below and above focus, so it is never dark in all three). The tile is debris
  when more than ``max_dark_fraction`` of its pixels are dark (0.4 % of a 224² tile ≈ 200 px ≈
  70 µm² at 0.6 µm/px, a ~5 µm-radius absorber), *or* when the standard deviation of ``rel``
  over the tile (any plane) exceeds ``max_rel_std`` (extreme intensity variance: bubbles, edges
  of the well, focus failures on thick clumps).
* ``"empty"``: too little texture for cells: the foreground fraction (pixels whose 3 × 3-smoothed
  ``|rel|`` exceeds ``fg_threshold`` in any plane) is below ``min_foreground_fraction``. Shot and
  read noise of a blank field stay well below ``fg_threshold`` after the 3 × 3 smoothing.
* ``"out_of_focus"`` (3-plane stacks only; a 1-plane stack carries no focus information, the
  rule is skipped and ``focus_corr`` is ``None``): the stack's focus lies outside the span of its
  planes. Physics: in brightfield a weak phase object (a live cell) has, to first order in the
  defocus ``z`` (transport of intensity), contrast ``rel_z ≈ −z λ/(4π) ∇²φ``: nearly invisible in
  focus and *opposite-signed* above and below focus. With planes at ``f − 3.6``, ``f``,
  ``f + 3.6`` µm (``f``: the true focus error of the middle plane) the outer planes are therefore
  anti-correlated while ``|f| < 3.6`` µm (focus between them) and positively correlated once both
  lie on the same side of focus (a gross focus failure; then all three planes are blurred alike).
  Statistic ``focus_corr``: the correlation of the first and last plane's ``rel``, band-passed to
  cell-detail scales (difference of Gaussians, ``focus_band`` = σ 1 and 4 binned px ≈ 0.6–2.4 µm
  at 0.6 µm/px, which drops the smooth common-mode background and the pixel noise); measured as
  the robust sign (Greiner) correlation ``sin(π/2 · mean(sign a · sign b))`` so that a few huge
  common-mode values (a saturated block, a debris edge leaking in from a neighbouring tile)
  cannot dominate it. Reject when ``focus_corr > max_outer_plane_correlation`` (0.1). Pure noise
  gives ≈ 0 (± 0.02 on a 224² tile), so a sparse tile never reaches 0.1 by chance; evaluated
  after ``"empty"`` (a blank tile has no focus information), and after ``"debris"`` (a large
  absorber is common-mode, i.e. positively correlated, in all planes). On the synthetic demo
  screen (4320 FOVs, focus sd ≈ 1 µm, 1 % gross failures at 6–10 µm): kept clean tiles ≤ −0.12
  (the largest normal focus error, 2.4 µm, included), defocused FOVs (|f| 4.5–10.5 µm) ≥ 0.21.

Default thresholds vs the real 1080² Harmony-5 brightfield fixture (U2OS, confluent, one plane):
pixel noise ≈ 0.4 % of the background (Immerkaer estimate), ≈ 0.14 % after 3 × 3 smoothing, so
``fg_threshold = 1 %`` is ~7 σ; its 16 grid tiles have foreground fractions 0.29–0.43 (limit
0.03), ``rel`` std ≤ 0.05 (limit 0.25), dark fraction ≤ 0.0009 (limit 0.004), no focus rule (one
plane): all 16 are kept. Its
big dark out-of-focus blob (bottom left, mostly in the grid margin) is ``"debris"`` when a tile
covers it. See ``lcd_assets_tests/test_tiles.py``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "QC_REASONS",
    "TileConfig",
    "preprocess_stack",
    "tile_grid",
    "qc_tile",
    "relative_contrast",
    "tile_fov",
    "render_preview",
    "render_tile_strip",
]

QC_REASONS = ("saturated", "debris", "empty", "out_of_focus")
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


# --------------------------------------------------------------------------------------------
# grid and QC


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


def qc_tile(
    rel: np.ndarray,
    *,
    saturated_fraction: float = 0.0,
    config: TileConfig = TileConfig(),
    focus_plane: int | None = None,
) -> str | None:
    """QC reason for one tile, or ``None`` when the tile is kept.

    ``rel``: ``(planes, T, T)`` float32 relative contrast of the tile (``plane / background − 1``,
    i.e. 0 = background; a raw tile divided by its background level minus 1 works too).
    ``saturated_fraction``: fraction of the tile's raw pixels saturated in any plane.
    ``focus_plane``: index of the in-focus plane (default: the middle plane).
    Rules and their order: see the module docstring (the out-of-focus rule needs 3 planes).
    """
    rel = np.asarray(rel, dtype=np.float32)
    if rel.ndim == 2:
        rel = rel[None]
    fp = rel.shape[0] // 2 if focus_plane is None else focus_plane
    dark, fg = _qc_maps(rel, config, fp)
    band = _focus_band(rel, config)
    return _decide(
        saturated_fraction=float(saturated_fraction),
        dark_fraction=float(dark.mean()),
        rel_std=float(rel.std(axis=(1, 2)).max()),
        fg_fraction=float(fg.mean()),
        focus_corr=None if band is None else _corr(*band),
        config=config,
    )


def _qc_maps(rel: np.ndarray, config: TileConfig, focus_plane: int) -> tuple[np.ndarray, np.ndarray]:
    """(dark mask, foreground mask), both (H, W) bool.

    Dark: the smoothed in-focus plane is darker than ``−dark_threshold`` *and*, for a 3-plane
    stack, so is every other smoothed plane (absorbers are dark in every plane; a phase object's
    defocus shading flips sign between the planes below and above focus)."""
    k = max(1, int(config.debris_smooth))

    def smooth(p: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(p, size=k, mode="nearest") if k > 1 else p

    dark = smooth(rel[focus_plane]) < -config.dark_threshold
    if dark.any():
        for p in range(rel.shape[0]):
            if p != focus_plane:
                dark &= smooth(rel[p]) < -config.dark_threshold
    fg = np.zeros(rel.shape[1:], dtype=bool)
    for p in range(rel.shape[0]):
        fg |= np.abs(ndimage.uniform_filter(rel[p], size=3, mode="nearest")) > config.fg_threshold
    return dark, fg


def _focus_band(rel: np.ndarray, config: TileConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """Band-passed (difference of Gaussians, ``focus_band`` σ in binned px) first and last plane of
    a 3-plane stack, or ``None`` when the stack has fewer planes (no out-of-focus rule)."""
    if rel.shape[0] < 3:
        return None
    s_lo, s_hi = config.focus_band
    out = []
    for p in (rel[0], rel[-1]):
        lo = ndimage.gaussian_filter(p, s_lo, mode="nearest", truncate=3.0)
        out.append(lo - ndimage.gaussian_filter(p, s_hi, mode="nearest", truncate=3.0))
    return out[0], out[1]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Robust (sign / Greiner) correlation of two equally shaped arrays: ``sin(π/2 · q)`` with the
    quadrant correlation ``q = mean(sign a · sign b)``; equals Pearson's r for Gaussian data, but
    every pixel has one vote, so a few huge values (a saturated block, a debris edge next to the
    tile) cannot dominate it. Pixels that are exactly 0 in either array do not vote."""
    a = np.sign(a).ravel()
    b = np.sign(b).ravel()
    n = np.count_nonzero(a * b)
    if n == 0:
        return 0.0
    q = float(np.dot(a, b)) / n
    return float(np.sin(0.5 * np.pi * q))


def _decide(
    *,
    saturated_fraction: float,
    dark_fraction: float,
    rel_std: float,
    fg_fraction: float,
    focus_corr: float | None = None,
    config: TileConfig,
) -> str | None:
    if saturated_fraction > config.max_saturated_fraction:
        return "saturated"
    if dark_fraction > config.max_dark_fraction or rel_std > config.max_rel_std:
        return "debris"
    if fg_fraction < config.min_foreground_fraction:
        return "empty"
    if focus_corr is not None and focus_corr > config.max_outer_plane_correlation:
        return "out_of_focus"
    return None


def relative_contrast(stack: np.ndarray, config: TileConfig = TileConfig()) -> np.ndarray:
    """``(planes, H', W')`` float32 ``plane / background − 1`` of the binned stack (what QC uses)."""
    return _prepare(stack, config, want_qc=True).rel


# --------------------------------------------------------------------------------------------
# tiling


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
    img, rel, sat = prep.image, prep.rel, prep.sat_fraction
    _, h, w = img.shape
    T = config.tile_size
    grid = tile_grid(h, w, T)
    n = len(grid)
    tiles = np.empty((n, 3, T, T), dtype=np.dtype(config.out_dtype))
    # whole-FOV QC maps once (cheaper than per-tile filtering, and no tile-border effects; the
    # per-tile numbers can therefore differ slightly from qc_tile on a cropped tile)
    dark, fg = _qc_maps(rel, config, rel.shape[0] // 2)
    band = _focus_band(rel, config)  # None for a 1-plane stack: no out-of-focus rule
    records: list[dict[str, Any]] = []
    for i, (y, x) in enumerate(grid):
        sl = (slice(y, y + T), slice(x, x + T))
        tile = img[(slice(None), *sl)]
        tiles[i] = tile if tile.shape[0] == 3 else np.broadcast_to(tile, (3, T, T))
        sat_frac = float(sat[sl].mean())
        dark_frac = float(dark[sl].mean())
        fg_frac = float(fg[sl].mean())
        rel_std = float(rel[(slice(None), *sl)].std(axis=(1, 2)).max())
        focus_corr = None if band is None else _corr(band[0][sl], band[1][sl])
        reason = _decide(
            saturated_fraction=sat_frac,
            dark_fraction=dark_frac,
            rel_std=rel_std,
            fg_fraction=fg_frac,
            focus_corr=focus_corr,
            config=config,
        )
        records.append(
            {
                "tile_index": i,
                "y": int(y),
                "x": int(x),
                "qc_reason": reason,
                "mean": float(tile.mean()),
                "std": float(tile.std()),
                "fg_fraction": fg_frac,
                "dark_fraction": dark_frac,
                "saturated_fraction": sat_frac,
                "rel_std": rel_std,
                "focus_corr": focus_corr,
            }
        )
    return tiles, records


# --------------------------------------------------------------------------------------------
# previews (PNG bytes for the Dagster UI)

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
