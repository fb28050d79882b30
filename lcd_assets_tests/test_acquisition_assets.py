"""The acquisition assets through a real Dagster instance on a real synthetic screen."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from lcd_assets.partitions import condition_key, measurement_key
from lcd_assets_tests.conftest import add_partitions, run_job
from lcd_core.io.warehouse import Warehouse

PLATE, TP = "R01-L01", "04h"


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _count(home, table, plate=PLATE, tp=TP) -> int:
    return int(
        Warehouse(home).query(
            f"SELECT count(*) AS n FROM {table} WHERE plate = $p AND timepoint = $t", {"p": plate, "t": tp}
        )["n"][0]
    )


@pytest.fixture
def ingested(defs, instance, lcd_home):
    """Setup + one acquisition partition, materialized."""
    add_partitions(instance, [PLATE], [TP])
    assert run_job(defs, "setup", instance).success
    result = run_job(defs, "acquisition", instance, measurement_key(PLATE, TP))
    assert result.success, result.all_events
    return result


def test_partition_materializes_every_table_with_lineage(ingested, lcd_home):
    checks = _checks(ingested)
    assert checks and all(checks.values()), checks
    index = Warehouse(lcd_home).query("SELECT * FROM image_index")
    # small preset: 20 wells × 2 fields × 3 planes, one brightfield channel
    assert index.height == 20 * 2 * 3
    assert set(index["plate"]) == {PLATE} and set(index["replica"]) == {"R01"}
    tiles = Warehouse(lcd_home).query("SELECT * FROM tiles")
    assert tiles.height == 40  # 224-px FOVs: one tile each
    for col in ("tile_id", "well", "field", "plate", "replica", "layout", "dose", "compound", "qc_reason"):
        assert col in tiles.columns
    emb = Warehouse(lcd_home).query("SELECT * FROM tile_embeddings")
    assert emb.height == int(tiles["kept"].sum())
    vecs = np.asarray(emb["embedding"].to_list(), dtype=np.float32)
    assert vecs.shape[1] == 384 and np.isfinite(vecs).all()
    wells = Warehouse(lcd_home).query("SELECT * FROM well_embeddings")
    assert wells.height == emb["well"].n_unique()
    assert int(wells["n_tiles"].sum()) == emb.height


def test_kept_tiles_are_decoded_once_for_embeddings_and_features(defs, instance, lcd_home, monkeypatch):
    import dagster as dg

    import lcd_core.tiles.partition as acq

    tilings, redecodes = [], []
    real_tiling, real_redecode = acq.tile_partition, acq.iter_kept_tiles

    def tiling(*args, **kwargs):
        tilings.append(1)
        yield from real_tiling(*args, **kwargs)

    def redecode(*args, **kwargs):
        redecodes.append(1)
        yield from real_redecode(*args, **kwargs)

    monkeypatch.setattr(acq, "tile_partition", tiling)
    monkeypatch.setattr(acq, "iter_kept_tiles", redecode)
    add_partitions(instance, [PLATE], [TP])
    assert run_job(defs, "setup", instance).success
    result = run_job(defs, "acquisition", instance, measurement_key(PLATE, TP))
    assert result.success
    # one decode and tiling per FOV: the kept-tile pass reads the tiling's cache, then drops it
    assert (len(tilings), len(redecodes)) == (1, 0)
    emb_meta = next(m.materialization.metadata for m in result.get_asset_materialization_events()
                    if m.asset_key == dg.AssetKey("tile_embeddings"))
    assert emb_meta["tiles_from"].value == "tiling cache"
    assert not list((lcd_home / "cache" / "kept_tiles" / PLATE).iterdir())
    mats = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert {"tile_embeddings", "fov_features"} <= mats
    wh = Warehouse(lcd_home)
    kept = wh.query("SELECT count(*) AS n, count(DISTINCT (well, field)) AS fovs FROM tiles WHERE kept").row(0)
    assert _count(lcd_home, "tile_embeddings") == kept[0]
    where = {"plate": PLATE, "timepoint": TP}
    assert wh.read_parquet_partition("fov_features", where).height == kept[1]
    # without the cache the pass decodes the TIFFs again, and gives the same tiles
    first = wh.read_parquet_partition("tile_embeddings", where).sort("tile_id")
    job = defs.resolve_implicit_global_asset_job_def()
    again = job.get_subset(asset_selection={dg.AssetKey("tile_embeddings"), dg.AssetKey("fov_features")})
    assert again.execute_in_process(instance=instance, partition_key=measurement_key(PLATE, TP)).success
    assert len(redecodes) == 1
    second = wh.read_parquet_partition("tile_embeddings", where).sort("tile_id")
    assert first["tile_id"].to_list() == second["tile_id"].to_list()
    np.testing.assert_allclose(np.asarray(first["embedding"].to_list()), np.asarray(second["embedding"].to_list()),
                               rtol=0, atol=1e-6)


def test_fov_features_alone_needs_no_checkpoint(defs, instance, lcd_home):
    import dagster as dg

    add_partitions(instance, [PLATE], [TP])
    assert run_job(defs, "setup", instance).success
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.get_subset(asset_selection={dg.AssetKey("image_index"), dg.AssetKey("tiles")}).execute_in_process(
        instance=instance, partition_key=measurement_key(PLATE, TP)).success
    for ckpt in (lcd_home / "models").glob("*/model.safetensors"):
        ckpt.unlink()  # no model anywhere
    only = job.get_subset(asset_selection={dg.AssetKey("fov_features")}).execute_in_process(
        instance=instance, partition_key=measurement_key(PLATE, TP), raise_on_error=False)
    assert only.success
    mats = {m.asset_key.to_user_string() for m in only.get_asset_materialization_events()}
    assert mats == {"fov_features"}
    assert {e.check_name: e.passed for e in only.get_asset_check_evaluations()} == {"one_finite_row_per_fov": True}


def test_materialization_metadata_for_the_ui(ingested):
    mats = {m.asset_key.to_user_string(): m for m in ingested.get_asset_materialization_events()}
    tiles_meta = mats["tiles"].materialization.metadata
    assert tiles_meta["preview_fov"].value.startswith("![")
    assert "data:image/png;base64," in tiles_meta["tile_examples"].value
    emb_meta = mats["tile_embeddings"].materialization.metadata
    assert "untrained" in emb_meta["model"].value
    assert emb_meta["trained"].value is False
    assert mats["image_index"].materialization.metadata["brightfield_channel"].value.startswith("1")


def test_rematerializing_replaces_never_duplicates(ingested, defs, instance, lcd_home):
    before = {t: _count(lcd_home, t) for t in ("image_index", "tiles", "tile_embeddings", "well_embeddings")}
    again = run_job(defs, "acquisition", instance, measurement_key(PLATE, TP))
    assert again.success
    after = {t: _count(lcd_home, t) for t in before}
    assert after == before


def test_corrupt_tiff_fails_naming_the_file_and_keeps_rows(ingested, defs, instance, lcd_home):
    before = {t: _count(lcd_home, t) for t in ("image_index", "tiles", "tile_embeddings")}
    index = Warehouse(lcd_home).query("SELECT path FROM image_index ORDER BY path LIMIT 1")
    victim = index["path"][0]
    data = open(victim, "rb").read()
    os.unlink(victim)
    with open(victim, "wb") as fh:
        fh.write(data[: len(data) // 3])
    result = run_job(defs, "acquisition", instance, measurement_key(PLATE, TP))
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures and os.path.basename(victim) in str(failures[0].step_failure_data.error)
    after = {t: _count(lcd_home, t) for t in before}
    assert after == before


def test_missing_file_fails_the_blocking_index_check(defs, instance, lcd_home):
    plate, tp = "R01-L02", "20h"
    add_partitions(instance, [plate], [tp])
    assert run_job(defs, "setup", instance).success
    inbox = lcd_home / "inbox"
    folder = next(p for p in inbox.iterdir() if "R01-L02" in p.name and _is_20h(p))
    victim = sorted((folder / "Images").glob("r*c*f*p02-ch1*.tiff"))[0]
    victim.unlink()
    result = run_job(defs, "acquisition", instance, measurement_key(plate, tp))
    assert not result.success
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["index_complete"].passed is False
    assert victim.name in (evals["index_complete"].description or "")
    ran = {e.step_key for e in result.all_events if e.is_step_success}
    assert "tiles" not in ran and "kept_tile_pass" not in ran


def _is_20h(folder) -> bool:
    from lcd_core.io.inbox import resolve_timepoints
    from lcd_core.io.phenix import read_index
    from lcd_core.io.platemap import load_screen

    screen = load_screen(folder.parents[1] / "metadata")
    return any(mt.timepoint == "20h" for mt in resolve_timepoints(read_index(folder), screen))


def test_condition_profiles_gather_the_plates_of_a_dose(defs, instance, lcd_home):
    plates = ["R02-L01", "R02-L02"]  # replica R02 of the small preset: 10 µM
    add_partitions(instance, plates, [TP], ["10uM", "0.625uM"])
    assert run_job(defs, "setup", instance).success
    for plate in plates:
        assert run_job(defs, "acquisition", instance, measurement_key(plate, TP)).success
    result = run_job(defs, "analysis", instance, condition_key("10uM", TP))
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    # the holdout layout's plate R02-L03 is registered at 10 µM but not ingested here
    assert checks["every_compound_present"].passed is False
    assert "-H1" in checks["every_compound_present"].description
    profiles = Warehouse(lcd_home).read_parquet_partition(
        "condition_profiles", {"dose": "10uM", "timepoint": TP}
    )
    assert set(profiles["Metadata_plate"]) == set(plates)
    assert "emb_383" in profiles.columns
    wells = pl.concat(
        Warehouse(lcd_home).read_parquet_partition("well_embeddings", {"plate": p, "timepoint": TP})
        for p in plates
    )
    assert profiles.height == wells.height


def test_main_job_trains_nothing_and_segments_nothing(ingested, lcd_home):
    """The main job's setup trains no network and its acquisition writes no RayNet output."""
    assert not (lcd_home / "models" / "cellseg-raynet").exists()
    done = {m.asset_key.to_user_string() for m in ingested.get_asset_materialization_events()}
    assert "cell_features" not in done and "segmentation_model" not in done
    assert "cell_features" not in Warehouse(lcd_home).tables()


