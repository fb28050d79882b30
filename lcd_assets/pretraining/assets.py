"""Self-supervised pre-training (SPEC 4.2): tile bank → one checkpoint per ablation variant → the
ablation table. Thin glue over :mod:`lcd_core.ssl`."""


import time
from pathlib import Path

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.compute import Compute
from lcd_assets.resources import WAREHOUSE_POOL, EmbeddingSettings, LcdHome, PretrainingSettings, TilingSettings
from lcd_core.plots import ablation_bars, training_curves
from lcd_core.pipeline import ablation as ablation_steps
from lcd_core.pipeline.downstream import ChainSettings
from lcd_core.pipeline import pretraining as pretraining_steps
from lcd_core.pipeline.pretraining import MIN_EFFECTIVE_RANK, MIN_STD_FRACTION
from lcd_core.ssl.config import VARIANTS, variants
from lcd_core.ssl.sampler import CrossBatchSampler
from lcd_core.ssl.source import TileBank
from lcd_core.embedding.vit import describe_checkpoint

GROUP = "pretraining"
BANK_DIR = "ssl/tile_bank"
variant_partitions = dg.StaticPartitionsDefinition(list(VARIANTS))


def checkpoint_name(variant: str) -> str:
    """Folder of ``$LCD_HOME/models`` holding the checkpoint of an ablation variant."""
    return f"ssl-{variant}"


def _bank(lcd: LcdHome) -> TileBank:
    folder = lcd.root / BANK_DIR
    if not (folder / TileBank.ARRAY).exists():
        raise FileNotFoundError(f"tile bank {folder} not found: materialize ssl_tile_bank first")
    return TileBank(folder)


@dg.asset(
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    deps=["tiles", "plate_registry"],
    description=(
        "Every kept tile of the screen written once for pre-training (`$LCD_HOME/ssl/tile_bank`: "
        "float16 array + tile table with lineage and `split`). Tiles of the holdout layouts "
        "(compounds never seen in training) are `heldout`: the ablation evaluates on them; the "
        "rest are `train`. Training re-reads tiles thousands of times, so they are cut from the "
        "TIFFs once here."
    ),
)
def ssl_tile_bank(context: dg.AssetExecutionContext, lcd: LcdHome, tiling: TilingSettings) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    kept = pretraining_steps.kept_tiles(wh)
    screen = lcd.screen()
    kept, held, why = pretraining_steps.with_split(kept, screen.layouts, screen.compounds)
    chunks = pretraining_steps.bank_stream(wh, kept, tiling.config_for, context.log.info)
    t0 = time.perf_counter()
    bank = TileBank.write(lcd.root / BANK_DIR, chunks, kept.height, tiling.tile_size)
    train = bank.table.filter(pl.col("split") == "train")
    levels = CrossBatchSampler(train, cross_batch=True).levels()
    return dg.MaterializeResult(
        metadata={
            "tiles": bank.table.height,
            "train_tiles": train.height,
            "heldout_tiles": bank.table.height - train.height,
            "heldout_layouts": ", ".join(held),
            "heldout_rule": why,
            "xb_partner_levels": md.table(pl.DataFrame(
                {"level": list(levels), "anchors": [int(v) for v in levels.values()]})),
            "size_mb": round((lcd.root / BANK_DIR / TileBank.ARRAY).stat().st_size / 1e6, 1),
            "seconds": round(time.perf_counter() - t0, 1),
            "path": dg.MetadataValue.path(str(lcd.root / BANK_DIR)),
        }
    )


@dg.asset(
    partitions_def=variant_partitions,
    group_name=GROUP,
    kinds={"pytorch", "safetensors"},
    deps=["ssl_tile_bank"],
    check_specs=[
        dg.AssetCheckSpec(
            "not_collapsed",
            asset="ssl_checkpoint",
            blocking=True,
            description=(
                f"The teacher's held-out tile embeddings keep an effective rank ≥ {MIN_EFFECTIVE_RANK} and a "
                f"per-dimension std ≥ {MIN_STD_FRACTION:.0%} of an isotropic embedding's: a collapsed "
                "model maps every tile to (nearly) one point."
            ),
        )
    ],
    description=(
        "One self-supervised ViT checkpoint per ablation variant (DINO; + Barlow; + XB; + Barlow + XB; "
        "PA + DINO + Barlow + XB) trained on the `train` tiles of the bank: safetensors weights + JSON "
        "config in `$LCD_HOME/models/ssl-<variant>` (the teacher backbone, loadable with "
        "`timm.create_model`), plus the resumable training state. Resumes an interrupted run; a "
        "finished run is retrained from scratch. CPU preset: bounded steps (see README); GPU: "
        "paper scale. Metadata: loss curves and collapse indicators."
    ),
)
def ssl_checkpoint(context: dg.AssetExecutionContext, lcd: LcdHome,
                   pretraining: PretrainingSettings, compute: Compute) -> dg.MaterializeResult:
    variant = context.partition_key
    out = lcd.models_dir / checkpoint_name(variant)
    run = compute.run(
        context, pretraining_steps.pretrain_variant, _bank(lcd), variant, out, gpu=True, preset=pretraining.preset,
        steps=pretraining.steps, seed=pretraining.seed, time_budget_s=pretraining.time_budget_s,
        device=pretraining.device, num_threads=pretraining.num_threads, log=compute.progress(context))
    meta = _checkpoint_metadata(run, out)
    if run.history.height:
        last = run.history.row(-1, named=True)
        meta.update({"final_loss": round(last["loss"], 4), "teacher_entropy": round(last["teacher_entropy"], 4)})
        meta["loss_curves"] = md.image(training_curves(run.history, run.config.variant),
                                       "loss and collapse indicators",
                                       lcd.previews_dir / "pretraining" / f"{variant}.png")
    return dg.MaterializeResult(
        metadata=meta,
        check_results=[dg.AssetCheckResult(
            check_name="not_collapsed", passed=not run.collapsed,
            metadata={k: round(v, 5) for k, v in run.stats.items()})],
    )


