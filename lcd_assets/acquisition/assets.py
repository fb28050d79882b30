"""Acquisition assets, partitioned by plate × timepoint: image index → tiles → embeddings
(and the handcrafted baseline's FOV features and segmented cells, from the same pass over the
decoded tiles).

Each asset is thin glue over :mod:`lcd_core.pipeline.acquisition`: it reads its partition, calls
the library, writes the result atomically (DuckDB partition replace or Parquet ``os.replace``) and
reports metadata and blocking checks.
"""


import functools
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.compute import STEP_RETRIES, Compute
from lcd_assets.partitions import measurement_of, measurement_partitions, partitioned_check
from lcd_assets.resources import (
    CELL_SEGMENTATION_MODEL,
    WAREHOUSE_POOL,
    EmbeddingSettings,
    LcdHome,
    TilingSettings,
)
from lcd_core.cells import CELL_FEATURE_NAMES, N_CELL_FEATURES
from lcd_core.embedding.aggregate import aggregate_embeddings
from lcd_core.embedding.vit import describe_checkpoint
from lcd_core.handcrafted.features import FEATURE_NAMES, N_FEATURES
from lcd_core.io.warehouse import Warehouse
from lcd_core.pipeline import acquisition as pipeline
from lcd_core.pipeline.acquisition import EMBED_DIM, FOV_KEYS, WELL_KEYS
from lcd_core.tiles import partition as acq
from lcd_core.tiles.cache import remove_kept_tiles
from lcd_core.tiles.preprocess import TileConfig

GROUP = "acquisition"


_check_spec = functools.partial(partitioned_check, partitions_def=measurement_partitions, blocking=True)


def _where(plate: str, timepoint: str) -> dict[str, str]:
    return {"plate": plate, "timepoint": timepoint}


def _read_partition_table(lcd: LcdHome, table: str, plate: str, timepoint: str) -> pl.DataFrame:
    return lcd.warehouse().query(
        f"SELECT * FROM {table} WHERE plate = $plate AND timepoint = $timepoint",
        {"plate": plate, "timepoint": timepoint},
    )


def _partition_fovs(lcd: LcdHome, tiling: TilingSettings, plate: str,
                    timepoint: str) -> tuple[pl.DataFrame, pl.DataFrame, TileConfig]:
    """The partition's image index, its brightfield FOVs and the tiling of its image size."""
    index = _read_partition_table(lcd, "image_index", plate, timepoint)
    fovs = acq.fov_paths(index, pipeline.brightfield_of(index))
    return index, fovs, tiling.config_for(int(index["size_x"].max()))


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
    plate, timepoint = measurement_of(context)
    hint = _measurement_hint(context, lcd)
    found = pipeline.index_measurement(lcd.inbox, lcd.screen(), plate, timepoint, hint)
    n = lcd.warehouse().replace_partition("image_index", found.table, _where(plate, timepoint))
    return dg.MaterializeResult(
        metadata=_index_metadata(found, n),
        check_results=[_completeness_check(found.completeness)],
    )


MEASUREMENT_TAG = "lcd/measurement"


def _measurement_hint(context: dg.AssetExecutionContext, lcd: LcdHome) -> Path | None:
    """The measurement folder the run's ``lcd/measurement`` tag names (set by the inbox sensor),
    refused unless it lies in the inbox."""
    hint = context.run.tags.get(MEASUREMENT_TAG)
    return lcd.inside(hint, f"run tag {MEASUREMENT_TAG}", lcd.inbox) if hint else None


