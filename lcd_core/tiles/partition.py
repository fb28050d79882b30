"""Acquisition steps of one measurement partition (plate × timepoint): index, tiles, embeddings.

Pure functions over the Phenix reader, the plate maps and the tiler; ``lcd_assets`` wraps each in
an asset. Every table carries the lineage tile → FOV → well → plate → replica.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from lcd_core.io.inbox import MeasurementTimepoint
from lcd_core.io.phenix import Measurement, PhenixError
from lcd_core.io.planes import read_plane
from lcd_core.io.platemap import Screen
from lcd_core.tiles.grid import tile_fov
from lcd_core.tiles.preprocess import TileConfig

LINEAGE = ["plate", "timepoint", "replica", "layout", "dose", "barcode"]
WELL_META = ["compound", "moa", "role"]
#: planes a brightfield FOV may have: 3 (the screen's z-stack) or 1 (replicated to 3 channels)
FOV_PLANES = (1, 3)
#: columns of a :func:`fov_paths` row that say how to read the FOV, not what it is (not lineage)
FOV_READ_COLUMNS = ("paths", "expected_shape")


def image_index_table(meas: Measurement, mt: MeasurementTimepoint, screen: Screen) -> pl.DataFrame:
    """The images of one measurement timepoint with their plate-map lineage.

    Wells of the index that are not on the layout keep ``compound`` null (reported by
    :func:`index_completeness`).
    """
    reg = screen.plate_for_barcode(mt.barcode)
    layout = screen.layout_of(mt.plate).select(["well", *WELL_META])
    images = meas.images.filter(pl.col("timepoint") == mt.timepoint_id).rename(
        {"timepoint": "timepoint_id"}
    )
    return (
        images.with_columns(
            pl.lit(mt.plate).alias("plate"),
            pl.lit(mt.timepoint).alias("timepoint"),
            pl.lit(reg["replica"]).alias("replica"),
            pl.lit(reg["layout"]).alias("layout"),
            pl.lit(reg["dose"]).alias("dose"),
            pl.lit(float(reg["dose_um"])).alias("dose_um"),
            pl.lit(mt.barcode).alias("barcode"),
            pl.lit(mt.measurement_id).alias("measurement_id"),
            pl.lit(str(mt.path)).alias("measurement_path"),
        )
        .join(layout, on="well", how="left")
        .sort(["well", "field", "plane", "channel"])
    )


@dataclass
class Completeness:
    """How an image index compares with the plate map.

    ``passed`` is False when a plate-map well is missing, a brightfield FOV lacks a plane, the
    brightfield FOVs have a number of planes the tiles cannot take (not in :data:`FOV_PLANES`), or
    a listed file is absent; wells imaged but not on the layout are only reported.
    """

    passed: bool
    n_wells_expected: int
    n_wells_imaged: int
    missing_wells: list[str]
    foreign_wells: list[str]
    incomplete_fovs: list[str]
    missing_files: list[str]
    fields: list[int]
    planes: list[int]

    @property
    def planes_ok(self) -> bool:
        """Whether the plate's brightfield planes are a count the tiles take (:data:`FOV_PLANES`)."""
        return not self.planes or len(self.planes) in FOV_PLANES

    def summary(self) -> str:
        parts = []
        if not self.planes_ok:
            parts.append(f"brightfield FOVs have {len(self.planes)} planes {self.planes}; "
                         f"the tiles need {' or '.join(map(str, FOV_PLANES[::-1]))}")
        if self.missing_wells:
            parts.append(f"{len(self.missing_wells)} plate-map wells not imaged: {self.missing_wells[:10]}")
        if self.incomplete_fovs:
            parts.append(f"{len(self.incomplete_fovs)} FOVs lack planes: {self.incomplete_fovs[:10]}")
        if self.missing_files:
            parts.append(f"{len(self.missing_files)} files missing: {self.missing_files[:5]}")
        if self.foreign_wells:
            parts.append(f"{len(self.foreign_wells)} wells imaged but not on the layout: {self.foreign_wells[:10]}")
        return "; ".join(parts) or "complete"


