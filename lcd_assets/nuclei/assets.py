"""Nuclei, confluency and the cell-count baseline (SPEC §4.6, §4.9): unsupervised nuclei per FOV
(partition plate × timepoint), then across the screen the cell-count activity, % inhibition and
the sensitivity comparison with mAP-ES. Thin glue over :mod:`lcd_core.nuclei`,
:mod:`lcd_core.pipeline.nuclei` and :mod:`lcd_core.profiling.cell_count`."""

import functools

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.compute import STEP_RETRIES, Compute
from lcd_assets.partitions import measurement_of, measurement_partitions, partitioned_check
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome, NucleiSettings
from lcd_core.nuclei.measurement import get_method
from lcd_core.pipeline import cell_readouts as readouts
from lcd_core.pipeline import nuclei as steps
from lcd_core.pipeline.acquisition import brightfield_of
from lcd_core.plots import nuclei_overlay, sensitivity_figure
from lcd_core.tiles import partition as acq

GROUP = "nuclei"
_check_spec = functools.partial(partitioned_check, partitions_def=measurement_partitions, asset="fov_nuclei")
#: FOVs whose labels are scored against a synthetic truth per partition
SCORED_FOVS = 24


def _partition(lcd: LcdHome, plate: str, timepoint: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    wh, params = lcd.warehouse(), {"plate": plate, "timepoint": timepoint}
    index = wh.query("SELECT * FROM image_index WHERE plate = $plate AND timepoint = $timepoint", params)
    if not index.height:
        raise ValueError(f"no image_index rows for {plate} × {timepoint}: materialize image_index first")
    kept = wh.query("SELECT well, field FROM tiles WHERE plate = $plate AND timepoint = $timepoint AND kept", params)
    bf = brightfield_of(index)
    return index.filter(pl.col("channel") == bf), acq.fov_paths(index, bf), kept


@dg.asset(
    partitions_def=measurement_partitions,
    group_name=GROUP,
    kinds={"scikitimage", "duckdb", "parquet"},
    pool=WAREHOUSE_POOL,
    retry_policy=STEP_RETRIES,
    deps=["image_index", "tiles"],
    check_specs=[
        _check_spec("counts_plausible", description=(
            "Every FOV's count is below what its area holds at this pixel size, and no FOV whose tiles "
            "passed QC has zero nuclei (a warning naming the FOVs).")),
        _check_spec("count_vs_truth", description=(
            "On a synthetic screen: Pearson r of the per-FOV count with the generator's live nuclei and the "
            "median IoU of their masks (reported, not blocking; uses the truth).")),
    ],
    description=(
        "Nuclei of every brightfield FOV without labels or training (SPEC §4.9): the `nuclei` resource's "
        "method (default `brightfield`, training-free; `patches`: objects discovered in the ViT's patch "
        "features), sizes from the index's pixel size in µm. Table `fov_nuclei` (per FOV: `n_nuclei`, "
        "`confluency`, `nucleus_area_um2_median`, lineage) and Parquet dataset `nuclei` (per nucleus: "
        "centre `x` = column, `y` = row in pixels of the original image, `area_um2`)."
    ),
)
def fov_nuclei(context: dg.AssetExecutionContext, lcd: LcdHome, nuclei: NucleiSettings,
               compute: Compute) -> dg.MaterializeResult:
    plate, timepoint = measurement_of(context)
    index, fovs, kept = _partition(lcd, plate, timepoint)
    pixel_um, shape = steps.pixel_size_um(index), (int(index["size_y"].max()), int(index["size_x"].max()))
    done = compute.run(context, steps.nuclei_pass, fovs, pixel_um, get_method(nuclei.method), keep_labels=SCORED_FOVS)
    wh, where = lcd.warehouse(), {"plate": plate, "timepoint": timepoint}
    wh.replace_partition("fov_nuclei", done.fovs.with_columns(pl.lit(nuclei.method).alias("method")), where)
    wh.write_parquet_partition("nuclei", where, done.nuclei)
    wh.refresh_views(["nuclei"])
    plaus = steps.plausibility(done.fovs, shape, pixel_um, kept)
    meta = {"fovs": done.fovs.height, "nuclei": done.nuclei.height, "method": nuclei.method,
            "pixel_um": round(pixel_um, 4), "fovs_per_s": round(done.fovs.height / max(done.seconds, 1e-9), 1),
            "median_count": float(done.fovs["n_nuclei"].median() or 0),
            "median_confluency": round(float(done.fovs["confluency"].median() or 0), 3)}
    if done.overlay is not None:
        meta["overlay"] = md.image(nuclei_overlay(*done.overlay), "detected nuclei (outlines) on the in-focus plane",
                                   lcd.previews_dir / "nuclei" / plate / timepoint / "overlay.png")
    return dg.MaterializeResult(metadata=meta, check_results=[
        _plausibility_check(plaus), _truth_check(lcd, done, plate, timepoint, shape)])


def _plausibility_check(p: steps.Plausibility) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="counts_plausible", passed=p.passed, severity=dg.AssetCheckSeverity.WARN,
        description=(f"max plausible count {p.max_count}; over it: {', '.join(p.over[:10]) or 'none'}; "
                     f"no nucleus although QC kept tiles: {', '.join(p.empty_kept[:10]) or 'none'}"),
        metadata={"max_count": p.max_count, "fovs_over": len(p.over), "empty_kept_fovs": len(p.empty_kept)})


