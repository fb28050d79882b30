"""Opera Phenix / Harmony export reader and a Harmony-5 style writer.

A Harmony export is a folder holding an index (``Index.idx.xml`` for Harmony <= 6,
``Index.xml`` for Harmony 7, sometimes ``Index.ref.xml``) and one TIFF per image
(well x field x plane x timepoint x channel). This module reads the index into a
:class:`Measurement` (one row per image in a polars DataFrame), reads planes and
z-stacks, and writes synthetic exports in the Harmony 5 layout.

Notes on real exports (see ``shared/fixtures/phenix``):

- the XML namespace changes with the Harmony version, so every tag is matched on
  its local name;
- Harmony 5 writes the channel description (``ChannelName``, ``ChannelType``,
  resolution, size, ...) into every ``<Image>``; Harmony 7 leaves it out of the
  images and keeps it in a ``<Maps><Map><Entry ChannelID=...>`` block. Both are read;
  the other maps (flat-field profiles, skew-crop parameters) are skipped;
- ``TimepointID`` is 0-based in Harmony 5 and 1-based in Harmony 7 while the file
  names (``sk1``) and image ids (``K1``) are 1-based in both; the reader reports
  ``TimepointID`` as written;
- positions and resolutions are in metres.

Pure library: never imports dagster.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import polars as pl
import tifffile

from lcd_core.keys import parse_well, well_name

__all__ = [
    "Channel",
    "ImageRecord",
    "INDEX_NAMES",
    "Measurement",
    "PhenixError",
    "find_index",
    "image_file_name",
    "read_index",
    "read_plane",
    "read_stack",
    "write_measurement",
]

#: Index file names, in the order they are looked for.
INDEX_NAMES: tuple[str, ...] = ("Index.idx.xml", "Index.xml", "Index.ref.xml")

HARMONY5_NS = "http://www.perkinelmer.com/PEHH/HarmonyV5"

_VERSION_RE = re.compile(r"HarmonyV(\d+)", re.IGNORECASE)
_FRACTION_RE = re.compile(r"(\.\d{6})\d+")

# Per-image elements that must be in every <Image>.
_REQUIRED_IMAGE = (
    "URL",
    "Row",
    "Col",
    "FieldID",
    "PlaneID",
    "TimepointID",
    "ChannelID",
    "PositionX",
    "PositionY",
    "PositionZ",
    "AbsTime",
)
# Channel-level elements: in the <Image> (Harmony <= 6) or in a channel map entry (Harmony 7).
_CHANNEL_LEVEL = (
    "ChannelName",
    "ChannelType",
    "ImageResolutionX",
    "ImageResolutionY",
    "ImageSizeX",
    "ImageSizeY",
)
_WANTED = frozenset(("id",) + _REQUIRED_IMAGE + _CHANNEL_LEVEL)

_UNIT_TO_M = {
    "m": 1.0,
    "mm": 1e-3,
    "um": 1e-6,
    "µm": 1e-6,
    "μm": 1e-6,
    "micron": 1e-6,
    "nm": 1e-9,
}

IMAGES_SCHEMA: dict[str, Any] = {
    "image_id": pl.String,
    "row": pl.Int32,
    "col": pl.Int32,
    "well": pl.String,
    "field": pl.Int32,
    "plane": pl.Int32,
    "timepoint": pl.Int32,
    "channel": pl.Int32,
    "channel_name": pl.String,
    "channel_type": pl.String,
    "url": pl.String,
    "path": pl.String,
    "position_x_m": pl.Float64,
    "position_y_m": pl.Float64,
    "position_z_m": pl.Float64,
    "resolution_x_m": pl.Float64,
    "resolution_y_m": pl.Float64,
    "size_x": pl.Int32,
    "size_y": pl.Int32,
    "abs_time": pl.Datetime("us", "UTC"),
    "exists": pl.Boolean,
}


class PhenixError(ValueError):
    """A Harmony export that cannot be read; the message names the file (and image)."""


@dataclass(frozen=True)
class Channel:
    """One acquisition channel of a measurement.

    Attributes
    ----------
    id : int
        ``ChannelID`` of the index.
    name : str
        ``ChannelName`` (free text, differs between instruments).
    type : str
        ``ChannelType`` (``Brightfield``, ``Fluorescence``, ``Phase``, ...).
    excitation_nm, emission_nm : float or None
        Main excitation / emission wavelength.
    exposure_s : float or None
        Exposure time in seconds.
    objective_magnification, objective_na : float or None
        Objective magnification and numerical aperture.
    binning : int or None
        Camera binning (``BinningX``).
    acquisition_type, illumination_type : str or None
        ``AcquisitionType`` (e.g. ``NonConfocal``) and ``IlluminationType``
        (e.g. ``Transmitted``).
    """

    id: int
    name: str
    type: str
    excitation_nm: float | None = None
    emission_nm: float | None = None
    exposure_s: float | None = None
    objective_magnification: float | None = None
    objective_na: float | None = None
    binning: int | None = None
    acquisition_type: str | None = None
    illumination_type: str | None = None

    @property
    def is_brightfield(self) -> bool:
        """Whether ``type`` is ``Brightfield`` (case-insensitive)."""
        return self.type.strip().lower() == "brightfield"


@dataclass
class Measurement:
    """The content of one Harmony index: plate, channels and one row per image.

    Attributes
    ----------
    root : Path
        Folder holding the index file; relative image URLs are resolved against it.
    index_path : Path
        The index file.
    harmony_version : str
        ``"5"``, ``"6"``, ``"7"``, ... from the XML namespace (``"unknown"`` if absent).
    plate_id : str
        ``PlateID`` (the barcode).
    measurement_id : str
        ``MeasurementID``.
    plate_type : str
        ``PlateTypeName``.
    plate_rows, plate_columns : int
        Plate geometry.
    start_time : datetime or None
        ``MeasurementStartTime`` (timezone-aware).
    channels : dict[int, Channel]
        Channels by ``ChannelID``.
    images : polars.DataFrame
        One row per image, columns as in :data:`IMAGES_SCHEMA`.
    user : str or None
        ``User`` of the export.
    """

    root: Path
    index_path: Path
    harmony_version: str
    plate_id: str
    measurement_id: str
    plate_type: str
    plate_rows: int
    plate_columns: int
    start_time: datetime | None
    channels: dict[int, Channel]
    images: pl.DataFrame
    user: str | None = None

    def brightfield_channels(self) -> list[int]:
        """Ids of all channels whose ``ChannelType`` is Brightfield, ascending."""
        return sorted(c.id for c in self.channels.values() if c.is_brightfield)

    def brightfield_channel(self) -> int:
        """Id of the brightfield channel (lowest id if several).

        Raises
        ------
        PhenixError
            If no channel has ``ChannelType`` Brightfield.
        """
        ids = self.brightfield_channels()
        if not ids:
            listing = ", ".join(
                f"{c.id} {c.name!r} ({c.type})" for c in sorted(self.channels.values(), key=lambda c: c.id)
            )
            raise PhenixError(
                f"{self.index_path}: no channel has ChannelType 'Brightfield'; channels: {listing or 'none'}"
            )
        return ids[0]

    @property
    def wells(self) -> list[str]:
        """Well names present in the index, in plate order (row, then column)."""
        pairs = self.images.select("row", "col").unique().sort("row", "col")
        return [well_name(r, c) for r, c in pairs.iter_rows()]

    @property
    def fields(self) -> list[int]:
        """Sorted ``FieldID`` values."""
        return self._distinct("field")

    @property
    def planes(self) -> list[int]:
        """Sorted ``PlaneID`` values."""
        return self._distinct("plane")

    @property
    def timepoints(self) -> list[int]:
        """Sorted ``TimepointID`` values, as written in the index."""
        return self._distinct("timepoint")

    def missing_files(self) -> list[Path]:
        """Image files listed in the index but absent on disk, in index order."""
        return [Path(p) for p in self.images.filter(~pl.col("exists"))["path"].to_list()]

    def _distinct(self, column: str) -> list[int]:
        return sorted(self.images[column].unique().to_list())


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


# --------------------------------------------------------------------------- reading


def find_index(path: str | os.PathLike[str]) -> Path:
    """Locate the index file of a measurement.

    Parameters
    ----------
    path
        The index file itself, the measurement folder or its ``Images/`` subfolder.

    Returns
    -------
    Path
        The index file (``Index.idx.xml``, ``Index.xml`` or ``Index.ref.xml``).

    Raises
    ------
    PhenixError
        If the path does not exist or holds no index.
    """
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise PhenixError(f"{p}: no such file or folder")
    for folder in (p, p / "Images"):
        for name in INDEX_NAMES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    raise PhenixError(f"{p}: no Harmony index ({', '.join(INDEX_NAMES)}) here or in Images/")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _harmony_version(namespace: str) -> str:
    m = _VERSION_RE.search(namespace)
    return m.group(1) if m else "unknown"


def _parse_time(text: str, where: str) -> datetime:
    """Parse an ISO 8601 time with offset (any number of fractional digits)."""
    s = text.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    s = _FRACTION_RE.sub(r"\1", s)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as exc:
        raise PhenixError(f"{where}: cannot parse time {text!r}") from exc
    if dt.tzinfo is None:
        raise PhenixError(f"{where}: time {text!r} has no UTC offset")
    return dt


def _length_m(value: str, unit: str | None, where: str) -> float:
    """A length element's value in metres (``Unit`` attribute, default metres)."""
    factor = _UNIT_TO_M.get((unit or "m").strip())
    if factor is None:
        raise PhenixError(f"{where}: unknown length unit {unit!r}")
    return float(value) * factor