def index_completeness(index: pl.DataFrame, layout: pl.DataFrame, brightfield: int) -> Completeness:
    """Compare the brightfield images of a partition with its layout.

    Every layout well must have the same set of fields, and every FOV the full set of planes
    seen on the plate, which must hold 3 planes (or 1: :data:`FOV_PLANES`).
    """
    bf = index.filter(pl.col("channel") == brightfield)
    expected = set(layout["well"].to_list())
    imaged = set(bf["well"].unique().to_list())
    fields = sorted(bf["field"].unique().to_list())
    planes = sorted(bf["plane"].unique().to_list())
    per_fov = bf.group_by(["well", "field"]).agg(pl.col("plane").n_unique().alias("n"))
    incomplete = per_fov.filter(pl.col("n") < len(planes))
    fovs = {(w, f) for w, f in per_fov.select(["well", "field"]).iter_rows()}
    missing_fields = [f"{w}/f{f}" for w in sorted(expected & imaged) for f in fields if (w, f) not in fovs]
    incomplete_fovs = sorted(
        [f"{w}/f{f}" for w, f in incomplete.select(["well", "field"]).iter_rows()] + missing_fields
    )
    missing_files = bf.filter(~pl.col("exists"))["path"].to_list()
    missing_wells = sorted(expected - imaged)
    planes_ok = not planes or len(planes) in FOV_PLANES
    return Completeness(
        passed=planes_ok and not (missing_wells or incomplete_fovs or missing_files),
        n_wells_expected=len(expected),
        n_wells_imaged=len(imaged),
        missing_wells=missing_wells,
        foreign_wells=sorted(imaged - expected),
        incomplete_fovs=incomplete_fovs,
        missing_files=missing_files,
        fields=fields,
        planes=planes,
    )


def fov_paths(index: pl.DataFrame, brightfield: int) -> pl.DataFrame:
    """One row per brightfield FOV of the plate map: lineage plus ``paths`` sorted by plane and
    ``expected_shape`` (``[ImageSizeY, ImageSizeX]`` of the index, when it has the sizes)."""
    keep = [c for c in [*LINEAGE, *WELL_META] if c in index.columns]
    shape = ([pl.concat_list(pl.col("size_y").first(), pl.col("size_x").first()).alias("expected_shape")]
             if {"size_x", "size_y"} <= set(index.columns) else [])
    return (
        index.filter((pl.col("channel") == brightfield) & pl.col("compound").is_not_null())
        .sort("plane")
        .group_by(["well", "field"], maintain_order=True)
        .agg(pl.col("path"), *[pl.col(c).first() for c in keep], *shape)
        .rename({"path": "paths"})
        .sort(["well", "field"])
    )


def fov_lineage(row: dict) -> dict:
    """The lineage of a :func:`fov_paths` row (without :data:`FOV_READ_COLUMNS`)."""
    return {k: v for k, v in row.items() if k not in FOV_READ_COLUMNS}


def fov_name(row: dict) -> str:
    """``plate × timepoint, well W, field F`` of a :func:`fov_paths` row, for messages."""
    where = " × ".join(str(row[k]) for k in ("plate", "timepoint") if row.get(k) is not None)
    return f"{where + ', ' if where else ''}well {row.get('well')}, field {row.get('field')}"


def read_fov(paths: list[str], shape: list[int] | tuple[int, int] | None = None, where: str = "") -> np.ndarray:
    """The z-stack of one FOV as ``(planes, H, W)`` uint16, read-only.

    ``shape``: ``(H, W)`` the index declares (every plane must have it); ``where`` names the FOV
    in messages. Raises PhenixError naming the FOV and the bad file, or every file when the FOV
    has a number of planes not in :data:`FOV_PLANES`, before any pixel is read.
    The last stacks read in this process are kept (:data:`DECODED_FOVS`): a measurement's tiling
    and its nuclei decode each FOV once.
    """
    prefix = f"{where}: " if where else ""
    if len(paths) not in FOV_PLANES:
        raise PhenixError(f"{prefix}{len(paths)} brightfield planes, the tiles need "
                          f"{' or '.join(map(str, FOV_PLANES[::-1]))}: {paths}")
    shape = None if shape is None else (int(shape[0]), int(shape[1]))
    key = DECODED_FOVS.key(paths, shape)
    if key is not None and (hit := DECODED_FOVS.get(key)) is not None:
        return hit
    try:
        planes = [read_plane(p, shape) for p in paths]
    except PhenixError as exc:
        raise PhenixError(f"{prefix}{exc}") from exc
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise PhenixError(f"{prefix}planes of one FOV differ in size {sorted(shapes)}: {paths}")
    stack = np.stack(planes)
    stack.flags.writeable = False
    if key is not None:
        DECODED_FOVS.put(key, stack)
    return stack


