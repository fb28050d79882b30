"""A partition whose kept tiles become empty (issue 22, stale data): nothing computed from its
earlier kept tiles may stay for the FOV and well embeddings (or the handcrafted features) to read.
Real DuckDB warehouse and Parquet files; the ``fov_embeddings`` asset through a real Dagster
instance; no acquisition run (the write functions are called on a warehouse holding old partitions)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lcd_assets.acquisition.assets import VIEWS, drop_stale_kept_outputs, fov_embeddings, well_embeddings
from lcd_assets.partitions import measurement_key
from lcd_assets.resources import LcdHome
from lcd_assets_tests.conftest import add_partitions
from lcd_core.io.warehouse import Warehouse

STALE, OTHER = ("R01-L01", "04h"), ("R01-L02", "04h")


def _rows(plate: str, tp: str, ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({
        "plate": plate, "timepoint": tp, "tile_id": ids, "well": ["B02"] * len(ids), "field": [1] * len(ids),
        "compound": "DMSO", "embedding": pl.Series(np.ones((len(ids), 4), np.float32), dtype=pl.Array(pl.Float32, 4)),
    })


def _tiles(plate: str, tp: str, ids: list[str], kept: bool) -> pl.DataFrame:
    return pl.DataFrame({"plate": plate, "timepoint": tp, "tile_id": ids, "well": "B02", "field": 1, "kept": kept})


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    """Two partitions with every kept-tile dataset written by an earlier run (tiles t0, t1 kept)."""
    wh = Warehouse(tmp_path / "home")
    for plate, tp in (STALE, OTHER):
        for name in VIEWS:
            wh.write_parquet_partition(name, {"plate": plate, "timepoint": tp}, _rows(plate, tp, ["t0", "t1"]))
        wh.replace_partition("tiles", _tiles(plate, tp, ["t0", "t1"], True), {"plate": plate, "timepoint": tp})
    wh.refresh_views(VIEWS)
    return wh


def _plates(wh: Warehouse, view: str) -> set[str]:
    return set(wh.query(f"SELECT DISTINCT plate FROM {view}")["plate"])


def test_an_empty_kept_set_removes_every_output_of_the_partition(wh):
    removed = drop_stale_kept_outputs(wh, *STALE, kept_ids=[])
    assert removed == VIEWS  # tile_embeddings, fov/well embeddings, fov/cell features, segmented cells
    where = {"plate": STALE[0], "timepoint": STALE[1]}
    assert not any(wh.has_parquet_partition(name, where) for name in VIEWS)
    for name in VIEWS:  # the views no longer show the partition; the other one is intact
        assert _plates(wh, name) == {OTHER[0]}
        assert wh.query(f"SELECT count(*) AS n FROM {name}")["n"][0] == 2
    assert drop_stale_kept_outputs(wh, *STALE, kept_ids=[]) == []  # nothing left to remove


def test_the_same_kept_set_keeps_and_another_removes(wh):
    assert drop_stale_kept_outputs(wh, *STALE, kept_ids=["t1", "t0"]) == []
    assert _plates(wh, "well_embeddings") == {STALE[0], OTHER[0]}
    assert drop_stale_kept_outputs(wh, *STALE, kept_ids=["t0"]) == VIEWS  # QC now rejects t1
    assert _plates(wh, "well_embeddings") == {OTHER[0]}


def _materialize(assets, home, partition):
    with dg.instance_for_test() as instance:
        add_partitions(instance, [partition[0]], [partition[1]])
        return dg.materialize(assets, instance=instance, resources={"lcd": LcdHome(home=str(home))},
                              partition_key=measurement_key(*partition), raise_on_error=False)


def test_fov_and_well_embeddings_of_a_partition_without_kept_tiles_are_removed(wh):
    """tiles re-run, all rejected; tile_embeddings already gone: the aggregates leave no stale rows."""
    where = {"plate": STALE[0], "timepoint": STALE[1]}
    wh.replace_partition("tiles", _tiles(*STALE, ["t0", "t1"], False), where)
    wh.delete_partition("tile_embeddings", where)
    result = _materialize([fov_embeddings, well_embeddings], wh.home, STALE)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    for name in ("fov_embeddings", "well_embeddings"):
        meta = result.asset_materializations_for_node(name)[0].metadata
        assert meta["note"].value == f"partition {STALE[0]} × {STALE[1]}: no tile kept by QC, so no {name} rows " \
                                     "(the earlier ones removed)"
        assert not wh.has_parquet_partition(name, where) and _plates(wh, name) == {OTHER[0]}


def test_a_partition_never_embedded_still_fails_naming_it(wh):
    """tile_embeddings missing although tiles were kept: an error naming the partition, not an empty result."""
    where = {"plate": STALE[0], "timepoint": STALE[1]}
    wh.delete_partition("tile_embeddings", where)
    result = _materialize([fov_embeddings], wh.home, STALE)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.step_failure_data.error.to_string()
    assert "tile_embeddings" in text and STALE[0] in text and STALE[1] in text
    assert wh.has_parquet_partition("fov_embeddings", where)  # the old rows stay until tiles says otherwise


def test_the_tiles_asset_removes_the_outputs_when_qc_now_rejects_every_tile(lcd_home):
    """Through the real ``tiles`` asset: the partition's FOVs re-delivered blank (QC rejects every
    tile) on a warehouse holding the outputs of an earlier kept set → they are removed, named."""
    import tifffile

    from lcd_assets.acquisition.assets import image_index, tiles
    from lcd_assets.registry.assets import plate_registry
    from lcd_assets_tests.conftest import local_resources

    resources, where = local_resources(lcd_home), {"plate": STALE[0], "timepoint": STALE[1]}
    with dg.instance_for_test() as instance:
        add_partitions(instance, [STALE[0]], [STALE[1]])
        assert dg.materialize([plate_registry], instance=instance, resources=resources).success
        key = measurement_key(*STALE)
        assert dg.materialize([image_index], instance=instance, resources=resources, partition_key=key).success
        wh = Warehouse(lcd_home)
        for name in VIEWS:  # an earlier run's outputs
            wh.write_parquet_partition(name, where, _rows(*STALE, ["t0", "t1"]))
        for path in wh.query("SELECT DISTINCT path FROM image_index")["path"]:
            image = tifffile.imread(path)
            tifffile.imwrite(path, np.zeros_like(image))
        result = dg.materialize([tiles], instance=instance, resources=resources, partition_key=key,
                                raise_on_error=False)  # the blocking tiles_per_fov_in_bounds check fails
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    kept, n = wh.query("SELECT count(*) FILTER (WHERE kept) AS k, count(*) AS n FROM tiles").row(0)
    assert n == 40 and kept == 0
    meta = result.asset_materializations_for_node("tiles")[0].metadata
    assert meta["stale_outputs_removed"].value == ", ".join(VIEWS)
    assert not any(wh.has_parquet_partition(name, where) for name in VIEWS)
    assert any(f"partition {STALE[0]} × {STALE[1]}: 0 tiles kept, the outputs of the earlier kept set removed"
               in m for m in logs)


def test_a_tiled_plate_without_well_profiles_is_named(tmp_path):
    """A plate whose every tile failed QC has no well profile: `condition_profiles` names it
    instead of letting it drop out of the normalization."""
    from lcd_assets.profiling.profiles import acquired_plates_without_profiles

    wh = Warehouse(tmp_path / "home")
    for plate, kept in (("R01-L01", True), ("R01-L02", False)):
        tiles = _tiles(plate, "04h", ["t0"], kept).with_columns(dose=pl.lit("10uM"))
        wh.replace_partition("tiles", tiles, {"plate": plate, "timepoint": "04h"})
    wells = pl.DataFrame({"plate": ["R01-L01"], "well": ["B02"]})
    assert acquired_plates_without_profiles(wh, "10uM", "04h", wells) == ["R01-L02"]
    assert acquired_plates_without_profiles(wh, "1uM", "04h", wells) == []  # another dose
    assert acquired_plates_without_profiles(wh, "10uM", "04h", wells.clear()) == ["R01-L01", "R01-L02"]
