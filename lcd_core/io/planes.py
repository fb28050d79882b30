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

__all__ = ["MAX_PLANE_PIXELS", "read_plane", "read_stack"]

#: The most pixels one plane may declare (8192², 128 MiB of uint16; a Phenix plane is 2160²): a TIFF
#: whose header declares more is refused before anything is allocated (a "decompression bomb").
MAX_PLANE_PIXELS = 8192 * 8192


def read_plane(path: str | os.PathLike[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image plane.

    Parameters
    ----------
    path
        A single-page TIFF (LZW-compressed files need ``imagecodecs``).
    shape
        ``(height, width)`` the index declares (``ImageSizeY``, ``ImageSizeX``); a TIFF of another
        size is refused. ``None``: any size up to :data:`MAX_PLANE_PIXELS`.

    Returns
    -------
    numpy.ndarray
        2-D ``uint16`` array (other unsigned/signed integer types up to 16 bit are
        converted when their values fit).

    Raises
    ------
    PhenixError
        Naming the file, if it is missing, empty, truncated or corrupt, has more than one page,
        is not one grey integer plane (float, RGB), declares more than :data:`MAX_PLANE_PIXELS`
        pixels or differs from ``shape``; all checked on the header, before the pixels are read.
    """
    p = Path(path)
    if not p.is_file():
        raise PhenixError(f"{p}: image file missing")
    try:
        size = p.stat().st_size
        if size == 0:
            raise PhenixError(f"{p}: TIFF is empty (0 bytes; still being copied?)")
        with tifffile.TiffFile(p) as tif:
            page = _one_page(tif, p)
            _check_header(page, p, size, shape)
            data = page.asarray()
    except PhenixError:
        raise
    except Exception as exc:  # tifffile / imagecodecs raise many types on corrupt input
        raise PhenixError(f"{p}: cannot read TIFF ({type(exc).__name__}: {exc})") from exc
    return _as_uint16(data, p)


def _one_page(tif: tifffile.TiffFile, p: Path) -> tifffile.TiffPage:
    """The only page of a TIFF (a Harmony image file holds one plane)."""
    if not tif.pages:
        raise PhenixError(f"{p}: TIFF has no readable image (truncated?)")
    if len(tif.pages) > 1:
        raise PhenixError(f"{p}: TIFF has {len(tif.pages)} pages; a Harmony image file holds one plane")
    page = tif.pages.first
    if not isinstance(page, tifffile.TiffPage):
        raise PhenixError(f"{p}: TIFF's first page is not an image")
    return page


def _check_header(page: tifffile.TiffPage, p: Path, size: int, shape: tuple[int, int] | None) -> None:
    """Refuse, from the header alone, what is not one grey integer plane of the expected size."""
    h, w, depth, samples = page.imagelength, page.imagewidth, page.imagedepth, page.samplesperpixel
    if h * w * depth * samples > MAX_PLANE_PIXELS:
        raise PhenixError(
            f"{p}: TIFF header declares {w} × {h} px"
            + (f" × {depth * samples}" if depth * samples > 1 else "")
            + f", more than the {MAX_PLANE_PIXELS} px a plane may have: refused before reading (decompression bomb?)"
        )
    if samples > 1 or depth > 1:
        raise PhenixError(f"{p}: image has {samples} samples × {depth} depth per pixel (RGB?), expected one 2-D grey plane")
    if page.dtype is not None and not np.issubdtype(page.dtype, np.integer):
        raise PhenixError(f"{p}: image has dtype {page.dtype}, expected integer (uint16)")
    if shape is not None and (h, w) != tuple(shape):
        raise PhenixError(
            f"{p}: image is {w} × {h} px but the index says {shape[1]} × {shape[0]} (ImageSizeX × ImageSizeY)"
        )
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        if offset + count > size:
            raise PhenixError(f"{p}: TIFF truncated (image data ends at byte {offset + count}, file has {size})")


def _as_uint16(data: np.ndarray, p: Path) -> np.ndarray:
    """A decoded plane as 2-D uint16 (integer types whose values fit are converted)."""
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
        measurement is missing for it, a file cannot be read (:func:`read_plane`) or its size
        differs from the index's ``ImageSizeX`` / ``ImageSizeY``.
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
    for plane, path, size_y, size_x in sel.select("plane", "path", "size_y", "size_x").iter_rows():
        try:
            planes.append(read_plane(path, (size_y, size_x)))
        except PhenixError as exc:
            raise PhenixError(f"{what}, plane {plane}: {exc}") from exc
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        raise PhenixError(f"{measurement.index_path}: {what}: planes differ in shape {sorted(shapes)}")
    return np.stack(planes)
