"""The handcrafted-feature baseline (SPEC §4.7): the per-FOV features (assets `fov_features` and
`cell_features`, group handcrafted, computed by the acquisition pass `kept_tile_pass` from the same
decoded tiles as the embeddings) through the same normalization, activity and MoA steps as the ViT
embeddings, compared with them."""

import time

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.acquisition.assets import WELL_KEYS
from lcd_assets.moa.assets import holdout_compounds
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome
from lcd_core import moa
from lcd_core.profiling.activity import compute_activity
from lcd_core.cells import CELL_FEATURE_NAMES
from lcd_core.ground_truth import (
    TRUTH_MORPHOLOGY_FEATURES,
    activity_against_truth,
    nan_safe,
    polypharmacology_against_truth,
    truth_morphology,
)
from lcd_core.handcrafted.features import FEATURE_NAMES
from lcd_core.profiling.normalize import METHODS, normalize_to_wells
from lcd_core.plots import confusion_heatmap, grouped_bars, metric_curves

GROUP = "handcrafted"
HANDCRAFTED = "handcrafted"
TRUTH_MORPHOLOGY = "ground-truth morphology (reference)"
CELL_SEGMENTATION = "cell segmentation (RayNet)"
MIN_SEGMENTED_FOVS = 0.5  # the cells-alone row needs live nuclei in at least this share of the FOVs
_FOV_KEYS = [*WELL_KEYS, "field"]


class BaselineConfig(dg.Config):
    """The downstream steps of the handcrafted baseline. ``method``: the normalization, default
    MAD + sphering (pycytominer's ``Spherize``, as the JUMP recipe treats CellProfiler
    features); the ViT's MAD + Harmony/FOV is one config change away."""

    method: str = "mad_spherize"
    n_draws: int = 1000
    threshold: float = 0.8
    seed: int = 0


def _fov_profiles(lcd: LcdHome, log) -> pl.DataFrame:
    """`fov_features`, joined with `cell_features` when every FOV was segmented, Metadata_-prefixed."""
    wh = lcd.warehouse()
    fovs = wh.query("SELECT * FROM fov_features ORDER BY timepoint, plate, well, field")
    if "cell_features" in wh.tables():
        cells = wh.query("SELECT * FROM cell_features").select(*_FOV_KEYS, *CELL_FEATURE_NAMES)
        joined = fovs.join(cells, on=_FOV_KEYS, how="inner", maintain_order="left", nulls_equal=True)  # DMSO: no moa
        if joined.height == fovs.height:
            fovs = joined
        else:  # never drop FOVs: the cells join only when every FOV was segmented
            missing = fovs.join(cells, on=_FOV_KEYS, how="anti", nulls_equal=True).select("plate", "timepoint").unique()
            log.warning(f"cell_features lacks {fovs.height - joined.height} FOVs of fov_features (measurements "
                        f"{sorted(f'{p}|{t}' for p, t in missing.iter_rows())[:5]}…): the handcrafted features "
                        "run without the cell features; materialize cell_features for every measurement")
    features = set(FEATURE_NAMES) | set(CELL_FEATURE_NAMES)
    return fovs.rename({c: f"Metadata_{c}" for c in fovs.columns if c not in features})


def _vit_label(lcd: LcdHome) -> str:
    wh = lcd.warehouse()
    if "tile_embeddings" not in wh.tables():
        return "ViT"
    names = wh.query("SELECT DISTINCT checkpoint FROM tile_embeddings")["checkpoint"].drop_nulls().to_list()
    return "ViT " + ("+".join(sorted(names)) if names else "(unknown checkpoint)")


def _flagged(poly: pl.DataFrame, flag: str = "stable_top2", pair: str = "stable_pair") -> str:
    if flag not in poly.columns:
        return "n/a"
    rows = poly.filter(pl.col(flag)).select("compound", pair).unique().sort("compound")
    return "; ".join(f"{c} ({p})" for c, p in rows.iter_rows()) or "none"


