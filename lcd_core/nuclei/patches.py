"""Nuclei discovered in a ViT's patch features, without labels (SPEC §4.9; LOST / TokenCut / FOUND).

Pipeline of :func:`detect_patches` for one brightfield FOV (``planes``: 1 or 3 z-planes):

1. **Tiles.** :func:`lcd_core.tiles.preprocess.preprocess_stack` (flat-field, percentile
   normalisation; one plane is replicated to the 3 channels), resampled to the working pixel size
   ``work_um`` (default 0.6 µm, the platform's tiles) so that the ViT sees nuclei at one scale
   whatever the microscope, then cut into overlapping 224-px tiles.
2. **Dense tokens.** :func:`lcd_core.embedding.attention.token_maps` at a stride giving two
   tokens across a 10 µm nucleus (≤ the patch size: 8 px at 0.6 µm); the tiles' tokens are stitched into one grid over the FOV (tent-weighted mean).
3. **Background discovery** (FOUND, Siméoni et al. 2023): a background seed token, either the
   least CLS-attended one (``seed="attention"``, FOUND's choice; needs a trained ViT) or the most
   typical one (``seed="degree"``: highest mean cosine similarity to all tokens, TokenCut's
   affinity degree); the background is the ``bg_share`` of tokens most similar to the seed; the
   foreground score of a token is its cosine distance to the background prototype (their mean).
4. **Edge-aware refinement.** The token score, interpolated to pixels, is refined by a guided
   filter (He et al.; a fast stand-in for the bilateral solver) guided by the brightfield image.
5. **Every nucleus.** Nuclei = score above an Otsu threshold (``nuc_level`` scales it); markers
   = local maxima of the smoothed score at least ``0.6 × nucleus_um[0]`` apart; watershed; objects
   outside ``nucleus_um`` (equivalent diameter) are dropped. Confluency foreground = score above
   ``fg_level`` × the Otsu threshold. Labels are resampled to the input size.

Sizes are in µm from ``pixel_um`` (never pixels). The untrained ViT's tokens are random features of
the pixels; see ``benchmarks/exp_patch_nuclei.py`` for what they achieve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from lcd_core.nuclei.objects import Nuclei
from lcd_core.tiles.preprocess import TileConfig, preprocess_stack

__all__ = ["PatchScore", "patch_score", "nuclei_from_score", "detect_patches", "default_model", "token_stride"]

TILE = 224
TILE_OVERLAP = 32  # px of overlap between neighbouring tiles (tokens near tile edges are down-weighted)
WORK_UM = 0.6  # working pixel size: the platform's tiles (0.598 µm)
NUCLEUS_UM = (7.0, 25.0)  # equivalent diameters kept (µm)
STRIDE_NUCLEUS_UM = 10.0  # the token grid resolves nuclei of this diameter ...
TOKENS_PER_NUCLEUS = 2.0  # ... with this many tokens across


@dataclass(frozen=True)
class PatchScore:
    """Foreground score of one FOV at the working pixel size.

    Attributes
    ----------
    score
        ``(h, w)`` float32 refined foreground score (cosine distance to the background prototype).
    guide
        ``(h, w)`` float32 brightfield guide image in [0, 1] (mean of the preprocessed planes).
    attention
        ``(h, w)`` float32 mean last-layer CLS attention (token-wise sums to 1 per tile).
    work_um, pixel_um
        Working and input pixel sizes (µm); ``shape``: the input ``(H, W)``.
    stride
        Token stride in working pixels.
    """

    score: np.ndarray
    guide: np.ndarray
    attention: np.ndarray
    work_um: float
    pixel_um: float
    shape: tuple[int, int]
    stride: int


def default_model(checkpoint: str | Path | None = None, seed: int = 0) -> torch.nn.Module:
    """The ViT to use: the checkpoint folder given (any :mod:`lcd_core.embedding.vit` checkpoint),
    else the platform's default untrained ViT-S/16 of ``seed``
    (as :func:`lcd_core.pipeline.setup.vit_checkpoint` writes it)."""
    from lcd_core.embedding.vit import create_vit, load_checkpoint

    if checkpoint is not None:
        return load_checkpoint(checkpoint)[0]
    return create_vit(seed=seed)


def token_stride(patch: int, work_um: float, nucleus_min_um: float = STRIDE_NUCLEUS_UM) -> int:
    """Token stride (working px): ``TOKENS_PER_NUCLEUS`` tokens across the smallest nucleus,
    within ``[2, patch]``."""
    return int(min(patch, max(2, math.floor(nucleus_min_um / TOKENS_PER_NUCLEUS / work_um + 1e-6))))


def _check_input(planes, pixel_um) -> np.ndarray:
    planes = np.asarray(planes)
    if planes.ndim == 2:
        planes = planes[None]
    if planes.ndim != 3 or planes.shape[0] not in (1, 3):
        raise ValueError(f"planes must be (H, W) or (P, H, W) with P = 1 or 3, got shape {planes.shape}")
    if not (isinstance(pixel_um, (int, float, np.floating)) and math.isfinite(pixel_um) and pixel_um > 0):
        raise ValueError(f"pixel_um must be a positive number of µm, got {pixel_um!r}")
    if not np.issubdtype(planes.dtype, np.number) or np.issubdtype(planes.dtype, np.complexfloating):
        raise ValueError(f"planes must be real numbers, got dtype {planes.dtype}")
    if min(planes.shape[1:]) * pixel_um < 32.0:
        raise ValueError(f"field of {planes.shape[1:]} px at {pixel_um} µm is too small (< 32 µm)")
    if np.issubdtype(planes.dtype, np.floating):
        if not np.isfinite(planes).all():
            raise ValueError("planes contain NaN or infinite values")
        planes = np.clip(planes, 0, None)
    return planes


def _working_image(planes: np.ndarray, pixel_um: float, work_um: float) -> np.ndarray:
    """``(3, h, w)`` float32 preprocessed planes in [0, 1] at ``work_um`` (≥ one tile per side)."""
    img = preprocess_stack(planes, TileConfig())
    if img.shape[0] == 1:
        img = np.repeat(img, 3, axis=0)
    zoom = pixel_um / work_um
    h, w = (max(TILE, round(s * zoom)) for s in img.shape[1:])
    if (h, w) != img.shape[1:]:
        x = torch.from_numpy(np.ascontiguousarray(img))[None]
        img = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                            antialias=zoom < 1).numpy()[0]
    return np.ascontiguousarray(img, dtype=np.float32)


def _origins(size: int, stride: int) -> list[int]:
    """Tile origins (multiples of ``stride``) covering ``[0, size)`` with ~``TILE_OVERLAP`` overlap."""
    step = max(stride, ((TILE - TILE_OVERLAP) // stride) * stride)
    last = ((size - TILE) // stride) * stride
    out = list(range(0, last + 1, step))
    if out[-1] != last:
        out.append(last)
    return out


def _stitched_tokens(model, img: np.ndarray, stride: int, batch_size: int):
    """Token features ``(gh, gw, D)`` and mean attention ``(gh, gw)`` on the FOV's token lattice
    (token ``(i, j)`` centred at ``(i·stride + p/2, j·stride + p/2)``), and the patch size ``p``."""
    from lcd_core.embedding.attention import patch_size_of, token_maps

    p = patch_size_of(model)
    _, h, w = img.shape
    oys, oxs = _origins(h, stride), _origins(w, stride)
    gh, gw = (h - p) // stride + 1, (w - p) // stride + 1
    feats = att = wsum = None
    tiles, where = [], []
    for oy in oys:
        for ox in oxs:
            tiles.append(img[:, oy:oy + TILE, ox:ox + TILE])
            where.append((oy // stride, ox // stride))
    for i in range(0, len(tiles), batch_size):
        tm = token_maps(model, np.stack(tiles[i:i + batch_size]), stride=stride, batch_size=batch_size)
        g = tm.grid[0]
        if feats is None:
            feats = np.zeros((gh, gw, tm.patches.shape[-1]), np.float32)
            att, wsum = np.zeros((gh, gw), np.float32), np.zeros((gh, gw), np.float32)
            ramp = np.minimum(np.arange(g) + 1, g - np.arange(g)).astype(np.float32)
            tent = np.outer(ramp, ramp)
        for k in range(len(tm.patches)):
            ty, tx = where[i + k]
            sl = (slice(ty, ty + g), slice(tx, tx + g))
            feats[sl] += tm.patches[k] * tent[..., None]
            att[sl] += tm.attention[k].mean(0) * tent
            wsum[sl] += tent
    return feats / wsum[..., None], att / wsum, p


def _background_score(feats: np.ndarray, att: np.ndarray, seed: str, bg_share: float) -> np.ndarray:
    """FOUND-style token score: cosine distance to the prototype of the tokens most similar to
    the background seed. ``feats``: ``(gh, gw, D)``; returns ``(gh, gw)``."""
    x = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    x -= x.mean(0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if seed == "attention":
        s = int(np.argmin(att.ravel()))
    elif seed == "degree":
        s = int(np.argmax(x @ x.mean(0)))  # mean cosine similarity to all tokens, O(N·D)
    else:
        raise ValueError(f"seed must be 'degree' or 'attention', got {seed!r}")
    sim = x @ x[s]
    bg = sim >= np.quantile(sim, 1.0 - bg_share)
    proto = x[bg].mean(0)
    proto /= max(float(np.linalg.norm(proto)), 1e-12)
    return (1.0 - x @ proto).reshape(feats.shape[:2]).astype(np.float32)


def _guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide, box windows of side ``2·radius + 1``)."""
    box = lambda a: ndi.uniform_filter(a, 2 * radius + 1, mode="reflect")  # noqa: E731
    mi, mp = box(guide), box(src)
    cov = box(guide * src) - mi * mp
    var = box(guide * guide) - mi * mi
    a = cov / (var + eps)
    b = mp - a * mi
    return (box(a) * guide + box(b)).astype(np.float32)


