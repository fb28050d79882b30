"""MoA classification (SPEC §4.8): per-condition probes → incremental predictions → metrics."""

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.compute import STEP_RETRIES, Compute
from lcd_assets.partitions import condition_of, condition_partitions
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome, local_processes
from lcd_core import moa
from lcd_core.ground_truth import polypharmacology_against_truth
from lcd_core.pipeline.downstream import string_keys
from lcd_core.plots import confusion_heatmap, metric_curves

GROUP = "moa"


def _poly_truth(lcd: LcdHome, poly: pl.DataFrame) -> dict:
    """On a synthetic screen: how both polypharmacology readings recover the planted compounds."""
    path = lcd.truth_dir / "compounds.parquet"
    if not path.exists():
        return {}
    return {"polypharmacology_vs_truth": md.table(polypharmacology_against_truth(poly, pl.read_parquet(path)))}


@dg.asset(
    partitions_def=condition_partitions,
    group_name=GROUP,
    kinds={"scikitlearn", "duckdb"},
    pool=WAREHOUSE_POOL,
    retry_policy=STEP_RETRIES,
    deps=["normalized_profiles", "activity"],
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Linear probes of one dose × timepoint: a multinomial logistic regression on the normalized "
        "well profiles of the compounds active here (plus DMSO as a class), 5-fold CV grouped by "
        "compound on the training set; holdout compounds predicted by the probe of the active "
        "training compounds. Table `moa_probe_results` (softmax per class per compound)."
    ),
)
def moa_probes(context: dg.AssetExecutionContext, lcd: LcdHome, compute: Compute) -> dg.MaterializeResult:
    dose, timepoint = condition_of(context)
    part = {"dose": dose, "timepoint": timepoint}
    wh = lcd.warehouse()
    profiles = wh.read_parquet_partition("normalized_profiles", part).drop(list(part), strict=False)
    activity = wh.query("SELECT * FROM activity WHERE dose = $dose AND timepoint = $timepoint", part)
    table = string_keys(compute.run(context, moa.condition_probes, profiles, activity, classes=lcd.moa_classes(),
                                    holdout_compounds=lcd.holdout_compounds()))
    wh.replace_partition("moa_probe_results", table, part)
    skipped = table.filter(pl.col("status") == "skipped")
    scored = table.filter(pl.col("predicted").is_not_null() & pl.col("moa").is_not_null())
    return dg.MaterializeResult(
        metadata={
            "compounds": table["compound"].n_unique(),
            "cv_compounds": table.filter(pl.col("source") == "cv").height,
            "holdout_compounds": table.filter(pl.col("source") == "holdout").height,
            "skipped": skipped["reason"][0] if skipped.height else "no",
            "accuracy_here": float((scored["moa"] == scored["predicted"]).mean()) if scored.height else 0.0,
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["moa_probes", "normalized_profiles", "activity"],
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Each compound's MoA over the whole dose × time landscape: per-condition softmax outputs "
        "averaged with weights max(mAP-ES, 0), adding doses one at a time (`mode = incremental`, "
        "`step` = doses included), next to each dose alone (`mode = single`); top-2 MoAs; holdout "
        "or CV. Tables `moa_predictions` and `moa_polypharmacology` (top-2 per condition and "
        "the explain-away second MoA, read at the two highest doses by a probe per timepoint pooled "
        "over them; flags `stable_top2` and `stable_residual` over the high doses, scored against "
        "the planted two-MoA compounds on a synthetic screen)."
    ),
)
def moa_predictions(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    per_condition = wh.query("SELECT * FROM moa_probe_results")
    activity = wh.query("SELECT * FROM activity")
    classes = lcd.moa_classes()
    predictions = moa.aggregate_incremental(per_condition, activity, classes=classes)
    high = moa.high_dose_keys(per_condition)
    conditions = per_condition.filter(pl.col("dose").is_in(high)).select("dose", "timepoint").unique()
    profiles = pl.concat([wh.read_parquet_partition("normalized_profiles", {"dose": d, "timepoint": t}).drop(
        ["dose", "timepoint"], strict=False) for d, t in sorted(conditions.iter_rows())], how="diagonal_relaxed")
    per_condition = moa.explain_away_readings(per_condition, profiles, activity, classes=classes, high_doses=high,
                                              holdout_compounds=lcd.holdout_compounds(), workers=local_processes())
    poly = moa.polypharmacology(per_condition, high_doses=high, classes=classes)
    wh.replace_tables({"moa_predictions": predictions, "moa_polypharmacology": poly})  # one transaction
    flagged = poly.filter(pl.col("stable_top2") | pl.col("stable_residual")).select(
        ["compound", "stable_pair", "stable_residual_pair"]).unique().sort("compound")
    final = predictions.filter(
        (pl.col("mode") == "incremental") & (pl.col("step") == pl.col("step").max().over("compound", "set"))
    )
    return dg.MaterializeResult(
        metadata={
            "compounds": final.height,
            "polypharmacology_flagged": md.table(flagged),
            **_poly_truth(lcd, poly),
            "final_predictions": md.table(
                final.select(["compound", "set", "moa", "predicted", "top2_1", "top2_2"]), 40),
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"scikitlearn", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["moa_predictions"],
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Weighted F1, accuracy and top-3 accuracy as doses are added (the paper's Fig. 3A shape), "
        "per set (train CV / holdout) and mode (incremental / single dose), confusion matrices, and "
        "McNemar's test of incremental vs single-highest-dose predictions on the same compounds. "
        "Tables `moa_metrics`, `moa_confusion`."
    ),
)
def moa_metrics(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    predictions = wh.query("SELECT * FROM moa_predictions")
    classes = lcd.moa_classes()
    scores = moa.metrics(predictions, classes=classes)
    conf = moa.confusion(predictions, classes=classes)
    wh.replace_tables({"moa_metrics": scores, "moa_confusion": conf})
    meta: dict = {"metrics": md.table(scores, 40)}
    previews = lcd.previews_dir / "moa"
    meta["metric_curves"] = md.image(metric_curves(scores), "F1 / accuracy / top-3 vs doses added",
                                     previews / "metrics.png")
    for set_name in scores["set"].unique().to_list():
        top = scores.filter((pl.col("set") == set_name) & (pl.col("mode") == "incremental"))["step"].max()
        cm = conf.filter((pl.col("set") == set_name) & (pl.col("mode") == "incremental") & (pl.col("step") == top))
        meta[f"confusion_{set_name}"] = md.image(
            confusion_heatmap(cm), f"{set_name}: confusion of the aggregated prediction",
            previews / f"confusion_{set_name}.png")
        incr = predictions.filter((pl.col("set") == set_name) & (pl.col("mode") == "incremental")
                                  & (pl.col("step") == top))
        single = moa.single_highest(predictions.filter(pl.col("set") == set_name))
        try:
            test = moa.mcnemar_predictions(incr, single)
            meta[f"mcnemar_{set_name}_incremental_vs_single"] = dg.MetadataValue.json(
                {"b": test.b, "c": test.c, "statistic": test.statistic, "p_value": test.p_value,
                 "method": test.method})
        except ValueError as exc:
            context.log.warning(f"McNemar skipped for {set_name}: {exc}")
    return dg.MaterializeResult(metadata=meta)
