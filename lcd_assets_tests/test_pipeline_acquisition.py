"""lcd_core.pipeline.acquisition on one measurement of the small synthetic screen, without Dagster:
the index, the tiles and their QC, and the one decode of the kept tiles fanned out to three consumers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.cells import CELL_FEATURE_NAMES, load_raynet
from lcd_core.handcrafted.features import FEATURE_NAMES
from lcd_core.io.platemap import load_screen
from lcd_core.pipeline import acquisition as pipeline
from lcd_core.tiles import partition as acq
from lcd_core.tiles.preprocess import TileConfig

PLATE, TP = "R01-L01", "04h"
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def indexed(small_screen):
    screen = load_screen(small_screen / "metadata")
    return pipeline.index_measurement(small_screen / "inbox", screen, PLATE, TP)


@pytest.fixture(scope="module")
def tiled(indexed):
    fovs = acq.fov_paths(indexed.table, pipeline.brightfield_of(indexed.table))
    config = TileConfig(tile_size=224, binning=1)
    return fovs, config, pipeline.tile_measurement(fovs, config)


def _kept(tiled) -> pl.DataFrame:
    return tiled[2].table.filter(pl.col("kept"))


def test_index_has_every_image_with_lineage(indexed):
    # small preset: 20 wells × 2 fields × 3 planes, one brightfield channel
    assert indexed.table.height == 20 * 2 * 3
    assert indexed.brightfield == pipeline.brightfield_of(indexed.table) == 1
    assert set(indexed.table["plate"]) == {PLATE} and set(indexed.table["timepoint"]) == {TP}
    assert indexed.completeness.passed and indexed.completeness.summary() == "complete"
    assert indexed.measurement.plate == PLATE and indexed.table["compound"].null_count() == 0


def test_brightfield_of_needs_a_brightfield_channel(indexed):
    other = indexed.table.with_columns(pl.lit("Fluorescence").alias("channel_type"))
    with pytest.raises(ValueError, match=f"{PLATE} × {TP} has no Brightfield channel"):
        pipeline.brightfield_of(other)


def test_tiles_one_row_per_tile_with_previews_and_qc(tiled):
    fovs, config, tiling = tiled
    assert tiling.table.height == fovs.height == 40  # 224-px FOVs: one tile each
    assert tiling.table["tile_id"].n_unique() == 40 and tiling.seconds > 0
    kept = tiling.examples[: min(pipeline.N_EXAMPLES, int(tiling.table["kept"].sum()))]
    assert all(rec["qc_reason"] is None for _, rec in kept)
    assert pipeline.preview_png(tiling, config).startswith(PNG)
    assert pipeline.examples_png(tiling).startswith(PNG)
    qc = pipeline.tile_qc(tiling.table, (224, 224), config, max_empty_fraction=0.25)
    assert qc.grid_capacity == 1 and qc.max_tiles_per_fov == 1 and qc.per_fov.height == 40
    assert qc.empty_fovs == 40 - int(tiling.table["kept"].sum())
    assert sum(qc.rejected_by_reason.values()) == qc.empty_fovs
    assert qc.passed == (qc.empty_fovs <= 10)
    assert not pipeline.tile_qc(tiling.table, (224, 224), config, max_empty_fraction=-1).passed


def test_one_decode_feeds_all_three_consumers(tiled, segmentation_dir, monkeypatch):
    from lcd_core.embedding.vit import create_vit

    fovs, config, _ = tiled
    kept = _kept(tiled)
    decodes = []
    real = acq.iter_kept_tiles
    monkeypatch.setattr(acq, "iter_kept_tiles", lambda *a, **k: decodes.append(1) or real(*a, **k))
    vit = pipeline.Vit(create_vit(seed=0), {"trained": False, "seed": 0}, "untrained-test", batch_size=16)
    raynet, _ = load_raynet(segmentation_dir)
    logged: list[str] = []
    done = pipeline.kept_tile_pass(fovs, kept, config, vit=vit, features=True, raynet=raynet, log=logged.append)
    assert len(decodes) == 1
    assert [r["tile_id"] for r in done.tile_rows] == kept["tile_id"].to_list()
    assert done.embeddings.shape == (kept.height, pipeline.EMBED_DIM) and np.isfinite(done.embeddings).all()
    emb = done.tile_embeddings
    assert emb.columns == [*pipeline.TILE_KEYS, "embedding", "checkpoint"]
    assert set(emb["checkpoint"]) == {"untrained-test"} and any("embedded" in line for line in logged)
    n_fovs = kept.select("well", "field").unique().height
    assert done.fov_features.columns == [*pipeline.FOV_KEYS, "n_tiles", *FEATURE_NAMES]
    assert done.cell_features.columns == [*pipeline.FOV_KEYS, "n_tiles", *CELL_FEATURE_NAMES]
    assert done.fov_features.height == done.cell_features.height == n_fovs
    assert done.segmented_cells.schema == pl.Schema(pipeline.CELL_SCHEMA)
    assert done.segmented_cells.height == int(done.cell_features["cs_nuclei"].sum())  # one tile per FOV
    assert {"pass", "embedding", "features", "cells"} <= set(done.seconds)


def test_a_vit_by_its_folder_loads_once_per_process_and_embeds_the_same(tiled, tmp_path):
    from lcd_core.embedding.vit import create_vit, save_checkpoint

    fovs, config, _ = tiled
    kept = _kept(tiled).head(6)
    folder = save_checkpoint(create_vit(seed=0), tmp_path / "vit", name="v0", trained=False)
    spec = pipeline.VitSpec(str(folder), batch_size=4)
    assert spec.load().model is spec.load().model and spec.record()["name"] == "v0"
    by_spec = pipeline.kept_tile_pass(fovs, kept, config, vit=spec)
    by_model = pipeline.kept_tile_pass(fovs, kept, config, vit=spec.load())
    np.testing.assert_array_equal(by_spec.embeddings, by_model.embeddings)
    assert set(by_spec.tile_embeddings["checkpoint"]) == {"v0"}
    with pytest.raises(FileNotFoundError, match="model weights"):
        pipeline.load_model(tmp_path / "nothing")


def test_features_alone_need_no_model(tiled):
    fovs, config, _ = tiled
    done = pipeline.kept_tile_pass(fovs, _kept(tiled), config, features=True)
    assert done.embeddings is None and done.tile_embeddings is None
    assert done.cell_features is None and done.segmented_cells is None
    assert np.isfinite(done.fov_features.select(FEATURE_NAMES).to_numpy()).all()


def test_per_fov_table_is_the_mean_over_the_fov_tiles():
    lineage = {k: "x" for k in pipeline.WELL_KEYS}
    rows = [{**lineage, "field": 1}, {**lineage, "field": 1}, {**lineage, "field": 2}]
    feats = [np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]), np.array([[5.0, 6.0]])]
    out = pipeline.per_fov_table(rows, feats, ("a", "b")).sort("field")
    assert out["n_tiles"].to_list() == [2, 1]
    assert out.select("a", "b").rows() == [(2.0, 3.0), (5.0, 6.0)]
    assert pipeline.per_fov_table([], [], ("a", "b")).height == 0


def test_no_kept_tile_gives_empty_tables(tiled):
    fovs, config, _ = tiled
    done = pipeline.kept_tile_pass(fovs, _kept(tiled).head(0), config, features=True)
    assert done.tile_rows == [] and done.fov_features.height == 0
    assert pipeline.segmented_cells_table([]).schema == pl.Schema(pipeline.CELL_SCHEMA)
    assert pipeline.tile_embeddings_table([], np.zeros((0, 384), np.float32), "m").height == 0


def test_the_nuclei_read_the_fovs_the_tiling_decoded(tiled, monkeypatch):
    from lcd_core.nuclei.measurement import get_method
    from lcd_core.pipeline import nuclei as nuclei_steps

    fovs, config, _ = tiled
    acq.DECODED_FOVS.clear()
    decoded = []
    real = acq.read_plane
    monkeypatch.setattr(acq, "read_plane", lambda *a, **k: decoded.append(a[0]) or real(*a, **k))
    pipeline.tile_measurement(fovs, config)
    n_planes = sum(len(p) for p in fovs["paths"].to_list())
    assert len(decoded) == n_planes
    nuclei_steps.nuclei_pass(fovs, 0.6, get_method("brightfield"))
    assert len(decoded) == n_planes  # every FOV found decoded


def test_decoded_fovs_are_read_only_bounded_and_forget_a_changed_file(tmp_path):
    import tifffile

    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"p{i}.tiff"))
        tifffile.imwrite(paths[-1], np.full((8, 8), i, np.uint16))
    cache = acq.DecodedFovs(max_bytes=2 * 3 * 8 * 8 * 2)  # two stacks of 3 planes
    stack = acq.read_fov(paths)
    with pytest.raises(ValueError):
        stack[0, 0, 0] = 7  # shared by every reader: nobody may change it
    key = cache.key(paths, None)
    cache.put(key, stack)
    assert cache.get(key) is stack
    tifffile.imwrite(paths[1], np.full((8, 8), 9, np.uint16))  # rewritten: another identity
    assert cache.key(paths, None) != key
    acq.DECODED_FOVS.clear()
    assert acq.read_fov(paths)[1, 0, 0] == 9
    for i in range(3):
        cache.put(("k", i), stack)
    assert cache.get(("k", 0)) is None and cache.get(("k", 2)) is stack  # the oldest went first
    assert cache.key([str(tmp_path / "missing.tiff")], None) is None
