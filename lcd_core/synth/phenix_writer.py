"""Harmony-5 style export writer, used by the synthetic screen generator.

Writes what :mod:`lcd_core.io.phenix` reads: a measurement folder with ``Images/Index.idx.xml``
(Harmony 5 namespace, every channel description repeated in each ``<Image>``) and one 16-bit
TIFF per image (LZW with horizontal predictor), named like Harmony names them
(``r02c07f01p03-ch1sk1fk1fl1.tiff``).

Pure library: never imports dagster.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import tifffile

from lcd_core.io.phenix import Channel, PhenixError

__all__ = ["HARMONY5_NS", "ImageRecord", "image_file_name", "write_measurement"]

HARMONY5_NS = "http://www.perkinelmer.com/PEHH/HarmonyV5"


@dataclass
class ImageRecord:
    """One image to write with :func:`write_measurement`.

    ``timepoint`` is the ``TimepointID`` written to the index (0-based, as Harmony 5
    does); file name and image id carry ``timepoint + 1`` (``sk1``, ``K1``).
    """

    row: int
    col: int
    field: int
    plane: int
    timepoint: int
    channel: int
    pixels: np.ndarray
    position_x_m: float
    position_y_m: float
    position_z_m: float
    abs_time: datetime


@dataclass(frozen=True)
class _Plate:
    """Plate-level fields of the index."""

    plate_id: str
    measurement_id: str
    start_time: datetime
    plate_type: str
    plate_rows: int
    plate_columns: int
    user: str


@dataclass
class _Written:
    image_id: str
    url: str
    rec: ImageRecord
    size_x: int
    size_y: int


def image_file_name(row: int, col: int, field: int, plane: int, channel: int, sk: int) -> str:
    """Harmony TIFF name: ``r02c07f01p03-ch1sk1fk1fl1.tiff``."""
    return f"r{row:02d}c{col:02d}f{field:02d}p{plane:02d}-ch{channel}sk{sk}fk1fl1.tiff"


def _image_id(rec: ImageRecord) -> str:
    """Harmony image id: ``0207K1F1P3R1`` (well, timepoint + 1, field, plane, channel)."""
    return f"{rec.row:02d}{rec.col:02d}K{rec.timepoint + 1}F{rec.field}P{rec.plane}R{rec.channel}"


def _slot(rec: ImageRecord) -> tuple[int, ...]:
    """What makes an image unique: well, field, plane, timepoint, channel."""
    return (rec.row, rec.col, rec.field, rec.plane, rec.timepoint, rec.channel)


def _fmt(value: float) -> str:
    return repr(float(value))


def _num(value: float | None, default: float) -> str:
    """Optional channel number as Harmony writes it (``740``, ``0.1``)."""
    v = float(default if value is None else value)
    return str(int(v)) if v.is_integer() else repr(v)


def _aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise PhenixError(f"{what} {dt!r} must be timezone-aware")
    return dt


def _image_xml(w: _Written, ch: Channel, pixel_size_m: float, start_time: datetime) -> str:
    r = w.rec
    transmitted = ch.type.strip().lower() in ("brightfield", "phase")
    offset = (r.abs_time - start_time).total_seconds()
    parts = [
        ("id", None, w.image_id),
        ("State", None, "Ok"),
        ("URL", None, w.url),
        ("Row", None, str(r.row)),
        ("Col", None, str(r.col)),
        ("FieldID", None, str(r.field)),
        ("PlaneID", None, str(r.plane)),
        ("TimepointID", None, str(r.timepoint)),
        ("ChannelID", None, str(r.channel)),
        ("FlimID", None, "1"),
        ("ChannelName", None, ch.name),
        ("ImageType", None, "Signal"),
        ("AcquisitionType", None, ch.acquisition_type or "NonConfocal"),
        ("IlluminationType", None, ch.illumination_type or ("Transmitted" if transmitted else "Epifluorescence")),
        ("ChannelType", None, ch.type),
        ("ImageResolutionX", "m", _fmt(pixel_size_m)),
        ("ImageResolutionY", "m", _fmt(pixel_size_m)),
        ("ImageSizeX", None, str(w.size_x)),
        ("ImageSizeY", None, str(w.size_y)),
        ("BinningX", None, str(ch.binning if ch.binning is not None else 1)),
        ("BinningY", None, str(ch.binning if ch.binning is not None else 1)),
        ("MaxIntensity", None, "65535"),
        ("CameraType", None, "AndorZylaCam"),
        ("PositionX", "m", _fmt(r.position_x_m)),
        ("PositionY", "m", _fmt(r.position_y_m)),
        ("PositionZ", "m", _fmt(r.position_z_m)),
        ("AbsPositionZ", "m", _fmt(r.position_z_m)),
        ("MeasurementTimeOffset", "s", _fmt(offset)),
        ("AbsTime", None, r.abs_time.isoformat()),
        ("MainExcitationWavelength", "nm", _num(ch.excitation_nm, 740.0 if transmitted else 0.0)),
        ("MainEmissionWavelength", "nm", _num(ch.emission_nm, 0.0)),
        ("ObjectiveMagnification", "", _num(ch.objective_magnification, 20.0)),
        ("ObjectiveNA", "", _num(ch.objective_na, 0.4)),
        ("ExposureTime", "s", _num(ch.exposure_s, 0.1)),
        ("OrientationMatrix", None, "[[1,0,0,0],[0,-1,0,0],[0,0,1.00,0]]"),
    ]
    lines = ['    <Image Version="1">']
    for tag, unit, text in parts:
        attr = "" if unit is None else f" Unit={quoteattr(unit)}"
        lines.append(f"      <{tag}{attr}>{escape(text)}</{tag}>")
    lines.append("    </Image>")
    return "\n".join(lines)




def _plate_xml(plate: _Plate, well_keys: list[tuple[int, int]]) -> list[str]:
    """Lines from the XML declaration to the end of ``<Plates>``."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<EvaluationInputData xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="1" '
        f'xmlns="{HARMONY5_NS}">',
        f"  <User>{escape(plate.user)}</User>",
        "  <InstrumentType>Phenix</InstrumentType>",
        "  <Plates>",
        "    <Plate>",
        f"      <PlateID>{escape(plate.plate_id)}</PlateID>",
        f"      <MeasurementID>{escape(plate.measurement_id)}</MeasurementID>",
        f"      <MeasurementStartTime>{plate.start_time.isoformat()}</MeasurementStartTime>",
        f"      <Name>{escape(plate.plate_id)}</Name>",
        f"      <PlateTypeName>{escape(plate.plate_type)}</PlateTypeName>",
        f"      <PlateRows>{plate.plate_rows}</PlateRows>",
        f"      <PlateColumns>{plate.plate_columns}</PlateColumns>",
    ]
    out += [f'      <Well id="{r:02d}{c:02d}" />' for r, c in well_keys]
    return out + ["    </Plate>", "  </Plates>"]