class DecodedFovs:
    """The most recently read FOV stacks of a process, up to ``max_bytes`` (least recently used
    first out). A stack is found again only while every one of its files has the size, times and
    inode it had when read; a file changed in between is read again."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._stacks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def key(paths: list[str], shape: tuple[int, int] | None) -> tuple | None:
        """The files' identities (None when one cannot be stat'ed: the read then names it)."""
        try:
            stats = [os.stat(p) for p in paths]
        except OSError:
            return None
        return shape, tuple((str(p), s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino) for p, s in zip(paths, stats))

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            stack = self._stacks.get(key)
            if stack is not None:
                self._stacks.move_to_end(key)
            return stack

    def put(self, key: tuple, stack: np.ndarray) -> None:
        if stack.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._stacks:
                return
            self._stacks[key] = stack
            self._bytes += stack.nbytes
            while self._bytes > self.max_bytes:
                self._bytes -= self._stacks.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        with self._lock:
            self._stacks.clear()
            self._bytes = 0


#: 64 MiB: a demo measurement (64 FOVs of 3 × 224² px, 19 MiB) whole; two 2160² Phenix FOVs
DECODED_FOVS = DecodedFovs(64 * 2**20)


def tile_id(plate: str, timepoint: str, well: str, field: int, tile_index: int) -> str:
    """Stable identifier of a tile: ``R01-L01/04h/B07/f1/t3``."""
    return f"{plate}/{timepoint}/{well}/f{field}/t{tile_index}"


def tile_partition(
    fovs: pl.DataFrame, config: TileConfig
) -> Iterator[tuple[dict, np.ndarray, list[dict]]]:
    """Tile every FOV of a partition, one at a time (memory bounded by one FOV).

    Yields
    ------
    (fov_row, tiles, records)
        ``fov_row`` is the lineage row of the FOV, ``tiles`` its tile array ``(n, 3, T, T)``
        and ``records`` one dict per tile with its grid position and ``qc_reason``.
    """
    for row in fovs.iter_rows(named=True):
        stack = read_fov(row["paths"], row.get("expected_shape"), fov_name(row))
        tiles, records = tile_fov(stack, config)
        yield row, tiles, records


def tile_records(row: dict, records: list[dict]) -> list[dict]:
    """Tile table rows of one FOV: lineage + grid position + QC outcome."""
    lineage = fov_lineage(row)
    out = []
    for rec in records:
        out.append(
            {
                **lineage,
                "tile_id": tile_id(row["plate"], row["timepoint"], row["well"], row["field"], rec["tile_index"]),
                **rec,
                "kept": rec.get("qc_reason") is None,
            }
        )
    return out


def iter_kept_tiles(
    fovs: pl.DataFrame, kept: pl.DataFrame, config: TileConfig
) -> Iterator[tuple[list[dict], np.ndarray]]:
    """Re-read the FOVs and yield the kept tiles with their rows, FOV by FOV.

    ``kept`` is the partition's tile table filtered to kept tiles; tiling is deterministic, so
    the tile at ``tile_index`` is the one QC judged.
    """
    wanted: dict[tuple[str, int], set[int]] = {}
    rows_by_id: dict[str, dict] = {}
    for r in kept.iter_rows(named=True):
        wanted.setdefault((r["well"], r["field"]), set()).add(r["tile_index"])
        rows_by_id[r["tile_id"]] = r
    fovs = fovs.join(kept.select(["well", "field"]).unique(), on=["well", "field"], how="semi")
    for row, tiles, records in tile_partition(fovs, config):
        keep = wanted[(row["well"], row["field"])]
        sel = [i for i, rec in enumerate(records) if rec["tile_index"] in keep]
        ids = [tile_id(row["plate"], row["timepoint"], row["well"], row["field"], records[i]["tile_index"]) for i in sel]
        yield [rows_by_id[i] for i in ids], tiles[sel]


def qc_against_truth(tiles: pl.DataFrame, truth_fovs: pl.DataFrame) -> dict[str, float | int | None]:
    """How tile QC recovers the artifacts planted in a synthetic screen.

    A FOV counts as flagged when QC rejected at least one of its tiles; the truth's ``artifact``
    column (``none`` / ``debris`` / ``defocus`` …) says which FOVs carry an artifact.

    Returns
    -------
    dict
        ``artifact_fovs``, ``artifact_fovs_flagged``, ``artifact_recall``, ``clean_fovs``,
        ``clean_fovs_flagged`` and ``false_flag_rate``.
    """
    flagged = tiles.group_by(["well", "field"]).agg((~pl.col("kept")).any().alias("flagged"))
    truth = truth_fovs.select(["well", "field", (pl.col("artifact") != "none").alias("artifact")])
    both = truth.join(flagged.with_columns(pl.col("field").cast(truth["field"].dtype)), on=["well", "field"], how="inner")
    art = both.filter(pl.col("artifact"))
    clean = both.filter(~pl.col("artifact"))
    n_art, n_clean = art.height, clean.height
    art_flag = int(art["flagged"].sum()) if n_art else 0
    clean_flag = int(clean["flagged"].sum()) if n_clean else 0
    return {
        "artifact_fovs": n_art,
        "artifact_fovs_flagged": art_flag,
        "artifact_recall": art_flag / n_art if n_art else None,
        "clean_fovs": n_clean,
        "clean_fovs_flagged": clean_flag,
        "false_flag_rate": clean_flag / n_clean if n_clean else None,
    }
