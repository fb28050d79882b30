"""Training-free nuclei and confluency from brightfield: 3-plane z-stacks and single planes.

The method (SPEC §4.9, issue 18), every length in µm and converted with the index's pixel size:

1. **Flat field.** Each plane is divided by its own heavy Gaussian blur (``background_um``) so
   illumination gradients, vignetting and gain drop out: ``c = I / blur(I) − 1``.
2. **Phase.** A live cell is a thin phase object. With three planes (below, in, above focus) the
   transport-of-intensity equation turns the outer planes' difference into the optical thickness
   (:func:`lcd_core.cells.nuclei.tie_phase`). With one plane the same inversion is applied to the
   single plane's contrast: a slightly defocused plane is ``∝ ± ∇²φ`` with an unknown sign, which is
   chosen so that the nucleus map (step 3) has the heavy *positive* tail that thick compact objects
   on a flat background give (positive skewness). An exactly focused plane carries little phase contrast; what it has is
   absorption, which the same inversion turns into a smooth map of the dense objects.
3. **Nucleus map.** Nuclei are the thickest compact parts of a cell: a difference of Gaussians of
   the phase at nucleus scale (``nucleus_diameter_um``) in units of its robust spread.
4. **Foreground.** Cells carry fine texture (granules, edges, nucleoli) where the empty plate has
   only camera noise: the local standard deviation of the fine-scale contrast, thresholded by Otsu
   on its logarithm, closed, hole-filled and cleaned of specks; confluency = its mean.
5. **Nuclei.** Seeds are local maxima of the nucleus map at least a nucleus radius apart inside the
   foreground; a seeded watershed of the map inside ``map > mask_level`` grows them; objects outside
   the plausible nucleus area (``min_area_um2`` … ``max_area_um2``) are dropped (this also drops the
   small dense bodies of dead cells, which a brightfield method sees as debris).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

from lcd_core.cells.nuclei import tie_phase
from lcd_core.nuclei.objects import Nuclei

__all__ = ["DEFAULTS", "blur", "detect_brightfield", "flat_contrast", "foreground_mask", "nucleus_map", "phase_map"]

#: default parameters (µm, µm², or dimensionless); tuned on synthetic seed 0 only
DEFAULTS: dict[str, float] = {
    "background_um": 25.0,  # flat-field blur
    "phase_scale_um": 120.0,  # TIE regularization: structures larger than this are damped
    "nucleus_diameter_um": 10.0,  # typical nucleus; sets the map's band and the seed spacing
    "seed_level": 2.0,  # minimum seed height, robust SDs of the nucleus map
    "mask_level": 1.4,  # nucleus extent: map above this many robust SDs
    "min_area_um2": 25.0,
    "max_area_um2": 700.0,
    "texture_um": 1.0,  # fine-scale contrast for the foreground
    "texture_window_um": 4.0,
    "texture_offset": 0.3,
    "min_texture_contrast": 0.3,  # Otsu classes closer than this (ln variance): no cells at all  # foreground threshold below Otsu's, in natural-log units of variance
    "min_cell_um2": 60.0,
    "single_plane_sign": 0.0,  # one plane: +1 / −1 fixes the contrast sign, 0 chooses it (skewness)
}


def _px(um: float, pixel_um: float) -> float:
    """A length in µm as pixels."""
    return float(um) / float(pixel_um)


def _check(planes: np.ndarray, pixel_um: float) -> np.ndarray:
    """``planes`` as a float64 ``(P, H, W)`` stack with P = 1 or 3; raise on anything else."""
    arr = np.asarray(planes)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"brightfield nuclei need a (1, H, W) or (3, H, W) stack, got shape {arr.shape}")
    if min(arr.shape[1:]) < 16:
        raise ValueError(f"image of shape {arr.shape[1:]} is too small for nucleus detection")
    if pixel_um is None or not np.isfinite(pixel_um) or not pixel_um > 0:
        raise ValueError(f"pixel size must be a positive number of µm, got {pixel_um!r}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("brightfield planes contain NaN or infinite values")
    return arr


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a block-averaged copy and are interpolated back (fast, and
    exact enough for the smooth result)."""
    f = int(sigma_px // 4)
    if f < 2:
        return ndi.gaussian_filter(image, sigma_px, mode="reflect")
    h, w = image.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(image, ((0, hp - h), (0, wp - w)), mode="reflect")
    small = padded.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma_px / f, mode="reflect")
    rows, cols = _upsampler(small.shape[0], f), _upsampler(small.shape[1], f)
    return (rows @ small @ cols.T)[:h, :w]


