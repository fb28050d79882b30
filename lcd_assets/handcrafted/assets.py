"""The handcrafted-feature baseline (SPEC §4.7): the per-FOV features (assets `fov_features` and
`cell_features`, group handcrafted, computed by the acquisition pass `kept_tile_pass` from the same
decoded tiles as the embeddings) through the model's own downstream chain
(:mod:`lcd_core.pipeline.downstream`), compared with the model (:mod:`lcd_core.pipeline.baseline`)."""

import time

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome
from lcd_core.cells import CELL_FEATURE_NAMES
from lcd_core.handcrafted.features import FEATURE_NAMES
from lcd_core.io.warehouse import Warehouse
from lcd_core.pipeline import baseline
from lcd_core.pipeline.downstream import ChainSettings
from lcd_core.plots import confusion_heatmap, grouped_bars, metric_curves

GROUP = "handcrafted"
DEFAULTS = ChainSettings()


class BaselineConfig(dg.Config):
    """The downstream chain of the handcrafted baseline: the model's own settings by default
    (MAD + Harmony/FOV, 1,000 draws); the JUMP recipe's MAD + sphering always runs as an extra row."""

    method: str = DEFAULTS.method
    n_draws: int = DEFAULTS.n_draws
    threshold: float = DEFAULTS.threshold
    seed: int = DEFAULTS.seed

    def settings(self) -> ChainSettings:
        return ChainSettings(method=self.method, n_draws=self.n_draws, threshold=self.threshold, seed=self.seed)


def _fov_profiles(wh: Warehouse, log) -> pl.DataFrame:
    """`fov_features`, joined with `cell_features` when every FOV was segmented, Metadata_-prefixed."""
    fovs = wh.query("SELECT * FROM fov_features ORDER BY timepoint, plate, well, field")
    cells = wh.query("SELECT * FROM cell_features") if "cell_features" in wh.tables() else None
    fovs, missing = baseline.join_cell_features(fovs, cells, CELL_FEATURE_NAMES)
    if missing.height:
        log.warning(f"cell_features lacks FOVs of {missing.height} measurements "
                    f"({sorted(f'{p}|{t}' for p, t in missing.iter_rows())[:5]}…): the "
                    "RayNet rows are left out; run the optional cell_segmentation job for every measurement")
    features = set(FEATURE_NAMES) | set(CELL_FEATURE_NAMES)
    return fovs.rename({c: f"Metadata_{c}" for c in fovs.columns if c not in features})


def _truth(lcd: LcdHome, name: str) -> pl.DataFrame | None:
    path = lcd.truth_dir / f"{name}.parquet"
    return pl.read_parquet(path) if path.exists() else None


def _truth_fovs(lcd: LcdHome, fovs: pl.DataFrame) -> pl.DataFrame | None:
    cells, fov_truth = _truth(lcd, "cells"), _truth(lcd, "fovs")
    return None if cells is None or fov_truth is None else baseline.truth_morphology_profiles(fovs, cells, fov_truth)


def _model_readout(wh: Warehouse, log) -> dict[str, baseline.Readout]:
    """The model's row, from its own assets' tables (empty before `moa_predictions`)."""
    tables = set(wh.tables())
    if not {"moa_predictions", "moa_polypharmacology", "activity"} <= tables:
        log.warning("no model moa_predictions yet: the comparison holds the handcrafted rows only")
        return {}
    names = wh.query("SELECT DISTINCT checkpoint FROM tile_embeddings")["checkpoint"].drop_nulls().to_list() \
        if "tile_embeddings" in tables else []
    label = "ViT " + ("+".join(sorted(names)) if names else "(unknown checkpoint)")
    return {label: baseline.Readout(wh.query("SELECT * FROM activity"), wh.query("SELECT * FROM moa_predictions"),
                                    wh.query("SELECT * FROM moa_polypharmacology"))}