def _index_metadata(found: pipeline.IndexedMeasurement, n_images: int) -> dict:
    mt, meas, table, completeness = found.measurement, found.phenix, found.table, found.completeness
    bf = meas.channels[found.brightfield]
    return {
        "measurement": dg.MetadataValue.path(str(mt.path)),
        "barcode": mt.barcode,
        "measurement_id": mt.measurement_id,
        "harmony_version": meas.harmony_version,
        "dose": mt.dose,
        "images": n_images,
        "wells": completeness.n_wells_imaged,
        "fields": str(completeness.fields),
        "planes": str(completeness.planes),
        "brightfield_channel": f"{found.brightfield} ({bf.name})",
        "channels": ", ".join(f"{c.id}:{c.name} [{c.type}]" for c in meas.channels.values()),
        "image_size": f"{table['size_x'][0]}×{table['size_y'][0]}" if table.height else "",
        "missing_files": len(completeness.missing_files),
    }


def _completeness_check(completeness: acq.Completeness) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
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


# --------------------------------------------------------------------------------------------
# tiles

MAX_EMPTY_FOV_FRACTION = 0.25


@dg.asset(
    partitions_def=measurement_partitions,
    group_name=GROUP,
    kinds={"numpy", "duckdb"},
    pool=WAREHOUSE_POOL,
    retry_policy=STEP_RETRIES,
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
        "lineage. The kept tiles wait in a per-partition cache (`cache/kept_tiles/`) until "
        "`kept_tile_pass` reads them; tiling is deterministic, so without it they are re-read from the TIFFs. "
        "When a re-run keeps no tile, or another set than the embeddings were computed from, the "
        "partition's earlier tile / FOV / well embeddings and features are removed (named in the log)."
    ),
)
def tiles(
    context: dg.AssetExecutionContext, lcd: LcdHome, tiling: TilingSettings, compute: Compute
) -> dg.MaterializeResult:
    plate, timepoint = measurement_of(context)
    index, fovs, config = _partition_fovs(lcd, tiling, plate, timepoint)
    cache = lcd.kept_tile_cache(plate, timepoint)
    tiled = compute.run(context, pipeline.tile_to_cache, fovs, config, cache)
    try:
        lcd.warehouse().replace_partition("tiles", tiled.table, _where(plate, timepoint))
    except BaseException:
        remove_kept_tiles(cache)
        raise
    kept_ids = tiled.table.filter(pl.col("kept"))["tile_id"].to_list() if tiled.table.height else []
    stale = drop_stale_kept_outputs(lcd.warehouse(), plate, timepoint, kept_ids)
    if stale:
        context.log.warning(f"partition {plate} × {timepoint}: {len(kept_ids)} tiles kept, the outputs of "
                            f"the earlier kept set removed ({', '.join(stale)})")
    shape = int(index["size_y"].max()), int(index["size_x"].max())
    qc = pipeline.tile_qc(tiled.table, shape, config, MAX_EMPTY_FOV_FRACTION)
    meta = {
        "fovs": qc.per_fov.height,
        "tiles": tiled.table.height,
        "kept": int(tiled.table["kept"].sum()),
        "rejected_by_reason": dg.MetadataValue.json(qc.rejected_by_reason),
        "kept_per_fov_median": float(qc.per_fov["kept"].median() or 0),
        "fovs_per_s": round(qc.per_fov.height / max(tiled.seconds, 1e-9), 2),
        "binning": config.binning,
        "tile_size": config.tile_size,
        "stale_outputs_removed": ", ".join(stale) or "none",
        **_qc_vs_truth(lcd, tiled.table, plate, timepoint),
        **_tile_previews(lcd, tiled, config, plate, timepoint),
    }
    return dg.MaterializeResult(
        metadata=meta,
        check_results=[
            dg.AssetCheckResult(
                check_name="tiles_per_fov_in_bounds",
                passed=qc.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{qc.empty_fovs} of {qc.per_fov.height} FOVs have no kept tile",
                metadata={"fovs_without_tiles": qc.empty_fovs, "max_tiles_per_fov": qc.max_tiles_per_fov,
                          "grid_capacity": qc.grid_capacity},
            )
        ],
    )