def _children(elem: ET.Element) -> dict[str, ET.Element]:
    return {_local(c.tag): c for c in elem}


def _opt_float(kids: dict[str, ET.Element], name: str) -> float | None:
    e = kids.get(name)
    if e is None or not (e.text or "").strip():
        return None
    try:
        return float(e.text)
    except ValueError:
        return None


def _text(kids: dict[str, ET.Element], name: str) -> str | None:
    e = kids.get(name)
    return None if e is None or e.text is None else e.text.strip()


def _channel_from(kids: dict[str, ET.Element], channel_id: int) -> Channel:
    binning = _opt_float(kids, "BinningX")
    return Channel(
        id=channel_id,
        name=_text(kids, "ChannelName") or "",
        type=_text(kids, "ChannelType") or "",
        excitation_nm=_opt_float(kids, "MainExcitationWavelength"),
        emission_nm=_opt_float(kids, "MainEmissionWavelength"),
        exposure_s=_opt_float(kids, "ExposureTime"),
        objective_magnification=_opt_float(kids, "ObjectiveMagnification"),
        objective_na=_opt_float(kids, "ObjectiveNA"),
        binning=None if binning is None else int(binning),
        acquisition_type=_text(kids, "AcquisitionType"),
        illumination_type=_text(kids, "IlluminationType"),
    )


