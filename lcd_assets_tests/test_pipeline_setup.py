"""lcd_core.pipeline.setup: the ViT checkpoint and the cell segmentation network, created or reused."""

from __future__ import annotations

import shutil

import torch

from lcd_assets_tests.conftest import TEST_SEGMENTATION
from lcd_core.pipeline import setup


def test_an_untrained_vit_is_written_once_then_reused(tmp_path):
    folder = tmp_path / "untrained-vit-s16-seed3"
    model, config = setup.vit_checkpoint(folder, seed=3)
    assert config["trained"] is False and config["seed"] == 3 and config["name"] == folder.name
    written = (folder / "model.safetensors").stat().st_mtime_ns
    again, _ = setup.vit_checkpoint(folder, seed=99)  # a checkpoint is there: loaded, not rewritten
    assert (folder / "model.safetensors").stat().st_mtime_ns == written
    first = next(model.parameters())
    assert torch.equal(first, next(again.parameters()))
    assert setup.weights_finite(again)
    with torch.no_grad():
        first.view(-1)[0] = float("nan")
    assert not setup.weights_finite(model)


def test_a_network_trained_with_the_same_settings_is_reused(segmentation_dir, tmp_path):
    folder = shutil.copytree(segmentation_dir, tmp_path / "cellseg")
    before = (folder / "raynet.pt").stat().st_mtime_ns
    lines: list[str] = []
    net, record, reused = setup.segmentation_network(folder, TEST_SEGMENTATION.training(), log=lines.append)
    assert reused and record["training"] == TEST_SEGMENTATION.training()
    assert any("reused" in line for line in lines)
    assert (folder / "raynet.pt").stat().st_mtime_ns == before
    assert setup.validation_overlay(net, seed=2).startswith(b"\x89PNG")
