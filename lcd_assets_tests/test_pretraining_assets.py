"""Pre-training assets through Dagster on the small synthetic screen: tile bank → per-variant
checkpoints → ablation table, and the embedding assets served by a trained checkpoint."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lcd_assets.definitions import build_definitions
from lcd_assets.partitions import measurement_key
from lcd_assets.resources import EmbeddingSettings, PretrainingSettings
from lcd_assets_tests.conftest import add_partitions, local_resources, new_home, run_job
from lcd_core.ssl.source import TileBank
from lcd_core.embedding.vit import load_checkpoint
from lcd_core.io.warehouse import Warehouse

# the small preset: R01 (0.625 µM) and R02 (10 µM), layouts L01, L02 and the holdout layout L03
PLATES = ["R01-L01", "R01-L02", "R01-L03", "R02-L01", "R02-L02", "R02-L03"]
TP = "04h"
VARIANTS = ["dino", "pa_dino_barlow_xb"]


def _defs(home, **pretraining):
    resources = local_resources(home)
    resources["pretraining"] = PretrainingSettings(num_threads=1, **pretraining)
    return build_definitions(resources)


@pytest.fixture(scope="module")
def pretrained(small_screen, tmp_path_factory):
    home = new_home(tmp_path_factory.mktemp("pretraining_home"), small_screen)
    defs = _defs(home, steps=3, n_draws=100)  # the chain's draws, fewer: the measure's plumbing is under test
    with dg.instance_for_test() as instance:
        add_partitions(instance, PLATES, [TP])
        assert run_job(defs, "setup", instance).success
        for plate in PLATES:
            assert run_job(defs, "acquisition", instance, measurement_key(plate, TP)).success
        bank = run_job(defs, "tile_bank", instance)
        runs = {v: run_job(defs, "pretraining", instance, v) for v in VARIANTS}
        ablation = run_job(defs, "ablation", instance)
        yield home, defs, instance, bank, runs, ablation


def _meta(result, key):
    return {m.asset_key.to_user_string(): m.materialization.metadata
            for m in result.get_asset_materialization_events()}[key]


def test_tile_bank_holds_every_kept_tile_with_its_split(pretrained):
    home, _, _, bank_run, _, _ = pretrained
    assert bank_run.success
    bank = TileBank(home / "ssl" / "tile_bank")
    kept = Warehouse(home).query("SELECT tile_id, layout FROM tiles WHERE kept")
    assert sorted(bank.table["tile_id"].to_list()) == sorted(kept["tile_id"].to_list())
    assert bank.tiles.dtype == np.float16 and bank.tiles.shape[1:] == (3, 224, 224)
    split = dict(zip(bank.table["tile_id"], bank.table["split"]))
    assert {split[t] for t, lay in kept.iter_rows() if lay == "L03"} == {"heldout"}
    assert {split[t] for t, lay in kept.iter_rows() if lay != "L03"} == {"train"}
    meta = _meta(bank_run, "ssl_tile_bank")
    assert meta["heldout_layouts"].value == "L03"
    assert "cross_replica" in meta["xb_partner_levels"].value.replace("\\", "")  # DMSO pairs across replicas (markdown-escaped)


def test_each_variant_writes_a_timm_loadable_checkpoint(pretrained):
    home, _, _, _, runs, _ = pretrained
    for variant, run in runs.items():
        assert run.success, variant
        folder = home / "models" / f"ssl-{variant}"
        model, config = load_checkpoint(folder)
        assert config["trained"] and config["step"] == 3 and config["input_size"] == 112
        assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pkl"))  # never pickle
        checks = {e.check_name: e for e in run.get_asset_check_evaluations()}
        assert checks["not_collapsed"].passed
        meta = _meta(run, "ssl_checkpoint")
        assert meta["step"].value == 3 and meta["crops_per_s"].value > 0
        assert "data:image/png;base64," in meta["loss_curves"].value
    state = json.loads((home / "models" / "ssl-pa_dino_barlow_xb" / "training_state.json").read_text())
    assert state["sampler_stats"]["cross_replica"] > 0


def test_ablation_table_compares_variants_with_untrained_baselines(pretrained):
    home, _, _, _, _, ablation = pretrained
    assert ablation.success
    table = Warehouse(home).query("SELECT * FROM ablation")
    assert set(table["model"]) >= {"ssl-dino", "ssl-pa_dino_barlow_xb", "untrained-vit-s16-seed0",
                                   "untrained-vit_small_patch16_224-112px", "handcrafted"}
    assert table.filter(pl.col("variant") == "untrained").height == 2
    assert table.filter(pl.col("variant") == "handcrafted features")["trained"].to_list() == [False]
    assert table["n_queries"].min() > 0 and (table["n_replicas"] == 2).all()
    assert table["replica_chance"].to_list() == [0.5] * table.height
    assert ((table["retrieval_map"] > 0) & (table["retrieval_map"] <= 1)).all()
    # the paper's measure over the whole screen: every compound-condition of the acquired plates
    assert ((table["activity_map"] > 0) & (table["activity_map"] <= 1)).all()
    assert (table["activity_conditions"] == table["activity_conditions"][0]).all()
    assert table["activity_conditions"][0] > 0 and table["activity_auroc"].is_not_null().all()
    trained = table.filter(pl.col("trained"))  # each against its untrained 112-px twin, paired bootstrap
    assert trained["activity_auroc_vs_untrained"].is_not_null().all()
    assert (trained["activity_auroc_vs_untrained_ci_low"] <= trained["activity_auroc_vs_untrained"]).all()
    assert (trained["activity_auroc_vs_untrained"] <= trained["activity_auroc_vs_untrained_ci_high"]).all()
    assert table.filter(~pl.col("trained"))["activity_auroc_vs_untrained"].is_null().all()
    assert table.filter(pl.col("model") == "ssl-pa_dino_barlow_xb")["variant"].item() == "PA + DINO + Barlow + XB"
    meta = _meta(ablation, "ssl_ablation")
    assert "data:image/png;base64," in meta["figure"].value
    assert "replica_accuracy_xb_minus_non_xb" in meta and "best_trained_minus_untrained_activity_map" in meta
    xb = meta["activity_auroc_xb_minus_non_xb"].value
    assert xb["ci95"][0] <= xb["difference"] <= xb["ci95"][1]


def test_rematerializing_a_finished_variant_retrains_and_replaces(pretrained):
    home, defs, instance, _, _, _ = pretrained
    run = run_job(defs, "pretraining", instance, "dino")
    assert run.success
    meta = _meta(run, "ssl_checkpoint")
    assert meta["resumed_from"].value == "(fresh)" and meta["step"].value == 3
    assert len(list((home / "models").glob("ssl-dino*"))) == 1  # replaced, no stray temp folders


def test_interrupted_run_resumes_from_its_last_checkpoint(pretrained):
    """A run stopped after 2 of its 4 steps (as by a crash after a checkpoint) is resumed by the
    asset, not restarted."""
    from lcd_core.ssl.config import preset_config
    from lcd_core.ssl.trainer import train

    home, _, instance, _, _, _ = pretrained
    bank = TileBank(home / "ssl" / "tile_bank")
    source = bank.subset((bank.table["split"] == "train").to_numpy())
    config, _ = preset_config("cpu", "dino_xb", len(source), steps=4)
    partial = train(config, source, steps=2, checkpoint_dir=home / "models" / "ssl-dino_xb", num_threads=1)
    assert partial.step == 2 and partial.total_steps == 4
    resumed = run_job(_defs(home, steps=4), "pretraining", instance, "dino_xb")
    assert resumed.success
    meta = _meta(resumed, "ssl_checkpoint")
    assert meta["resumed_from"].value == 2 and meta["step"].value == 4


def test_embeddings_use_the_selected_trained_checkpoint(pretrained):
    home, _, instance, _, _, _ = pretrained
    resources = local_resources(home)
    resources["embedding"] = EmbeddingSettings(checkpoint="ssl-pa_dino_barlow_xb")
    defs = build_definitions(resources)
    res = run_job(defs, "acquisition", instance, measurement_key("R01-L01", TP))
    assert res.success
    emb = Warehouse(home).query(
        "SELECT checkpoint, count(*) AS n FROM tile_embeddings WHERE plate = 'R01-L01' GROUP BY 1")
    assert emb["checkpoint"].to_list() == ["ssl-pa_dino_barlow_xb"]
    assert "PA + DINO + Barlow + XB" in _meta(res, "tile_embeddings")["model"].value


def test_missing_tile_bank_is_a_clear_error(lcd_home, instance):
    defs = _defs(lcd_home, steps=1)
    res = run_job(defs, "pretraining", instance, "dino")
    assert not res.success
    err = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "materialize ssl_tile_bank first" in str(err.event_specific_data.error)


def test_ablation_without_heldout_tiles_is_a_clear_error(lcd_home, instance):
    rows = [{"tile_id": f"t{i}", "split": "train"} for i in range(2)]
    TileBank.write(lcd_home / "ssl" / "tile_bank", [(rows, np.zeros((2, 3, 16, 16), np.float16))], 2, 16)
    res = run_job(_defs(lcd_home), "ablation", instance)
    assert not res.success
    err = [e for e in res.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "no held-out tiles" in str(err.event_specific_data.error)