class _IndexParser:
    """Streaming collector of one index file's plate, channels and images."""

    def __init__(self, index_path: Path) -> None:
        self.index_path = index_path
        self.namespace = ""
        self.plate: dict[str, str] = {}
        self.user: str | None = None
        self.channel_maps: dict[int, dict[str, ET.Element]] = {}
        self.channels: dict[int, Channel] = {}
        self.raw: list[dict[str, tuple[str, str | None]]] = []

    def parse(self) -> None:
        """Stream through the index ("end" events only: a big index has ~4M elements)."""
        local: dict[str, str] = {}
        last: ET.Element | None = None
        try:
            for _event, elem in ET.iterparse(self.index_path, events=("end",)):
                tag = elem.tag
                name = local.get(tag)
                if name is None:
                    name = local[tag] = _local(tag)
                    if not self.namespace:
                        self.namespace = _namespace(tag)
                last = elem
                if name == "Image":
                    if len(elem):  # an <Images><Image>, not a <Well><Image id=.../> reference
                        self._image(elem, local)
                        elem.clear()
                elif name == "Entry":
                    self._map_entry(elem)
                    elem.clear()
                elif name == "Plate":
                    kids = _children(elem)
                    self.plate = {k: (v.text or "").strip() for k, v in kids.items() if k != "Well"}
                    elem.clear()
                elif name == "User" and self.user is None:
                    self.user = (elem.text or "").strip() or None
                elif name in ("Well", "Map"):
                    elem.clear()
        except ET.ParseError as exc:
            line, col = exc.position
            raise PhenixError(f"{self.index_path}: malformed XML at line {line}, column {col}: {exc}") from exc
        if last is None or _local(last.tag) != "EvaluationInputData":
            got = "nothing" if last is None else _local(last.tag)
            raise PhenixError(f"{self.index_path}: not a Harmony index (root element is {got})")

    def _map_entry(self, elem: ET.Element) -> None:
        kids = _children(elem)
        if "ChannelType" not in kids and "ChannelName" not in kids:
            return  # flat-field profile, skew-crop parameters, ...: not needed
        cid = elem.get("ChannelID")
        try:
            channel_id = int(cid) if cid is not None else None
        except ValueError:
            channel_id = None
        if channel_id is None:
            raise PhenixError(f"{self.index_path}: channel map entry with bad ChannelID {cid!r}")
        self.channel_maps[channel_id] = kids

    def _image(self, elem: ET.Element, local: dict[str, str]) -> None:
        record: dict[str, tuple[str, str | None]] = {}
        for child in elem:
            tag = local.get(child.tag) or _local(child.tag)
            if tag in _WANTED:
                record[tag] = ((child.text or "").strip(), child.get("Unit"))
        image_id = record.get("id", ("", None))[0]
        if not image_id:
            raise PhenixError(f"{self.index_path}: <Image> number {len(self.raw) + 1} has no <id>")
        missing = [k for k in _REQUIRED_IMAGE if not record.get(k, ("", None))[0]]
        if missing:
            raise PhenixError(f"{self.index_path}: image {image_id} lacks {', '.join(missing)}")
        if "ChannelType" in record and "ChannelID" in record:
            try:
                cid = int(record["ChannelID"][0])
            except ValueError:
                cid = None
            if cid is not None and cid not in self.channels:
                self.channels[cid] = _channel_from(_children(elem), cid)
        self.raw.append(record)


