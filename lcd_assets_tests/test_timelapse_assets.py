"""The timelapse job (trajectories, MolCLIP, molecule retrieval) through Dagster on a real warehouse,
and ``lcd search`` over what it wrote. The warehouse holds a planted screen's normalized profiles
(real drug structures, phenotypes planted from structure and MoA) in place of an acquired one: the
job's plumbing is under test here; the science runs on the demo's acquired screens."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lcd_assets.cli import main as lcd_main
from lcd_assets.definitions import build_definitions
from lcd_assets.resources import MOLCLIP_MODEL, MolClipSettings
from lcd_assets_tests.conftest import local_resources, run_job
from lcd_core.io.warehouse import Warehouse
from lcd_core.molclip.planted import planted_screen


def _planted_warehouse(home) -> tuple[pl.DataFrame, pl.DataFrame]:
    profiles, compounds = planted_screen(n_compounds=12, n_moas=4, n_replicas=3, n_layouts=2, n_dmso=4,
                                         n_timepoints=3, holdout=4, seed=0)
    wh = Warehouse(home)
    for (dose, tp), part in profiles.group_by("Metadata_dose", "Metadata_timepoint"):
        wh.write_parquet_partition("normalized_profiles", {"dose": dose, "timepoint": tp}, part)
    # the activity calls the trajectories read: a compound is "active" from 8 h at the two higher doses
    calls = profiles.filter(pl.col("Metadata_role") == "treatment").select(
        pl.col("Metadata_compound").alias("compound"), pl.col("Metadata_dose").alias("dose"),
        pl.col("Metadata_timepoint").alias("timepoint")).unique()
    late = (pl.col("timepoint") != "04h") & (pl.col("dose") != "0.156uM")
    wh.replace_table("activity", calls.with_columns(
        pl.when(late).then(1.5).otherwise(0.1).alias("map_es"), late.alias("active")))
    control = pl.DataFrame({"compound": ["DMSO"], "moa": [None], "smiles": ["CS(C)=O"], "set": ["control"]},
                           schema=compounds.schema)
    wh.replace_table("compounds", pl.concat([compounds, control]))
    return profiles, compounds


@pytest.fixture(scope="module")
def timelapse(tmp_path_factory):
    home = tmp_path_factory.mktemp("timelapse_home")
    profiles, compounds = _planted_warehouse(home)
    resources = {**local_resources(home), "molclip": MolClipSettings(epochs=4, n_folds=2, seeds=[0], threads=1)}
    defs = build_definitions(resources)
    with dg.instance_for_test() as instance:
        result = run_job(defs, "timelapse", instance)
        yield home, result, profiles, compounds


def test_trajectories_cover_every_compound_dose_and_timepoint(timelapse):
    home, result, profiles, _ = timelapse
    assert result.success
    wh = Warehouse(home)
    table = wh.query("SELECT * FROM trajectories")
    treated = profiles.filter(pl.col("Metadata_role") == "treatment")
    assert table.height == treated.select("Metadata_compound", "Metadata_dose", "Metadata_timepoint").n_unique()
    assert (table["ci_low"] <= table["distance"]).all() and (table["distance"] <= table["ci_high"]).all()
    onsets = wh.query("SELECT * FROM trajectory_onsets")
    # the planted calls switch on at 8 h at 0.625 and 2.5 µM, never at 0.156 µM
    assert set(onsets.filter(pl.col("dose") == "0.156uM")["onset_map_es"]) == {"never"}
    assert set(onsets.filter(pl.col("dose") != "0.156uM")["onset_map_es"]) == {"08h"}
    meta = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}
    assert "data:image/png;base64," in meta["trajectories"]["map"].value


def test_molclip_model_is_safetensors_and_json_and_metrics_compare_both_arms(timelapse):
    home, _, _, compounds = timelapse
    folder = home / "models" / MOLCLIP_MODEL
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    holdout = set(compounds.filter(pl.col("set") == "holdout")["compound"])
    assert not holdout & set(config["trained_compounds"])  # zero-shot means never trained on
    wh = Warehouse(home)
    metrics = wh.query("SELECT * FROM molclip_metrics ORDER BY metric")
    assert metrics["metric"].to_list() == ["drug_ap", "moa_ap"]
    assert metrics["map_with"].is_not_null().all() and metrics["map_without"].is_not_null().all()
    assert set(wh.query("SELECT DISTINCT arm FROM molclip_folds")["arm"]) == {"with", "without"}


def test_embeddings_and_zero_shot_retrieval_of_the_holdout_compounds(timelapse):
    home, _, profiles, compounds = timelapse
    wh = Warehouse(home)
    emb = wh.query("SELECT kind, count(*) AS n FROM molclip_embeddings GROUP BY kind ORDER BY kind")
    n_wells = profiles.select("Metadata_plate", "Metadata_well").n_unique()
    assert dict(emb.iter_rows()) == {"molecule": compounds.height, "video": n_wells}
    retrieval = wh.query("SELECT * FROM molecule_retrieval")
    assert set(retrieval["compound"]) == set(compounds.filter(pl.col("set") == "holdout")["compound"])
    assert retrieval["rank"].is_between(1, compounds.height).all()
    hits = wh.query("SELECT * FROM molecule_retrieval_hits ORDER BY k")
    assert hits["k"].to_list() == [1, 5, 10]
    assert np.allclose(hits["random"], [1 / compounds.height, 5 / compounds.height, 10 / compounds.height])


def test_lcd_search_by_compound_and_by_smiles(timelapse, capsys):
    home, _, _, compounds = timelapse
    name = compounds["compound"][0]
    assert lcd_main(["--home", str(home), "search", "--compound", name, "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["molecules"]) == 3 and len(out["phenotypes"]) == 3
    assert name not in [r["compound"] for r in out["phenotypes"]]
    assert lcd_main(["--home", str(home), "search", "--smiles", "CC(=O)Oc1ccccc1C(=O)O", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["compounds"] and out["wells"] and out["compounds"][0]["score"] >= out["compounds"][-1]["score"]


def test_lcd_search_names_what_is_wrong(timelapse, capsys):
    home = timelapse[0]
    assert lcd_main(["--home", str(home), "search", "--smiles", "C1CC(("]) == 2
    assert "C1CC((" in capsys.readouterr().err
    assert lcd_main(["--home", str(home), "search", "--compound", "vorinostatt"]) == 2
    assert "vorinostat" in capsys.readouterr().err
