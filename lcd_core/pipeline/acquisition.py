"""One measurement (plate × timepoint) from the microscope's index to per-tile and per-FOV tables.

Three steps, each a function the acquisition assets call once per partition:

* :func:`index_measurement`: the Phenix index of the measurement with its plate-map lineage and
  how complete it is;
* :func:`tile_measurement` (:func:`tile_to_cache`) and :func:`tile_qc`: every brightfield FOV
  decoded once, tiled, QC'd, its kept tiles handed to the kept-tile cache
  (:mod:`lcd_core.tiles.cache`), and the partition's QC summary;
* :func:`kept_tile_pass`: the kept tiles, read from that cache (or decoded again without it), fanned
  out to the ViT, the handcrafted features and the cell segmentation, giving the
  ``tile_embeddings``, ``fov_features``, ``cell_features`` and ``segmented_cells`` tables.

Pure Python over the stage packages (no Dagster); reading and writing the warehouse is the
caller's. :func:`tile_to_cache` and :func:`kept_tile_pass` take plain arguments (tables, settings,
model folders as :class:`VitSpec` / paths) so that a cluster worker can run them; models load once
per process (:func:`load_model`).
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from lcd_core.cells import CELL_FEATURE_NAMES, N_RAYS, RayNet, load_raynet
from lcd_core.cells.features import SegmentedTile, tiles_cell_features
from lcd_core.embedding.aggregate import aggregate_embeddings
from lcd_core.embedding.inference import embed_batches, input_size_of, resize_tiles
from lcd_core.embedding.vit import describe_checkpoint, load_checkpoint
from lcd_core.handcrafted.features import FEATURE_NAMES, tiles_features
from lcd_core.io.inbox import MeasurementTimepoint, resolve_partition
from lcd_core.io.phenix import Measurement, read_index
from lcd_core.io.platemap import Screen
from lcd_core.tiles import partition as acq
from lcd_core.tiles.cache import KeptTileWriter, iter_cached, read_kept_tiles
from lcd_core.tiles.grid import tile_grid
from lcd_core.tiles.preprocess import TileConfig, preprocess_stack
from lcd_core.tiles.preview import render_preview, render_tile_strip

#: the lineage of a well profile (the grouping keys of ``well_embeddings``)
WELL_KEYS = [*acq.LINEAGE, "well", *acq.WELL_META]
#: the lineage of a FOV profile
FOV_KEYS = [*WELL_KEYS, "field"]
#: the lineage columns of a ``tile_embeddings`` row, in table order
TILE_KEYS = ["tile_id", *acq.LINEAGE, "well", "field", "tile_index", *acq.WELL_META]
EMBED_DIM = 384
#: schema of the ``segmented_cells`` dataset: one row per live nucleus
CELL_SCHEMA = {"tile_id": pl.String, "plate": pl.String, "timepoint": pl.String, "well": pl.String,
               "field": pl.Int64, "tile_index": pl.Int64, "y": pl.Float32, "x": pl.Float32,
               "live_prob": pl.Float32, "cell": pl.Int32, "log_area": pl.Float32,
               "log_elongation": pl.Float32, "roundness": pl.Float32, "nucleus_log_area": pl.Float32,
               "rays": pl.Array(pl.Float32, N_RAYS)}
#: examples of each kind (kept / rejected) in the tile strip preview
N_EXAMPLES = 8

Log = Callable[[str], None]


def brightfield_of(index: pl.DataFrame) -> int:
    """The brightfield channel of an ``image_index`` partition (the lowest, if several)."""
    bf = index.filter(pl.col("channel_type").str.to_lowercase() == "brightfield")["channel"].unique()
    if bf.len() == 0:
        where = f"{index['plate'][0]} × {index['timepoint'][0]}" if index.height else "an empty partition"
        raise ValueError(f"image_index of {where} has no Brightfield channel "
                         f"(channels: {sorted(index['channel'].unique().to_list()) if index.height else []})")
    return int(bf.min())


# --------------------------------------------------------------------------------------------
# image index


@dataclass
class IndexedMeasurement:
    """A measurement's index as the ``image_index`` table, and how it compares with the plate map."""

    measurement: MeasurementTimepoint
    phenix: Measurement
    table: pl.DataFrame
    brightfield: int
    completeness: acq.Completeness