def _columns(parser: _IndexParser, root: Path) -> dict[str, list[Any]]:
    """Turn the raw per-image records into typed column lists."""
    cols: dict[str, list[Any]] = {k: [] for k in IMAGES_SCHEMA}
    maps = parser.channel_maps
    where_file = parser.index_path
    try:
        on_disk = {e.name for e in os.scandir(root) if e.is_file()}
    except OSError:
        on_disk = set()
    well_cache: dict[tuple[int, int], str] = {}
    for rec in parser.raw:
        image_id = rec["id"][0]
        where = f"{where_file}: image {image_id}"
        try:
            row, col = int(rec["Row"][0]), int(rec["Col"][0])
            channel = int(rec["ChannelID"][0])
            fld, plane, tp = int(rec["FieldID"][0]), int(rec["PlaneID"][0]), int(rec["TimepointID"][0])
        except ValueError as exc:
            raise PhenixError(f"{where}: non-integer Row/Col/FieldID/PlaneID/TimepointID/ChannelID ({exc})") from exc
        level: dict[str, tuple[str, str | None]] = {}
        cmap = maps.get(channel, {})
        for k in _CHANNEL_LEVEL:
            if k in rec and rec[k][0]:
                level[k] = rec[k]
            elif k in cmap and (cmap[k].text or "").strip():
                level[k] = ((cmap[k].text or "").strip(), cmap[k].get("Unit"))
            else:
                raise PhenixError(f"{where} (channel {channel}): no {k} in the image nor in a channel map entry")
        well = well_cache.get((row, col))
        if well is None:
            try:
                well = well_cache.setdefault((row, col), well_name(row, col))
            except ValueError as exc:
                raise PhenixError(f"{where}: {exc}") from exc
        url = rec["URL"][0]
        path = Path(url) if os.path.isabs(url) else root / url
        exists = url in on_disk if ("/" not in url and "\\" not in url) else path.is_file()
        try:
            px = _length_m(*rec["PositionX"], where)
            py = _length_m(*rec["PositionY"], where)
            pz = _length_m(*rec["PositionZ"], where)
            rx = _length_m(*level["ImageResolutionX"], where)
            ry = _length_m(*level["ImageResolutionY"], where)
            sx, sy = int(level["ImageSizeX"][0]), int(level["ImageSizeY"][0])
        except ValueError as exc:
            if isinstance(exc, PhenixError):
                raise
            raise PhenixError(f"{where}: bad number in position/resolution/size ({exc})") from exc
        abs_time = _parse_time(rec["AbsTime"][0], where)
        for key, value in (
            ("image_id", image_id),
            ("row", row),
            ("col", col),
            ("well", well),
            ("field", fld),
            ("plane", plane),
            ("timepoint", tp),
            ("channel", channel),
            ("channel_name", level["ChannelName"][0]),
            ("channel_type", level["ChannelType"][0]),
            ("url", url),
            ("path", str(path)),
            ("position_x_m", px),
            ("position_y_m", py),
            ("position_z_m", pz),
            ("resolution_x_m", rx),
            ("resolution_y_m", ry),
            ("size_x", sx),
            ("size_y", sy),
            ("abs_time", abs_time.astimezone(timezone.utc)),
            ("exists", exists),
        ):
            cols[key].append(value)
    return cols


