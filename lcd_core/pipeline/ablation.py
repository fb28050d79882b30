"""The pre-training ablation's screen measure, through the one downstream chain.

The paper compares its models by phenotypic activity (its Table 1 / Fig. 2A). Here every tile of
the screen is embedded by the model under test, averaged into FOV profiles, and sent through
:func:`lcd_core.pipeline.downstream.run_chain` with the same settings as the model's own assets
(MAD + Harmony/FOV, 1,000 draws): the ablation scores a model exactly as the platform would use it.

The ablation table (:class:`Ablation`) scores every :class:`Candidate` (the untrained ViTs, each
trained variant, the handcrafted features of the same tiles) on the same tile bank: held-out
retrieval and replica predictability (:mod:`lcd_core.ssl.ablation`) and the screen's activity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from lcd_core.embedding.aggregate import aggregate_embeddings
from lcd_core.embedding.inference import input_size_of
from lcd_core.embedding.vit import create_vit, load_checkpoint
from lcd_core.handcrafted.features import tiles_features
from lcd_core.ground_truth import activity_against_truth
from lcd_core.pipeline.downstream import ChainSettings, run_chain
from lcd_core.pipeline.pretraining import embed_bank_tiles
from lcd_core.profiling.profiles import to_cytomining
from lcd_core.ssl import ablation
from lcd_core.ssl.ablation import bootstrap_auroc

__all__ = ["FOV_KEYS", "tile_fov_profiles", "screen_activity", "Candidate", "Ablation", "score_candidate",
           "handcrafted_candidate", "vit_candidates", "paired_vs_untrained", "ablation_summary"]

FOV_KEYS = ["plate", "timepoint", "well", "field", "replica", "layout", "dose", "compound", "moa", "role"]
_CONDITION = ["compound", "dose", "timepoint"]


def tile_fov_profiles(embeddings: np.ndarray, table: pl.DataFrame) -> pl.DataFrame:
    """FOV profiles (cytomining convention): the mean of each FOV's tile embeddings.

    ``table`` has one row per tile (same order as ``embeddings``) with the :data:`FOV_KEYS`
    columns; a missing one is a ``ValueError`` naming it.
    """
    if embeddings.ndim != 2 or embeddings.shape[0] != table.height:
        raise ValueError(f"{embeddings.shape} embeddings for {table.height} table rows")
    missing = [c for c in FOV_KEYS if c not in table.columns]
    if missing:
        raise ValueError(f"the tile table lacks column(s) {missing}")
    tiles = table.select(FOV_KEYS).with_columns(
        pl.Series("embedding", embeddings.astype(np.float32), dtype=pl.Array(pl.Float32, embeddings.shape[1])))
    return to_cytomining(aggregate_embeddings(tiles, by=FOV_KEYS))


def _auroc_interval(activity: pl.DataFrame, truth: pl.DataFrame, seed: int) -> dict:
    """AUROC of mAP-ES vs truth with its bootstrap (paired across models: same rows, same seed)."""
    both = activity.filter(pl.col("map_es").is_finite()).join(
        truth.select(*_CONDITION, "truly_active"), on=_CONDITION).sort(_CONDITION)
    boot = bootstrap_auroc(both["map_es"].to_numpy(), both["truly_active"].to_numpy(), seed=seed)
    low, high = (None, None) if not boot.size else (float(q) for q in np.nanquantile(boot, [0.025, 0.975]))
    return {"activity_auroc": activity_against_truth(activity, truth)["auroc"],
            "activity_auroc_ci_low": low, "activity_auroc_ci_high": high,
            "activity_auroc_boot": boot, "activity_keys": tuple(map(tuple, both.select(_CONDITION).rows()))}


def screen_activity(embeddings: np.ndarray, table: pl.DataFrame, truth: pl.DataFrame | None = None, *,
                    settings: ChainSettings = ChainSettings()) -> dict[str, float | int | None]:
    """Phenotypic activity of a whole screen's tiles under one embedding.

    Parameters
    ----------
    embeddings, table
        One row per tile; ``table`` has the lineage columns :data:`FOV_KEYS`.
    truth
        The generator's ``conditions.parquet`` (compound, dose, timepoint, truly_active), or None.
    settings
        The chain's settings (default: the platform's).

    Returns
    -------
    dict
        ``activity_map`` (mean mAP over scorable compound-conditions), ``activity_conditions``, and
        ``activity_auroc`` with its 95 % bootstrap interval (None without truth); with truth also
        ``activity_auroc_boot`` and ``activity_keys`` for paired comparisons between models.
    """
    act = run_chain(tile_fov_profiles(embeddings, table), settings).activity
    scored = act.filter(pl.col("map_mean").is_finite())
    out: dict = {"activity_map": float(scored["map_mean"].mean()) if scored.height else float("nan"),
                 "activity_auroc": None, "activity_auroc_ci_low": None, "activity_auroc_ci_high": None,
                 "activity_conditions": int(scored.height)}
    if truth is not None:
        out.update(_auroc_interval(act, truth, settings.seed))
    return out


# --------------------------------------------------------------------------------------------
# the ablation table: every model scored on the same tiles


HANDCRAFTED_VARIANT = "handcrafted features"


@dataclass(frozen=True)
class Candidate:
    """One row of the ablation: a model's name, variant label and checkpoint record (``trained``,
    ``arch``, ``input_size``, ``step``), and a function that embeds every tile of the bank."""

    name: str
    variant: str
    record: dict
    embed: Callable[[], np.ndarray]


@dataclass
class Ablation:
    """The ablation's rows (one dict per model) and each model's bootstrap AUROCs with their
    condition keys (for paired comparisons)."""

    rows: list[dict] = field(default_factory=list)
    boots: dict[str, tuple] = field(default_factory=dict)

    def table(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, infer_schema_length=None)


def score_candidate(run: Ablation, c: Candidate, bank_table: pl.DataFrame, tile_size: int,
                    truth: pl.DataFrame | None, settings: ChainSettings) -> dict:
    """Score one model: held-out retrieval and replica predictability, the screen's activity
    through the chain, collapse indicators; appends the row to ``run`` and returns it."""
    every = c.embed()
    held = (bank_table["split"] == "heldout").to_numpy()
    emb, table = every[held], bank_table.filter(pl.Series(held))
    scores = ablation.evaluate_embedding(emb, table)
    screen = screen_activity(every, bank_table, truth, settings=settings)
    run.boots[c.name] = (screen.pop("activity_auroc_boot", None), screen.pop("activity_keys", None))
    row = {"model": c.name, "variant": c.variant, "trained": bool(c.record.get("trained", True)),
           "arch": c.record.get("arch"), "input_size": input_size_of(c.record, tile_size),
           "steps": c.record.get("step"), **scores.as_row(), **screen, **ablation.collapse_stats(emb)}
    run.rows.append(row)
    return row


def handcrafted_candidate(tiles: np.ndarray, batch: int = 256) -> Candidate:
    """The paper's CellProfiler reference row (its Fig. 2A): the handcrafted features of the same
    tiles, z-scored over the bank so that no feature's unit dominates the cosine."""
    def embed() -> np.ndarray:
        feats = np.concatenate(list(tiles_features(np.asarray(tiles[i:i + batch])
                                                   for i in range(0, len(tiles), batch))))
        return (feats - feats.mean(0)) / np.maximum(feats.std(0), 1e-9)
    return Candidate("handcrafted", HANDCRAFTED_VARIANT, {"trained": False, "arch": "handcrafted"}, embed)


