"""QC of one tile: saturated, debris, empty, out of focus (first hit wins).

Rules (:func:`qc_tile`; :func:`lcd_core.tiles.grid.tile_fov` applies them to every grid tile),
evaluated in this order, first hit wins (reason strings are stable and stored in the ``tiles``
table):

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
covers it. See ``lcd_assets_tests/test_tiles_qc.py``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lcd_core.tiles.preprocess import TileConfig

__all__ = ["QC_REASONS", "qc_tile"]

QC_REASONS = ("saturated", "debris", "empty", "out_of_focus")


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