def _to_pixels(tok: np.ndarray, shape: tuple[int, int], stride: int, patch: int) -> np.ndarray:
    """Token map on the FOV lattice → ``shape`` pixels (bilinear, held constant at the borders)."""
    from lcd_core.embedding.attention import upsample_maps

    return upsample_maps(tok, None, shape, stride=stride, patch=patch)


def patch_score(planes, pixel_um: float, *, model: torch.nn.Module | None = None, stride: int | None = None,
                work_um: float = WORK_UM, seed: str = "degree", bg_share: float = 0.5,
                refine_um: float = 2.0, refine_eps: float = 1e-3, batch_size: int = 4) -> PatchScore:
    """Steps 1–4 of the module docstring: the refined foreground score of one FOV.

    Parameters
    ----------
    planes
        ``(P, H, W)`` (P = 1 or 3) or ``(H, W)`` raw brightfield planes (uint16 or float ≥ 0).
    pixel_um
        Pixel size of ``planes`` in µm (from the index).
    model
        A timm ViT; ``None``: :func:`default_model` (the untrained ViT-S/16 of seed 0).
    stride
        Token stride in working pixels; ``None``: :func:`token_stride`.
    work_um
        Working pixel size (µm) the FOV is resampled to.
    seed, bg_share
        Background seed (``"degree"`` or ``"attention"``) and the share of tokens taken as
        background around it.
    refine_um, refine_eps
        Guided-filter window radius (µm) and regularisation (guide in [0, 1]).
    batch_size
        Tiles per forward.
    """
    planes = _check_input(planes, pixel_um)
    if not 0 < bg_share < 1:
        raise ValueError(f"bg_share must be in (0, 1), got {bg_share}")
    if not work_um > 0:
        raise ValueError(f"work_um must be positive, got {work_um}")
    model = default_model() if model is None else model
    from lcd_core.embedding.attention import patch_size_of

    stride = token_stride(patch_size_of(model), work_um) if stride is None else int(stride)
    img = _working_image(planes, float(pixel_um), work_um)
    feats, att, p = _stitched_tokens(model, img, stride, batch_size)
    tok = _background_score(feats, att, seed, bg_share)
    shape = img.shape[1:]
    coarse = _to_pixels(tok, shape, stride, p)
    guide = img.mean(0)
    radius = max(1, round(refine_um / work_um))
    score = _guided_filter(guide, coarse, radius, refine_eps) if refine_um > 0 else coarse
    return PatchScore(score.astype(np.float32), guide, _to_pixels(att, shape, stride, p).astype(np.float32),
                      float(work_um), float(pixel_um), tuple(planes.shape[1:]), stride)


