"""The pre-training ablation's screen measure, through the one downstream chain.

The paper compares its models by phenotypic activity (its Table 1 / Fig. 2A). Here every tile of
the screen is embedded by the model under test, averaged into FOV profiles, and sent through
:func:`lcd_core.pipeline.downstream.run_chain` with the same settings as the model's own assets
(MAD + Harmony/FOV, 1,000 draws): the ablation scores a model exactly as the platform would use it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lcd_core.embedding.inference import aggregate_embeddings
from lcd_core.ground_truth import activity_against_truth
from lcd_core.pipeline.downstream import ChainSettings, run_chain
from lcd_core.profiling.profiles import to_cytomining
from lcd_core.ssl.ablation import bootstrap_auroc

__all__ = ["FOV_KEYS", "screen_activity"]

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
