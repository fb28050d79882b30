"""Phenotypic activity per dose × timepoint: normalized profiles → mAP / mAP-ES (SPEC §4.4–4.5)."""

import time

import dagster as dg
import numpy as np
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.compute import STEP_RETRIES, Compute
from lcd_assets.partitions import condition_of, condition_partitions, measurement_to_condition, partitioned_check
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome
from lcd_core.ground_truth import HOLDOUT, activity_against_truth, dmso_holdout_profiles, nan_safe
from lcd_core.pipeline.downstream import ChainSettings, condition_activity, condition_wells, run_chain, string_keys
from lcd_core.plots import ap_distribution, es_heatmap, grouped_bars, sensitivity_curves
from lcd_core.profiling.activity import sensitivity
from lcd_core.profiling.normalize import METHODS
from lcd_core.profiling.profiles import to_cytomining

GROUP = "activity"
DEFAULTS = ChainSettings()  # the one chain's defaults, shared with the handcrafted baseline and the ablation
NULL_ES_LIMIT = 0.5


class NormalizationConfig(dg.Config):
    """Which normalization the run uses (``none``, ``mad``, ``harmony``, ``fastmnn``,
    ``mad_harmony_fov`` — the paper's best, the default of every feature set; ``mad_spherize``)."""

    method: str = DEFAULTS.method


class ActivityConfig(dg.Config):
    """Draws of the mAP distributions and the activity call."""

    n_draws: int = DEFAULTS.n_draws
    threshold: float = DEFAULTS.threshold
    seed: int = DEFAULTS.seed

    def settings(self) -> ChainSettings:
        return ChainSettings(n_draws=self.n_draws, threshold=self.threshold, seed=self.seed)


def timepoint_fov_profiles(lcd: LcdHome, timepoint: str) -> pl.DataFrame:
    """Every FOV profile of a timepoint (all plates, all doses), cytomining convention."""
    fovs = lcd.warehouse().query(
        "SELECT * FROM fov_embeddings WHERE timepoint = $t ORDER BY plate, well, field", {"t": timepoint}
    )
    return to_cytomining(fovs)


def _truth(lcd: LcdHome) -> pl.DataFrame | None:
    path = lcd.truth_dir / "conditions.parquet"
    return pl.read_parquet(path) if path.exists() else None


def _check(name: str, asset: str, description: str, blocking: bool = False) -> dg.AssetCheckSpec:
    return partitioned_check(
        name, asset=asset, description=description, blocking=blocking, partitions_def=condition_partitions
    )


@dg.asset(
    partitions_def=condition_partitions,
    group_name=GROUP,
    kinds={"harmonypy", "parquet"},
    deps=[dg.AssetDep("fov_embeddings", partition_mapping=measurement_to_condition)],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[_check("profiles_finite", "normalized_profiles", "No NaN or inf after normalization.", True)],
    description=(
        "Well profiles of one dose × timepoint after normalization (config `method`; default the "
        "paper's MAD + Harmony/FOV: each measurement MAD-robustized against its own DMSO wells, "
        "all measurements of the timepoint concatenated, Harmony on replica and FOV, then FOVs "
        "averaged into wells). Parquet dataset `normalized_profiles` in the cytomining convention."
    ),
)
def normalized_profiles(
    context: dg.AssetExecutionContext, config: NormalizationConfig, lcd: LcdHome
) -> dg.MaterializeResult:
    dose, timepoint = condition_of(context)
    fovs = timepoint_fov_profiles(lcd, timepoint)
    t0 = time.perf_counter()
    wells, result = condition_wells(fovs, dose, ChainSettings(method=config.method))
    lcd.warehouse().write_parquet_partition("normalized_profiles", {"dose": dose, "timepoint": timepoint}, wells)
    X = wells.select(result.features).to_numpy()
    diag = result.diagnostics
    return dg.MaterializeResult(
        metadata={
            "method": config.method,
            "wells": wells.height,
            "plates": wells["Metadata_plate"].n_unique(),
            "fovs_normalized_together": fovs.height,
            "features": len(result.features),
            "dropped_features": len(result.dropped_features),
            "seconds": round(time.perf_counter() - t0, 2),
            "notes": "; ".join(result.notes) or "none",
            "diagnostics": md.table(diag) if isinstance(diag, pl.DataFrame) else str(diag),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="profiles_finite",
                passed=bool(np.isfinite(X).all()),
                description=f"{int((~np.isfinite(X)).sum())} non-finite values",
            )
        ],
    )