def paired_vs_untrained(run: Ablation) -> None:
    """Add to each trained row its screen-activity AUROC minus its untrained twin's (same arch and
    input size) with a 95 % paired bootstrap interval over the compound-conditions."""
    for r in run.rows:
        r.update(activity_auroc_vs_untrained=None, activity_auroc_vs_untrained_ci_low=None,
                 activity_auroc_vs_untrained_ci_high=None)
        twin = next((u for u in run.rows if u["variant"] == "untrained" and u["arch"] == r["arch"]
                     and u["input_size"] == r["input_size"]), None)
        if not r["trained"] or twin is None or r["activity_auroc"] is None or twin["activity_auroc"] is None:
            continue
        (a, ka), (b, kb) = run.boots.get(r["model"], (None, None)), run.boots.get(twin["model"], (None, None))
        r["activity_auroc_vs_untrained"] = r["activity_auroc"] - twin["activity_auroc"]
        if a is not None and b is not None and ka == kb and a.size:
            lo, hi = np.nanquantile(a - b, [0.025, 0.975])
            r["activity_auroc_vs_untrained_ci_low"], r["activity_auroc_vs_untrained_ci_high"] = float(lo), float(hi)


def _trained_vs_untrained(table: pl.DataFrame) -> dict:
    models = table.filter(pl.col("variant") != HANDCRAFTED_VARIANT)
    untrained = models.filter(~pl.col("trained"))
    if not untrained.height or not table["trained"].any():
        return {}
    top = table.filter(pl.col("trained")).sort("retrieval_map", descending=True).row(0, named=True)
    base = untrained.sort("retrieval_map", descending=True).row(0, named=True)
    best_map = table.filter(pl.col("trained")).sort("activity_map", descending=True).row(0, named=True)
    # the paper's claim needs the trained model's interval above the best untrained one's
    return {"best_trained_minus_untrained_map": round(top["retrieval_map"] - base["retrieval_map"], 4),
            "trained_beats_untrained": bool(top["retrieval_map_ci_low"] > base["retrieval_map_ci_high"]),
            "best_trained_minus_untrained_activity_map": round(
                best_map["activity_map"] - float(untrained["activity_map"].max()), 4)}