@dg.asset(
    group_name=GROUP,
    kinds={"scikitlearn", "duckdb"},
    pool=WAREHOUSE_POOL,
    deps=["fov_features", "cell_features", "moa_predictions"],
    description=(
        "The handcrafted features of the tiles (no trained model) "
        "through the model's own downstream chain: per timepoint the normalization (MAD + "
        "Harmony/FOV, as the model), per dose × timepoint mAP / mAP-ES, then the MoA probes, "
        "incremental aggregation and polypharmacology. Tables `handcrafted_profiles` (normalized, every "
        "dose × timepoint), `handcrafted_activity`, "
        "`handcrafted_moa_predictions`, `handcrafted_moa_metrics`, `handcrafted_polypharmacology`, "
        "and the comparison with the model: `moa_feature_comparison` (weighted F1, accuracy, top-3 "
        "of the final calls per feature set) and `moa_feature_mcnemar` (McNemar's test on the same "
        "compounds). Extra rows through the same chain: the handcrafted features normalized as the "
        f"JUMP recipe does (`{baseline.HANDCRAFTED_SPHERIZED}`); where the optional `cell_segmentation` "
        f"job ran, `{baseline.HANDCRAFTED_WITH_CELLS}` and `{baseline.CELL_SEGMENTATION}`; and on a synthetic "
        f"screen `{baseline.TRUTH_MORPHOLOGY}` (uses the generator's truth: what perfect "
        "segmentation would give); `polypharmacology_vs_truth` scores both polypharmacology "
        "readings of every feature set against the planted two-MoA compounds."
    ),
)
def handcrafted_baseline(context: dg.AssetExecutionContext, config: BaselineConfig,
                         lcd: LcdHome) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    wh.refresh_views(["fov_features", "cell_features"])
    fovs = _fov_profiles(wh, context.log)
    classes = lcd.moa_classes()
    sets, notes = baseline.feature_set_inputs(fovs, CELL_FEATURE_NAMES, _truth_fovs(lcd, fovs), config.settings())
    for note in notes:
        context.log.warning(note)
    t0 = time.perf_counter()
    results = baseline.run_feature_sets(sets, classes=classes, holdout_compounds=lcd.holdout_compounds())
    main = results[baseline.HANDCRAFTED]
    wh.replace_tables({  # one transaction; handcrafted_profiles (every timepoint): MolCLIP's selectable input
        "handcrafted_activity": main.activity, "handcrafted_profiles": main.profiles,
        "handcrafted_moa_predictions": main.moa.predictions, "handcrafted_moa_metrics": main.moa.metrics,
        "handcrafted_polypharmacology": main.moa.polypharmacology})
    readouts = {**_model_readout(wh, context.log), **{n: baseline.readout(r) for n, r in results.items()}}
    cmp = baseline.compare_readouts(readouts, classes=classes, truth_conditions=_truth(lcd, "conditions"),
                                    truth_compounds=_truth(lcd, "compounds"), threshold=config.threshold)
    wh.replace_tables({"polypharmacology_vs_truth": cmp.poly_truth, "moa_feature_comparison": cmp.scores,
                       "moa_feature_mcnemar": cmp.tests})  # mcnemar empty with one feature set: never stale
    return dg.MaterializeResult(metadata={"seconds": round(time.perf_counter() - t0, 1),
                                          **_metadata(lcd, main, cmp)})


def _metadata(lcd: LcdHome, main, cmp: baseline.Comparison) -> dict:
    """Counts, the comparison tables and the figures of the baseline, for the UI."""
    previews, result = lcd.previews_dir / "handcrafted", main.moa
    meta: dict = {
        "conditions": main.activity.select("dose", "timepoint").unique().height,
        "active_calls": int(main.activity["active"].sum()),
        "comparison": md.table(cmp.scores, 40),
        "mcnemar": md.table(cmp.tests, 20) if cmp.tests.height else "only one feature set",
        "polypharmacology_vs_truth": md.table(cmp.poly_truth, 20) if cmp.poly_truth.height else "no ground truth",
        "summary": dg.MetadataValue.json(cmp.summary),
        "metric_curves": md.image(metric_curves(result.metrics), "handcrafted: F1 / accuracy / top-3 vs doses added",
                                  previews / "metrics.png"),
    }
    if cmp.scores.height:
        final = cmp.scores.filter(pl.col("mode") == "incremental").with_columns(
            pl.concat_str([pl.col("set"), pl.lit(" F1")]).alias("metric"))
        meta["comparison_plot"] = md.image(
            grouped_bars(final, "metric", "features", "weighted_f1", "MoA weighted F1 (all doses) by feature set"),
            "weighted F1 of the aggregated prediction per feature set", previews / "comparison.png")
    for set_name in result.confusion["set"].unique().to_list() if result.confusion.height else []:
        c = result.confusion.filter((pl.col("set") == set_name) & (pl.col("mode") == "incremental"))
        c = c.filter(pl.col("step") == c["step"].max())
        meta[f"confusion_{set_name}"] = md.image(confusion_heatmap(c), f"handcrafted {set_name}: aggregated confusion",
                                                 previews / f"confusion_{set_name}.png")
    return meta
