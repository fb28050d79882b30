"""lcd_core.pipeline.pretraining: the tile bank's split and stream from the warehouse, the
collapse check of a training run (the training itself: test_pretraining_assets, test_ssl_trainer)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from lcd_core.io.warehouse import Warehouse
from lcd_core.pipeline import pretraining
from lcd_core.ssl.source import TileBank

LAYOUTS = pl.DataFrame({"layout": ["L01", "L01", "L02", "L02"], "compound": ["A", "DMSO", "H", "DMSO"],
                        "role": ["treatment", "negative_control", "treatment", "negative_control"]})
COMPOUNDS = pl.DataFrame({"compound": ["A", "H", "DMSO"], "set": ["training", "holdout", "control"]})


def _tiles(kept: list[bool]) -> pl.DataFrame:
    n = len(kept)
    return pl.DataFrame({"plate": ["R01-L01"] * (n - 1) + ["R01-L02"], "timepoint": ["04h"] * n,
                         "layout": ["L01"] * (n - 1) + ["L02"], "well": [f"B{i:02d}" for i in range(n)],
                         "field": [1] * n, "tile_index": [0] * n, "kept": kept})


def test_kept_tiles_of_the_warehouse_with_their_split(tmp_path):
    wh = Warehouse(tmp_path)
    with pytest.raises(ValueError, match="no tiles table"):
        pretraining.kept_tiles(wh)
    wh.replace_table("tiles", _tiles([False, False]))
    with pytest.raises(ValueError, match="no kept tiles"):
        pretraining.kept_tiles(wh)
    wh.replace_table("tiles", _tiles([True, False, True]))
    kept, held, why = pretraining.with_split(pretraining.kept_tiles(wh), LAYOUTS, COMPOUNDS)
    assert held == ["L02"] and "holdout" in why
    assert kept["split"].to_list() == ["train", "heldout"] and kept["well"].to_list() == ["B00", "B02"]


class _Mean(torch.nn.Module):
    """A stand-in backbone: the per-channel means of a tile (3-d embeddings)."""

    def forward(self, x):
        return x.float().mean(dim=(2, 3))


def test_collapse_check_falls_back_to_train_tiles_without_heldout(tmp_path):
    rows = [{"tile_id": f"t{i}", "split": "train"} for i in range(6)]
    tiles = np.arange(6, dtype=np.float16)[:, None, None, None] * np.ones((6, 3, 16, 16), np.float16)
    bank = TileBank.write(tmp_path / "bank", [(rows, tiles)], 6, 16)
    assert pretraining.embed_heldout(_Mean(), {}, bank).shape[0] == 0
    emb = pretraining.embed_heldout(_Mean(), {}, bank, or_train=3, batch=2)
    every = pretraining.embed_heldout(_Mean(), {}, bank, or_train=100)
    assert emb.shape == (3, 3) and every.shape == (6, 3)
    assert np.allclose(emb, every[[0, 2, 5]]) and len(set(every[:, 0].tolist())) == 6  # evenly spaced


def test_collapsed_under_either_floor():
    def run(rank: float, std: float) -> pretraining.PretrainRun:
        stats = {"effective_rank": rank, "embed_std": std, "embed_std_iso": 0.05}
        return pretraining.PretrainRun(None, None, {}, 0.0, 0, stats)

    assert not run(10.0, 0.01).collapsed
    assert run(1.5, 0.01).collapsed  # one direction
    assert run(10.0, 0.001).collapsed  # every tile (nearly) one point


def test_progress_line_names_the_losses():
    rec = {"step": 3, "total_steps": 10, "loss": 1.23456, "dino": 1.0, "barlow": None, "crops_per_s": 12.3,
           "eta_call_s": 40, "teacher_entropy": 2.5, "embed_std": 0.01, "effective_rank": 7.0}
    line = pretraining.progress_line(rec)
    assert line.startswith("step 3/10 loss 1.2346 (DINO 1.000)") and "Barlow" not in line
    assert "Barlow 0.500" in pretraining.progress_line({**rec, "barlow": 0.5})
