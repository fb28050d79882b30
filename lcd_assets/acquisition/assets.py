"""Acquisition assets, partitioned by plate × timepoint: image index → tiles → embeddings
(and the handcrafted baseline's FOV features and segmented cells, from the same pass over the
decoded tiles).

Each asset is thin glue over ``lcd_core``: it reads its partition, calls the library, writes the
result atomically (DuckDB partition replace or Parquet ``os.replace``) and reports metadata and
blocking checks.
"""


import functools
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.partitions import measurement_partitions, partitioned_check
from lcd_assets.resources import (
    CELL_SEGMENTATION_MODEL,
    WAREHOUSE_POOL,
    EmbeddingSettings,
    LcdHome,
    TilingSettings,
)
from lcd_core.tiles import partition as acq
from lcd_core.cells import CELL_FEATURE_NAMES, N_CELL_FEATURES, N_RAYS, load_raynet
from lcd_core.cells.features import tiles_cell_features
from lcd_core.embedding.inference import aggregate_embeddings, embed_batches, input_size_of, resize_tiles
from lcd_core.handcrafted.features import FEATURE_NAMES, N_FEATURES, tiles_features
from lcd_core.io.inbox import resolve_partition
from lcd_core.io.phenix import read_index
from lcd_core.tiles.tiling import preprocess_stack, render_preview, render_tile_strip, tile_grid
from lcd_core.embedding.vit import describe_checkpoint, load_checkpoint

GROUP = "acquisition"
EMBED_DIM = 384


_check_spec = functools.partial(partitioned_check, partitions_def=measurement_partitions, blocking=True)