@functools.lru_cache(maxsize=32)
def _upsampler(n: int, f: int) -> np.ndarray:
    """``(n·f, n)``: linear upsampling by ``f`` as a matrix, the columns being
    ``ndi.zoom(unit vector, f, order=1, grid_mode=True, mode="nearest")``; bilinear zoom is
    separable, so ``R @ image @ Cᵀ`` is that zoom of the image in two small products."""
    basis = np.eye(n)
    out = np.stack([ndi.zoom(basis[j], f, order=1, grid_mode=True, mode="nearest") for j in range(n)], axis=1)
    out.setflags(write=False)
    return out


def flat_contrast(planes: np.ndarray, pixel_um: float,
                  background_um: float = DEFAULTS["background_um"]) -> np.ndarray:
    """``I / blur(I) − 1`` of every plane: contrast relative to the local illumination (offset-free,
    any intensity scale); ``(P, H, W)`` float64."""
    out = np.empty(planes.shape, np.float64)
    for k, plane in enumerate(planes):
        plane = plane - min(float(plane.min()), 0.0)
        bg = blur(plane, _px(background_um, pixel_um))
        out[k] = plane / np.maximum(bg, 1e-6 * max(float(bg.max()), 1e-12)) - 1.0
    return out


def _skew(values: np.ndarray) -> float:
    v = values - values.mean()
    sd = v.std()
    return float((v**3).mean() / sd**3) if sd > 0 else 0.0


def phase_map(contrast: np.ndarray, pixel_um: float, phase_scale_um: float = DEFAULTS["phase_scale_um"],
              sign: float = 0.0) -> np.ndarray:
    """Relative optical thickness of a ``(3, H, W)`` or ``(1, H, W)`` brightfield stack.

    Parameters
    ----------
    contrast
        :func:`flat_contrast` of the stack (below, in, above focus; or one plane).
    pixel_um
        Pixel size in µm.
    phase_scale_um
        TIE regularization length, µm.
    sign
        One plane only: multiply by the sign of this (``0``: leave as is).

    Returns
    -------
    np.ndarray
        ``(H, W)`` phase up to scale and offset, thicker = higher (for one plane only if the
        sign is right; :func:`detect_brightfield` chooses it by skewness, see the module docstring).
    """
    c = contrast
    eps = (2 * np.pi / _px(phase_scale_um, pixel_um)) ** 2
    if c.shape[0] == 3:
        return tie_phase(c, eps=eps)
    phase = tie_phase(np.stack([-c[0], np.zeros_like(c[0]), c[0]]), eps=eps)
    return phase * (np.sign(sign) if sign else 1.0)


def nucleus_map(phase: np.ndarray, pixel_um: float,
                nucleus_diameter_um: float = DEFAULTS["nucleus_diameter_um"]) -> np.ndarray:
    """Difference of Gaussians of the phase at nucleus scale, in robust SDs (median 0, odd-symmetric
    so ``nucleus_map(-phase) == -nucleus_map(phase)``).

    The small Gaussian (``d / 8``) removes noise and nucleoli, the large one (``d``) the cell body
    and the background, so compact thick objects about ``d`` across stand out.
    """
    d = _px(nucleus_diameter_um, pixel_um)
    m = ndi.gaussian_filter(phase, d / 8) - blur(phase, d)
    med = float(np.median(m))
    mad = float(np.median(np.abs(m - med))) * 1.4826
    return (m - med) / (mad if mad > 0 else (m.std() + 1e-12))


