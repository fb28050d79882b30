"""A partition's kept tiles, kept on disk from the tiling to the kept-tile pass.

Tiling decodes and QCs every FOV; the kept-tile pass needs the kept tiles again. Instead of
decoding and tiling each FOV a second time, the tiling appends the kept tiles to a raw float16
file as it goes (memory bounded by one FOV) and the pass reads them back memory-mapped.

Two files per partition: ``<stem>.bin`` (the tiles, ``(n, 3, T, T)`` in tiling order) and
``<stem>.json`` (shape, dtype, the tiling settings and the tile ids), written to temporary names
and renamed, the JSON last: a cache without its JSON, with other settings or other tile ids than
the pass asks for is ignored, and the pass decodes the TIFFs as before. A temporary file names its
writer's host and process; one whose process is gone (killed mid-write) is removed by the next
writer of the partition on that host.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lcd_core.tiles.preprocess import TileConfig

__all__ = ["KeptTileWriter", "iter_cached", "read_kept_tiles", "remove_kept_tiles", "remove_stale_temporaries"]


def _file(stem: Path, ext: str) -> Path:
    return Path(stem).parent / f"{Path(stem).name}{ext}"


def _config_key(config: TileConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


class KeptTileWriter:
    """Append kept tiles FOV by FOV; :meth:`commit` makes them visible, :meth:`abort` drops them."""

    def __init__(self, stem: Path, config: TileConfig) -> None:
        self.stem, self.config = Path(stem), config
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.stem)
        self._tmp = self.stem.with_name(f".{self.stem.name}.{writer_tag()}.bin.tmp")
        self._file = open(self._tmp, "wb")
        self._ids: list[str] = []
        self._shape: tuple[int, ...] | None = None
        self._dtype: str | None = None

    def add(self, tile_ids: list[str], tiles: np.ndarray) -> None:
        """Append ``tiles`` ``(n, 3, T, T)`` with their ids."""
        if not len(tile_ids):
            return
        if self._shape is None:
            self._shape, self._dtype = tuple(tiles.shape[1:]), str(tiles.dtype)
        elif tuple(tiles.shape[1:]) != self._shape or str(tiles.dtype) != self._dtype:
            raise ValueError(f"tiles of shape {tiles.shape[1:]} {tiles.dtype} after {self._shape} {self._dtype}")
        self._file.write(np.ascontiguousarray(tiles).tobytes())
        self._ids += list(tile_ids)

    def commit(self) -> None:
        """Rename the tiles into place, then write the JSON that makes them readable."""
        self._file.close()
        remove_kept_tiles(self.stem)
        os.replace(self._tmp, _file(self.stem, ".bin"))
        meta = {"shape": self._shape, "dtype": self._dtype, "config": _config_key(self.config), "tile_ids": self._ids}
        tmp = self.stem.with_name(f".{self.stem.name}.{writer_tag()}.json.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, _file(self.stem, ".json"))

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def writer_tag() -> str:
    """``<host>.<pid>``: who writes a temporary file."""
    return f"{socket.gethostname()}.{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(stem: Path) -> list[Path]:
    """Remove the temporary files of ``stem``'s cache left by writers of this host that no longer
    run (a process killed mid-write); returns them."""
    host, stale = socket.gethostname(), []
    for tmp in Path(stem).parent.glob(f".{Path(stem).name}.{host}.*.tmp"):
        pid = tmp.name[len(f".{Path(stem).name}.{host}."):].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            stale.append(tmp)
    return stale


def read_kept_tiles(stem: Path, config: TileConfig, tile_ids: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """``(tiles, ids)``: the cached tiles (memory-mapped) and their ids in cache order, when the
    cache holds exactly ``tile_ids`` tiled with ``config``; None when it is missing, incomplete,
    of other settings or of other tiles."""
    try:
        meta = json.loads(_file(stem, ".json").read_text())
    except (OSError, ValueError):
        return None
    ids = meta.get("tile_ids") or []
    if meta.get("config") != _config_key(config) or not ids or len(ids) != len(tile_ids) or set(ids) != set(tile_ids):
        return None
    shape = (len(ids), *meta["shape"])
    try:
        if _file(stem, ".bin").stat().st_size != int(np.prod(shape)) * np.dtype(meta["dtype"]).itemsize:
            return None
        return np.memmap(_file(stem, ".bin"), dtype=meta["dtype"], mode="r", shape=shape), ids
    except (OSError, ValueError):
        return None


def remove_kept_tiles(stem: Path) -> None:
    """Delete the cache of a partition (the JSON first, so a half-deleted cache is never read)."""
    for ext in (".json", ".bin"):
        _file(stem, ext).unlink(missing_ok=True)


def iter_cached(tiles: np.ndarray, rows: list[dict]) -> Iterator[tuple[list[dict], np.ndarray]]:
    """``(rows, tiles)`` FOV by FOV from cached ``tiles`` and their ``rows`` (same order)."""
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or (rows[i]["well"], rows[i]["field"]) != (rows[start]["well"], rows[start]["field"]):
            yield rows[start:i], np.asarray(tiles[start:i])
            start = i
