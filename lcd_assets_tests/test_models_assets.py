"""The model assets: the optional cell segmentation network is trained, validated, reused."""

from __future__ import annotations

import json

from lcd_assets.definitions import build_definitions
from lcd_assets.resources import CELL_SEGMENTATION_MODEL, SegmentationSettings
from lcd_assets_tests.conftest import local_resources, run_job


def _meta(result, key):
    return {m.asset_key.to_user_string(): m.materialization.metadata
            for m in result.get_asset_materialization_events()}[key]


def test_segmentation_model_is_reused_with_the_same_settings(instance, segmented_home):
    lcd_home, defs = segmented_home, build_definitions(local_resources(segmented_home))
    before = (lcd_home / "models" / CELL_SEGMENTATION_MODEL / "raynet.pt").stat().st_mtime_ns
    res = run_job(defs, "segmentation_training", instance)
    assert res.success
    meta = _meta(res, "segmentation_model")
    assert meta["reused"].value is True
    assert "data:image/png;base64," in meta["overlay"].value
    assert (lcd_home / "models" / CELL_SEGMENTATION_MODEL / "raynet.pt").stat().st_mtime_ns == before
    checks = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert "nucleus recall" in checks["segmentation_recovers_shape"].description


def test_segmentation_model_retrains_when_the_settings_change(instance, lcd_home):
    settings = SegmentationSettings(n_fovs=4, epochs=1, validation_fovs=2, seed=3)
    defs = build_definitions({**local_resources(lcd_home), "segmentation": settings})
    res = run_job(defs, "segmentation_training", instance)
    assert res.success
    meta = _meta(res, "segmentation_model")
    assert meta["reused"].value is False and meta["training_fovs"].value == 4
    assert meta["training"].value == settings.training()  # nucleus weight and large-cell share shown too
    record = json.loads((lcd_home / "models" / CELL_SEGMENTATION_MODEL / "raynet.json").read_text())
    assert record["training"] == settings.training() and len(record["history"]) == 1
    assert record["validation"]["fovs"] == 2
    # the check reports the figures whatever they are: 4 FOVs train a poor network
    check = next(e for e in res.get_asset_check_evaluations() if e.check_name == "segmentation_recovers_shape")
    assert "per-FOV log elongation r" in check.description


def test_segmentation_model_of_an_older_geometry_is_retrained(instance, segmented_home):
    lcd_home = segmented_home
    path = lcd_home / "models" / CELL_SEGMENTATION_MODEL / "raynet.json"
    settings = SegmentationSettings(n_fovs=4, epochs=1, validation_fovs=2, seed=5)
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "training": settings.training(), "outputs": "cell"}))
    defs = build_definitions({**local_resources(lcd_home), "segmentation": settings})
    res = run_job(defs, "segmentation_training", instance)
    assert res.success
    assert _meta(res, "segmentation_model")["reused"].value is False
    assert json.loads(path.read_text())["outputs"] == "cell+nucleus"