def _truth_check(lcd: LcdHome, done: steps.NucleiPass, plate: str, timepoint: str,
                 shape: tuple[int, int]) -> dg.AssetCheckResult:
    fovs_path, cells_path = lcd.truth_dir / "fovs.parquet", lcd.truth_dir / "cells.parquet"
    if not fovs_path.exists() or not cells_path.exists():
        return dg.AssetCheckResult(check_name="count_vs_truth", passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   description="no synthetic truth: nothing to compare")
    mine = (pl.col("plate") == plate) & (pl.col("timepoint") == timepoint)
    score = steps.agreement_with_truth(done, pl.read_parquet(fovs_path).filter(mine),
                                       pl.scan_parquet(cells_path).filter(mine).collect(), shape)
    return dg.AssetCheckResult(
        check_name="count_vs_truth", passed=True, severity=dg.AssetCheckSeverity.WARN,
        description=f"count r {score['count_r']}, median IoU {score['median_iou']} ({score['fovs']} FOVs)",
        metadata={k: v for k, v in score.items() if v is not None})


# --------------------------------------------------------------------------------------------
# across the screen: the cell-count baseline, % inhibition, and every readout's sensitivity


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["fov_nuclei", "tiles"],
    description=(
        "The cell-count baseline (SPEC §4.6): each QC-kept FOV's nuclei count z-scored against the DMSO FOVs "
        "of its plate × timepoint; per compound × dose × timepoint the 95 % bootstrap interval of the median z "
        "over all its FOVs; active when the upper bound < 0. Table `cell_count_activity`. And % inhibition "
        "(100 · (mean_DMSO − x) / mean_DMSO) of count and confluency per condition, table `nuclei_inhibition`, "
        "with the confluency-vs-count correlation (the paper: r = 0.83)."
    ),
)
def cell_count_activity(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    fovs = readouts.qc_kept_fovs(wh.query("SELECT * FROM fov_nuclei"),
                                 wh.query("SELECT plate, timepoint, well, field FROM tiles WHERE kept"))
    out = readouts.cell_readouts(fovs)
    wh.replace_tables({"cell_count_activity": out.count_activity, "nuclei_inhibition": out.inhibition})
    act = out.count_activity
    return dg.MaterializeResult(metadata={
        "fovs": fovs.height, "conditions": act.height, "active": int(act["active"].sum()),
        "active_by_condition": md.table(act.group_by("dose", "timepoint").agg(
            pl.col("active").sum().alias("active"), pl.len().alias("compounds")).sort("timepoint", "dose")),
        "inhibition_correlation": md.table(out.correlation),
    })


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "copairs"},
    pool=WAREHOUSE_POOL,
    deps=["activity", "normalized_profiles", "cell_count_activity", "handcrafted_baseline"],
    description=(
        "The paper's claim, per dose × timepoint: the fraction of compounds called active by mAP-ES of the "
        "model, by mAP-ES of the handcrafted features, by the cell count, and by the JUMP recipe's reading of "
        "the same model profiles (copairs mAP with FDR-corrected p-values, the measure most labs use), with "
        "Wilson intervals; on a synthetic screen recall, false calls and the AUROC against the truth with "
        "bootstrap intervals; paired differences model − each other readout. Tables `sensitivity_comparison` "
        "and `copairs_activity`."
    ),
)
def sensitivity_comparison(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    tables = set(wh.tables())
    conditions = wh.query("SELECT DISTINCT dose, timepoint FROM activity ORDER BY timepoint, dose")
    copairs = readouts.copairs_reading(
        wh.read_parquet_partition("normalized_profiles", {"dose": d, "timepoint": t}).drop(
            ["dose", "timepoint"], strict=False)  # the path's hive keys: Metadata_dose / _timepoint hold them
        for d, t in conditions.iter_rows())
    wh.replace_table("copairs_activity", copairs)
    truth_path = lcd.truth_dir / "conditions.parquet"
    table = readouts.compare_sensitivity(
        wh.query("SELECT * FROM activity"),
        handcrafted=wh.query("SELECT * FROM handcrafted_activity") if "handcrafted_activity" in tables else None,
        cell_count=wh.query("SELECT * FROM cell_count_activity") if "cell_count_activity" in tables else None,
        copairs=copairs, truth=pl.read_parquet(truth_path) if truth_path.exists() else None)
    wh.replace_table("sensitivity_comparison", table)
    overall = table.filter(pl.col("dose") == "all").select(
        "kind", "readout", "n_compounds", "n_active", "fraction_active", "true_calls", "false_calls", "auroc")
    return dg.MaterializeResult(metadata={
        "overall": md.table(overall),
        "figure": md.image(sensitivity_figure(table), "fraction of compounds called active per dose and readout",
                           lcd.previews_dir / "nuclei" / "sensitivity.png"),
    })