def test_cell_segmentation_rows_per_fov_and_per_nucleus(segmented_home, instance):
    from lcd_assets.definitions import build_definitions
    from lcd_assets_tests.conftest import local_resources
    from lcd_core.cells import CELL_FEATURE_NAMES, N_RAYS

    defs = build_definitions(local_resources(segmented_home))
    add_partitions(instance, [PLATE], [TP])
    for job in ("setup", "segmentation_training"):
        assert run_job(defs, job, instance).success
    assert run_job(defs, "acquisition", instance, measurement_key(PLATE, TP)).success
    segmented = run_job(defs, "cell_segmentation", instance, measurement_key(PLATE, TP))
    assert segmented.success
    wh = Warehouse(segmented_home)
    kept_fovs = wh.query("SELECT count(DISTINCT (well, field)) AS n FROM tiles WHERE kept")["n"][0]
    feats = wh.read_parquet_partition("cell_features", {"plate": PLATE, "timepoint": TP})
    assert feats.height == kept_fovs
    X = feats.select(CELL_FEATURE_NAMES).to_numpy()
    assert np.isfinite(X).all() and (X[:, 0] >= X[:, 1]).all()  # nuclei ≥ cells in every FOV
    cells = wh.read_parquet_partition("segmented_cells", {"plate": PLATE, "timepoint": TP})
    assert cells.height == int(feats["cs_nuclei"].sum())  # one FOV = one tile in the small preset
    assert (cells["live_prob"] >= 0.5).all() and len(cells["rays"][0]) == N_RAYS
    assert set(cells["tile_id"]) <= set(wh.query("SELECT tile_id FROM tiles WHERE kept")["tile_id"])
    meta = {m.asset_key.to_user_string(): m.materialization.metadata
            for m in segmented.get_asset_materialization_events()}["cell_features"]
    assert meta["nuclei"].value == cells.height and meta["fovs"].value == kept_fovs