def index_measurement(inbox: Path, screen: Screen, plate: str, timepoint: str,
                      hint: Path | None = None) -> IndexedMeasurement:
    """Find the measurement of ``plate × timepoint`` in the inbox (``hint``: its folder, when known)
    and read its index with the plate-map lineage."""
    mt = resolve_partition(inbox, screen, plate, timepoint, hint)
    meas = read_index(mt.path)
    table = acq.image_index_table(meas, mt, screen)
    brightfield = meas.brightfield_channel()
    completeness = acq.index_completeness(table, screen.layout_of(plate), brightfield)
    return IndexedMeasurement(mt, meas, table, brightfield, completeness)


# --------------------------------------------------------------------------------------------
# tiles


@dataclass
class Tiling:
    """The ``tiles`` table of a partition, with what its previews show.

    ``preview`` is the first FOV with a QC reject (else the first FOV) as ``(fov_row, records)``;
    ``examples`` up to :data:`N_EXAMPLES` kept tiles, then up to as many rejects, as ``(tile, record)``.
    """

    table: pl.DataFrame
    seconds: float
    preview: tuple[dict, list[dict]] | None = None
    examples: list[tuple[np.ndarray, dict]] = field(default_factory=list)


def tile_measurement(fovs: pl.DataFrame, config: TileConfig, keep: KeptTileWriter | None = None) -> Tiling:
    """Tile and QC every FOV of a partition (memory bounded by one FOV); ``keep`` receives the
    kept tiles, FOV by FOV, for the kept-tile pass (:mod:`lcd_core.tiles.cache`)."""
    rows: list[dict] = []
    preview, preview_rejects = None, False
    examples: dict[bool, list[tuple[np.ndarray, dict]]] = {True: [], False: []}
    t0 = time.perf_counter()
    for row, fov_tiles, records in acq.tile_partition(fovs, config):
        fov_rows = acq.tile_records(row, records)
        rows.extend(fov_rows)
        if keep is not None:
            kept = [i for i, r in enumerate(fov_rows) if r["kept"]]
            keep.add([fov_rows[i]["tile_id"] for i in kept], fov_tiles[kept])
        has_reject = any(r["qc_reason"] for r in records)
        if preview is None or (has_reject and not preview_rejects):
            preview, preview_rejects = (row, records), has_reject
        for t, rec in zip(fov_tiles, records):
            bucket = examples[rec["qc_reason"] is None]
            if len(bucket) < N_EXAMPLES:
                bucket.append((t, rec))
    seconds = time.perf_counter() - t0
    return Tiling(pl.DataFrame(rows, infer_schema_length=None), seconds, preview, examples[True] + examples[False])


def tile_to_cache(fovs: pl.DataFrame, config: TileConfig, cache: Path) -> Tiling:
    """:func:`tile_measurement` with the kept tiles committed to the cache at ``cache`` (a stem of
    :mod:`lcd_core.tiles.cache`), or nothing left there when it fails."""
    keep = KeptTileWriter(cache, config)
    try:
        tiled = tile_measurement(fovs, config, keep=keep)
    except BaseException:
        keep.abort()
        raise
    keep.commit()
    return tiled


def preview_png(tiling: Tiling, config: TileConfig) -> bytes | None:
    """The preview FOV with its tile grid (rejected tiles in red), as PNG; None without FOVs."""
    if tiling.preview is None:
        return None
    row, records = tiling.preview
    image = preprocess_stack(acq.read_fov(row["paths"]), config)
    return render_preview(image, records, config.tile_size)


def examples_png(tiling: Tiling) -> bytes | None:
    """Kept tiles (top row) and QC rejects (bottom row), as PNG; None without tiles."""
    if not tiling.examples:
        return None
    return render_tile_strip(np.stack([t for t, _ in tiling.examples]), [r for _, r in tiling.examples])


