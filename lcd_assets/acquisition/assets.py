"""Acquisition assets, partitioned by plate × timepoint: image index → tiles → embeddings.

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
from lcd_assets.resources import WAREHOUSE_POOL, EmbeddingSettings, LcdHome, TilingSettings
from lcd_core import acquisition as acq
from lcd_core.embed import aggregate_embeddings, embed_batches, input_size_of, resize_tiles
from lcd_core.inbox import resolve_partition
from lcd_core.phenix import read_index
from lcd_core.tiles import preprocess_stack, render_preview, render_tile_strip, tile_grid
from lcd_core.vit import describe_checkpoint, load_checkpoint

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


@functools.lru_cache(maxsize=2)
def _load_model_cached(path: str, mtime: float):
    return load_checkpoint(path)


def _load_model(folder: Path):
    """The checkpoint's model, kept across runs of one process (``lcd demo`` runs in-process),
    so weights load and the bf16 kernels warm up once; a rewritten checkpoint reloads."""
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"checkpoint {weights} not found: materialize model_checkpoint first")
    return _load_model_cached(str(folder), weights.stat().st_mtime)


@dg.asset(
    partitions_def=measurement_partitions,
    group_name=GROUP,
    kinds={"pytorch", "parquet"},
    deps=["tiles", "model_checkpoint"],
    check_specs=[
        _check_spec(
            "embeddings_finite_and_shaped",
            asset="tile_embeddings",
            blocking=True,
            description=f"Every embedding is {EMBED_DIM}-d and finite.",
        ),
        _check_spec(
            "one_embedding_per_kept_tile",
            asset="tile_embeddings",
            blocking=True,
            description="Row count equals the kept tiles of the partition, each tile once.",
        ),
    ],
    description=(
        "ViT-S/16 CLS embeddings (384-d) of every kept tile, from the selected checkpoint "
        "(default: the untrained ViT, labelled as such). Parquet dataset `tile_embeddings` "
        "(view of the same name in the warehouse). Batches stream: memory is bounded by the batch."
    ),
)
def tile_embeddings(
    context: dg.AssetExecutionContext,
    lcd: LcdHome,
    tiling: TilingSettings,
    embedding: EmbeddingSettings,
) -> dg.MaterializeResult:
    plate, timepoint = _partition(context)
    index = _read_partition_table(lcd, "image_index", plate, timepoint)
    kept = _read_partition_table(lcd, "tiles", plate, timepoint).filter(pl.col("kept"))
    fovs = acq.fov_paths(index, _brightfield_of(index))
    config = tiling.config_for(int(index["size_x"].max()))
    model, ckpt = _load_model(lcd.models_dir / embedding.checkpoint)
    label = describe_checkpoint(ckpt)

    rows: list[dict] = []

    size = input_size_of(ckpt, config.tile_size)
    if size != config.tile_size:
        context.log.info(f"{label} was trained on {size}-px crops: tiles are resized to {size} px")

    def batches():
        for tile_rows, arr in acq.iter_kept_tiles(fovs, kept, config):
            rows.extend(tile_rows)
            yield resize_tiles(arr, size)

    def progress(done: int, total: int | None, rate: float) -> None:
        context.log.info(f"embedded {done}/{total} tiles ({rate:.1f} tiles/s)")

    t0 = time.perf_counter()
    chunks = list(
        embed_batches(
            model,
            batches(),
            batch_size=embedding.batch_size,
            dtype=embedding.dtype,
            device=embedding.device,
            total=kept.height,
            progress=progress,
        )
    )
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
    return dg.MaterializeResult(
        metadata={
            "tiles": out.height,
            "model": label,
            "checkpoint": embedding.checkpoint,
            "trained": bool(ckpt.get("trained", False)),
            "tiles_per_s": round(out.height / max(elapsed, 1e-9), 1),
            "seconds": round(elapsed, 1),
            "embedding_std": float(emb.std()) if emb.size else 0.0,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="embeddings_finite_and_shaped",
                passed=finite,
                description=f"shape {emb.shape}, all finite: {bool(np.isfinite(emb).all())}",
            ),
            dg.AssetCheckResult(
                check_name="one_embedding_per_kept_tile",
                passed=out.height == kept.height and unique == out.height,
                description=f"{out.height} embeddings ({unique} distinct tiles) for {kept.height} kept tiles",
            ),
        ],
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
        wh.refresh_views(["tile_embeddings", "fov_embeddings", "well_embeddings"])
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
