"""Scores of analysis outputs against the ground truth of a synthetic screen."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score


def activity_against_truth(
    activity: pl.DataFrame, truth_conditions: pl.DataFrame, threshold: float = 0.8
) -> dict[str, float | int | None]:
    """How mAP-ES separates truly active compound-conditions from inactive ones.

    Parameters
    ----------
    activity
        Rows compound, dose, timepoint, map_es (as :func:`lcd_core.activity.compute_activity`).
    truth_conditions
        The generator's ``conditions.parquet``: compound, dose, timepoint, truly_active.
    threshold
        The activity call (mAP-ES ≥ threshold).

    Returns
    -------
    dict
        ``n``, ``n_truly_active``, ``auroc`` (None when only one class is present), and the
        confusion at ``threshold``: ``tp``, ``fp``, ``tn``, ``fn``, ``sensitivity``,
        ``specificity``.
    """
    keys = ["compound", "dose", "timepoint"]
    both = activity.select([*keys, "map_es"]).join(
        truth_conditions.select([*keys, "truly_active"]), on=keys, how="inner"
    ).filter(pl.col("map_es").is_not_nan() & pl.col("map_es").is_finite())
    y = both["truly_active"].to_numpy().astype(bool)
    s = both["map_es"].to_numpy()
    called = s >= threshold
    tp, fp = int((called & y).sum()), int((called & ~y).sum())
    tn, fn = int((~called & ~y).sum()), int((~called & y).sum())
    auroc = float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None
    return {
        "n": int(len(y)),
        "n_truly_active": int(y.sum()),
        "auroc": auroc,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
    }


def nan_safe(values: dict) -> dict:
    """Replace NaN / inf floats by None (JSON metadata)."""
    return {
        k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in values.items()
    }


HOLDOUT = "DMSO-holdout"


def dmso_holdout_profiles(profiles: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Relabel a random half of each plate's DMSO wells as a pseudo-compound ``DMSO-holdout``.

    Its mAP-ES against the null drawn from the other half should be near 0: a large value means
    the pipeline (normalization, draws) manufactures activity out of plate structure alone.
    """
    rng = np.random.default_rng(seed)
    is_ctrl = (profiles["Metadata_role"] == "negative_control").to_numpy()
    plates = profiles["Metadata_plate"].to_numpy()
    hold = np.zeros(profiles.height, dtype=bool)
    for plate in np.unique(plates[is_ctrl]):
        rows = np.flatnonzero(is_ctrl & (plates == plate))
        hold[rng.choice(rows, size=len(rows) // 2, replace=False)] = True
    mask = pl.Series(hold)
    return profiles.with_columns(
        pl.when(mask).then(pl.lit(HOLDOUT)).otherwise(pl.col("Metadata_compound")).alias("Metadata_compound"),
        pl.when(mask).then(pl.lit("treatment")).otherwise(pl.col("Metadata_role")).alias("Metadata_role"),
    )