def drop_stale_kept_outputs(wh: Warehouse, plate: str, timepoint: str, kept_ids: list[str]) -> list[str]:
    """Delete the partition's datasets fed by its kept tiles (:data:`VIEWS`) when no tile is kept
    any more, or when ``tile_embeddings`` holds another tile set than ``kept_ids``: no FOV or well
    embedding is then read from tiles QC now rejects. Returns the datasets removed (views refreshed)."""
    where = _where(plate, timepoint)
    if kept_ids and wh.has_parquet_partition("tile_embeddings", where):
        old = pl.scan_parquet(wh.partition_dir("tile_embeddings", where) / "*.parquet", hive_partitioning=False)
        if set(old.select("tile_id").collect()["tile_id"].to_list()) == set(kept_ids):
            return []
    elif kept_ids:
        return []
    removed = [name for name in VIEWS if wh.delete_partition(name, where)]
    if removed:
        wh.refresh_views(VIEWS)
    return removed


def _qc_vs_truth(lcd: LcdHome, table: pl.DataFrame, plate: str, timepoint: str) -> dict:
    """On a synthetic screen: how QC recovers the planted artifacts of this partition."""
    truth = lcd.truth_dir / "fovs.parquet"
    if not truth.exists():
        return {}
    fovs = pl.read_parquet(truth).filter((pl.col("plate") == plate) & (pl.col("timepoint") == timepoint))
    return {"qc_vs_truth": dg.MetadataValue.json(acq.qc_against_truth(table, fovs))} if fovs.height else {}


def _tile_previews(lcd: LcdHome, tiled: pipeline.Tiling, config: TileConfig, plate: str, timepoint: str) -> dict:
    """The preview FOV with its tile grid and the strip of example tiles, saved under previews/."""
    folder = lcd.previews_dir / "tiles" / plate / timepoint
    meta = {}
    if (png := pipeline.preview_png(tiled, config)) is not None:
        row = tiled.preview[0]
        meta["preview_fov"] = md.image(
            png, f"{row['well']} field {row['field']} with its tile grid (red: rejected by QC)", folder / "fov.png")
    if (png := pipeline.examples_png(tiled)) is not None:
        meta["tile_examples"] = md.image(png, "kept tiles (top) and QC rejects (bottom)", folder / "tiles.png")
    return meta


# --------------------------------------------------------------------------------------------
# tile_embeddings, fov_features, cell_features: one decode of the kept tiles


_WEIGHTS = {"model.safetensors": ("checkpoint", "model_checkpoint"),
            "raynet.pt": ("cell segmentation model", "segmentation_model")}


def _model_folder(folder: Path, weights: str = "model.safetensors") -> Path:
    """``folder``, once its weights are there (the model loads where the work runs: once per
    process, :func:`lcd_core.pipeline.acquisition.load_model`)."""
    if not (folder / weights).exists():
        what, asset = _WEIGHTS[weights]
        raise FileNotFoundError(f"{what} {folder / weights} not found: materialize {asset} first")
    return folder


def _vit(lcd: LcdHome, embedding: EmbeddingSettings) -> pipeline.VitSpec:
    return pipeline.VitSpec(str(_model_folder(lcd.model_folder(embedding.checkpoint))),
                            batch_size=embedding.batch_size, dtype=embedding.dtype, device=embedding.device)


_EMBEDDINGS, _FEATURES = dg.AssetKey("tile_embeddings"), dg.AssetKey("fov_features")
CELL_FEATURES = _CELLS = dg.AssetKey("cell_features")