def _wells_xml(wells: dict[tuple[int, int], list[str]]) -> list[str]:
    """The ``<Wells>`` block: each well and the ids of its images."""
    out = ["  <Wells>"]
    for r, c in sorted(wells):
        out += ["    <Well>", f"      <id>{r:02d}{c:02d}</id>", f"      <Row>{r}</Row>", f"      <Col>{c}</Col>"]
        out += [f'      <Image id="{i}" />' for i in wells[(r, c)]]
        out.append("    </Well>")
    return out + ["  </Wells>"]


def _index_xml(written: list[_Written], plate: _Plate, channels: dict[int, Channel], pixel_size_m: float) -> str:
    """The whole index document."""
    wells: dict[tuple[int, int], list[str]] = {}
    for w in written:
        wells.setdefault((w.rec.row, w.rec.col), []).append(w.image_id)
    out = _plate_xml(plate, sorted(wells)) + _wells_xml(wells) + ["  <Images>"]
    out += [_image_xml(w, channels[w.rec.channel], pixel_size_m, plate.start_time) for w in written]
    out += ["  </Images>", "</EvaluationInputData>", ""]
    return "\n".join(out)


def _write_tiff(path: Path, pixels: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tifffile.imwrite(tmp, pixels, compression="lzw", predictor=2, photometric="minisblack", metadata=None)
    os.replace(tmp, path)


def _check_header(out: Path, start_time: datetime, channels: list[Channel], pixel_size_m: float) -> dict[int, Channel]:
    """Channels by id, after checking the measurement-level arguments."""
    _aware(start_time, "start_time")
    by_id = {c.id: c for c in channels}
    if len(by_id) != len(channels):
        raise PhenixError(f"{out}: duplicate channel ids in {[c.id for c in channels]}")
    if not pixel_size_m > 0:
        raise PhenixError(f"{out}: pixel_size_m must be positive, got {pixel_size_m!r}")
    return by_id


def _checked_pixels(
    rec: ImageRecord, what: str, plate: _Plate, channels: dict[int, Channel], seen: set[tuple[int, ...]]
) -> np.ndarray:
    """The record's pixels after checking its well, ids, channel, slot (not in ``seen``) and time."""
    if not (1 <= rec.row <= plate.plate_rows and 1 <= rec.col <= plate.plate_columns):
        raise PhenixError(
            f"{what}: row {rec.row} / column {rec.col} outside a {plate.plate_rows}x{plate.plate_columns} plate"
        )
    if rec.field < 1 or rec.plane < 1 or rec.timepoint < 0:
        raise PhenixError(f"{what}: field and plane must be >= 1 and timepoint >= 0")
    if rec.channel not in channels:
        raise PhenixError(f"{what}: channel {rec.channel} not in channels {sorted(channels)}")
    if _slot(rec) in seen:
        raise PhenixError(f"{what}: written twice")
    _aware(rec.abs_time, f"{what}: abs_time")
    px = np.asarray(rec.pixels)
    if px.ndim != 2 or px.dtype != np.uint16:
        raise PhenixError(f"{what}: pixels must be a 2-D uint16 array, got {px.dtype} {px.shape}")
    return px


def _write_images(
    out: Path, images: Iterable[ImageRecord], plate: _Plate, channels: dict[int, Channel]
) -> list[_Written]:
    """Check and write each image's TIFF as it comes; keep only its metadata."""
    written: list[_Written] = []
    seen: set[tuple[int, ...]] = set()
    for rec in images:
        image_id = _image_id(rec)
        px = _checked_pixels(rec, f"{out}: image {image_id}", plate, channels, seen)
        seen.add(_slot(rec))
        url = image_file_name(rec.row, rec.col, rec.field, rec.plane, rec.channel, rec.timepoint + 1)
        _write_tiff(out / "Images" / url, px)
        meta = dataclasses.replace(
            rec,
            pixels=np.empty((0, 0), np.uint16),
            position_x_m=float(rec.position_x_m),
            position_y_m=float(rec.position_y_m),
            position_z_m=float(rec.position_z_m),
        )
        written.append(_Written(image_id, url, meta, size_x=px.shape[1], size_y=px.shape[0]))
    return written


def write_measurement(
    out_dir: str | os.PathLike[str],
    *,
    plate_id: str,
    measurement_id: str,
    start_time: datetime,
    channels: list[Channel],
    images: Iterable[ImageRecord],
    pixel_size_m: float,
    plate_type: str = "384 PerkinElmer CellCarrier Ultra",
    plate_rows: int = 16,
    plate_columns: int = 24,
    user: str = "lcd-synth",
) -> Path:
    """Write a Harmony-5 style export: ``out_dir/Images/Index.idx.xml`` plus TIFFs.

    Images are streamed: each TIFF (16-bit, LZW with horizontal predictor) is
    written as it comes and only its metadata is kept. The index is written last,
    atomically, so a folder with an index is a complete export. An index already
    in ``out_dir`` is removed first.

    Parameters
    ----------
    out_dir
        Measurement folder (created if needed).
    plate_id, measurement_id
        ``PlateID`` (barcode) and ``MeasurementID``.
    start_time
        ``MeasurementStartTime`` (timezone-aware).
    channels
        Channel descriptions; every image's channel must be among them.
    images
        Image records; ``timepoint`` is the ``TimepointID`` (0-based, Harmony 5),
        the file name carries ``sk{timepoint + 1}``.
    pixel_size_m
        Pixel size in metres (``ImageResolutionX/Y``).
    plate_type, plate_rows, plate_columns, user
        Plate and export metadata.

    Returns
    -------
    Path
        The index file.

    Raises
    ------
    PhenixError
        On a bad record (non-2-D/uint16 pixels, unknown channel, duplicate image,
        out-of-plate well, naive time).
    """
    out = Path(out_dir)
    (out / "Images").mkdir(parents=True, exist_ok=True)
    index_path = out / "Images" / "Index.idx.xml"
    index_path.unlink(missing_ok=True)
    by_id = _check_header(out, start_time, channels, pixel_size_m)
    plate = _Plate(plate_id, measurement_id, start_time, plate_type, plate_rows, plate_columns, user)
    written = _write_images(out, images, plate, by_id)
    tmp = index_path.with_name(index_path.name + ".tmp")
    tmp.write_text(_index_xml(written, plate, by_id, pixel_size_m), encoding="utf-8")
    os.replace(tmp, index_path)
    return index_path
