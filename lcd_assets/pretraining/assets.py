"""Self-supervised pre-training (SPEC 4.2): tile bank → one checkpoint per ablation variant → the
ablation table. Thin glue over :mod:`lcd_core.ssl`."""


import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.resources import WAREHOUSE_POOL, EmbeddingSettings, LcdHome, PretrainingSettings, TilingSettings
from lcd_core.embedding.inference import embed_tiles, input_size_of, resize_tiles
from lcd_core.handcrafted.features import tiles_features
from lcd_core.plots import ablation_bars, training_curves
from lcd_core.pipeline import pretraining as pretraining_steps
from lcd_core.pipeline.pretraining import MIN_EFFECTIVE_RANK, MIN_STD_FRACTION
from lcd_core.ssl import ablation
from lcd_core.ssl.config import VARIANTS, variants
from lcd_core.ssl.sampler import CrossBatchSampler
from lcd_core.ssl.source import TileBank
from lcd_core.embedding.vit import describe_checkpoint, load_checkpoint

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


def _embed_bank(model, config: dict, bank: TileBank, batch: int = 256) -> np.ndarray:
    """Embeddings of every tile of the bank, streamed from its memmap (bounded memory)."""
    tiles = bank.tiles
    size = input_size_of(config, tiles.shape[-1])
    return embed_tiles(model, (resize_tiles(np.asarray(tiles[i:i + batch]), size)
                               for i in range(0, len(tiles), batch)))


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
                   pretraining: PretrainingSettings) -> dg.MaterializeResult:
    variant = context.partition_key
    out = lcd.models_dir / checkpoint_name(variant)
    run = pretraining_steps.pretrain_variant(
        _bank(lcd), variant, out, preset=pretraining.preset, steps=pretraining.steps, seed=pretraining.seed,
        time_budget_s=pretraining.time_budget_s, device=pretraining.device, num_threads=pretraining.num_threads,
        log=context.log.info)
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
        "of the screen, the paper's own measure: phenotypic-activity mAP of MAD-normalized well "
        "profiles and, on a synthetic screen, the AUROC of mAP-ES against the planted truth. The "
        "untrained ViTs are baseline rows; the handcrafted features of the same tiles are the "
        "reference row (the paper's CellProfiler). Table `ablation`."
    ),
)
def ssl_ablation(context: dg.AssetExecutionContext, lcd: LcdHome, embedding: EmbeddingSettings,
                 pretraining: PretrainingSettings) -> dg.MaterializeResult:
    from lcd_core.embedding.vit import create_vit

    bank = _bank(lcd)
    if not (bank.table["split"] == "heldout").any():
        raise ValueError("the tile bank has no held-out tiles: acquire the holdout layouts' plates and "
                         "re-materialize ssl_tile_bank")
    rows: list[dict] = []

    held = (bank.table["split"] == "heldout").to_numpy()
    boots: dict[str, tuple] = {}  # model → (bootstrap AUROCs, condition keys): paired comparisons
    truth_path = lcd.truth_dir / "conditions.parquet"
    truth = pl.read_parquet(truth_path) if truth_path.exists() else None

    def score(model_name: str, variant: str, model, ckpt: dict, every: np.ndarray | None = None) -> None:
        t0 = time.perf_counter()
        every = _embed_bank(model, ckpt, bank) if every is None else every
        emb, table = every[held], bank.table.filter(pl.Series(held))
        s = ablation.evaluate_embedding(emb, table)
        screen = ablation.screen_activity(every, bank.table, truth, seed=pretraining.seed)
        boots[model_name] = (screen.pop("activity_auroc_boot", None), screen.pop("activity_keys", None))
        rows.append({"model": model_name, "variant": variant, "trained": bool(ckpt.get("trained", True)),
                     "arch": ckpt.get("arch"), "input_size": input_size_of(ckpt, bank.tiles.shape[-1]),
                     "steps": ckpt.get("step"), **s.as_row(), **screen, **ablation.collapse_stats(emb)})
        auroc = screen["activity_auroc"]
        context.log.info(f"{model_name}: retrieval mAP {s.retrieval_map:.4f}, replica balanced accuracy "
                         f"{s.replica_balanced_accuracy:.3f}, screen activity mAP {screen['activity_map']:.4f}"
                         + (f" (AUROC vs truth {auroc:.3f})" if auroc is not None else "")
                         + f" ({time.perf_counter() - t0:.0f} s)")

    base = lcd.models_dir / embedding.checkpoint
    if (base / "model.safetensors").exists():
        model, ckpt = load_checkpoint(base)
        if not ckpt.get("trained", True):
            score(embedding.checkpoint, "untrained", model, ckpt)
    trained = [(v, lcd.models_dir / checkpoint_name(v)) for v in VARIANTS]
    trained = [(v, p) for v, p in trained if (p / "model.safetensors").exists()]
    if not trained:
        raise FileNotFoundError("no ssl-<variant> checkpoint in the models folder: materialize ssl_checkpoint first")
    geometry = set()
    for variant, path in trained:
        model, ckpt = load_checkpoint(path)
        geometry.add((ckpt["arch"], input_size_of(ckpt, bank.tiles.shape[-1])))
        score(path.name, VARIANTS_LABEL[variant], model, ckpt)
    for arch, size in sorted(geometry):  # the untrained twin of each trained geometry: a fair baseline
        if any(r["variant"] == "untrained" and r["arch"] == arch and r["input_size"] == size for r in rows):
            continue
        score(f"untrained-{arch}-{size}px", "untrained", create_vit(arch, seed=pretraining.seed),
              {"trained": False, "arch": arch, "input_size": size})
    # the paper's CellProfiler reference row (its Fig. 2A): the handcrafted features of the same
    # tiles, z-scored over the bank so that no feature's unit dominates the cosine
    feats = np.concatenate(list(tiles_features(np.asarray(bank.tiles[i:i + 256])
                                               for i in range(0, len(bank.tiles), 256))))
    feats = (feats - feats.mean(0)) / np.maximum(feats.std(0), 1e-9)
    score("handcrafted", "handcrafted features", None, {"trained": False, "arch": "handcrafted"}, every=feats)
    _paired_vs_untrained(rows, boots)
    table = pl.DataFrame(rows, infer_schema_length=None)
    lcd.warehouse().replace_table("ablation", table)
    models = table.filter(pl.col("variant") != "handcrafted features")
    best = models.sort("retrieval_map", descending=True).row(0, named=True)
    xb = table.filter(pl.col("variant").str.contains("XB"))
    non_xb = table.filter(pl.col("trained") & ~pl.col("variant").str.contains("XB"))
    untrained = models.filter(~pl.col("trained"))
    meta = {
        "ablation": md.table(table.select("model", "variant", "steps", "retrieval_map", "retrieval_map_ci_low",
                                          "retrieval_map_ci_high", "retrieval_map_same_dose",
                                          "replica_balanced_accuracy", "replica_chance", "activity_map",
                                          "activity_auroc", "activity_auroc_vs_untrained",
                                          "activity_auroc_vs_untrained_ci_low",
                                          "activity_auroc_vs_untrained_ci_high", "effective_rank")),
        "figure": md.image(ablation_bars(table), "ablation", lcd.previews_dir / "pretraining" / "ablation.png"),
        "best_model": f"{best['model']} ({best['variant']}), retrieval mAP {best['retrieval_map']:.4f}",
        "heldout_tiles": int((bank.table["split"] == "heldout").sum()),
    }
    if untrained.height:
        top = table.filter(pl.col("trained")).sort("retrieval_map", descending=True).row(0, named=True)
        base = untrained.sort("retrieval_map", descending=True).row(0, named=True)
        meta["best_trained_minus_untrained_map"] = round(top["retrieval_map"] - base["retrieval_map"], 4)
        # the paper's claim needs the trained model's interval above the best untrained one's
        meta["trained_beats_untrained"] = bool(top["retrieval_map_ci_low"] > base["retrieval_map_ci_high"])
        best_map = table.filter(pl.col("trained")).sort("activity_map", descending=True).row(0, named=True)
        meta["best_trained_minus_untrained_activity_map"] = round(
            best_map["activity_map"] - float(untrained["activity_map"].max()), 4)
    xb_boot = [boots[m][0] for m in xb["model"] if m in boots and boots[m][0] is not None]
    non_xb_boot = [boots[m][0] for m in non_xb["model"] if m in boots and boots[m][0] is not None]
    if xb_boot and non_xb_boot and len({len(b) for b in xb_boot + non_xb_boot}) == 1:
        d = np.mean(xb_boot, axis=0) - np.mean(non_xb_boot, axis=0)
        meta["activity_auroc_xb_minus_non_xb"] = dg.MetadataValue.json(
            {"difference": round(float(np.nanmean(d)), 4),
             "ci95": [round(float(q), 4) for q in np.nanquantile(d, [0.025, 0.975])]})
    if xb.height and non_xb.height:
        meta["replica_accuracy_xb_minus_non_xb"] = round(
            float(xb["replica_balanced_accuracy"].mean() - non_xb["replica_balanced_accuracy"].mean()), 4)
    return dg.MaterializeResult(metadata=meta)


