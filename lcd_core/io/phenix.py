"""Opera Phenix / Harmony export reader.

A Harmony export is a folder holding an index (``Index.idx.xml`` for Harmony <= 6,
``Index.xml`` for Harmony 7, sometimes ``Index.ref.xml``) and one TIFF per image
(well x field x plane x timepoint x channel). This module reads the index into a
:class:`Measurement` (one row per image in a polars DataFrame); :mod:`lcd_core.io.planes`
reads the pixels and :mod:`lcd_core.synth.phenix_writer` writes Harmony 5 style exports.

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

What is refused (a :class:`PhenixError` naming the index file), so that nothing is silently
mis-read or let in:

- a ``<!DOCTYPE>`` (hence any entity declaration): checked with expat before the index is parsed,
  so an external entity (``<!ENTITY x SYSTEM "file:///etc/passwd">``) is never resolved and an
  entity expansion ("billion laughs") never starts. Harmony writes no DOCTYPE;
- more than one ``<Plate>`` (which plate the images belong to would be a guess) and an empty or
  missing ``MeasurementID`` (the run key of a measurement);
- a Harmony version this reader was not checked against: the version is read from the XML
  namespace (``.../HarmonyV5``); versions in :data:`SUPPORTED_VERSIONS` parse, any other version,
  or a namespace naming none, is refused rather than parsed on with a guessed layout (a new
  Harmony release is added to :data:`SUPPORTED_VERSIONS` once an export of it passes the tests).

Pure library: never imports dagster.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.parsers import expat

import polars as pl

from lcd_core.keys import well_name

__all__ = [
    "Channel",
    "INDEX_NAMES",
    "Measurement",
    "PhenixError",
    "SUPPORTED_VERSIONS",
    "find_index",
    "read_index",
]

#: Index file names, in the order they are looked for.
INDEX_NAMES: tuple[str, ...] = ("Index.idx.xml", "Index.xml", "Index.ref.xml")

#: Harmony versions the reader is checked against: 5 and 7 (real exports in ``shared/fixtures/phenix``,
#: 5 also written by :mod:`lcd_core.synth.phenix_writer`) and 6 (the ``Index.idx.xml`` layout of 5).
SUPPORTED_VERSIONS: tuple[str, ...] = ("5", "6", "7")

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
        ``"5"``, ``"6"`` or ``"7"`` (one of :data:`SUPPORTED_VERSIONS`), from the XML namespace.
    plate_id : str
        ``PlateID`` (the barcode).
    measurement_id : str
        ``MeasurementID`` (never empty).
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


def _harmony_version(namespace: str, index_path: Path) -> str:
    """The Harmony version named by the index's XML namespace.

    Raises
    ------
    PhenixError
        Naming the file and the namespace, when the namespace names no version or one not in
        :data:`SUPPORTED_VERSIONS` (an unknown layout is refused, not parsed on a guess).
    """
    m = _VERSION_RE.search(namespace)
    if m is None or m.group(1) not in SUPPORTED_VERSIONS:
        what = f"Harmony version {m.group(1)}" if m else "no Harmony version (…/HarmonyV<n>)"
        raise PhenixError(
            f"{index_path}: XML namespace {namespace or '(none)'!r} names {what}; this reader supports "
            f"Harmony {', '.join(SUPPORTED_VERSIONS)} and does not parse other versions on a guess"
        )
    return m.group(1)


class _Prolog(Exception):
    """The root element was reached: the prolog, where a DOCTYPE must be, had none."""


def _refuse_doctype(index_path: Path) -> None:
    """Raise :class:`PhenixError` if the index declares a DOCTYPE (and so possibly entities).

    Expat reads the prolog only (up to the root element's start tag, whatever the encoding), with a
    handler that stops at ``<!DOCTYPE``: no entity is declared, resolved or expanded. Malformed
    XML is left to the main parse, which names the line.
    """

    def doctype(name: str, system_id: str | None, public_id: str | None, internal: bool) -> None:
        what = f"SYSTEM {system_id!r}" if system_id else ("an internal subset" if internal else "no subset")
        raise PhenixError(
            f"{index_path}: the index declares <!DOCTYPE {name}> ({what}); DTDs and entities are refused "
            "(a Harmony index has none; an entity can read another file or expand without bound)"
        )

    def root(name: str, attrs: dict) -> None:
        raise _Prolog

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = root
    try:
        with open(index_path, "rb") as f:
            while chunk := f.read(1 << 16):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except (_Prolog, expat.ExpatError):
        return


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
    """An optional numeric field: None when absent or not a number; NaN or infinity is an error
    (``ValueError`` naming the field; :func:`read_index` names the file)."""
    e = kids.get(name)
    if e is None or not (e.text or "").strip():
        return None
    try:
        value = float(e.text)
    except ValueError:
        return None
    if not math.isfinite(value):
        raise ValueError(f"{name} is {e.text.strip()!r}, not a finite number")
    return value


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
        self.plate_ids: list[str] = []
        self.user: str | None = None
        self.channel_maps: dict[int, dict[str, ET.Element]] = {}
        self.channels: dict[int, Channel] = {}
        self.raw: list[dict[str, tuple[str, str | None]]] = []

    def parse(self) -> None:
        """Stream through the index ("end" events only: a big index has ~4M elements), after
        refusing a DOCTYPE (:func:`_refuse_doctype`)."""
        _refuse_doctype(self.index_path)
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
                    self._plate(elem)
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

    def _plate(self, elem: ET.Element) -> None:
        """Keep the ``<Plate>``'s fields; a second ``<Plate>`` is an error naming both plates."""
        kids = _children(elem)
        plate = {k: (v.text or "").strip() for k, v in kids.items() if k != "Well"}
        self.plate_ids.append(plate.get("PlateID", ""))
        if len(self.plate_ids) > 1:
            raise PhenixError(
                f"{self.index_path}: more than one <Plate> (PlateID {', '.join(map(repr, self.plate_ids))}); "
                "an index must describe one plate"
            )
        self.plate = plate
        elem.clear()

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


def _ids(rec: dict[str, tuple[str, str | None]], where: str) -> tuple[int, int, int, int, int, int]:
    """``(row, col, field, plane, timepoint, channel)`` of a raw image record."""
    try:
        row, col = int(rec["Row"][0]), int(rec["Col"][0])
        channel = int(rec["ChannelID"][0])
        fld, plane, tp = int(rec["FieldID"][0]), int(rec["PlaneID"][0]), int(rec["TimepointID"][0])
    except ValueError as exc:
        raise PhenixError(f"{where}: non-integer Row/Col/FieldID/PlaneID/TimepointID/ChannelID ({exc})") from exc
    return row, col, fld, plane, tp, channel


def _channel_level(
    rec: dict[str, tuple[str, str | None]], cmap: dict[str, ET.Element], where: str, channel: int
) -> dict[str, tuple[str, str | None]]:
    """Channel-level ``(text, unit)`` values: from the image, else from its channel map entry."""
    level: dict[str, tuple[str, str | None]] = {}
    for k in _CHANNEL_LEVEL:
        if k in rec and rec[k][0]:
            level[k] = rec[k]
        elif k in cmap and (cmap[k].text or "").strip():
            level[k] = ((cmap[k].text or "").strip(), cmap[k].get("Unit"))
        else:
            raise PhenixError(f"{where} (channel {channel}): no {k} in the image nor in a channel map entry")
    return level


def _geometry(
    rec: dict[str, tuple[str, str | None]], level: dict[str, tuple[str, str | None]], where: str
) -> tuple[float, float, float, float, float, int, int]:
    """Position x, y, z and resolution x, y in metres, then size x, y in pixels."""
    try:
        return (
            _length_m(*rec["PositionX"], where),
            _length_m(*rec["PositionY"], where),
            _length_m(*rec["PositionZ"], where),
            _length_m(*level["ImageResolutionX"], where),
            _length_m(*level["ImageResolutionY"], where),
            int(level["ImageSizeX"][0]),
            int(level["ImageSizeY"][0]),
        )
    except ValueError as exc:
        if isinstance(exc, PhenixError):
            raise
        raise PhenixError(f"{where}: bad number in position/resolution/size ({exc})") from exc


@dataclass
class _RowContext:
    """What turning raw records into rows shares: the parser, the folder and caches."""

    parser: _IndexParser
    root: Path
    on_disk: set[str]
    wells: dict[tuple[int, int], str]

    def well(self, row: int, col: int, where: str) -> str:
        """Well name of a row / column (cached: a well has many images)."""
        name = self.wells.get((row, col))
        if name is None:
            try:
                name = self.wells.setdefault((row, col), well_name(row, col))
            except ValueError as exc:
                raise PhenixError(f"{where}: {exc}") from exc
        return name

    def path(self, url: str, where: str) -> tuple[Path, bool]:
        """The image file of a URL and whether it exists (plain names looked up in one listing).

        A URL names a file inside the measurement folder: backslashes are read as separators; an
        absolute path or a ``..`` step is a :class:`PhenixError` (an index must not pull another
        file of the machine into the platform)."""
        rel = url.replace("\\", "/")
        if os.path.isabs(rel) or re.match(r"^[A-Za-z]:/", rel) or ".." in rel.split("/"):
            raise PhenixError(f"{where}: URL {url!r} points outside the measurement folder {self.root}")
        path = self.root / rel
        exists = rel in self.on_disk if "/" not in rel else path.is_file()
        return path, exists


def _image_row(rec: dict[str, tuple[str, str | None]], ctx: _RowContext) -> tuple[Any, ...]:
    """One typed row, in :data:`IMAGES_SCHEMA` column order."""
    image_id = rec["id"][0]
    where = f"{ctx.parser.index_path}: image {image_id}"
    row, col, fld, plane, tp, channel = _ids(rec, where)
    level = _channel_level(rec, ctx.parser.channel_maps.get(channel, {}), where, channel)
    well = ctx.well(row, col, where)
    url = rec["URL"][0]
    path, exists = ctx.path(url, where)
    geometry = _geometry(rec, level, where)
    abs_time = _parse_time(rec["AbsTime"][0], where)
    return (
        image_id, row, col, well, fld, plane, tp, channel, level["ChannelName"][0], level["ChannelType"][0],
        url, str(path), *geometry, abs_time.astimezone(timezone.utc), exists,
    )


def _columns(parser: _IndexParser, root: Path) -> dict[str, list[Any]]:
    """Turn the raw per-image records into typed column lists."""
    try:
        on_disk = {e.name for e in os.scandir(root) if e.is_file()}
    except OSError:
        on_disk = set()
    ctx = _RowContext(parser, root, on_disk, {})
    rows = [_image_row(rec, ctx) for rec in parser.raw]
    return {k: list(values) for k, values in zip(IMAGES_SCHEMA, zip(*rows))} if rows else {k: [] for k in IMAGES_SCHEMA}


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
        If no index is found, the XML is malformed (file and line named) or declares a DOCTYPE,
        the Harmony version is not supported, the index has more than one ``<Plate>`` or no
        ``MeasurementID``, an image lacks a required element (image id named) or a value cannot
        be parsed.
    """
    index_path = find_index(path).resolve()
    parser = _IndexParser(index_path)
    try:
        parser.parse()
        version = _harmony_version(parser.namespace, index_path)
        plate = _checked_plate(parser)
        images = pl.DataFrame(_columns(parser, index_path.parent), schema=IMAGES_SCHEMA)
        _check_duplicates(images, index_path)
        return _measurement(parser, version, plate, images)
    except PhenixError:
        raise
    except ValueError as exc:  # a value no number can come from, NaN or infinity: the file named
        raise PhenixError(f"{index_path}: {exc}") from exc


def _all_channels(parser: _IndexParser, images: pl.DataFrame) -> dict[int, Channel]:
    """Channels by id: from the images, else the channel maps, else name and type of the rows."""
    channels = dict(parser.channels)
    for cid, kids in parser.channel_maps.items():
        if cid not in channels:
            channels[cid] = _channel_from(kids, cid)
    for cid, name, ctype in images.select("channel", "channel_name", "channel_type").unique("channel").iter_rows():
        if cid not in channels:
            channels[cid] = Channel(id=cid, name=name, type=ctype)
    return dict(sorted(channels.items()))


def _checked_plate(parser: _IndexParser) -> dict[str, str]:
    """The one ``<Plate>``'s fields, with a non-empty ``MeasurementID`` (else PhenixError)."""
    plate, index_path = parser.plate, parser.index_path
    if not parser.plate_ids:
        raise PhenixError(f"{index_path}: no <Plates><Plate> element")
    if not plate.get("MeasurementID"):
        raise PhenixError(
            f"{index_path}: Plate {plate.get('PlateID', '')!r} has an empty or missing MeasurementID "
            "(it keys the measurement: without it, measurements of the plate would be taken for one another)"
        )
    return plate


def _measurement(parser: _IndexParser, version: str, plate: dict[str, str], images: pl.DataFrame) -> Measurement:
    """The :class:`Measurement` of a parsed index, its checked version and plate and its image rows."""
    index_path = parser.index_path

    def plate_int(name: str) -> int:
        try:
            return int(plate.get(name, ""))
        except ValueError as exc:
            raise PhenixError(f"{index_path}: Plate {name} is {plate.get(name)!r}, not an integer") from exc

    start = plate.get("MeasurementStartTime")
    return Measurement(
        root=index_path.parent,
        index_path=index_path,
        harmony_version=version,
        plate_id=plate.get("PlateID", ""),
        measurement_id=plate["MeasurementID"],
        plate_type=plate.get("PlateTypeName", ""),
        plate_rows=plate_int("PlateRows"),
        plate_columns=plate_int("PlateColumns"),
        start_time=_parse_time(start, f"{index_path}: MeasurementStartTime") if start else None,
        channels=_all_channels(parser, images),
        images=images,
        user=parser.user,
    )
