"""Normalization and activity assets through Dagster on the small synthetic screen."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lcd_assets.definitions import build_definitions
from lcd_assets.partitions import condition_key, measurement_key
from lcd_assets_tests.conftest import add_partitions, local_resources, new_home, run_job
from lcd_core.io.warehouse import Warehouse

PLATES = ["R01-L01", "R01-L02", "R02-L01", "R02-L02"]  # R01: 0.625 µM, R02: 10 µM
TP = "04h"


@pytest.fixture(scope="module")
def analysed(small_screen, segmentation_dir, tmp_path_factory):
    """Every plate at 4 h ingested (with the optional RayNet segmentation, for its labelled rows),
    then activity for 10 µM and the screen summary."""
    home = new_home(tmp_path_factory.mktemp("activity_home"), small_screen, segmentation_dir)
    defs = build_definitions(local_resources(home))
    with dg.instance_for_test() as instance:
        add_partitions(instance, PLATES, [TP], ["0.625uM", "10uM"])
        assert run_job(defs, "setup", instance).success
        assert run_job(defs, "segmentation_training", instance).success
        for plate in PLATES:
            assert run_job(defs, "acquisition", instance, measurement_key(plate, TP)).success
            assert run_job(defs, "cell_segmentation", instance, measurement_key(plate, TP)).success
        analysis = run_job(defs, "analysis", instance, condition_key("10uM", TP))
        summary = run_job(defs, "screen_summary", instance)
        yield home, defs, instance, analysis, summary


def test_activity_partition_scores_every_compound(analysed):
    home, _, _, analysis, _ = analysed
    assert analysis.success
    checks = {e.check_name: e.passed for e in analysis.get_asset_check_evaluations()}
    assert checks["every_compound_scored"] and checks["no_nan"] and checks["dmso_null_centred"]
    act = Warehouse(home).query("SELECT * FROM activity")
    assert act.height == 12 and set(act["dose"]) == {"10uM"}
    assert act["fallback"].all()  # the small preset runs each dose in one replica
    assert act["n_draws"].min() == 1000
    meta = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in analysis.get_asset_materialization_events()}
    truth = meta["activity"]["vs_truth"].value
    assert truth["n"] == 12 and truth["auroc"] is not None
    assert "data:image/png;base64," in meta["activity"]["ap_distribution"].value
    assert meta["normalized_profiles"]["method"].value == "mad_harmony_fov"


def test_rematerializing_activity_replaces_rows(analysed):
    home, defs, instance, _, _ = analysed
    before = Warehouse(home).query("SELECT * FROM activity ORDER BY compound")
    assert run_job(defs, "analysis", instance, condition_key("10uM", TP)).success
    after = Warehouse(home).query("SELECT * FROM activity ORDER BY compound")
    assert after.height == before.height
    assert after["map_es"].to_list() == before["map_es"].to_list()  # seeded


def test_normalization_comparison_has_every_method(analysed):
    home, _, _, _, summary = analysed
    assert summary.success
    table = Warehouse(home).query("SELECT * FROM normalization_comparison")
    assert set(table["method"]) == {"none", "mad", "harmony", "fastmnn", "mad_harmony_fov", "mad_spherize"}
    assert set(table["dose"]) == {"0.625uM", "10uM"}
    sens = Warehouse(home).query("SELECT * FROM activity_sensitivity")
    assert sens["threshold"].min() == pytest.approx(0.2) and sens["threshold"].max() == pytest.approx(2.0)
    assert ((sens["sensitivity"] >= 0) & (sens["sensitivity"] <= 1)).all()


def test_unknown_normalization_method_is_a_clear_error(analysed):
    _, defs, instance, _, _ = analysed
    res = defs.resolve_job_def("analysis").execute_in_process(
        instance=instance,
        partition_key=condition_key("10uM", TP),
        run_config={"ops": {"normalized_profiles": {"config": {"method": "zscore"}}}},
        raise_on_error=False,
    )
    assert not res.success
    err = str(next(e for e in res.all_events if e.is_step_failure).step_failure_data.error)
    assert "zscore" in err and "mad_harmony_fov" in err


def test_exported_profiles_feed_copairs_as_they_are(analysed, tmp_path):
    import pandas as pd
    from copairs.map import average_precision

    from lcd_assets.cli import main

    home = analysed[0]
    out = tmp_path / "profiles.csv"
    assert main(["--home", str(home), "export", "normalized_profiles", str(out), "--dose", "10uM"]) == 0
    df = pd.read_csv(out)
    meta = df.filter(like="Metadata_")
    feats = df.drop(columns=meta.columns).to_numpy()
    assert feats.shape[1] == 384 and set(meta["Metadata_dose"]) == {"10uM"}
    ap = average_precision(
        meta, feats, pos_sameby=["Metadata_compound"], pos_diffby=["Metadata_plate"],
        neg_sameby=["Metadata_plate"], neg_diffby=["Metadata_compound"],
    )
    assert len(ap) > 0 and ap["average_precision"].notna().any()


def test_moa_assets_predict_every_compound_and_score_them(analysed):
    home, _, _, analysis, summary = analysed
    wh = Warehouse(home)
    probes = wh.query("SELECT * FROM moa_probe_results")
    assert set(probes["dose"]) == {"10uM"} and probes["compound"].n_unique() == 12
    preds = wh.query("SELECT * FROM moa_predictions")
    final = preds.filter((preds["mode"] == "incremental"))
    assert final["compound"].n_unique() == 12  # unlabelled or inactive compounds predicted too
    scores = wh.query("SELECT * FROM moa_metrics")
    assert {"weighted_f1", "accuracy", "top3_accuracy"} <= set(scores.columns)
    assert ((scores["accuracy"] >= 0) & (scores["accuracy"] <= 1)).all()
    meta = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in summary.get_asset_materialization_events()}
    assert "data:image/png;base64," in meta["moa_metrics"]["metric_curves"].value


def test_handcrafted_baseline_runs_the_same_steps_and_is_compared_with_the_vit(analysed):
    from lcd_core.pipeline.baseline import (CELL_SEGMENTATION, HANDCRAFTED_SPHERIZED, HANDCRAFTED_WITH_CELLS,
                                            TRUTH_MORPHOLOGY)
    from lcd_core.cells import CELL_FEATURE_NAMES
    from lcd_core.handcrafted.features import FEATURE_NAMES

    home, _, _, _, summary = analysed
    wh = Warehouse(home)
    fovs = wh.query("SELECT * FROM fov_features")
    emb = wh.query("SELECT plate, well, field FROM fov_embeddings")
    assert fovs.height == emb.height and set(FEATURE_NAMES) <= set(fovs.columns)
    assert fovs.select(FEATURE_NAMES).to_numpy().std(axis=0).max() > 0
    act = wh.query("SELECT * FROM handcrafted_activity")
    assert set(act["dose"]) == {"0.625uM", "10uM"} and act.filter(act["dose"] == "10uM").height == 12
    preds = wh.query("SELECT * FROM handcrafted_moa_predictions")
    assert preds["compound"].n_unique() == 12
    comp = wh.query("SELECT * FROM moa_feature_comparison")
    assert set(comp["features"]) == {"handcrafted", HANDCRAFTED_SPHERIZED, "ViT untrained-vit-s16-seed0",
                                     HANDCRAFTED_WITH_CELLS, CELL_SEGMENTATION, TRUTH_MORPHOLOGY}
    cells = wh.query("SELECT * FROM cell_features")
    assert cells.height == fovs.height and np.isfinite(cells.select(CELL_FEATURE_NAMES).to_numpy()).all()
    # both polypharmacology readings of every feature set, scored against the planted compounds
    poly = wh.query("SELECT * FROM polypharmacology_vs_truth")
    assert set(poly["features"]) == set(comp["features"])
    assert set(poly["flag"]) == {"stable_top2", "stable_residual"} and poly.height == 2 * comp["features"].n_unique()
    planted = wh.query("SELECT DISTINCT compound FROM moa_predictions").join(
        pl.read_parquet(home / "truth" / "compounds.parquet").filter(pl.col("moa_secondary") != ""), on="compound")
    # a feature set may classify nothing on this small screen (no active compound to train a probe):
    # it keeps its rows with n = 0, and has no planted compound among its (absent) calls
    classified = set(comp.filter(pl.col("n") > 0)["features"])
    assert {"handcrafted", "ViT untrained-vit-s16-seed0"} <= classified
    assert set(poly.filter(pl.col("features").is_in(classified))["planted"]) == {planted.height}
    assert (poly.filter(~pl.col("features").is_in(classified))["planted"] == 0).all()
    assert (poly["recovered"] + poly["wrong_pair"] <= poly["planted"]).all()
    assert set(comp["mode"]) == {"incremental", "single_highest"}
    tests = wh.query("SELECT * FROM moa_feature_mcnemar")
    assert tests.height and ((tests["p_value"] >= 0) & (tests["p_value"] <= 1)).all()
    meta = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in summary.get_asset_materialization_events()}
    summary_json = meta["handcrafted_baseline"]["summary"].value
    assert set(summary_json) == set(comp["features"])
    assert summary_json["handcrafted"]["activity_auroc_vs_truth"] is not None
    assert "data:image/png;base64," in meta["handcrafted_baseline"]["metric_curves"].value


def test_handcrafted_profiles_join_the_cell_features_only_when_every_fov_has_them(analysed, caplog):
    import logging

    from lcd_assets.handcrafted.assets import _fov_profiles
    from lcd_core.cells import CELL_FEATURE_NAMES

    home = analysed[0]
    wh = Warehouse(home)
    full = _fov_profiles(wh, logging.getLogger("test"))
    assert set(CELL_FEATURE_NAMES) <= set(full.columns)
    assert full.height == Warehouse(home).query("SELECT count(*) AS n FROM fov_features")["n"][0]
    assert full.filter(pl.col("Metadata_role") == "negative_control").height > 0  # DMSO rows (no moa) kept
    part = {"plate": "R01-L01", "timepoint": TP}
    saved = wh.read_parquet_partition("cell_features", part)
    wh.delete_partition("cell_features", part)
    wh.refresh_views(["cell_features"])
    try:
        with caplog.at_level(logging.WARNING, logger="test"):
            partial = _fov_profiles(wh, logging.getLogger("test"))
        assert partial.height == full.height and not set(CELL_FEATURE_NAMES) & set(partial.columns)
        assert "R01-L01|04h" in caplog.text
    finally:
        wh.write_parquet_partition("cell_features", part, saved)
        wh.refresh_views(["cell_features"])


def test_cell_count_baseline_and_the_sensitivity_comparison(analysed):
    home, _, _, _, summary = analysed
    wh = Warehouse(home)
    count = wh.query("SELECT * FROM cell_count_activity")
    assert count.height > 0 and "DMSO" not in set(count["compound"])
    assert (count["ci_low"] <= count["median_z"]).all() and (count["median_z"] <= count["ci_high"]).all()
    assert (count["active"] == (count["ci_high"] < 0)).all()
    inhibition = wh.query("SELECT * FROM nuclei_inhibition")
    assert {"count_inhibition", "confluency_inhibition"} <= set(inhibition.columns)
    table = wh.query("SELECT * FROM sensitivity_comparison")
    readouts = set(table.filter(pl.col("kind") == "readout")["readout"])
    assert {"mAP-ES (model)", "mAP-ES (handcrafted)", "cell count"} <= readouts
    assert any(r.startswith("copairs") for r in readouts)
    overall = table.filter((pl.col("dose") == "all") & (pl.col("kind") == "readout"))
    assert overall["auroc"].is_not_null().all()  # a synthetic screen: every readout against the truth
    assert (overall["fraction_ci_low"] <= overall["fraction_active"]).all()
    assert "mAP-ES (model) − cell count" in set(table["readout"])
    meta = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in summary.get_asset_materialization_events()}
    assert "data:image/png;base64," in meta["sensitivity_comparison"]["figure"].value
    assert wh.query("SELECT count(*) AS n FROM copairs_activity")["n"][0] > 0


def test_attention_maps_of_active_compounds_and_dmso(analysed):
    home, _, _, _, summary = analysed
    meta = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in summary.get_asset_materialization_events()}["attention_maps"]
    active = Warehouse(home).query("SELECT DISTINCT compound FROM activity WHERE active")["compound"].to_list()
    assert meta["panels"].value == len(active) + (1 if active else 0)  # one per compound, DMSO at 4 h
    shown = [k for k in meta if k.startswith("attention_")]
    assert all("data:image/png;base64," in meta[k].value for k in shown)
    assert len(list((home / "previews" / "attention").glob("*.png"))) == meta["panels"].value
