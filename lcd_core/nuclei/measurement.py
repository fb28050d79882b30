"""Run a nucleus detector over every field of a Phenix measurement folder.

Pixel sizes come from the index (``ImageResolutionX/Y``, metres → µm); the brightfield channel is
:meth:`~lcd_core.io.phenix.Measurement.brightfield_channel`. Detectors are looked up by name in
:data:`METHODS` (``"brightfield"``; ``"patches"`` when ``lcd_core.nuclei.patches`` exists).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lcd_core.io.phenix import Measurement, PhenixError, find_index, read_index
from lcd_core.io.planes import read_stack
from lcd_core.nuclei.brightfield import detect_brightfield
from lcd_core.nuclei.objects import Nuclei

__all__ = ["METHODS", "FovNuclei", "detect_measurement", "get_method", "pixel_size_um"]

#: detector name → ``f(planes (P, H, W), pixel_um, **kw) -> Nuclei``
METHODS: dict[str, Callable[..., Nuclei]] = {"brightfield": detect_brightfield}

#: detectors imported on first use: name → (module, function)
LAZY_METHODS: dict[str, tuple[str, str]] = {"patches": ("lcd_core.nuclei.patches", "detect_patches")}


@dataclass(frozen=True)
class FovNuclei:
    """The nuclei of one field at one timepoint of a measurement."""

    well: str
    field: int
    timepoint: int
    nuclei: Nuclei

    def to_json(self) -> dict:
        """``{"well", "field", "timepoint", "n_nuclei", "confluency", "nuclei": [{"x", "y",
        "area_um2"}, ...]}``; centres in pixels of the original image (x = column, y = row)."""
        n = self.nuclei
        return {
            "well": self.well,
            "field": int(self.field),
            "timepoint": int(self.timepoint),
            "n_nuclei": n.n,
            "confluency": round(n.confluency, 4),
            "nuclei": [
                {"x": round(float(x), 2), "y": round(float(y), 2), "area_um2": round(float(a), 2)}
                for (x, y), a in zip(n.centres, n.area_um2)
            ],
        }


def get_method(name: str) -> Callable[..., Nuclei]:
    """The detector called ``name`` (lazy ones are imported here).

    Raises
    ------
    ValueError
        For an unknown name, or a lazy method whose module is not installed.
    """
    if name in METHODS:
        return METHODS[name]
    if name in LAZY_METHODS:
        module, func = LAZY_METHODS[name]
        try:
            METHODS[name] = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"nucleus method {name!r} is unavailable ({module}.{func}: {exc})") from exc
        return METHODS[name]
    raise ValueError(f"unknown nucleus method {name!r}; known: {sorted(set(METHODS) | set(LAZY_METHODS))}")


def pixel_size_um(measurement: Measurement, channel: int) -> float:
    """Pixel size of ``channel`` in µm from the index's image resolution (mean of x and y).

    Raises
    ------
    PhenixError
        If the resolution is missing, not positive, or differs between images or axes by > 1 %.
    """
    res = measurement.images.filter(pl.col("channel") == channel).select("resolution_x_m", "resolution_y_m")
    values = res.to_numpy().astype(np.float64).ravel() if res.height else np.zeros(0)
    where = f"{measurement.index_path}: channel {channel}"
    if values.size == 0 or not np.isfinite(values).all() or (values <= 0).any():
        raise PhenixError(f"{where}: pixel size (ImageResolutionX/Y) missing or not positive in the index")
    if values.max() > 1.01 * values.min():
        raise PhenixError(f"{where}: pixel sizes differ ({values.min() * 1e6:.4g}–{values.max() * 1e6:.4g} µm)")
    return float(values.mean() * 1e6)


def detect_measurement(path: str | os.PathLike[str], method: str = "brightfield",
                       **params) -> Iterator[FovNuclei]:
    """Detect nuclei in every well × field × timepoint of a measurement, in plate order.

    Parameters
    ----------
    path
        Measurement folder, its ``Images/`` folder, or the index file.
    method
        A name of :data:`METHODS` / ``LAZY_METHODS``.
    **params
        Passed to the detector.

    Yields
    ------
    FovNuclei

    Raises
    ------
    PhenixError
        Naming the measurement: no brightfield channel, missing pixel size, planes of different
        sizes, unreadable or missing images.
    ValueError
        For an unknown method.
    """
    detect = get_method(method)
    m = read_index(find_index(Path(path)))
    channel = m.brightfield_channel()
    pixel_um = pixel_size_um(m, channel)
    keys = (m.images.filter(pl.col("channel") == channel)
            .group_by("well", "row", "col", "field", "timepoint")
            .agg(pl.col("size_y").max().alias("h"), pl.col("size_x").max().alias("w"))
            .sort("timepoint", "row", "col", "field"))
    for well, _, _, field, tp, h, w in keys.iter_rows():
        planes = read_stack(m, well, field, tp, channel)
        if h and w and planes.shape[1:] != (h, w):
            raise PhenixError(f"{m.index_path}: well {well}, field {field}, timepoint {tp}: planes are "
                              f"{planes.shape[2]} × {planes.shape[1]} px but the index says {w} × {h}")
        try:
            nuclei = detect(planes, pixel_um, **params)
        except ValueError as exc:
            raise PhenixError(f"{m.index_path}: well {well}, field {field}, timepoint {tp}: {exc}") from exc
        yield FovNuclei(well, int(field), int(tp), nuclei)