def _xb_vs_non_xb(table: pl.DataFrame, boots: dict[str, tuple]) -> dict:
    xb = table.filter(pl.col("variant").str.contains("XB"))
    non_xb = table.filter(pl.col("trained") & ~pl.col("variant").str.contains("XB"))
    out: dict = {}
    xb_boot = [boots[m][0] for m in xb["model"] if m in boots and boots[m][0] is not None]
    non_xb_boot = [boots[m][0] for m in non_xb["model"] if m in boots and boots[m][0] is not None]
    if xb_boot and non_xb_boot and len({len(b) for b in xb_boot + non_xb_boot}) == 1:
        d = np.mean(xb_boot, axis=0) - np.mean(non_xb_boot, axis=0)
        out["activity_auroc_xb_minus_non_xb"] = {
            "difference": round(float(np.nanmean(d)), 4),
            "ci95": [round(float(q), 4) for q in np.nanquantile(d, [0.025, 0.975])]}
    if xb.height and non_xb.height:
        out["replica_accuracy_xb_minus_non_xb"] = round(
            float(xb["replica_balanced_accuracy"].mean() - non_xb["replica_balanced_accuracy"].mean()), 4)
    return out


def ablation_summary(run: Ablation) -> dict:
    """The headline comparisons of an ablation: the best model, trained vs untrained (retrieval
    and activity), XB vs non-XB (paired bootstrap of the activity AUROC, replica accuracy)."""
    table = run.table()
    best = table.filter(pl.col("variant") != HANDCRAFTED_VARIANT).sort(
        "retrieval_map", descending=True).row(0, named=True)
    return {"best_model": f"{best['model']} ({best['variant']}), retrieval mAP {best['retrieval_map']:.4f}",
            **_trained_vs_untrained(table), **_xb_vs_non_xb(table, run.boots)}


def _checkpoint_candidate(name: str, variant: str, folder: Path, tiles: np.ndarray) -> Candidate:
    _, record = load_checkpoint(folder)
    return Candidate(name, variant, record, lambda: embed_bank_tiles(load_checkpoint(folder)[0], record, tiles))


def vit_candidates(base: Path, trained: Mapping[str, Path], tiles: np.ndarray, *, seed: int = 0) -> list[Candidate]:
    """The ViT rows of the ablation, in table order: the embedding default ``base`` when it is
    untrained, each trained checkpoint (variant label → folder), then the untrained twin (same
    architecture and input size, ``seed``) of every trained geometry that ``base`` does not cover."""
    out = []
    if (base / "model.safetensors").exists() and not load_checkpoint(base)[1].get("trained", True):
        out.append(_checkpoint_candidate(base.name, "untrained", base, tiles))
    out += [_checkpoint_candidate(folder.name, label, folder, tiles) for label, folder in trained.items()]
    covered = {(c.record.get("arch"), input_size_of(c.record, tiles.shape[-1])) for c in out if c.variant == "untrained"}
    geometry = sorted({(c.record["arch"], input_size_of(c.record, tiles.shape[-1])) for c in out
                       if c.variant != "untrained"} - covered)
    for arch, size in geometry:
        record = {"trained": False, "arch": arch, "input_size": size}
        out.append(Candidate(f"untrained-{arch}-{size}px", "untrained", record,
                             lambda a=arch, r=record: embed_bank_tiles(create_vit(a, seed=seed), r, tiles)))
    return out