@dataclass
class TileQc:
    """The QC summary of a partition's tiles: ``passed`` when at most ``max_empty_fraction`` of
    the FOVs lost every tile and no FOV has more tiles than its grid holds."""

    per_fov: pl.DataFrame  # well, field, n (tiles), kept
    rejected_by_reason: dict[str, int]
    empty_fovs: int
    max_tiles_per_fov: int
    grid_capacity: int
    passed: bool


def tile_qc(table: pl.DataFrame, image_shape: tuple[int, int], config: TileConfig,
            max_empty_fraction: float) -> TileQc:
    """Summarise the ``tiles`` table of one partition of ``image_shape`` (H, W) images."""
    per_fov = table.group_by(["well", "field"]).agg(pl.len().alias("n"), pl.col("kept").sum().alias("kept"))
    reasons = Counter(r for r in table["qc_reason"].to_list() if r)
    empty = per_fov.filter(pl.col("kept") == 0).height
    grid_max = int(per_fov["n"].max()) if per_fov.height else 0
    grid_cap = len(tile_grid(image_shape[0] // config.binning, image_shape[1] // config.binning, config.tile_size))
    passed = per_fov.height > 0 and empty <= max_empty_fraction * per_fov.height and grid_max <= grid_cap
    return TileQc(per_fov, dict(reasons), empty, grid_max, grid_cap, bool(passed))


# --------------------------------------------------------------------------------------------
# the kept-tile pass


@dataclass
class Vit:
    """The ViT that embeds the kept tiles: the model, its checkpoint record, and how to run it."""

    model: object
    record: dict
    name: str
    batch_size: int = 64
    dtype: str = "auto"
    device: str = "auto"

    @property
    def label(self) -> str:
        """How the checkpoint is described in the UI (``untrained`` or its variant)."""
        return describe_checkpoint(self.record)


_LOADERS = {"model.safetensors": load_checkpoint, "raynet.pt": load_raynet}


@functools.lru_cache(maxsize=4)
def _load_cached(folder: str, weights: str, mtime_ns: int):
    return _LOADERS[weights](folder)


def load_model(folder: Path | str, weights: str = "model.safetensors") -> tuple[object, dict]:
    """``(model, record)`` of a ViT checkpoint folder (or, ``weights="raynet.pt"``, of the cell
    segmentation network), kept per process: the weights load and the bf16 kernels warm up once
    per process (a demo process, a cluster worker); rewritten weights load again."""
    path = Path(folder) / weights
    if not path.exists():
        raise FileNotFoundError(f"model weights {path} not found")
    return _load_cached(str(folder), weights, path.stat().st_mtime_ns)


@dataclass(frozen=True)
class VitSpec:
    """A ViT by its checkpoint folder, with how to run it: what a worker gets instead of the model
    (:meth:`load` reads it there, once per process)."""

    folder: str
    batch_size: int = 64
    dtype: str = "auto"
    device: str = "auto"

    def record(self) -> dict:
        """The checkpoint's ``config.json``."""
        path = Path(self.folder) / "config.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def load(self) -> Vit:
        model, record = load_model(self.folder)
        return Vit(model, record, record.get("name", Path(self.folder).name), batch_size=self.batch_size,
                   dtype=self.dtype, device=self.device)


@dataclass
class KeptTilePass:
    """What one decode of a partition's kept tiles gave each consumer (None: not asked for).

    ``tile_rows`` are the ``tiles`` rows of the decoded tiles in pass order; ``seconds`` has
    ``pass`` and, per consumer run, ``embedding`` (the streamed embedding loop, decoding and the
    other consumers included), ``features`` and ``cells``; ``from_cache``: the tiles came from the
    tiling's cache, not from decoding the TIFFs again.
    """

    tile_rows: list[dict]
    seconds: dict[str, float]
    from_cache: bool = False
    embeddings: np.ndarray | None = None
    tile_embeddings: pl.DataFrame | None = None
    fov_features: pl.DataFrame | None = None
    cell_features: pl.DataFrame | None = None
    segmented_cells: pl.DataFrame | None = None


def kept_tile_pass(fovs: pl.DataFrame, kept: pl.DataFrame, config: TileConfig, *, vit: Vit | VitSpec | None = None,
                   features: bool = False, raynet: RayNet | Path | None = None, log: Log | None = None,
                   cache: Path | None = None) -> KeptTilePass:
    """Decode the kept tiles of a partition once and feed the ViT, the handcrafted features and
    the cell segmentation from that one stream (memory bounded by a batch / an FOV).

    Parameters
    ----------
    fovs
        :func:`lcd_core.tiles.partition.fov_paths` of the partition.
    kept
        The partition's ``tiles`` rows with ``kept``.
    vit, features, raynet
        The consumers: the ViT (or its :class:`VitSpec`), whether to compute the handcrafted
        features, the segmentation net (or its folder).
    log
        Receives progress lines of the embedding.
    cache
        Where the tiling left the kept tiles (:mod:`lcd_core.tiles.cache`); they are read from
        there when it holds exactly these tiles, else the FOVs are decoded and tiled again.
    """
    if isinstance(vit, VitSpec):
        vit = vit.load()
    if isinstance(raynet, (str, Path)):
        raynet = load_model(raynet, "raynet.pt")[0]
    rows: list[dict] = []
    feats: list[np.ndarray] = []
    cell_feats: list[np.ndarray] = []
    segs: list[tuple[dict, SegmentedTile]] = []
    seconds = {"features": 0.0, "cells": 0.0}

    source, from_cache = kept_tiles(fovs, kept, config, cache)

    def stream() -> Iterator[np.ndarray]:
        for tile_rows, arr in source:
            if features:
                feats.extend(_timed(seconds, "features", lambda: list(tiles_features([arr]))))
            if raynet is not None:
                for f, tile_segs in _timed(seconds, "cells", lambda: list(tiles_cell_features(raynet, [arr]))):
                    cell_feats.append(f)
                    segs.extend(zip(tile_rows, tile_segs))
            rows.extend(tile_rows)
            yield arr

    t0 = time.perf_counter()
    emb = _embed(vit, stream(), kept.height, config.tile_size, seconds, log) if vit else _drain(stream())
    out = KeptTilePass(rows, seconds, from_cache=from_cache)
    out.seconds["pass"] = time.perf_counter() - t0
    if vit is not None:
        out.embeddings, out.tile_embeddings = emb, tile_embeddings_table(rows, emb, vit.name)
    if features:
        out.fov_features = per_fov_table(rows, feats, FEATURE_NAMES)
    if raynet is not None:
        out.cell_features = per_fov_table(rows, cell_feats, CELL_FEATURE_NAMES)
        out.segmented_cells = segmented_cells_table(segs)
    return out


def kept_tiles(fovs: pl.DataFrame, kept: pl.DataFrame, config: TileConfig,
               cache: Path | None = None) -> tuple[Iterator[tuple[list[dict], np.ndarray]], bool]:
    """``(rows, tiles)`` of the kept tiles FOV by FOV, and whether they come from the tiling's
    cache (when it holds exactly ``kept``'s tiles) rather than from decoding and tiling the FOVs
    again (:func:`lcd_core.tiles.partition.iter_kept_tiles`)."""
    hit = read_kept_tiles(cache, config, kept["tile_id"].to_list()) if cache is not None else None
    if hit is None:
        return acq.iter_kept_tiles(fovs, kept, config), False
    tiles, ids = hit
    by_id = {r["tile_id"]: r for r in kept.iter_rows(named=True)}
    return iter_cached(tiles, [by_id[i] for i in ids]), True


def _timed(seconds: dict[str, float], key: str, work: Callable[[], list]) -> list:
    t = time.perf_counter()
    result = work()
    seconds[key] += time.perf_counter() - t
    return result


#: the embedding's progress line at most this often, and at the end (each line is an event of the run)
PROGRESS_EVERY_S = 10.0


def _drain(tiles: Iterator[np.ndarray]) -> None:
    for _ in tiles:
        pass


def _embed(vit: Vit, tiles: Iterator[np.ndarray], total: int, tile_size: int, seconds: dict[str, float],
           log: Log | None) -> np.ndarray:
    """Embeddings ``(n, D)`` of the streamed tiles, resized to the checkpoint's input size."""
    size = input_size_of(vit.record, tile_size)
    if size != tile_size and log:
        log(f"{vit.label} was trained on {size}-px crops: tiles are resized to {size} px")

    last = [time.perf_counter()]

    def progress(done: int, n: int | None, rate: float) -> None:
        now = time.perf_counter()
        if log and (done == n or now - last[0] >= PROGRESS_EVERY_S):
            last[0] = now
            log(f"embedded {done}/{n} tiles ({rate:.1f} tiles/s)")

    t0 = time.perf_counter()
    chunks = list(embed_batches(vit.model, (resize_tiles(arr, size) for arr in tiles), batch_size=vit.batch_size,
                                dtype=vit.dtype, device=vit.device, total=total, progress=progress))
    seconds["embedding"] = time.perf_counter() - t0
    return np.concatenate(chunks) if chunks else np.zeros((0, EMBED_DIM), np.float32)


def tile_embeddings_table(rows: list[dict], emb: np.ndarray, checkpoint: str) -> pl.DataFrame:
    """``tile_embeddings`` rows: the tile lineage, ``embedding`` and the ``checkpoint`` name
    (an empty frame without tiles)."""
    if not rows:
        return pl.DataFrame()
    dim = emb.shape[1] if emb.ndim == 2 else EMBED_DIM
    return pl.DataFrame(rows, infer_schema_length=None).select(TILE_KEYS).with_columns(
        pl.Series("embedding", emb, dtype=pl.Array(pl.Float32, dim)),
        pl.lit(checkpoint).alias("checkpoint"),
    )


def per_fov_table(rows: list[dict], feats: list[np.ndarray], names: tuple[str, ...]) -> pl.DataFrame:
    """Per-tile feature rows averaged per FOV: :data:`FOV_KEYS`, ``n_tiles`` and one column per
    feature name (an empty frame without tiles)."""
    if not rows:
        return pl.DataFrame()
    tiles = pl.DataFrame(rows, infer_schema_length=None).select(FOV_KEYS).with_columns(
        pl.Series("embedding", np.concatenate(feats), dtype=pl.Array(pl.Float32, len(names))))
    agg = aggregate_embeddings(tiles, by=FOV_KEYS)
    values = np.asarray(agg["embedding"].to_numpy(), dtype=np.float32)
    return pl.concat([agg.drop("embedding"), pl.DataFrame(values, schema=list(names), orient="row")],
                     how="horizontal")


def segmented_cells_table(segs: list[tuple[dict, SegmentedTile]]) -> pl.DataFrame:
    """One row per live nucleus of each ``(tile row, segmented tile)``, in tile-pixel coordinates
    (:data:`CELL_SCHEMA`)."""
    cells = [_nucleus_row(r, s, k) for r, s in segs for k in range(len(s.centres))]
    return pl.DataFrame(cells, schema=CELL_SCHEMA) if cells else pl.DataFrame(schema=CELL_SCHEMA)


def _nucleus_row(r: dict, s: SegmentedTile, k: int) -> dict:
    return {"tile_id": r["tile_id"], "plate": r["plate"], "timepoint": r["timepoint"], "well": r["well"],
            "field": int(r["field"]), "tile_index": int(r["tile_index"]), "y": float(s.centres[k, 0]),
            "x": float(s.centres[k, 1]), "live_prob": float(s.prob[k]), "cell": int(s.cell[k]),
            "log_area": float(s.shape[k, 0]), "log_elongation": float(s.shape[k, 1]),
            "roundness": float(s.shape[k, 2]), "nucleus_log_area": float(s.nucleus_shape[k, 0]),
            "rays": s.rays[k].astype(np.float32).tolist()}
