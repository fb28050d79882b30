"""The cell and the nucleus around a nucleus centre as star-convex polygons, regressed by a small CNN.

StarDist (Schmidt et al., MICCAI 2018) describes an object by the distances from a point inside it
to its boundary along ``N_RAYS`` equally spaced directions. Here the point is a detected nucleus
and the objects are its cell and the nucleus itself: a crop of ``CROP_PX`` around the nucleus,
averaged ``DOWNSAMPLE``× (the cell outline is a thin line, the crop must hold an elongated cell),
goes through a 5-stage CNN that returns both polygons' log ray lengths and a logit that the crop is
centred on the nucleus of a live cell (dead cells and background are its negatives). Overlapping
cells are no problem for this representation: each nucleus has its own polygon.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["CROP_PX", "DOWNSAMPLE", "N_RAYS", "THETA", "RayNet", "load_raynet", "nucleus_crops", "polygon_shape",
           "save_raynet"]

N_RAYS = 32
THETA = np.linspace(0, 2 * np.pi, N_RAYS, endpoint=False)  # ray k points along (cos θ_k, sin θ_k) in (x, y)
CROP_PX = 256
DOWNSAMPLE = 2
LOG_RAY_OFFSET = 3.5  # the head predicts log(ray px) − this (− 1 more for nuclei): a 33-px cell ray is 0
OUTPUTS = "cell+nucleus"  # what the head regresses, recorded with the weights


def _block(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                         nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class RayNet(nn.Module):
    """Nucleus-centred crop ``(B, 3, 128, 128)`` → log ray lengths of the cell ``(B, N_RAYS)`` and
    of the nucleus ``(B, N_RAYS)``, live-nucleus logit ``(B,)``."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 5, 2, 2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.body = nn.Sequential(_block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w), _block(8 * w, 8 * w))
        side = CROP_PX // DOWNSAMPLE // 32
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * w * side * side, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, 2 * N_RAYS + 1))
        self.width = width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.head(self.body(self.stem(x)))
        return (out[:, :N_RAYS] + LOG_RAY_OFFSET, out[:, N_RAYS:2 * N_RAYS] + LOG_RAY_OFFSET - 1.0,
                out[:, 2 * N_RAYS])


def nucleus_crops(image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``CROP_PX`` crops of a preprocessed ``(3, H, W)`` image around each ``(row, col)`` centre,
    reflect-padded at the borders and averaged ``DOWNSAMPLE``×: ``(n, 3, 128, 128)`` float32."""
    image = np.asarray(image, dtype=np.float32)
    half = CROP_PX // 2
    padded = np.pad(image, ((0, 0), (half, half), (half, half)), mode="reflect")
    side = CROP_PX // DOWNSAMPLE
    out = np.empty((len(centres), image.shape[0], side, side), np.float32)
    for k, (y, x) in enumerate(np.asarray(centres, dtype=np.float64).reshape(-1, 2)):
        yi = min(max(int(round(y)), 0), image.shape[1] - 1)
        xi = min(max(int(round(x)), 0), image.shape[2] - 1)
        c = padded[:, yi:yi + CROP_PX, xi:xi + CROP_PX]
        out[k] = c.reshape(image.shape[0], side, DOWNSAMPLE, side, DOWNSAMPLE).mean(axis=(2, 4))
    return out


def polygon_shape(rays: np.ndarray) -> np.ndarray:
    """Area, elongation and roundness of star-convex polygons.

    Parameters
    ----------
    rays
        ``(n, N_RAYS)`` ray lengths in pixels (ray ``k`` along :data:`THETA` ``[k]``).

    Returns
    -------
    np.ndarray
        ``(n, 3)``: log area (px²), log elongation (√ of the ratio of the principal second moments
        of the polygon's area: ``log(a / b)`` for an ellipse), roundness ``4πA / P²`` (1 = circle).
    """
    r = np.asarray(rays, dtype=np.float64).reshape(-1, N_RAYS)
    x, y = r * np.cos(THETA), r * np.sin(THETA)
    x1, y1 = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    cross = x * y1 - x1 * y
    area = 0.5 * cross.sum(1)
    safe = np.maximum(area, 1e-9)
    cx = ((x + x1) * cross).sum(1) / (6 * safe)
    cy = ((y + y1) * cross).sum(1) / (6 * safe)
    sxx = ((x * x + x * x1 + x1 * x1) * cross).sum(1) / 12 - safe * cx * cx
    syy = ((y * y + y * y1 + y1 * y1) * cross).sum(1) / 12 - safe * cy * cy
    sxy = ((x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross).sum(1) / 24 - safe * cx * cy
    half_tr, det = (sxx + syy) / 2, sxx * syy - sxy * sxy
    disc = np.sqrt(np.maximum(half_tr * half_tr - det, 0.0))
    l1, l2 = half_tr + disc, np.maximum(half_tr - disc, 1e-12)
    perimeter = np.hypot(x1 - x, y1 - y).sum(1)
    return np.column_stack([np.log(safe), 0.5 * np.log(l1 / l2), 4 * np.pi * safe / np.maximum(perimeter, 1e-9) ** 2])


def save_raynet(net: RayNet, folder: Path | str, info: dict) -> Path:
    """Write ``raynet.pt`` (state dict) and ``raynet.json`` (width, geometry, ``info``) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "raynet.pt.tmp"
    torch.save(net.state_dict(), tmp)
    meta = {"width": net.width, "n_rays": N_RAYS, "crop_px": CROP_PX, "downsample": DOWNSAMPLE, "outputs": OUTPUTS,
            **info}
    (folder / "raynet.json.tmp").write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(folder / "raynet.pt")
    (folder / "raynet.json.tmp").replace(folder / "raynet.json")
    return folder / "raynet.pt"


def load_raynet(folder: Path | str) -> tuple[RayNet, dict]:
    """The trained :class:`RayNet` of ``folder`` in eval mode, and its JSON record."""
    folder = Path(folder)
    weights = folder / "raynet.pt"
    if not weights.exists():
        raise FileNotFoundError(f"cell segmentation model {weights} not found: materialize segmentation_model first")
    meta = json.loads((folder / "raynet.json").read_text())
    got = (meta.get("n_rays"), meta.get("crop_px"), meta.get("downsample"), meta.get("outputs"))
    if got != (N_RAYS, CROP_PX, DOWNSAMPLE, OUTPUTS):
        raise ValueError(f"{weights}: geometry {got} (rays, crop px, downsampling, outputs) does not match this "
                         f"code's {(N_RAYS, CROP_PX, DOWNSAMPLE, OUTPUTS)}: materialize segmentation_model again")
    net = RayNet(int(meta["width"]))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    return net, meta
