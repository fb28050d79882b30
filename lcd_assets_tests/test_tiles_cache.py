"""lcd_core.tiles.cache: the kept tiles from the tiling to the kept-tile pass."""

from __future__ import annotations

import os
import socket
import subprocess

import numpy as np

from lcd_core.tiles.cache import KeptTileWriter, iter_cached, read_kept_tiles, remove_kept_tiles, remove_stale_temporaries
from lcd_core.tiles.preprocess import TileConfig


def _tiles(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 32, 32)).astype(np.float16)


def _write(stem, config, parts) -> None:
    w = KeptTileWriter(stem, config)
    for ids, tiles in parts:
        w.add(ids, tiles)
    w.commit()


def test_round_trip_in_order_and_grouped_by_fov(tmp_path):
    stem, cfg = tmp_path / "P1" / "04h", TileConfig()
    a, b = _tiles(2, 1), _tiles(3, 2)
    _write(stem, cfg, [(["A1/t0", "A1/t1"], a), ([], _tiles(0)), (["A2/t0", "A2/t1", "A2/t2"], b)])
    tiles, ids = read_kept_tiles(stem, cfg, ["A2/t2", "A1/t0", "A1/t1", "A2/t0", "A2/t1"])
    assert ids == ["A1/t0", "A1/t1", "A2/t0", "A2/t1", "A2/t2"]
    np.testing.assert_array_equal(np.asarray(tiles), np.concatenate([a, b]))
    rows = [{"tile_id": i, "well": i[:2], "field": 1} for i in ids]
    groups = list(iter_cached(tiles, rows))
    assert [[r["tile_id"] for r in g] for g, _ in groups] == [ids[:2], ids[2:]]
    np.testing.assert_array_equal(groups[1][1], b)


def test_other_tiles_settings_or_a_torn_file_are_not_read(tmp_path):
    stem, cfg = tmp_path / "P1" / "04h", TileConfig()
    _write(stem, cfg, [(["A1/t0", "A1/t1"], _tiles(2))])
    assert read_kept_tiles(stem, cfg, ["A1/t0"]) is None  # other tiles
    assert read_kept_tiles(stem, cfg, ["A1/t0", "A9/t9"]) is None
    assert read_kept_tiles(stem, TileConfig(binning=2), ["A1/t0", "A1/t1"]) is None  # other settings
    with open(tmp_path / "P1" / "04h.bin", "ab") as f:
        f.write(b"\0" * 10)  # not the size the JSON says
    assert read_kept_tiles(stem, cfg, ["A1/t0", "A1/t1"]) is None
    remove_kept_tiles(stem)
    assert read_kept_tiles(stem, cfg, ["A1/t0", "A1/t1"]) is None
    assert not list((tmp_path / "P1").iterdir())


def test_an_aborted_write_leaves_the_previous_cache_and_no_temporary(tmp_path):
    stem, cfg = tmp_path / "P1" / "04h", TileConfig()
    _write(stem, cfg, [(["A1/t0"], _tiles(1, 3))])
    w = KeptTileWriter(stem, cfg)
    w.add(["B1/t0"], _tiles(1, 4))
    w.abort()
    tiles, ids = read_kept_tiles(stem, cfg, ["A1/t0"])
    assert ids == ["A1/t0"] and np.array_equal(np.asarray(tiles), _tiles(1, 3))
    assert sorted(p.name for p in (tmp_path / "P1").iterdir()) == ["04h.bin", "04h.json"]


def test_a_killed_writers_temporary_is_removed_by_the_next_writer(tmp_path):
    stem, cfg = tmp_path / "P1" / "04h", TileConfig()
    stem.parent.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process that wrote and is gone (SIGKILL mid-write leaves the same)
    host = socket.gethostname()
    stale = stem.parent / f".04h.{host}.{dead.pid}.bin.tmp"
    live = stem.parent / f".04h.{host}.{os.getppid()}.bin.tmp"  # another writer, still at work
    other = stem.parent / f".04h.elsewhere.{dead.pid}.bin.tmp"  # another host's: not ours to judge
    for f in (stale, live, other):
        f.write_bytes(b"\0" * 64)
    assert remove_stale_temporaries(stem) == [stale]
    _write(stem, cfg, [(["A1/t0"], _tiles(1))])
    assert sorted(p.name for p in stem.parent.iterdir()) == sorted(["04h.bin", "04h.json", live.name, other.name])