def _otsu(values: np.ndarray) -> float:
    """Otsu threshold of a sample (256 bins)."""
    hist, edges = np.histogram(values, bins=256)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
    m1 = (np.sum(hist * mids) - np.cumsum(hist * mids)) / np.maximum(w1, 1)
    return float(mids[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def nuclei_from_score(ps: PatchScore, *, nuc_level: float = 1.2, fg_level: float = 0.6,
                      nucleus_um: tuple[float, float] = NUCLEUS_UM, smooth_um: float = 1.0,
                      min_sep: float = 0.6) -> Nuclei:
    """Step 5: every nucleus of a :class:`PatchScore` (watershed from score maxima), at input size.

    Parameters
    ----------
    nuc_level, fg_level
        Nucleus and confluency thresholds as multiples of the FOV's Otsu threshold of the score
        (above the score's 1st percentile).
    nucleus_um
        ``(min, max)`` equivalent diameter of the nuclei kept (µm).
    smooth_um
        Gaussian σ (µm) of the score before the maxima are found.
    min_sep
        Minimum distance between two nucleus centres, as a fraction of ``nucleus_um[0]``.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    lo, hi = nucleus_um
    if not 0 < lo < hi:
        raise ValueError(f"nucleus_um must be (min, max) with 0 < min < max, got {nucleus_um}")
    um = ps.work_um
    s = ndi.gaussian_filter(ps.score, smooth_um / um) if smooth_um > 0 else ps.score
    base = float(np.percentile(s, 1))
    t = _otsu(s[:: 2, :: 2].ravel())
    mask = s > base + nuc_level * (t - base)
    fg = s > base + fg_level * (t - base)
    peaks = peak_local_max(s, min_distance=max(1, round(min_sep * lo / um / 2)), labels=mask.astype(np.int32),
                           exclude_border=False)
    markers = np.zeros(s.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-s, markers, mask=mask)
    labels = _size_filter(labels, um, lo, hi)
    return Nuclei.from_labels(_resize_nearest(labels, ps.shape), _resize_nearest(fg, ps.shape), ps.pixel_um)


def _size_filter(labels: np.ndarray, um: float, lo: float, hi: float) -> np.ndarray:
    """Zero the objects whose equivalent diameter (µm) is outside ``[lo, hi]``."""
    area = np.bincount(labels.ravel()) * um * um
    diam = np.sqrt(4 * area / np.pi)
    keep = (diam >= lo) & (diam <= hi)
    keep[0] = False
    return np.where(keep[labels], labels, 0).astype(np.int32)


def _resize_nearest(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resampling of a label / mask image to ``shape`` (pixel centres aligned)."""
    if a.shape == tuple(shape):
        return a
    iy = np.minimum(((np.arange(shape[0]) + 0.5) * a.shape[0] / shape[0]).astype(int), a.shape[0] - 1)
    ix = np.minimum(((np.arange(shape[1]) + 0.5) * a.shape[1] / shape[1]).astype(int), a.shape[1] - 1)
    return a[np.ix_(iy, ix)]


def detect_patches(planes, pixel_um: float, *, model: torch.nn.Module | None = None, stride: int | None = None,
                   work_um: float = WORK_UM, seed: str = "degree", bg_share: float = 0.5,
                   nuc_level: float = 1.2, fg_level: float = 0.6,
                   nucleus_um: tuple[float, float] = NUCLEUS_UM, batch_size: int = 4) -> Nuclei:
    """Nuclei and confluency of one brightfield FOV from a ViT's patch features, without labels.

    Parameters
    ----------
    planes
        ``(P, H, W)`` with P = 1 or 3 (or ``(H, W)``) raw brightfield planes.
    pixel_um
        Pixel size in µm (from the index).
    model
        A timm ViT with a CLS token (any checkpoint, e.g. ``default_model(folder)``); ``None``: the
        platform's default untrained ViT-S/16 (seed 0).
    stride, work_um, seed, bg_share
        See :func:`patch_score`.
    nuc_level, fg_level, nucleus_um
        See :func:`nuclei_from_score`.
    batch_size
        Tiles per forward.

    Returns
    -------
    Nuclei
        Labels and foreground at the input size, areas in µm².
    """
    ps = patch_score(planes, pixel_um, model=model, stride=stride, work_um=work_um, seed=seed,
                     bg_share=bg_share, batch_size=batch_size)
    return nuclei_from_score(ps, nuc_level=nuc_level, fg_level=fg_level, nucleus_um=nucleus_um)
