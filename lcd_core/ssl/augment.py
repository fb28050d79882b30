"""Multi-crop augmentation of (3, H, W) float tiles in [0, 1] (the 3 z-planes as channels), in torch.

Per crop: RandomResizedCrop (bilinear, antialiased) to 224 (global) or 96 (local), horizontal and
vertical flips, brightness/contrast jitter (p 0.8), Gaussian blur with DINO's probabilities
(global 1: 1.0, global 2: 0.1, locals: 0.5; σ ∈ [0.1, 2.0] output pixels, as DINO's PIL blur).
No colour/hue/solarisation: the channels are focal planes, not colours.

Plane-agnostic mode (PA): each crop first picks ONE z-plane uniformly at random and replicates it
to the 3 channels; no blur (the focal planes supply the defocus variation).

All randomness comes from the ``torch.Generator`` passed in, so a (seed, step) pair reproduces a batch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MultiCropAugment", "random_resized_crop_box", "gaussian_blur"]


def _u(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def random_resized_crop_box(h: int, w: int, scale: tuple[float, float], g: torch.Generator,
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, height, width) as torchvision's RandomResizedCrop.get_params (10 tries, then a
    central crop clamped to the ratio range)."""
    area = h * w
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        a = area * _u(g, *scale)
        r = math.exp(_u(g, *lr))
        cw, ch = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W), kernel radius ceil(3σ), reflect padding."""
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = (k / k.sum()).to(x.device)
    c = x.shape[0]
    y = F.pad(x[None], (r, r, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


class MultiCropAugment:
    """``aug(tile_a, tile_b, g)`` → list of ``2 + 2·n_local_per_source`` crops, each (3, h, w):
    global crop of ``tile_a``, global crop of ``tile_b`` (``tile_a`` again when None: standard
    DINO), ``n_local_per_source`` local crops of ``tile_a`` then as many of ``tile_b``."""

    def __init__(self, config):
        self.c = config

    def crop(self, tile: torch.Tensor, size: int, scale: tuple[float, float], blur_p: float,
             g: torch.Generator) -> torch.Tensor:
        c = self.c
        if c.plane_agnostic:
            p = int(torch.randint(0, tile.shape[0], (), generator=g))
            tile = tile[p:p + 1]
        top, left, h, w = random_resized_crop_box(tile.shape[-2], tile.shape[-1], scale, g)
        x = tile[:, top:top + h, left:left + w]
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0]
        if _u(g) < c.hflip_p:
            x = x.flip(-1)
        if _u(g) < c.vflip_p:
            x = x.flip(-2)
        if _u(g) < c.jitter_p:
            x = x * _u(g, 1 - c.brightness, 1 + c.brightness)
            m = x.mean()
            x = (x - m) * _u(g, 1 - c.contrast, 1 + c.contrast) + m
        if not c.plane_agnostic and _u(g) < blur_p:
            x = gaussian_blur(x, _u(g, *c.blur_sigma))
        x = x.clamp_(0.0, 1.0)
        return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x

    def __call__(self, tile_a, tile_b=None, g: torch.Generator | None = None) -> list[torch.Tensor]:
        c = self.c
        g = g if g is not None else torch.Generator().manual_seed(0)
        a = torch.as_tensor(np.asarray(tile_a), dtype=torch.float32)
        b = a if tile_b is None else torch.as_tensor(np.asarray(tile_b), dtype=torch.float32)
        gs, ls = c.global_crop_scale, c.local_crop_scale
        out = [self.crop(a, c.global_crop_size, gs, c.blur_p[0], g),
               self.crop(b, c.global_crop_size, gs, c.blur_p[1], g)]
        for src in (a, b):
            out += [self.crop(src, c.local_crop_size, ls, c.blur_p[2], g) for _ in range(c.n_local_crops_per_source)]
        return out