def _check_duplicates(images: pl.DataFrame, index_path: Path) -> None:
    keys = ["row", "col", "field", "plane", "timepoint", "channel"]
    dup = images.group_by(keys).agg(pl.col("image_id")).filter(pl.col("image_id").list.len() > 1)
    if dup.height:
        first = dup.row(0, named=True)
        raise PhenixError(
            f"{index_path}: {dup.height} image slot(s) listed more than once, e.g. images "
            f"{', '.join(first['image_id'])} (well {well_name(first['row'], first['col'])}, field "
            f"{first['field']}, plane {first['plane']}, timepoint {first['timepoint']}, channel {first['channel']})"
        )


def read_index(path: str | os.PathLike[str]) -> Measurement:
    """Read a Harmony index into a :class:`Measurement`.

    Parameters
    ----------
    path
        The measurement folder, its ``Images/`` subfolder or the index file.

    Returns
    -------
    Measurement
        Plate metadata, channels and one row per image (files may be missing on
        disk: see ``images["exists"]`` and :meth:`Measurement.missing_files`).

    Raises
    ------
    PhenixError
        If no index is found, the XML is malformed (file and line named), an image
        lacks a required element (image id named) or a value cannot be parsed.
    """
    index_path = find_index(path).resolve()
    parser = _IndexParser(index_path)
    parser.parse()
    root = index_path.parent
    cols = _columns(parser, root)
    images = pl.DataFrame(cols, schema=IMAGES_SCHEMA)
    _check_duplicates(images, index_path)

    channels = dict(parser.channels)
    for cid, kids in parser.channel_maps.items():
        if cid not in channels:
            channels[cid] = _channel_from(kids, cid)
    for cid, name, ctype in images.select("channel", "channel_name", "channel_type").unique("channel").iter_rows():
        if cid not in channels:
            channels[cid] = Channel(id=cid, name=name, type=ctype)

    plate = parser.plate
    if not plate:
        raise PhenixError(f"{index_path}: no <Plates><Plate> element")

    def plate_int(name: str) -> int:
        try:
            return int(plate.get(name, ""))
        except ValueError as exc:
            raise PhenixError(f"{index_path}: Plate {name} is {plate.get(name)!r}, not an integer") from exc

    start = plate.get("MeasurementStartTime")
    return Measurement(
        root=root,
        index_path=index_path,
        harmony_version=_harmony_version(parser.namespace),
        plate_id=plate.get("PlateID", ""),
        measurement_id=plate.get("MeasurementID", ""),
        plate_type=plate.get("PlateTypeName", ""),
        plate_rows=plate_int("PlateRows"),
        plate_columns=plate_int("PlateColumns"),
        start_time=_parse_time(start, f"{index_path}: MeasurementStartTime") if start else None,
        channels=dict(sorted(channels.items())),
        images=images,
        user=parser.user,
    )


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
    name = well_name(row, col)
    what = f"well {name}, field {field}, timepoint {timepoint}, channel {ch}"
    sel = measurement.images.filter(
        (pl.col("row") == row)
        & (pl.col("col") == col)
        & (pl.col("field") == field)
        & (pl.col("timepoint") == timepoint)
        & (pl.col("channel") == ch)
    ).sort("plane")
    if sel.height == 0:
        raise PhenixError(f"{measurement.index_path}: no images for {what}")
    have = sel["plane"].to_list()
    missing = sorted(set(measurement.planes) - set(have))
    if missing:
        raise PhenixError(
            f"{measurement.index_path}: {what}: plane(s) {', '.join(map(str, missing))} missing "
            f"(index has planes {', '.join(map(str, measurement.planes))})"
        )
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


# --------------------------------------------------------------------------- writing


def image_file_name(row: int, col: int, field: int, plane: int, channel: int, sk: int) -> str:
    """Harmony TIFF name: ``r02c07f01p03-ch1sk1fk1fl1.tiff``."""
    return f"r{row:02d}c{col:02d}f{field:02d}p{plane:02d}-ch{channel}sk{sk}fk1fl1.tiff"


@dataclass
class _Written:
    image_id: str
    url: str
    rec: ImageRecord
    size_x: int
    size_y: int


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


