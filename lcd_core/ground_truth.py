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
        Rows compound, dose, timepoint, map_es (as :func:`lcd_core.profiling.activity.compute_activity`).
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


#: The two readings of :func:`lcd_core.moa.polypharmacology`: flag column → its pair column.
POLY_READINGS = {"stable_top2": "stable_pair", "stable_residual": "stable_residual_pair"}


#: Columns of :func:`polypharmacology_against_truth`.
POLY_TRUTH_SCHEMA = {"flag": pl.Utf8, "planted": pl.Int64, "recovered": pl.Int64, "wrong_pair": pl.Int64,
                     "false_flags": pl.Int64, "recall": pl.Float64, "precision": pl.Float64, "false_flagged": pl.Utf8}


def polypharmacology_against_truth(poly: pl.DataFrame, truth_compounds: pl.DataFrame) -> pl.DataFrame:
    """How each polypharmacology reading recovers the planted two-MoA compounds.

    Parameters
    ----------
    poly
        :func:`lcd_core.moa.polypharmacology` output (one or more rows per compound).
    truth_compounds
        The generator's ``compounds.parquet``: compound, moa, moa_secondary ("" or null = one MoA).

    Returns
    -------
    pl.DataFrame
        One row per reading (``flag`` = ``stable_top2`` | ``stable_residual``): ``planted``
        (two-MoA compounds in ``poly``), ``recovered`` (flagged with exactly their two MoAs),
        ``wrong_pair`` (planted, flagged with another pair), ``false_flags`` (single-MoA
        compounds flagged), ``recall``, ``precision`` (null when nothing is flagged), and
        ``false_flagged`` (their names).
    """
    per = poly.group_by("compound").agg([pl.col(c).first() for c in (*POLY_READINGS, *POLY_READINGS.values())
                                         if c in poly.columns])
    t = truth_compounds.select("compound", "moa", pl.col("moa_secondary").fill_null(""))
    per = per.join(t, on="compound", how="inner").with_columns(
        truth_pair=pl.when(pl.col("moa_secondary") != "").then(
            pl.concat_list("moa", "moa_secondary").list.sort().list.join("|")))
    rows = []
    for flag, pair in POLY_READINGS.items():
        if flag not in per.columns:
            continue
        planted = per.filter(pl.col("truth_pair").is_not_null())
        flagged = per.filter(pl.col(flag))
        recovered = planted.filter(pl.col(flag) & (pl.col(pair) == pl.col("truth_pair"))).height
        false = flagged.filter(pl.col("truth_pair").is_null())["compound"].sort().to_list()
        rows.append({"flag": flag, "planted": planted.height, "recovered": recovered,
                     "wrong_pair": planted.filter(pl.col(flag)).height - recovered,
                     "false_flags": len(false),
                     "recall": recovered / planted.height if planted.height else None,
                     "precision": recovered / flagged.height if flagged.height else None,
                     "false_flagged": ", ".join(false)})
    return pl.DataFrame(rows, schema=POLY_TRUTH_SCHEMA)


#: Per-FOV features of :func:`truth_morphology`.
TRUTH_MORPHOLOGY_FEATURES = ("gt_n_cells", "gt_log_cell_area", "gt_log_elongation", "gt_log_nucleus_area",
                             "gt_multinucleated", "gt_mitotic", "gt_rounded", "gt_dead", "gt_confluency")


def truth_morphology(cells: pl.DataFrame, fovs: pl.DataFrame) -> pl.DataFrame:
    """Ground-truth morphology of each FOV: what a perfect single-cell segmentation would measure.

    A reference feature set, not a product feature: the generator's cells inside the FOV give
    the cell count, mean log cell area and log elongation (major / minor axis), mean log nucleus
    area, the fractions of multinucleated / mitotic / rounded / dead cells, and the confluency.
    Running the MoA stage on it separates what the method can do from what the image features
    carry.

    Parameters
    ----------
    cells
        ``cells.parquet`` (one row per nucleus; ``cell_id``, ``cell_a``, ``cell_b``,
        ``nucleus_a``, ``nucleus_b``, ``n_nuclei``, ``state``, ``in_fov``).
    fovs
        ``fovs.parquet`` (plate, timepoint, well, field, confluency).

    Returns
    -------
    pl.DataFrame
        plate, timepoint, well, field and :data:`TRUTH_MORPHOLOGY_FEATURES`; a FOV without a
        cell has 0 cells and 0 elsewhere.
    """
    keys = ["plate", "timepoint", "well", "field"]
    per_cell = cells.filter(pl.col("in_fov")).group_by([*keys, "cell_id"]).agg(
        pl.col("cell_a").first(), pl.col("cell_b").first(), pl.col("n_nuclei").first(), pl.col("state").first(),
        (pl.col("nucleus_a") * pl.col("nucleus_b")).mean().alias("nucleus_area"))
    per_fov = per_cell.group_by(keys).agg(
        pl.len().cast(pl.Float64).alias("gt_n_cells"),
        (pl.col("cell_a") * pl.col("cell_b")).log().mean().alias("gt_log_cell_area"),
        (pl.col("cell_a") / pl.col("cell_b")).log().mean().alias("gt_log_elongation"),
        pl.col("nucleus_area").log().mean().alias("gt_log_nucleus_area"),
        (pl.col("n_nuclei") > 1).mean().alias("gt_multinucleated"),
        *[(pl.col("state") == s).mean().alias(f"gt_{s}") for s in ("mitotic", "rounded", "dead")],
    )
    out = fovs.select([*keys, pl.col("confluency").alias("gt_confluency")]).with_columns(
        pl.col("field").cast(pl.Int64)).join(per_fov.with_columns(pl.col("field").cast(pl.Int64)), on=keys, how="left")
    return out.select(*keys, *[pl.col(c).cast(pl.Float64).fill_null(0.0) for c in TRUTH_MORPHOLOGY_FEATURES])