@dg.multi_asset(
    name="kept_tile_pass",
    partitions_def=measurement_partitions,
    can_subset=True,
    retry_policy=STEP_RETRIES,
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
                "Optional (job `cell_segmentation`; not in the main job): single-cell segmentation of every kept "
                "tile by `segmentation_model`, a network TRAINED ON SYNTHETIC ANNOTATIONS (the generator's "
                "renders), so its features enter only comparison rows labelled so: nuclei from the transport-of-intensity phase, a star-convex polygon per "
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
    compute: Compute,
):
    """Decode the partition's kept tiles once; feed the ViT, the handcrafted features and the cell
    segmentation from it (:func:`lcd_core.pipeline.acquisition.kept_tile_pass`).

    Any subset can be materialized (``can_subset``): fov_features alone needs no model.
    """
    plate, timepoint = measurement_of(context)
    _, fovs, config = _partition_fovs(lcd, tiling, plate, timepoint)
    kept = _read_partition_table(lcd, "tiles", plate, timepoint).filter(pl.col("kept"))
    selected = context.selected_asset_keys
    raynet = _model_folder(lcd.models_dir / CELL_SEGMENTATION_MODEL, "raynet.pt") if _CELLS in selected else None
    vit = _vit(lcd, embedding) if _EMBEDDINGS in selected else None
    cache = lcd.kept_tile_cache(plate, timepoint)
    done = compute.run(context, pipeline.kept_tile_pass, fovs, kept, config, gpu=vit is not None, vit=vit,
                       features=_FEATURES in selected, raynet=raynet, log=compute.progress(context), cache=cache)
    wh, where = lcd.warehouse(), _where(plate, timepoint)
    if vit is not None:
        _write_or_clear(lcd, "tile_embeddings", where, done.tile_embeddings)
        yield _embeddings_result(context, vit, embedding.checkpoint, done, kept.height)
    if done.fov_features is not None:
        _write_or_clear(lcd, "fov_features", where, done.fov_features)
        yield _per_fov_result(context, _FEATURES, FEATURE_NAMES, done.fov_features, kept, done,
                              {"feature_seconds": done.seconds["features"], "pass_seconds": done.seconds["pass"]})
    if done.cell_features is not None:
        seg = done.segmented_cells
        wh.write_parquet_partition("segmented_cells", where, seg)  # empty too
        _write_or_clear(lcd, "cell_features", where, done.cell_features)
        counts = {"nuclei": seg.height, "cells": seg.select("tile_id", "cell").n_unique() if seg.height else 0}
        yield _per_fov_result(context, _CELLS, CELL_FEATURE_NAMES, done.cell_features, kept, done,
                              {"segmentation_seconds": done.seconds["cells"], "pass_seconds": done.seconds["pass"]},
                              counts)
    if {_EMBEDDINGS, _FEATURES} <= selected:
        remove_kept_tiles(cache)  # the main job's consumers have read it


def _write_or_clear(lcd: LcdHome, dataset: str, where: dict[str, str], table: pl.DataFrame) -> None:
    """Write the tile or FOV rows; with no kept tile, no rows, and none left from an earlier run."""
    if table.height:
        lcd.warehouse().write_parquet_partition(dataset, where, table)
    else:
        lcd.warehouse().delete_partition(dataset, where)


def _embeddings_result(context: dg.AssetExecutionContext, vit: pipeline.VitSpec, checkpoint: str,
                       done: pipeline.KeptTilePass, n_kept: int) -> dg.MaterializeResult:
    emb, out = done.embeddings, done.tile_embeddings
    finite = bool(np.isfinite(emb).all())
    unique = out["tile_id"].n_unique() if out.height else 0
    checks = [
        dg.AssetCheckResult(asset_key=_EMBEDDINGS, check_name="embeddings_finite_and_shaped",
                            passed=finite and emb.ndim == 2 and emb.shape[1] == EMBED_DIM,
                            description=f"shape {emb.shape}, all finite: {finite}"),
        dg.AssetCheckResult(asset_key=_EMBEDDINGS, check_name="one_embedding_per_kept_tile",
                            passed=out.height == n_kept and unique == out.height,
                            description=f"{out.height} embeddings ({unique} distinct tiles) for {n_kept} kept tiles"),
    ]
    seconds = done.seconds["embedding"]
    return dg.MaterializeResult(
        asset_key=_EMBEDDINGS,
        metadata={
            "tiles": out.height,
            "model": describe_checkpoint(record := vit.record()),
            "checkpoint": checkpoint,
            "trained": bool(record.get("trained", False)),
            "tiles_per_s": round(out.height / max(seconds, 1e-9), 1),
            "seconds": round(seconds, 1),
            "tiles_from": "tiling cache" if done.from_cache else "TIFFs (decoded again)",
            "embedding_std": float(emb.std()) if emb.size else 0.0,
        },
        check_results=md.selected_checks(context, checks, _EMBEDDINGS),
    )