def _partition(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["plate"], keys["timepoint"]


def _where(plate: str, timepoint: str) -> dict[str, str]:
    return {"plate": plate, "timepoint": timepoint}


def _read_partition_table(lcd: LcdHome, table: str, plate: str, timepoint: str) -> pl.DataFrame:
    return lcd.warehouse().query(
        f"SELECT * FROM {table} WHERE plate = $plate AND timepoint = $timepoint",
        {"plate": plate, "timepoint": timepoint},
    )


# --------------------------------------------------------------------------------------------
# image_index


@dg.asset(
    partitions_def=measurement_partitions,
    group_name=GROUP,
    kinds={"phenix", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["plate_registry"],
    check_specs=[
        _check_spec(
            "index_complete",
            asset="image_index",
            blocking=True,
            description="Every plate-map well imaged with every field and plane; every listed file on disk.",
        )
    ],
    description=(
        "The Opera Phenix index of one measurement (plate × timepoint): one row per image, all "
        "channels, with the plate-map lineage (replica, layout, dose, well → compound). Table "
        "`image_index` in the warehouse. The brightfield channel is chosen by ChannelType."
    ),
)
def image_index(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    plate, timepoint = _partition(context)
    screen = lcd.screen()
    hint = context.run.tags.get("lcd/measurement")
    mt = resolve_partition(lcd.inbox, screen, plate, timepoint, Path(hint) if hint else None)
    meas = read_index(mt.path)
    table = acq.image_index_table(meas, mt, screen)
    brightfield = meas.brightfield_channel()
    completeness = acq.index_completeness(table, screen.layout_of(plate), brightfield)
    n = lcd.warehouse().replace_partition("image_index", table, _where(plate, timepoint))
    bf = meas.channels[brightfield]
    return dg.MaterializeResult(
        metadata={
            "measurement": dg.MetadataValue.path(str(mt.path)),
            "barcode": mt.barcode,
            "measurement_id": mt.measurement_id,
            "harmony_version": meas.harmony_version,
            "dose": mt.dose,
            "images": n,
            "wells": completeness.n_wells_imaged,
            "fields": str(completeness.fields),
            "planes": str(completeness.planes),
            "brightfield_channel": f"{brightfield} ({bf.name})",
            "channels": ", ".join(f"{c.id}:{c.name} [{c.type}]" for c in meas.channels.values()),
            "image_size": f"{table['size_x'][0]}×{table['size_y'][0]}" if table.height else "",
            "missing_files": len(completeness.missing_files),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="index_complete",
                passed=completeness.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=completeness.summary(),
                metadata={
                    "wells_expected": completeness.n_wells_expected,
                    "wells_imaged": completeness.n_wells_imaged,
                    "missing_wells": len(completeness.missing_wells),
                    "incomplete_fovs": len(completeness.incomplete_fovs),
                    "missing_files": len(completeness.missing_files),
                    "foreign_wells": len(completeness.foreign_wells),
                },
            )
        ],
    )


# --------------------------------------------------------------------------------------------
# tiles

MAX_EMPTY_FOV_FRACTION = 0.25


@dg.asset(
    partitions_def=measurement_partitions,
    group_name=GROUP,
    kinds={"numpy", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["image_index"],
    check_specs=[
        _check_spec(
            "tiles_per_fov_in_bounds",
            asset="tiles",
            blocking=True,
            description=(
                f"At most {MAX_EMPTY_FOV_FRACTION:.0%} of FOVs lose all their tiles to QC, and no "
                "FOV has more tiles than its grid holds."
            ),
        )
    ],
    description=(
        "Brightfield FOVs cut into 224 × 224 tiles with the 3 z-planes as channels, after binning "
        "and intensity normalisation; QC rejects saturated, debris, empty and out-of-focus tiles with "
        "the reason (on synthetic screens `qc_vs_truth` scores QC against the planted artifacts). "
        "Table `tiles`: one row per tile (kept or not) with tile → FOV → well → plate → replica "
        "lineage. Pixels are not copied: tiling is deterministic and re-read from the TIFFs."
    ),
)
def tiles(
    context: dg.AssetExecutionContext, lcd: LcdHome, tiling: TilingSettings
) -> dg.MaterializeResult:
    plate, timepoint = _partition(context)
    index = _read_partition_table(lcd, "image_index", plate, timepoint)
    brightfield = _brightfield_of(index)
    fovs = acq.fov_paths(index, brightfield)
    config = tiling.config_for(int(index["size_x"].max()))
    rows: list[dict] = []
    preview = None  # the first FOV, or the first one with a QC reject
    examples: dict[bool, list[tuple[np.ndarray, dict]]] = {True: [], False: []}
    t0 = time.perf_counter()
    for row, fov_tiles, records in acq.tile_partition(fovs, config):
        rows.extend(acq.tile_records(row, records))
        has_reject = any(r["qc_reason"] for r in records)
        if preview is None or (has_reject and not preview[2]):
            preview = (row, records, has_reject)
        for t, rec in zip(fov_tiles, records):
            bucket = examples[rec["qc_reason"] is None]
            if len(bucket) < 8:
                bucket.append((t, rec))
    elapsed = time.perf_counter() - t0
    table = pl.DataFrame(rows, infer_schema_length=None)
    lcd.warehouse().replace_partition("tiles", table, _where(plate, timepoint))

    per_fov = table.group_by(["well", "field"]).agg(
        pl.len().alias("n"), pl.col("kept").sum().alias("kept")
    )
    reasons = Counter(r for r in table["qc_reason"].to_list() if r)
    empty_fovs = per_fov.filter(pl.col("kept") == 0).height
    grid_max = int(per_fov["n"].max()) if per_fov.height else 0
    size = int(index["size_y"].max()) // config.binning, int(index["size_x"].max()) // config.binning
    grid_cap = len(tile_grid(*size, config.tile_size))
    passed = (
        per_fov.height > 0
        and empty_fovs <= MAX_EMPTY_FOV_FRACTION * per_fov.height
        and grid_max <= grid_cap
    )
    meta = {
        "fovs": per_fov.height,
        "tiles": table.height,
        "kept": int(table["kept"].sum()),
        "rejected_by_reason": dg.MetadataValue.json(dict(reasons)),
        "kept_per_fov_median": float(per_fov["kept"].median() or 0),
        "fovs_per_s": round(per_fov.height / max(elapsed, 1e-9), 2),
        "binning": config.binning,
        "tile_size": config.tile_size,
    }
    truth = lcd.truth_dir / "fovs.parquet"
    if truth.exists():  # a synthetic screen: how QC recovers the planted artifacts
        fovs_truth = pl.read_parquet(truth).filter(
            (pl.col("plate") == plate) & (pl.col("timepoint") == timepoint)
        )
        if fovs_truth.height:
            meta["qc_vs_truth"] = dg.MetadataValue.json(acq.qc_against_truth(table, fovs_truth))
    previews = lcd.previews_dir / "tiles" / plate / timepoint
    if preview is not None:
        row, records, _ = preview
        image = preprocess_stack(acq.read_fov(row["paths"]), config)
        meta["preview_fov"] = md.image(
            render_preview(image, records, config.tile_size),
            f"{row['well']} field {row['field']} with its tile grid (red: rejected by QC)",
            previews / "fov.png",
        )
    chosen = examples[True] + examples[False]
    if chosen:
        meta["tile_examples"] = md.image(
            render_tile_strip(np.stack([t for t, _ in chosen]), [r for _, r in chosen]),
            "kept tiles (top) and QC rejects (bottom)",
            previews / "tiles.png",
        )
    return dg.MaterializeResult(
        metadata=meta,
        check_results=[
            dg.AssetCheckResult(
                check_name="tiles_per_fov_in_bounds",
                passed=bool(passed),
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{empty_fovs} of {per_fov.height} FOVs have no kept tile",
                metadata={"fovs_without_tiles": empty_fovs, "max_tiles_per_fov": grid_max,
                          "grid_capacity": grid_cap},
            )
        ],
    )


def _brightfield_of(index: pl.DataFrame) -> int:
    bf = index.filter(pl.col("channel_type").str.to_lowercase() == "brightfield")["channel"].unique()
    if bf.len() == 0:
        raise ValueError("image_index partition has no Brightfield channel")
    return int(bf.min())


# --------------------------------------------------------------------------------------------
# tile_embeddings


_LOADERS = {"model.safetensors": (load_checkpoint, "checkpoint", "model_checkpoint"),
            "raynet.pt": (load_raynet, "cell segmentation model", "segmentation_model")}


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, weights: str, mtime: float):
    return _LOADERS[weights][0](path)


def _load_model(folder: Path, weights: str = "model.safetensors"):
    """The model of ``folder`` (``(model, record)``), kept across runs of one process (``lcd demo``
    runs in-process), so weights load and the bf16 kernels warm up once; rewritten weights reload."""
    path = folder / weights
    if not path.exists():
        _, what, asset = _LOADERS[weights]
        raise FileNotFoundError(f"{what} {path} not found: materialize {asset} first")
    return _load_cached(str(folder), weights, path.stat().st_mtime)


_EMBEDDINGS, _FEATURES = dg.AssetKey("tile_embeddings"), dg.AssetKey("fov_features")
_CELLS = dg.AssetKey("cell_features")


@dg.multi_asset(
    name="kept_tile_pass",
    partitions_def=measurement_partitions,
    can_subset=True,
    specs=[
        dg.AssetSpec(
            _EMBEDDINGS, group_name=GROUP, kinds={"pytorch", "parquet"}, deps=["tiles", "model_checkpoint"],
            skippable=True,
            description=(
                "ViT-S/16 CLS embeddings (384-d) of every kept tile, from the selected checkpoint "
                "(default: the untrained ViT, labelled as such). Parquet dataset `tile_embeddings` "
                "(view of the same name in the warehouse). Batches stream: memory is bounded by the "
                "batch. Computed in one pass over the decoded tiles with `fov_features`."
            ),
        ),
        dg.AssetSpec(
            _FEATURES, group_name="handcrafted", kinds={"scikitimage", "parquet"}, deps=["tiles"], skippable=True,
            description=(
                f"The handcrafted baseline's profiles (SPEC §4.7, the paper's CellProfiler run): {N_FEATURES} "
                "features of every kept tile (per z-plane intensity, difference-of-Gaussians size spectrum, "
                "edges and focus; LBP and Haralick texture; orientation (structure-tensor coherence); "
                "dark-body, nucleus and halo object counts and areas; z-stack difference; see "
                "`lcd_core.handcrafted.features`), averaged per FOV. Parquet dataset `fov_features` (view of the "
                "same name). Computed in one pass over the decoded tiles with `tile_embeddings`."
            ),
        ),
        dg.AssetSpec(
            _CELLS, group_name="handcrafted", kinds={"pytorch", "parquet"}, deps=["tiles", "segmentation_model"],
            skippable=True,
            description=(
                "Single-cell segmentation of every kept tile (the cell part of SPEC §4.7's CellProfiler run) by "
                "`segmentation_model`: nuclei from the transport-of-intensity phase, a star-convex polygon per "
                "nucleus, nuclei sharing a polygon as one cell. Per FOV (mean over its tiles) "
                f"{N_CELL_FEATURES} features: nuclei and cell counts, multinucleated fraction, mean and spread of "
                "log cell area and log elongation, roundness and round fraction, nucleus area, the fraction of "
                "phase peaks judged not live, confluency (`lcd_core.cells.features`). Parquet datasets "
                "`cell_features` (per FOV) and `segmented_cells` (per live nucleus: centre, cell polygon rays, "
                "live probability, cell area and elongation, nucleus area); views of the same names. Same pass "
                "over the decoded tiles."
            ),
        ),
    ],
    check_specs=[
        _check_spec("embeddings_finite_and_shaped", asset="tile_embeddings",
                    description=f"Every embedding is {EMBED_DIM}-d and finite."),
        _check_spec("one_embedding_per_kept_tile", asset="tile_embeddings",
                    description="Row count equals the kept tiles of the partition, each tile once."),
        _check_spec("one_finite_row_per_fov", asset="fov_features",
                    description=f"One row per FOV with kept tiles, all {N_FEATURES} features finite."),
        _check_spec("one_finite_row_per_fov", asset="cell_features",
                    description=f"One row per FOV with kept tiles, all {N_CELL_FEATURES} cell features finite."),
    ],
)
def kept_tile_pass(
    context: dg.AssetExecutionContext,
    lcd: LcdHome,
    tiling: TilingSettings,
    embedding: EmbeddingSettings,
):
    """Decode the partition's kept tiles once; feed the ViT, the handcrafted features and the cell
    segmentation from it.

    Any subset can be materialized (``can_subset``): fov_features alone needs no model.
    """
    plate, timepoint = _partition(context)
    index = _read_partition_table(lcd, "image_index", plate, timepoint)
    kept = _read_partition_table(lcd, "tiles", plate, timepoint).filter(pl.col("kept"))
    fovs = acq.fov_paths(index, _brightfield_of(index))
    config = tiling.config_for(int(index["size_x"].max()))
    selected = context.selected_asset_keys
    want_emb, want_feat, want_cells = _EMBEDDINGS in selected, _FEATURES in selected, _CELLS in selected
    raynet = _load_model(lcd.models_dir / CELL_SEGMENTATION_MODEL, "raynet.pt")[0] if want_cells else None
    rows: list[dict] = []
    feats: list[np.ndarray] = []
    cell_feats: list[np.ndarray] = []
    cells: list[dict] = []
    seconds = {"features": 0.0, "cells": 0.0}

    def tiles_with_features():
        for tile_rows, arr in acq.iter_kept_tiles(fovs, kept, config):
            if want_feat:
                t = time.perf_counter()
                feats.extend(tiles_features([arr]))
                seconds["features"] += time.perf_counter() - t
            if want_cells:
                t = time.perf_counter()
                for f, segs in tiles_cell_features(raynet, [arr]):
                    cell_feats.append(f)
                    cells.extend(_cell_rows(tile_rows, segs))
                seconds["cells"] += time.perf_counter() - t
            rows.extend(tile_rows)
            yield arr

    t0 = time.perf_counter()
    if want_emb:
        yield _embed(context, lcd, embedding, config, kept, tiles_with_features(), rows, plate, timepoint)
    else:
        for _ in tiles_with_features():
            pass
    pass_seconds = time.perf_counter() - t0
    if want_feat:
        yield _per_fov(context, lcd, _FEATURES, FEATURE_NAMES, kept, rows, feats, plate, timepoint,
                       {"feature_seconds": seconds["features"], "pass_seconds": pass_seconds})
    if want_cells:
        seg = pl.DataFrame(cells, schema=_CELL_SCHEMA) if cells else pl.DataFrame(schema=_CELL_SCHEMA)
        lcd.warehouse().write_parquet_partition("segmented_cells", _where(plate, timepoint), seg)  # empty too
        counts = {"nuclei": seg.height, "cells": seg.select("tile_id", "cell").n_unique() if seg.height else 0}
        yield _per_fov(context, lcd, _CELLS, CELL_FEATURE_NAMES, kept, rows, cell_feats, plate, timepoint,
                       {"segmentation_seconds": seconds["cells"], "pass_seconds": pass_seconds}, counts)


_CELL_SCHEMA = {"tile_id": pl.String, "plate": pl.String, "timepoint": pl.String, "well": pl.String,
                "field": pl.Int64, "tile_index": pl.Int64, "y": pl.Float32, "x": pl.Float32, "live_prob": pl.Float32,
                "cell": pl.Int32, "log_area": pl.Float32, "log_elongation": pl.Float32, "roundness": pl.Float32,
                "nucleus_log_area": pl.Float32, "rays": pl.Array(pl.Float32, N_RAYS)}


def _cell_rows(tile_rows: list[dict], segs) -> list[dict]:
    """One row per live nucleus of each tile (tile-pixel coordinates)."""
    out = []
    for r, s in zip(tile_rows, segs):
        for k in range(len(s.centres)):
            out.append({"tile_id": r["tile_id"], "plate": r["plate"], "timepoint": r["timepoint"], "well": r["well"],
                        "field": int(r["field"]), "tile_index": int(r["tile_index"]), "y": float(s.centres[k, 0]),
                        "x": float(s.centres[k, 1]), "live_prob": float(s.prob[k]), "cell": int(s.cell[k]),
                        "log_area": float(s.shape[k, 0]), "log_elongation": float(s.shape[k, 1]),
                        "roundness": float(s.shape[k, 2]), "nucleus_log_area": float(s.nucleus_shape[k, 0]),
                        "rays": s.rays[k].astype(np.float32).tolist()})
    return out


def _selected_checks(context: dg.AssetExecutionContext, checks: list[dg.AssetCheckResult],
                     asset: dg.AssetKey) -> list[dg.AssetCheckResult]:
    selected = {k.name for k in context.selected_asset_check_keys if k.asset_key == asset}
    return [c for c in checks if c.check_name in selected]


def _embed(context, lcd: LcdHome, embedding: EmbeddingSettings, config, kept: pl.DataFrame, tiles,
           rows: list[dict], plate: str, timepoint: str) -> dg.MaterializeResult:
    model, ckpt = _load_model(lcd.models_dir / embedding.checkpoint)
    label = describe_checkpoint(ckpt)
    size = input_size_of(ckpt, config.tile_size)
    if size != config.tile_size:
        context.log.info(f"{label} was trained on {size}-px crops: tiles are resized to {size} px")

    def progress(done: int, total: int | None, rate: float) -> None:
        context.log.info(f"embedded {done}/{total} tiles ({rate:.1f} tiles/s)")

    t0 = time.perf_counter()
    chunks = list(embed_batches(model, (resize_tiles(arr, size) for arr in tiles), batch_size=embedding.batch_size,
                                dtype=embedding.dtype, device=embedding.device, total=kept.height, progress=progress))
    elapsed = time.perf_counter() - t0
    emb = np.concatenate(chunks) if chunks else np.zeros((0, EMBED_DIM), np.float32)
    keep_cols = ["tile_id", "plate", "timepoint", "replica", "layout", "dose", "barcode",
                 "well", "field", "tile_index", "compound", "moa", "role"]
    out = pl.DataFrame(rows, infer_schema_length=None).select(keep_cols).with_columns(
        pl.Series("embedding", emb, dtype=pl.Array(pl.Float32, emb.shape[1] if emb.ndim == 2 else EMBED_DIM)),
        pl.lit(ckpt.get("name", embedding.checkpoint)).alias("checkpoint"),
    ) if rows else pl.DataFrame()
    if out.height:
        lcd.warehouse().write_parquet_partition("tile_embeddings", _where(plate, timepoint), out)
    finite = bool(np.isfinite(emb).all()) and emb.ndim == 2 and emb.shape[1] == EMBED_DIM
    unique = out["tile_id"].n_unique() if out.height else 0
    checks = [
        dg.AssetCheckResult(asset_key=_EMBEDDINGS, check_name="embeddings_finite_and_shaped", passed=finite,
                            description=f"shape {emb.shape}, all finite: {bool(np.isfinite(emb).all())}"),
        dg.AssetCheckResult(asset_key=_EMBEDDINGS, check_name="one_embedding_per_kept_tile",
                            passed=out.height == kept.height and unique == out.height,
                            description=f"{out.height} embeddings ({unique} distinct tiles) "
                                        f"for {kept.height} kept tiles"),
    ]
    return dg.MaterializeResult(
        asset_key=_EMBEDDINGS,
        metadata={
            "tiles": out.height,
            "model": label,
            "checkpoint": embedding.checkpoint,
            "trained": bool(ckpt.get("trained", False)),
            "tiles_per_s": round(out.height / max(elapsed, 1e-9), 1),
            "seconds": round(elapsed, 1),
            "embedding_std": float(emb.std()) if emb.size else 0.0,
        },
        check_results=_selected_checks(context, checks, _EMBEDDINGS),
    )


def _per_fov(context, lcd: LcdHome, key: dg.AssetKey, names: tuple[str, ...], kept: pl.DataFrame,
             rows: list[dict], feats: list[np.ndarray], plate: str, timepoint: str,
             seconds: dict[str, float], extra: dict | None = None) -> dg.MaterializeResult:
    """Per-tile feature rows averaged per FOV, written as the Parquet dataset named after ``key``."""
    by = [*WELL_KEYS, "field"]
    n = len(names)
    if rows:
        X = np.concatenate(feats)
        tiles_df = pl.DataFrame(rows, infer_schema_length=None).select(by).with_columns(
            pl.Series("embedding", X, dtype=pl.Array(pl.Float32, n)))
        agg = aggregate_embeddings(tiles_df, by=by)
        F = np.asarray(agg["embedding"].to_numpy(), dtype=np.float32)
        out = pl.concat([agg.drop("embedding"), pl.DataFrame(F, schema=list(names), orient="row")],
                        how="horizontal")
        lcd.warehouse().write_parquet_partition(key.path[-1], _where(plate, timepoint), out)
    else:  # no kept tile: no rows, and none left from an earlier run
        F, out = np.zeros((0, n), np.float32), pl.DataFrame()
        lcd.warehouse().delete_partition(key.path[-1], _where(plate, timepoint))
    expected = kept.select("well", "field").unique().height
    ok = out.height == expected and bool(np.isfinite(F).all())
    check = dg.AssetCheckResult(
        asset_key=key, check_name="one_finite_row_per_fov", passed=ok,
        description=f"{out.height} FOV rows for {expected} FOVs with kept tiles; finite: {bool(np.isfinite(F).all())}")
    work = next(iter(seconds.values()))
    return dg.MaterializeResult(
        asset_key=key,
        metadata={"fovs": out.height, "tiles": len(rows), "features": n,
                  "tiles_per_s": round(len(rows) / max(work, 1e-9), 1),
                  **{k: round(v, 1) for k, v in seconds.items()}, **(extra or {})},
        check_results=_selected_checks(context, [check], key),
    )


# --------------------------------------------------------------------------------------------
# fov_embeddings, well_embeddings

WELL_KEYS = ["plate", "timepoint", "replica", "layout", "dose", "barcode", "well", "compound", "moa", "role"]


def _aggregate_asset(name: str, source: str, by: list[str], grain: str, description: str):
    @dg.asset(
        name=name,
        partitions_def=measurement_partitions,
        group_name=GROUP,
        kinds={"parquet", "duckdb"},
        pool=WAREHOUSE_POOL,
        deps=[source],
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            _check_spec(
                f"one_row_per_{grain}",
                asset=name,
                blocking=True,
                description=f"One row per {grain} with kept tiles, embeddings finite.",
            )
        ],
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
        plate, timepoint = _partition(context)
        wh = lcd.warehouse()
        src = wh.read_parquet_partition(source, _where(plate, timepoint))
        agg = aggregate_embeddings(src, by=by)
        wh.write_parquet_partition(name, _where(plate, timepoint), agg)
        wh.refresh_views(["tile_embeddings", "fov_embeddings", "well_embeddings", "fov_features", "cell_features",
                          "segmented_cells"])
        expected = src.select(by).unique().height
        emb = np.asarray(agg["embedding"].to_numpy())
        return dg.MaterializeResult(
            metadata={
                f"{grain}s": agg.height,
                "tiles": int(agg["n_tiles"].sum()) if agg.height else 0,
                "compounds": agg["compound"].n_unique() if agg.height else 0,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=f"one_row_per_{grain}",
                    passed=agg.height == expected and bool(np.isfinite(emb).all()),
                    description=f"{agg.height} rows for {expected} {grain}s",
                )
            ],
        )

    return _asset


fov_embeddings = _aggregate_asset(
    "fov_embeddings",
    "tile_embeddings",
    [*WELL_KEYS, "field"],
    "fov",
    "Mean tile embedding per FOV (`n_tiles` counts the tiles). Parquet + warehouse view `fov_embeddings`.",
)
well_embeddings = _aggregate_asset(
    "well_embeddings",
    "tile_embeddings",
    WELL_KEYS,
    "well",
    "Well profile: mean over all kept tiles of the well (`n_tiles`). "
    "Parquet + warehouse view `well_embeddings`.",
)