@dg.asset(
    partitions_def=condition_partitions,
    group_name=GROUP,
    kinds={"numpy", "duckdb"},
    pool=WAREHOUSE_POOL,
    retry_policy=STEP_RETRIES,
    deps=["normalized_profiles"],
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        _check("every_compound_scored", "activity",
               "Every compound on the layouts of this condition's plates has an mAP-ES."),
        _check("no_nan", "activity",
               "No NaN mAP or mAP-ES among scorable compounds (those with a usable query: a "
               "compound on a single plate at this dose has no positive and is listed as "
               "unscorable instead)."),
        _check(
            "dmso_null_centred",
            "activity",
            f"Half of each plate's DMSO wells, held out as a pseudo-compound, must score "
            f"|mAP-ES| < {NULL_ES_LIMIT} against the null from the other half.",
        ),
    ],
    description=(
        "Phenotypic activity of every compound at one dose × timepoint: 1000 draws of (query, 3 "
        "positives from another layout and replica, 31 DMSO negatives from the query's plate), "
        "cosine AP, mAP with its 95 % draw interval, the DMSO null, mAP-ES (Cohen's d) and the "
        "call (mAP-ES ≥ 0.8). Single-replica doses fall back to positives from other plates "
        "(`fallback`). Warehouse tables `activity`, `activity_null`; draws in Parquet `activity_draws`."
    ),
)
def activity(context: dg.AssetExecutionContext, config: ActivityConfig, lcd: LcdHome,
             compute: Compute) -> dg.MaterializeResult:
    dose, timepoint = condition_of(context)
    part = {"dose": dose, "timepoint": timepoint}
    wh = lcd.warehouse()
    # the Parquet partition carries its hive keys as plain columns; they are not features
    profiles = wh.read_parquet_partition("normalized_profiles", part).drop(list(part), strict=False)
    t0 = time.perf_counter()
    res = compute.run(context, condition_activity, profiles, config.settings(), keep_draws=True)
    elapsed = time.perf_counter() - t0
    # the draws first, then both tables in one transaction, the commit point of the partition: a
    # crash before it leaves the tables as they were (and the run failed), the next run rewrites all
    wh.write_parquet_partition("activity_draws", part, res.draws)
    wh.replace_partitions({"activity": res.activity, "activity_null": res.null}, part)
    holdout_es = _dmso_holdout_es(profiles, config.settings())
    act = res.activity
    meta: dict = {
        "compounds": act.height,
        "active": int(act["active"].sum()),
        "fallback_positives": bool(act["fallback"].any()),
        "mean_map": float(act["map_mean"].drop_nans().mean() or 0.0),
        "seconds": round(elapsed, 2),
        "dmso_holdout_map_es": holdout_es,
        "top": md.table(act.sort("map_es", descending=True, nulls_last=True).select(
            ["compound", "moa", "map_mean", "map_ci_low", "map_ci_high", "map_es", "active", "fallback"]), 12),
        "unscorable": ", ".join(sorted(act.filter(pl.col("n_draws") == 0)["compound"].to_list())) or "none",
        **_truth_metadata(lcd, act, config.threshold),
        **_ap_plot(lcd, res.draws, act, dose, timepoint),
    }
    missing = _unscored_compounds(lcd, profiles, act)
    scorable = act.filter(pl.col("n_draws") > 0)
    n_nan = int(scorable.filter(pl.col("map_es").is_nan() | pl.col("map_mean").is_nan()).height)
    return dg.MaterializeResult(metadata=meta, check_results=[
        dg.AssetCheckResult(check_name="every_compound_scored", passed=not missing,
                            description=f"missing: {missing[:10]}" if missing else "all scored"),
        dg.AssetCheckResult(check_name="no_nan", passed=n_nan == 0, description=f"{n_nan} rows with NaN"),
        dg.AssetCheckResult(check_name="dmso_null_centred", passed=bool(abs(holdout_es) < NULL_ES_LIMIT),
                            description=f"held-out DMSO mAP-ES {holdout_es:.3f}"),
    ])


def _dmso_holdout_es(profiles: pl.DataFrame, settings: ChainSettings) -> float:
    """mAP-ES of half of each plate's DMSO wells held out as a pseudo-compound (only the DMSO
    wells matter to it: score just the pseudo-compound)."""
    dmso = profiles.filter(pl.col("Metadata_role") == "negative_control")
    scored = condition_activity(dmso_holdout_profiles(dmso, seed=settings.seed), settings).activity
    holdout = scored.filter(pl.col("compound") == HOLDOUT)
    return float(holdout["map_es"][0]) if holdout.height else float("nan")


def _truth_metadata(lcd: LcdHome, act: pl.DataFrame, threshold: float) -> dict:
    truth = _truth(lcd)
    if truth is None:
        return {}
    return {"vs_truth": dg.MetadataValue.json(nan_safe(activity_against_truth(act, truth, threshold)))}


def _ap_plot(lcd: LcdHome, draws: pl.DataFrame, act: pl.DataFrame, dose: str, timepoint: str) -> dict:
    """The AP distribution of the most active compound against the DMSO null, as an image."""
    ranked = act.filter(pl.col("map_es").is_finite()).sort("map_es", descending=True)
    if not ranked.height:
        return {}
    top = ranked["compound"][0]
    comp = draws.filter(pl.col("compound") == top)["ap"].to_numpy()
    null = draws.filter(pl.col("compound").is_null())["ap"].to_numpy()
    return {"ap_distribution": md.image(
        ap_distribution(comp, null, f"{top} at {dose} {timepoint}: mAP-ES {ranked['map_es'][0]:.2f}"),
        "AP distribution of the most active compound vs the DMSO null",
        lcd.previews_dir / "activity" / dose / timepoint / "ap_distribution.png")}