def _per_fov_result(context: dg.AssetExecutionContext, key: dg.AssetKey, names: tuple[str, ...],
                    out: pl.DataFrame, kept: pl.DataFrame, done: pipeline.KeptTilePass,
                    seconds: dict[str, float], extra: dict | None = None) -> dg.MaterializeResult:
    """Metadata and the ``one_finite_row_per_fov`` check of a per-FOV feature dataset."""
    values = out.select(names).to_numpy() if out.height else np.zeros((0, len(names)), np.float32)
    finite = bool(np.isfinite(values).all())
    expected = kept.select("well", "field").unique().height
    check = dg.AssetCheckResult(
        asset_key=key, check_name="one_finite_row_per_fov", passed=out.height == expected and finite,
        description=f"{out.height} FOV rows for {expected} FOVs with kept tiles; finite: {finite}")
    n_tiles, work = len(done.tile_rows), next(iter(seconds.values()))
    return dg.MaterializeResult(
        asset_key=key,
        metadata={"fovs": out.height, "tiles": n_tiles, "features": len(names),
                  "tiles_per_s": round(n_tiles / max(work, 1e-9), 1),
                  **{k: round(v, 1) for k, v in seconds.items()}, **(extra or {})},
        check_results=md.selected_checks(context, [check], key),
    )


# --------------------------------------------------------------------------------------------
# fov_embeddings, well_embeddings

#: the Parquet datasets of this group, exposed as warehouse views
VIEWS = ["tile_embeddings", "fov_embeddings", "well_embeddings", "fov_features", "cell_features", "segmented_cells"]


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
        where = _where(*measurement_of(context))
        wh = lcd.warehouse()
        if (note := _no_kept_tiles(wh, name, source, where)) is not None:
            context.log.warning(note)
            return dg.MaterializeResult(
                metadata={f"{grain}s": 0, "tiles": 0, "compounds": 0, "note": note},
                check_results=[dg.AssetCheckResult(check_name=f"one_row_per_{grain}", passed=True, description=note)])
        src = wh.read_parquet_partition(source, where)
        agg = aggregate_embeddings(src, by=by)
        wh.write_parquet_partition(name, where, agg)
        wh.refresh_views(VIEWS)
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


def _no_kept_tiles(wh: Warehouse, name: str, source: str, where: dict[str, str]) -> str | None:
    """When the partition has no ``source`` rows because QC kept none of its tiles: ``name``'s
    partition removed (none may remain from an earlier kept set) and a note naming the partition;
    else None (a missing ``source`` then fails naming it)."""
    if wh.has_parquet_partition(source, where) or "tiles" not in wh.tables():
        return None
    n, kept = wh.query("SELECT count(*) AS n, count(*) FILTER (WHERE kept) AS kept FROM tiles "
                       "WHERE plate = $plate AND timepoint = $timepoint", where).row(0)
    if not n or kept:
        return None
    removed = wh.delete_partition(name, where)
    wh.refresh_views(VIEWS)
    return (f"partition {where['plate']} × {where['timepoint']}: no tile kept by QC, so no {name} rows"
            f"{' (the earlier ones removed)' if removed else ''}")


fov_embeddings = _aggregate_asset(
    "fov_embeddings",
    "tile_embeddings",
    FOV_KEYS,
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