def _index_xml(
    written: list[_Written],
    *,
    plate_id: str,
    measurement_id: str,
    start_time: datetime,
    channels: dict[int, Channel],
    pixel_size_m: float,
    plate_type: str,
    plate_rows: int,
    plate_columns: int,
    user: str,
) -> str:
    wells: dict[tuple[int, int], list[str]] = {}
    for w in written:
        wells.setdefault((w.rec.row, w.rec.col), []).append(w.image_id)
    well_keys = sorted(wells)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<EvaluationInputData xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="1" '
        f'xmlns="{HARMONY5_NS}">',
        f"  <User>{escape(user)}</User>",
        "  <InstrumentType>Phenix</InstrumentType>",
        "  <Plates>",
        "    <Plate>",
        f"      <PlateID>{escape(plate_id)}</PlateID>",
        f"      <MeasurementID>{escape(measurement_id)}</MeasurementID>",
        f"      <MeasurementStartTime>{start_time.isoformat()}</MeasurementStartTime>",
        f"      <Name>{escape(plate_id)}</Name>",
        f"      <PlateTypeName>{escape(plate_type)}</PlateTypeName>",
        f"      <PlateRows>{plate_rows}</PlateRows>",
        f"      <PlateColumns>{plate_columns}</PlateColumns>",
    ]
    out += [f'      <Well id="{r:02d}{c:02d}" />' for r, c in well_keys]
    out += ["    </Plate>", "  </Plates>", "  <Wells>"]
    for r, c in well_keys:
        out += ["    <Well>", f"      <id>{r:02d}{c:02d}</id>", f"      <Row>{r}</Row>", f"      <Col>{c}</Col>"]
        out += [f'      <Image id="{i}" />' for i in wells[(r, c)]]
        out.append("    </Well>")
    out += ["  </Wells>", "  <Images>"]
    out += [_image_xml(w, channels[w.rec.channel], pixel_size_m, start_time) for w in written]
    out += ["  </Images>", "</EvaluationInputData>", ""]
    return "\n".join(out)


def _write_tiff(path: Path, pixels: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tifffile.imwrite(tmp, pixels, compression="lzw", predictor=2, photometric="minisblack", metadata=None)
    os.replace(tmp, path)


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
    img_dir = out / "Images"
    img_dir.mkdir(parents=True, exist_ok=True)
    index_path = img_dir / "Index.idx.xml"
    index_path.unlink(missing_ok=True)
    _aware(start_time, "start_time")
    by_id = {c.id: c for c in channels}
    if len(by_id) != len(channels):
        raise PhenixError(f"{out}: duplicate channel ids in {[c.id for c in channels]}")
    if not pixel_size_m > 0:
        raise PhenixError(f"{out}: pixel_size_m must be positive, got {pixel_size_m!r}")

    written: list[_Written] = []
    seen: set[tuple[int, int, int, int, int, int]] = set()
    for rec in images:
        key = (rec.row, rec.col, rec.field, rec.plane, rec.timepoint, rec.channel)
        sk = rec.timepoint + 1
        image_id = f"{rec.row:02d}{rec.col:02d}K{sk}F{rec.field}P{rec.plane}R{rec.channel}"
        what = f"{out}: image {image_id}"
        if not (1 <= rec.row <= plate_rows and 1 <= rec.col <= plate_columns):
            raise PhenixError(f"{what}: row {rec.row} / column {rec.col} outside a {plate_rows}x{plate_columns} plate")
        if rec.field < 1 or rec.plane < 1 or rec.timepoint < 0:
            raise PhenixError(f"{what}: field and plane must be >= 1 and timepoint >= 0")
        if rec.channel not in by_id:
            raise PhenixError(f"{what}: channel {rec.channel} not in channels {sorted(by_id)}")
        if key in seen:
            raise PhenixError(f"{what}: written twice")
        _aware(rec.abs_time, f"{what}: abs_time")
        px = np.asarray(rec.pixels)
        if px.ndim != 2 or px.dtype != np.uint16:
            raise PhenixError(f"{what}: pixels must be a 2-D uint16 array, got {px.dtype} {px.shape}")
        seen.add(key)
        url = image_file_name(rec.row, rec.col, rec.field, rec.plane, rec.channel, sk)
        _write_tiff(img_dir / url, px)
        meta = ImageRecord(
            rec.row, rec.col, rec.field, rec.plane, rec.timepoint, rec.channel,
            np.empty((0, 0), np.uint16),
            float(rec.position_x_m), float(rec.position_y_m), float(rec.position_z_m), rec.abs_time,
        )
        written.append(_Written(image_id, url, meta, size_x=px.shape[1], size_y=px.shape[0]))

    text = _index_xml(
        written,
        plate_id=plate_id,
        measurement_id=measurement_id,
        start_time=start_time,
        channels=by_id,
        pixel_size_m=pixel_size_m,
        plate_type=plate_type,
        plate_rows=plate_rows,
        plate_columns=plate_columns,
        user=user,
    )
    tmp = index_path.with_name(index_path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, index_path)
    return index_path