def _paired_vs_untrained(rows: list[dict], boots: dict[str, tuple]) -> None:
    """Add to each trained row its screen-activity AUROC minus its untrained twin's (same arch and
    input size) with a 95 % paired bootstrap interval over the compound-conditions."""
    for r in rows:
        r.update(activity_auroc_vs_untrained=None, activity_auroc_vs_untrained_ci_low=None,
                 activity_auroc_vs_untrained_ci_high=None)
        twin = next((u for u in rows if u["variant"] == "untrained" and u["arch"] == r["arch"]
                     and u["input_size"] == r["input_size"]), None)
        if not r["trained"] or twin is None or r["activity_auroc"] is None or twin["activity_auroc"] is None:
            continue
        (a, ka), (b, kb) = boots.get(r["model"], (None, None)), boots.get(twin["model"], (None, None))
        r["activity_auroc_vs_untrained"] = r["activity_auroc"] - twin["activity_auroc"]
        if a is not None and b is not None and ka == kb and a.size:
            lo, hi = np.nanquantile(a - b, [0.025, 0.975])
            r["activity_auroc_vs_untrained_ci_low"], r["activity_auroc_vs_untrained_ci_high"] = float(lo), float(hi)


VARIANTS_LABEL = {name: config.variant for name, config in variants().items()}