def foreground_mask(contrast: np.ndarray, pixel_um: float, texture_um: float = DEFAULTS["texture_um"],
                    texture_window_um: float = DEFAULTS["texture_window_um"],
                    min_cell_um2: float = DEFAULTS["min_cell_um2"],
                    texture_offset: float = DEFAULTS["texture_offset"],
                    min_texture_contrast: float = DEFAULTS["min_texture_contrast"]) -> np.ndarray:
    """Pixels covered by cells: thresholded local texture (see the module docstring).

    Returns
    -------
    np.ndarray
        ``(H, W)`` bool.
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    fine = [f - ndi.gaussian_filter(f, _px(texture_um, pixel_um)) for f in contrast]
    win = _px(texture_window_um, pixel_um)
    var = ndi.gaussian_filter(sum(f * f for f in fine), win) / len(fine)  # the filter is linear: once
    logv = np.log(var + 1e-12)
    sub = logv[:: 4, :: 4]
    if float(sub.max() - sub.min()) < 1e-9:
        return np.zeros(logv.shape, bool)
    t = threshold_otsu(sub)
    if float(sub[sub > t].mean() - sub[sub <= t].mean()) < min_texture_contrast:
        return np.zeros(logv.shape, bool)  # one population of texture: no cells (or only cells)
    fg = logv > t - texture_offset
    radius = max(1, int(round(win)))
    fg = ndi.binary_closing(fg, structure=np.ones((3, 3)), iterations=radius, border_value=1)
    min_px = int(min_cell_um2 / pixel_um**2)
    fg = remove_small_objects(fg, max_size=min_px)
    return remove_small_holes(fg, max_size=4 * min_px)


def _seeds(nmap: np.ndarray, allowed: np.ndarray, spacing_px: float, level: float) -> np.ndarray:
    """Marker image: local maxima of ``nmap`` ≥ ``level`` inside ``allowed``, ``spacing_px`` apart."""
    from skimage.feature import peak_local_max

    peaks = peak_local_max(nmap, min_distance=max(1, int(spacing_px)), threshold_abs=level,
                           labels=allowed.astype(np.int32), exclude_border=False)
    markers = np.zeros(nmap.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    return markers


def _filter_areas(labels: np.ndarray, pixel_um: float, min_um2: float, max_um2: float) -> np.ndarray:
    """Zero the labels whose area is outside ``[min_um2, max_um2]``."""
    area = np.bincount(labels.ravel()) * pixel_um**2
    keep = (area >= min_um2) & (area <= max_um2)
    keep[0] = False
    return np.where(keep[labels], labels, 0)


def detect_brightfield(planes: np.ndarray, pixel_um: float, **params) -> Nuclei:
    """Nuclei and confluency of one field from its brightfield planes, without labels or training.

    Parameters
    ----------
    planes
        ``(3, H, W)`` (below, in, above focus) or ``(1, H, W)`` / ``(H, W)``; uint16 or float, any
        intensity scale.
    pixel_um
        Pixel size in µm (from the index).
    **params
        Overrides of :data:`DEFAULTS` (lengths in µm, areas in µm², levels in robust SDs).

    Returns
    -------
    Nuclei
        Label image, centres and areas at the original size, and the foreground mask.

    Raises
    ------
    ValueError
        On a stack that is not 1 or 3 planes, a non-positive pixel size, an unknown parameter or
        non-finite pixels.
    """
    from skimage.segmentation import watershed

    bad = sorted(set(params) - set(DEFAULTS))
    if bad:
        raise ValueError(f"unknown brightfield parameters {bad}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    stack = _check(planes, pixel_um)
    contrast = flat_contrast(stack, pixel_um, p["background_um"])
    fg = foreground_mask(contrast, pixel_um, p["texture_um"], p["texture_window_um"], p["min_cell_um2"],
                         p["texture_offset"], p["min_texture_contrast"])
    phase = phase_map(contrast, pixel_um, p["phase_scale_um"], p["single_plane_sign"])
    nmap = nucleus_map(phase, pixel_um, p["nucleus_diameter_um"])
    if stack.shape[0] == 1 and not p["single_plane_sign"] and _skew(nmap[::2, ::2]) < 0:
        nmap = -nmap  # one plane of unknown defocus sign: nuclei are the heavy positive tail
    inside = (nmap > p["mask_level"]) & ndi.binary_dilation(fg, iterations=2)
    spacing = 0.5 * _px(p["nucleus_diameter_um"], pixel_um)
    markers = _seeds(nmap, inside, spacing, p["seed_level"])
    labels = watershed(-nmap, markers, mask=inside)
    labels = _filter_areas(labels, pixel_um, p["min_area_um2"], p["max_area_um2"])
    return Nuclei.from_labels(labels, fg, pixel_um)