def _unscored_compounds(lcd: LcdHome, profiles: pl.DataFrame, act: pl.DataFrame) -> list[str]:
    """Compounds on the layouts of this condition's plates that have no activity row."""
    layouts = profiles["Metadata_layout"].unique().to_list()
    on_plates = lcd.screen().layouts.filter(pl.col("layout").is_in(layouts) & (pl.col("role") != "negative_control"))
    return sorted(set(on_plates["compound"].to_list()) - set(act["compound"].to_list()))


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["activity"],
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Fraction of compounds called active per dose × timepoint over mAP-ES thresholds 0.2–2.0 "
        "(table `activity_sensitivity`), with the sensitivity curves, the dose × time heatmap of "
        "mAP-ES per compound and, on synthetic screens, the recovery of the true activity."
    ),
)
def activity_sensitivity(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    act = wh.query("SELECT * FROM activity")
    sens = string_keys(sensitivity(act))
    wh.replace_table("activity_sensitivity", sens)
    doses = lcd.screen().doses()
    previews = lcd.previews_dir / "activity"
    meta = {
        "conditions": sens.select(["dose", "timepoint"]).unique().height,
        "at_0.8": md.table(sens.filter((pl.col("threshold") - 0.8).abs() < 1e-9)
                           .select(["dose", "timepoint", "n_active", "n_compounds", "sensitivity"])
                           .sort(["dose", "timepoint"])),
        "sensitivity_curves": md.image(sensitivity_curves(sens), "sensitivity vs threshold", previews / "sensitivity.png"),
        "map_es_heatmap": md.image(es_heatmap(act, doses), "mAP-ES per compound over dose × time", previews / "heatmap.png"),
    }
    truth = _truth(lcd)
    if truth is not None:
        meta["vs_truth"] = dg.MetadataValue.json(nan_safe(activity_against_truth(act, truth)))
    return dg.MaterializeResult(metadata=meta)


def _comparison_rows(method: str, act: pl.DataFrame, truth: pl.DataFrame | None) -> list[dict]:
    """One row per dose × timepoint: mean mAP, fraction active, AUROC against the truth."""
    rows = []
    for (dose, timepoint), g in act.group_by(["dose", "timepoint"], maintain_order=True):
        score = activity_against_truth(g, truth) if truth is not None else {}
        g = g.filter(pl.col("n_draws") > 0)  # compounds on one plate only have no mAP
        rows.append({"method": method, "dose": dose, "timepoint": timepoint,
                     "mean_map": float(g["map_mean"].mean()), "fraction_active": float(g["active"].mean()),
                     "n_compounds": g.height, "auroc_vs_truth": score.get("auroc")})
    return rows


class ComparisonConfig(dg.Config):
    """Draws per compound in the comparison (fewer than the activity asset's 1000 is fine here)."""

    n_draws: int = 1000
    seed: int = 0


@dg.asset(
    group_name=GROUP,
    kinds={"harmonypy", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["fov_embeddings"],
    description=(
        "The paper's Table 1 shape: mean mAP (and fraction active, and on synthetic screens the "
        "AUROC of mAP-ES against the true activity) per normalization method × dose × timepoint, "
        "every method run on the same FOV profiles. Table `normalization_comparison`."
    ),
)
def normalization_comparison(
    context: dg.AssetExecutionContext, config: ComparisonConfig, lcd: LcdHome
) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    truth = _truth(lcd)
    fovs = to_cytomining(wh.query("SELECT * FROM fov_embeddings ORDER BY timepoint, plate, well, field"))
    rows = []
    for method in METHODS:
        act = run_chain(fovs, ChainSettings(method=method, n_draws=config.n_draws, seed=config.seed)).activity
        rows += _comparison_rows(method, act, truth)
        context.log.info(f"{method}: mean mAP {act['map_mean'].mean():.3f}")
    table = pl.DataFrame(rows, schema_overrides={"auroc_vs_truth": pl.Float64})
    wh.replace_table("normalization_comparison", table)
    overall = table.group_by("method").agg(
        pl.col("mean_map").mean(), pl.col("fraction_active").mean(), pl.col("auroc_vs_truth").mean()
    ).sort("mean_map", descending=True)
    by_dose = table.group_by(["method", "dose"]).agg(pl.col("mean_map").mean()).sort(["dose", "method"])
    return dg.MaterializeResult(
        metadata={
            "best_method": overall["method"][0],
            "overall": md.table(overall),
            "mean_map_by_dose": md.image(
                grouped_bars(by_dose, "dose", "method", "mean_map", "mean mAP per dose and normalization"),
                "mean mAP per dose and method", lcd.previews_dir / "activity" / "normalization.png"),
        }
    )
