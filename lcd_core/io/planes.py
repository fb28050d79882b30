"""Pixels of a Harmony export: one image plane, or the z-stack of one field.

The index is read by :mod:`lcd_core.io.phenix`; this module reads the TIFFs it lists and names
the file (and well, field, plane) in every error.

Pure library: never imports dagster.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import tifffile

from lcd_core.io.phenix import Measurement, PhenixError
from lcd_core.keys import parse_well, well_name

__all__ = ["read_plane", "read_stack"]


def read_plane(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one image plane.

    Parameters
    ----------
    path
        A single-page TIFF (LZW-compressed files need ``imagecodecs``).

    Returns
    -------
    numpy.ndarray
        2-D ``uint16`` array (other unsigned/signed integer types up to 16 bit are
        converted when their values fit).

    Raises
    ------
    PhenixError
        If the file is missing, truncated or corrupt, or the image is not 2-D integer.
    """
    p = Path(path)
    if not p.is_file():
        raise PhenixError(f"{p}: image file missing")
    try:
        size = p.stat().st_size
        with tifffile.TiffFile(p) as tif:
            if not tif.pages:
                raise PhenixError(f"{p}: TIFF has no readable image (truncated?)")
            page = tif.pages.first
            for offset, count in zip(page.dataoffsets, page.databytecounts):
                if offset + count > size:
                    raise PhenixError(
                        f"{p}: TIFF truncated (image data ends at byte {offset + count}, file has {size})"
                    )
            data = page.asarray()
    except PhenixError:
        raise
    except Exception as exc:  # tifffile / imagecodecs raise many types on corrupt input
        raise PhenixError(f"{p}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    data = np.squeeze(data) if data.ndim > 2 else data
    if data.ndim != 2:
        raise PhenixError(f"{p}: image has shape {data.shape}, expected 2-D")
    if not np.issubdtype(data.dtype, np.integer):
        raise PhenixError(f"{p}: image has dtype {data.dtype}, expected integer (uint16)")
    if data.dtype != np.uint16:
        if data.size and (int(data.min()) < 0 or int(data.max()) > 65535):
            raise PhenixError(f"{p}: image dtype {data.dtype} has values outside 0..65535")
        data = data.astype(np.uint16)
    return data


def read_stack(
    measurement: Measurement,
    well: str,
    field: int,
    timepoint: int,
    channel: int | None = None,
) -> np.ndarray:
    """Read the z-stack of one field.

    Parameters
    ----------
    measurement
        From :func:`read_index`.
    well
        Well name such as ``"B07"``.
    field
        ``FieldID``.
    timepoint
        ``TimepointID`` as written in the index.
    channel
        ``ChannelID``; defaults to :meth:`Measurement.brightfield_channel`.

    Returns
    -------
    numpy.ndarray
        ``uint16`` array of shape (planes, H, W), planes in ``PlaneID`` order.

    Raises
    ------
    PhenixError
        If the well/field/timepoint/channel is not in the index, a plane of the
        measurement is missing for it, a file cannot be read or shapes differ.
    """
    ch = measurement.brightfield_channel() if channel is None else int(channel)
    try:
        row, col = parse_well(well)
    except ValueError as exc:
        raise PhenixError(f"{measurement.index_path}: {exc}") from exc
    what = f"well {well_name(row, col)}, field {field}, timepoint {timepoint}, channel {ch}"
    sel = measurement.images.filter(
        (pl.col("row") == row)
        & (pl.col("col") == col)
        & (pl.col("field") == field)
        & (pl.col("timepoint") == timepoint)
        & (pl.col("channel") == ch)
    ).sort("plane")
    _check_planes(measurement, sel, what)
    return _read_planes(measurement, sel, what)


def _check_planes(measurement: Measurement, sel: pl.DataFrame, what: str) -> None:
    """Raise unless the selected rows hold every plane of the measurement."""
    if sel.height == 0:
        raise PhenixError(f"{measurement.index_path}: no images for {what}")
    missing = sorted(set(measurement.planes) - set(sel["plane"].to_list()))
    if missing:
        raise PhenixError(
            f"{measurement.index_path}: {what}: plane(s) {', '.join(map(str, missing))} missing "
            f"(index has planes {', '.join(map(str, measurement.planes))})"
        )


def _read_planes(measurement: Measurement, sel: pl.DataFrame, what: str) -> np.ndarray:
    """Read the selected rows' files, in row order, as one (planes, H, W) stack."""
    planes: list[np.ndarray] = []
    for plane, path in sel.select("plane", "path").iter_rows():
        try:
            planes.append(read_plane(path))
        except PhenixError as exc:
            raise PhenixError(f"{what}, plane {plane}: {exc}") from exc
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        raise PhenixError(f"{measurement.index_path}: {what}: planes differ in shape {sorted(shapes)}")
    return np.stack(planes)
