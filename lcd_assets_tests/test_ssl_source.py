"""lcd_core.ssl.source: the tile bank on disk."""

from __future__ import annotations

import pickle

import numpy as np

from lcd_core.ssl.source import TileBank


def test_a_bank_travels_as_its_folder(tmp_path):
    rows = [{"tile_id": f"t{i}", "split": "train"} for i in range(4)]
    tiles = np.random.default_rng(0).random((4, 3, 16, 16)).astype(np.float16)
    bank = TileBank.write(tmp_path / "bank", [(rows, tiles)], 4, 16)
    blob = pickle.dumps(bank)
    assert len(blob) < 1000  # the path, not the tiles (a Ray worker maps them again)
    again = pickle.loads(blob)
    assert again.folder == bank.folder and again.table.equals(bank.table)
    np.testing.assert_array_equal(np.asarray(again.tiles), tiles)