def _checkpoint_metadata(run: pretraining_steps.PretrainRun, out: Path) -> dict:
    result, stats = run.result, run.stats
    return {
        "model": describe_checkpoint(run.record),
        "variant": run.config.variant,
        "step": result.step,
        "total_steps": result.total_steps,
        "stopped_by": result.stopped_by,
        "resumed_from": result.resumed_from if result.resumed_from is not None else "(fresh)",
        "crops_per_s": round(result.crops_per_s, 1),
        "seconds": round(run.seconds, 1),
        "train_tiles": run.n_train,
        "xb_pairs": md.table(pl.DataFrame({"kind": list(result.sampler_stats),
                                          "pairs": [int(v) for v in result.sampler_stats.values()]}))
        if result.sampler_stats else "(none)",
        "heldout_embed_std": round(stats["embed_std"], 5),
        "heldout_effective_rank": round(stats["effective_rank"], 2),
        "config": dg.MetadataValue.json(run.config.to_dict()),
        "path": dg.MetadataValue.path(str(out)),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"pytorch", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["ssl_checkpoint", "model_checkpoint", "ssl_tile_bank"],
    description=(
        "The pre-training ablation on the same tiles for every model: on the held-out tiles, compound "
        "retrieval mAP (same compound, other replica; higher is better) and replica predictability "
        "(balanced accuracy of a linear probe predicting the replica from DMSO tiles; lower is more "
        "batch-invariant), with a 95 % bootstrap interval of the mAP over compounds; on every tile "
        "of the screen, the paper's own measure through the platform's downstream chain "
        "(MAD + Harmony/FOV, 1,000 draws): phenotypic-activity mAP and, on a synthetic screen, the AUROC of mAP-ES against the planted truth. The "
        "untrained ViTs are baseline rows; the handcrafted features of the same tiles are the "
        "reference row (the paper's CellProfiler). Table `ablation`."
    ),
)
def ssl_ablation(context: dg.AssetExecutionContext, lcd: LcdHome, embedding: EmbeddingSettings,
                 pretraining: PretrainingSettings) -> dg.MaterializeResult:
    bank = _bank(lcd)
    if not (bank.table["split"] == "heldout").any():
        raise ValueError("the tile bank has no held-out tiles: acquire the holdout layouts' plates and "
                         "re-materialize ssl_tile_bank")
    trained = {VARIANTS_LABEL[v]: lcd.models_dir / checkpoint_name(v) for v in VARIANTS}
    trained = {label: p for label, p in trained.items() if (p / "model.safetensors").exists()}
    if not trained:
        raise FileNotFoundError("no ssl-<variant> checkpoint in the models folder: materialize ssl_checkpoint first")
    truth_path = lcd.truth_dir / "conditions.parquet"
    truth = pl.read_parquet(truth_path) if truth_path.exists() else None
    settings = ChainSettings(n_draws=pretraining.n_draws, seed=pretraining.seed)
    candidates = [*ablation_steps.vit_candidates(lcd.model_folder(embedding.checkpoint), trained, bank.tiles,
                                                 seed=pretraining.seed),
                  ablation_steps.handcrafted_candidate(bank.tiles)]
    run = ablation_steps.Ablation()
    for c in candidates:
        t0 = time.perf_counter()
        row = ablation_steps.score_candidate(run, c, bank.table, bank.tiles.shape[-1], truth, settings)
        context.log.info(f"{c.name}: retrieval mAP {row['retrieval_map']:.4f}, replica balanced accuracy "
                         f"{row['replica_balanced_accuracy']:.3f}, screen activity mAP {row['activity_map']:.4f}, "
                         f"AUROC vs truth {row['activity_auroc']} ({time.perf_counter() - t0:.0f} s)")
    ablation_steps.paired_vs_untrained(run)
    table = run.table()
    lcd.warehouse().replace_table("ablation", table)
    summary = ablation_steps.ablation_summary(run)
    return dg.MaterializeResult(metadata={
        "ablation": md.table(table.select(*ABLATION_COLUMNS)),
        "figure": md.image(ablation_bars(table), "ablation", lcd.previews_dir / "pretraining" / "ablation.png"),
        "heldout_tiles": int((bank.table["split"] == "heldout").sum()),
        **{k: dg.MetadataValue.json(v) if isinstance(v, dict) else v for k, v in summary.items()},
    })


ABLATION_COLUMNS = ("model", "variant", "steps", "retrieval_map", "retrieval_map_ci_low", "retrieval_map_ci_high",
                    "retrieval_map_same_dose", "replica_balanced_accuracy", "replica_chance", "activity_map",
                    "activity_auroc", "activity_auroc_vs_untrained", "activity_auroc_vs_untrained_ci_low",
                    "activity_auroc_vs_untrained_ci_high", "effective_rank")


VARIANTS_LABEL = {name: config.variant for name, config in variants().items()}
