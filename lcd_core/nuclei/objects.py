"""The result of every nucleus detector: a label image, the nuclei's centres and areas, and the
cell-covered foreground (confluency), in the pixels of the original image and in µm²."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Nuclei"]


@dataclass(frozen=True)
class Nuclei:
    """Nuclei of one field of view.

    Attributes
    ----------
    labels
        ``(H, W)`` int32 label image at the original image size: 0 background, ``k`` the k-th
        nucleus (1-based, the order of ``centres``).
    centres
        ``(n, 2)`` float64 centres in pixels of the original image, ``x`` = column, ``y`` = row.
    area_um2
        ``(n,)`` float64 nucleus areas in µm².
    foreground
        ``(H, W)`` bool: pixels covered by cells (the confluency mask).
    pixel_um
        Pixel size in µm (from the index).
    """

    labels: np.ndarray
    centres: np.ndarray
    area_um2: np.ndarray
    foreground: np.ndarray
    pixel_um: float

    @property
    def n(self) -> int:
        """Number of nuclei."""
        return int(self.centres.shape[0])

    @property
    def confluency(self) -> float:
        """Fraction of the field covered by cells."""
        return float(self.foreground.mean()) if self.foreground.size else 0.0

    @classmethod
    def from_labels(cls, labels: np.ndarray, foreground: np.ndarray, pixel_um: float) -> Nuclei:
        """Build from a label image (labels renumbered 1..n in ascending order of the given ids,
        absent ids dropped) and a foreground mask."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or foreground.shape != labels.shape:
            raise ValueError(f"labels {labels.shape} and foreground {foreground.shape} must be one 2-D shape")
        if not pixel_um > 0:
            raise ValueError(f"pixel size must be positive, got {pixel_um!r} µm")
        ids = np.unique(labels[labels > 0])
        lut = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
        lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
        relabelled = lut[labels]
        index = np.arange(1, ids.size + 1)
        if ids.size:
            yx = np.asarray(ndi.center_of_mass(np.ones_like(relabelled), relabelled, index), np.float64)
            centres = yx[:, ::-1].copy()
            area = ndi.sum_labels(np.ones_like(relabelled), relabelled, index).astype(np.float64) * pixel_um**2
        else:
            centres, area = np.zeros((0, 2)), np.zeros(0)
        return cls(relabelled, centres, area, np.asarray(foreground, bool), float(pixel_um))