def test_cell_features_need_the_segmentation_model(defs, instance, lcd_home):
    import shutil

    import dagster as dg

    add_partitions(instance, [PLATE], [TP])
    assert run_job(defs, "setup", instance).success
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.get_subset(asset_selection={dg.AssetKey("image_index"), dg.AssetKey("tiles")}).execute_in_process(
        instance=instance, partition_key=measurement_key(PLATE, TP)).success
    shutil.rmtree(lcd_home / "models")
    res = job.get_subset(asset_selection={dg.AssetKey("cell_features")}).execute_in_process(
        instance=instance, partition_key=measurement_key(PLATE, TP), raise_on_error=False)
    assert not res.success
    err = str(next(e for e in res.all_events if e.is_step_failure).step_failure_data.error)
    assert "raynet.pt" in err and "segmentation_model" in err


def test_nuclei_per_fov_without_training(ingested, lcd_home):
    wh = Warehouse(lcd_home)
    fovs = wh.query("SELECT * FROM fov_nuclei")
    assert fovs.height == 40 and set(fovs["method"]) == {"brightfield"}  # every FOV, kept or not
    assert {"plate", "well", "field", "compound", "dose", "role", "n_nuclei", "confluency"} <= set(fovs.columns)
    assert fovs["confluency"].is_between(0, 1).all() and fovs["n_nuclei"].sum() > 0
    nuclei = wh.read_parquet_partition("nuclei", {"plate": PLATE, "timepoint": TP})
    per_fov = nuclei.group_by("well", pl.col("field").cast(pl.Int64)).len()
    joined = fovs.select("well", pl.col("field").cast(pl.Int64), "n_nuclei").join(per_fov, on=["well", "field"])
    assert (joined["n_nuclei"] == joined["len"]).all()
    assert nuclei["x"].is_between(0, 224).all() and (nuclei["area_um2"] > 0).all()
    mats = {m.asset_key.to_user_string(): m.materialization.metadata for m in ingested.get_asset_materialization_events()}
    assert "data:image/png;base64," in mats["fov_nuclei"]["overlay"].value
    assert mats["fov_nuclei"]["pixel_um"].value == pytest.approx(0.598, abs=1e-3)  # from the index
    checks = {e.check_name: e for e in ingested.get_asset_check_evaluations() if e.asset_key.path == ["fov_nuclei"]}
    truth = checks["count_vs_truth"].metadata
    assert truth["count_r"].value > 0.8 and truth["median_iou"].value > 0.4  # the generator's live nuclei
    assert "max plausible count" in checks["counts_plausible"].description