def _downstream(fovs: pl.DataFrame, method: str, config: BaselineConfig,
                holdout: list[str]) -> tuple[pl.DataFrame, moa.MoaResult]:
    """Per-timepoint normalization (as `normalized_profiles`), activity, then the MoA stage."""
    profiles = pl.concat([normalize_to_wells(fovs.filter(pl.col("Metadata_timepoint") == tp), method,
                                             seed=config.seed)[0]
                          for tp in sorted(fovs["Metadata_timepoint"].unique().to_list())], how="diagonal_relaxed")
    activity = compute_activity(profiles, n_draws=config.n_draws, seed=config.seed,
                                threshold=config.threshold).activity.with_columns(
        pl.col("dose").cast(pl.String), pl.col("timepoint").cast(pl.String))
    present = set(profiles["Metadata_compound"].to_list())
    hold = [c for c in holdout if c in present]
    return activity, moa.classify_moa(profiles, activity, holdout_compounds=hold, seed=config.seed)


def _truth_morphology_fovs(lcd: LcdHome, fovs: pl.DataFrame) -> pl.DataFrame | None:
    """The ground-truth morphology of the same FOVs (synthetic screens only), MAD-ready."""
    cells, fov_truth = lcd.truth_dir / "cells.parquet", lcd.truth_dir / "fovs.parquet"
    if not (cells.exists() and fov_truth.exists()):
        return None
    gt = truth_morphology(pl.read_parquet(cells), pl.read_parquet(fov_truth)).rename(
        {k: f"Metadata_{k}" for k in ("plate", "timepoint", "well", "field")})
    meta = [c for c in fovs.columns if c.startswith("Metadata_")]
    keys = [f"Metadata_{k}" for k in ("plate", "timepoint", "well", "field")]
    return fovs.select(meta).with_columns(pl.col("Metadata_field").cast(pl.Int64)).join(
        gt, on=keys, how="inner").select(*meta, *TRUTH_MORPHOLOGY_FEATURES)


