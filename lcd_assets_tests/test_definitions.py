"""The code location loads, and every asset carries what the UI needs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from lcd_assets.definitions import build_definitions, defs
from lcd_assets.partitions import condition_partitions, measurement_partitions


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "plate_registry", "model_checkpoint", "image_index", "tiles", "tile_embeddings",
        "fov_embeddings", "well_embeddings", "condition_profiles", "fov_features", "handcrafted_baseline",
    } <= keys


def test_every_asset_has_description_group_kinds():
    for spec in build_definitions().resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.group_name and spec.group_name != "default", name
        assert spec.kinds, name


def test_partitions_of_acquisition_and_analysis():
    graph = defs.resolve_asset_graph()
    for name in ("image_index", "tiles", "tile_embeddings", "fov_embeddings", "well_embeddings", "fov_features"):
        assert graph.get(dg.AssetKey(name)).partitions_def == measurement_partitions
    assert graph.get(dg.AssetKey("condition_profiles")).partitions_def == condition_partitions


def test_every_partitioned_asset_has_a_blocking_check():
    graph = defs.resolve_asset_graph()
    checks = list(graph.asset_check_keys)
    for name in ("image_index", "tiles", "tile_embeddings", "fov_embeddings", "well_embeddings", "fov_features"):
        mine = [c for c in checks if c.asset_key == dg.AssetKey(name)]
        assert mine, name
        assert any(graph.get_check_spec(c).blocking for c in mine), name


def test_pretraining_assets_partitioned_by_variant_with_a_collapse_check():
    from lcd_assets.pretraining.assets import variant_partitions

    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("ssl_checkpoint")).partitions_def == variant_partitions
    assert variant_partitions.get_partition_keys() == [
        "dino", "dino_barlow", "dino_xb", "dino_barlow_xb", "pa_dino_barlow_xb"]
    check = dg.AssetCheckKey(dg.AssetKey("ssl_checkpoint"), "not_collapsed")
    assert check in graph.asset_check_keys and graph.get_check_spec(check).blocking
    for name in ("ssl_tile_bank", "ssl_ablation"):
        assert graph.get(dg.AssetKey(name)).partitions_def is None
    jobs = {j.name for j in defs.get_repository_def().get_all_jobs()}
    assert {"tile_bank", "pretraining", "ablation"} <= jobs


def test_one_code_location_name_everywhere(tmp_path, monkeypatch):
    """workspace.yaml, pyproject's [tool.dagster] and the workspace `lcd ui` serves name the code
    location alike, so a run launched through one dequeues in the other."""
    import tomllib

    import yaml

    from lcd_assets.demo import LOCATION_NAME, prepare_instance

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("DAGSTER_HOME", "")  # prepare_instance sets both; monkeypatch restores them
    monkeypatch.setenv("LCD_HOME", "")
    served = yaml.safe_load((prepare_instance(tmp_path) / "workspace.yaml").read_text())
    checked_in = yaml.safe_load((repo / "workspace.yaml").read_text())
    assert served == checked_in
    assert checked_in["load_from"][0]["python_module"]["location_name"] == LOCATION_NAME
    tool = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["dagster"]
    assert tool["code_location_name"] == LOCATION_NAME and tool["module_name"] == "lcd_assets.definitions"


def test_runs_execute_their_steps_in_the_run_process():
    """A process per step (Dagster's default) re-imports the platform for every step: the UI's and
    the sensors' runs execute in process, like `lcd demo`'s."""
    for name in ("acquisition", "analysis", "setup"):
        assert defs.resolve_job_def(name).executor_def is dg.in_process_executor, name
    assert build_definitions().resolve_implicit_global_asset_job_def().executor_def is dg.in_process_executor