@dg.asset(
    group_name=GROUP,
    kinds={"scikitlearn", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["fov_features", "cell_features", "moa_predictions"],
    description=(
        "The handcrafted features (tile features plus, where segmented, the cells' shape features) "
        "through the ViT's own downstream steps: per timepoint the "
        "normalization (default MAD + sphering on DMSO, the cytomining treatment of handcrafted "
        "features), per dose × timepoint mAP / mAP-ES, then the MoA "
        "probes, incremental aggregation and polypharmacology. Tables `handcrafted_activity`, "
        "`handcrafted_moa_predictions`, `handcrafted_moa_metrics`, `handcrafted_polypharmacology`, "
        "and the comparison with the ViT embeddings: `moa_feature_comparison` (weighted F1, "
        "accuracy, top-3 of the final calls per feature set) and `moa_feature_mcnemar` (McNemar's "
        "test on the same compounds). The cell segmentation's features also run alone (row "
        f"`{CELL_SEGMENTATION}`). On a synthetic screen the same MoA stage also runs on the "
        "ground-truth morphology of each FOV (a reference row: what perfect segmentation would "
        "give), and `polypharmacology_vs_truth` scores both polypharmacology readings (top-2, "
        "explain-away) of every feature set against the planted two-MoA compounds."
    ),
)
def handcrafted_baseline(context: dg.AssetExecutionContext, config: BaselineConfig,
                         lcd: LcdHome) -> dg.MaterializeResult:
    if config.method not in METHODS:
        raise ValueError(f"normalization method {config.method!r}: expected one of {METHODS}")
    wh = lcd.warehouse()
    wh.refresh_views(["fov_features", "cell_features"])
    fovs = _fov_profiles(lcd, context.log)
    t0 = time.perf_counter()
    hold = holdout_compounds(lcd)
    activity, result = _downstream(fovs, config.method, config, hold)
    wh.replace_table("handcrafted_activity", activity)
    wh.replace_table("handcrafted_moa_predictions", result.predictions)
    wh.replace_table("handcrafted_moa_metrics", result.metrics)
    wh.replace_table("handcrafted_polypharmacology", result.polypharmacology)

    named = {HANDCRAFTED: result.predictions}
    polys = {HANDCRAFTED: result.polypharmacology}
    activities = {HANDCRAFTED: activity}
    tables = set(wh.tables())
    if "moa_predictions" in tables:
        vit = _vit_label(lcd)
        named = {vit: wh.query("SELECT * FROM moa_predictions"), **named}
        if "moa_polypharmacology" in tables:
            polys[vit] = wh.query("SELECT * FROM moa_polypharmacology")
        if "activity" in tables:
            activities[vit] = wh.query("SELECT * FROM activity")
    else:
        context.log.warning("no ViT moa_predictions yet: the comparison holds the handcrafted row only")

    def add(name: str, act: pl.DataFrame, res: moa.MoaResult) -> None:
        named[name], polys[name], activities[name] = res.predictions, res.polypharmacology, act
    segmented = float((fovs["cs_nuclei"] > 0).mean()) if "cs_nuclei" in fovs.columns else 0.0
    if segmented >= MIN_SEGMENTED_FOVS:
        # the segmented cells alone, as few features as the ground-truth reference (MAD, no sphering)
        cell_fovs = fovs.select(*[c for c in fovs.columns if c.startswith("Metadata_")], *CELL_FEATURE_NAMES)
        add(CELL_SEGMENTATION, *_downstream(cell_fovs, "mad", config, hold))
    elif "cs_nuclei" in fovs.columns:
        context.log.warning(f"the segmentation found a live nucleus in {segmented:.0%} of the FOVs (< "
                            f"{MIN_SEGMENTED_FOVS:.0%}): no '{CELL_SEGMENTATION}' row; check segmentation_model")
    else:
        context.log.warning("no cell_features: the handcrafted features hold no single-cell shape "
                            "(materialize segmentation_model, then cell_features)")
    gt_fovs = _truth_morphology_fovs(lcd, fovs)
    if gt_fovs is not None and gt_fovs.height:
        # the ceiling: the same MoA stage on what a perfect segmentation would measure (MAD: 9 features)
        add(TRUTH_MORPHOLOGY, *_downstream(gt_fovs, "mad", config, hold))
    truth_path = lcd.truth_dir / "conditions.parquet"
    truth = pl.read_parquet(truth_path) if truth_path.exists() else None
    summary = {name: {"polypharmacology_top2": _flagged(polys[name]) if name in polys else "n/a",
                      "polypharmacology_residual": _flagged(polys[name], "stable_residual", "stable_residual_pair")
                      if name in polys else "n/a"}
               for name in named}
    for name, act in activities.items():
        if truth is not None:
            summary[name]["activity_auroc_vs_truth"] = nan_safe(
                activity_against_truth(act, truth, config.threshold))["auroc"]
    compounds_path = lcd.truth_dir / "compounds.parquet"
    poly_truth = pl.concat(
        [polypharmacology_against_truth(p, pl.read_parquet(compounds_path)).select(
            pl.lit(name).alias("features"), pl.all()) for name, p in polys.items()]
    ) if compounds_path.exists() else pl.DataFrame()
    wh.replace_table("polypharmacology_vs_truth", poly_truth)
    scores, tests = moa.compare_feature_sets(named)
    wh.replace_table("moa_feature_comparison", scores)
    wh.replace_table("moa_feature_mcnemar", tests)  # empty with one feature set: never a stale test

    previews = lcd.previews_dir / "handcrafted"
    meta: dict = {
        "conditions": activity.select("dose", "timepoint").unique().height,
        "active_calls": int(activity["active"].sum()),
        "seconds": round(time.perf_counter() - t0, 1),
        "comparison": md.table(scores, 40),
        "mcnemar": md.table(tests, 20) if tests.height else "only one feature set",
        "polypharmacology_vs_truth": md.table(poly_truth, 20) if poly_truth.height else "no ground truth",
        "summary": dg.MetadataValue.json(summary),
        "metric_curves": md.image(metric_curves(result.metrics), "handcrafted: F1 / accuracy / top-3 vs doses added",
                                  previews / "metrics.png"),
    }
    if scores.height:
        final = scores.filter(pl.col("mode") == "incremental").with_columns(
            pl.concat_str([pl.col("set"), pl.lit(" F1")]).alias("metric"))
        meta["comparison_plot"] = md.image(
            grouped_bars(final, "metric", "features", "weighted_f1", "MoA weighted F1 (all doses) by feature set"),
            "weighted F1 of the aggregated prediction per feature set", previews / "comparison.png")
    for set_name in result.confusion["set"].unique().to_list() if result.confusion.height else []:
        c = result.confusion.filter((pl.col("set") == set_name) & (pl.col("mode") == "incremental"))
        c = c.filter(pl.col("step") == c["step"].max())
        meta[f"confusion_{set_name}"] = md.image(confusion_heatmap(c), f"handcrafted {set_name}: aggregated confusion",
                                                 previews / f"confusion_{set_name}.png")
    return dg.MaterializeResult(metadata=meta)
