"""Where training tiles come from: a small protocol and an in-memory implementation.

A tile source is a tile table (polars; one row per tile with at least ``compound``, ``dose``,
``timepoint``, ``replica``, ``plate`` for cross-batch sampling) plus random access to the tile
arrays by row index: ``load(i)`` → ``(3, T, T)`` float32 in [0, 1] (planes as channels, as
:mod:`lcd_core.tiles.grid` writes them). The sampler picks row indices; the trainer loads them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

__all__ = ["TileSource", "InMemoryTileSource", "TileBank", "replica_index"]


@runtime_checkable
class TileSource(Protocol):
    @property
    def table(self) -> pl.DataFrame: ...

    def __len__(self) -> int: ...

    def load(self, i: int) -> np.ndarray: ...


def replica_index(table: pl.DataFrame, column: str = "replica") -> tuple[np.ndarray, list, np.ndarray]:
    """(per-row replica id 0..R−1, the sorted replica labels, each replica's share of the rows)."""
    if column not in table.columns:
        return np.zeros(table.height, np.int64), [None], np.ones(1)
    labels = sorted(table[column].unique().to_list(), key=lambda v: (v is None, str(v)))
    lut = {v: i for i, v in enumerate(labels)}
    ids = np.array([lut[v] for v in table[column].to_list()], dtype=np.int64)
    share = np.bincount(ids, minlength=len(labels)) / max(len(ids), 1)
    return ids, labels, share


class InMemoryTileSource:
    """Tiles held in one ``(N, 3, T, T)`` array (float in [0, 1], or uint8/uint16 scaled to [0, 1])."""

    def __init__(self, tiles: np.ndarray, table: pl.DataFrame):
        if tiles.ndim != 4 or tiles.shape[1] != 3:
            raise ValueError(f"tiles must be (N, 3, T, T), got {tiles.shape}")
        if len(tiles) != table.height:
            raise ValueError(f"{len(tiles)} tiles but {table.height} table rows")
        self._tiles, self._table = tiles, table

    @property
    def table(self) -> pl.DataFrame:
        return self._table

    def __len__(self) -> int:
        return len(self._tiles)

    def load(self, i: int) -> np.ndarray:
        x = self._tiles[int(i)]
        if np.issubdtype(x.dtype, np.integer):
            return x.astype(np.float32) / np.iinfo(x.dtype).max
        return x.astype(np.float32, copy=False)

    @classmethod
    def random(cls, n_conditions: int = 4, n_replicas: int = 2, tiles_per: int = 2, size: int = 64,
               seed: int = 0, plates_per_replica: int = 1) -> InMemoryTileSource:
        """Random tiles over ``n_conditions`` compounds × ``n_replicas`` replicas (tests, smoke runs)."""
        rng = np.random.default_rng(seed)
        rows = []
        for c in range(n_conditions):
            for r in range(n_replicas):
                for k in range(tiles_per):
                    plate = f"R{r + 1:02d}-L{(k % plates_per_replica) + 1:02d}"
                    rows.append({"tile_id": f"{plate}/04h/c{c}/t{k}", "compound": f"cpd{c}",
                                 "dose": "10uM", "timepoint": "04h", "replica": f"R{r + 1:02d}",
                                 "plate": plate})
        table = pl.DataFrame(rows)
        tiles = rng.random((table.height, 3, size, size), dtype=np.float32)
        return cls(tiles, table)


class TileBank:
    """A tile source on disk: ``tiles.npy`` (``(N, 3, T, T)`` float16, memory-mapped) next to
    ``tiles.parquet`` (the tile table, row ``i`` ↔ array ``i``).

    Training re-reads tiles thousands of times; decoding TIFFs and re-tiling each time would cost
    more than the model step on a CPU, so the pre-training asset writes the kept tiles once.
    float16 is what :mod:`lcd_core.tiles.grid` produces, so the bank is exact; reading is lazy, so a
    bank larger than memory still trains.
    """

    ARRAY, TABLE = "tiles.npy", "tiles.parquet"

    def __init__(self, folder):
        self.folder = Path(folder)
        arr, tab = self.folder / self.ARRAY, self.folder / self.TABLE
        if not arr.exists() or not tab.exists():
            raise FileNotFoundError(f"tile bank {self.folder} lacks {self.ARRAY} or {self.TABLE}")
        self._tiles = np.load(arr, mmap_mode="r")
        self._table = pl.read_parquet(tab)
        if self._tiles.shape[0] != self._table.height:
            raise ValueError(f"tile bank {self.folder}: {self._tiles.shape[0]} tiles but "
                             f"{self._table.height} table rows")

    def __reduce__(self):
        # a bank travels (to a cluster worker) as its folder, memory-mapped again there
        return (type(self), (self.folder,))

    @property
    def table(self) -> pl.DataFrame:
        return self._table

    @property
    def tiles(self) -> np.ndarray:
        return self._tiles

    def __len__(self) -> int:
        return self._table.height

    def load(self, i: int) -> np.ndarray:
        return np.asarray(self._tiles[int(i)], dtype=np.float32)

    def subset(self, mask: np.ndarray) -> _BankView:
        """The rows where ``mask`` holds, as a lazy view of the bank."""
        return _BankView(self, np.flatnonzero(np.asarray(mask, dtype=bool)))

    @classmethod
    def write(cls, folder, chunks, n: int, tile_size: int) -> TileBank:
        """Write a bank from ``chunks``: an iterable of ``(rows, (k, 3, T, T) float array)``, ``n``
        tiles in all. Written under a temporary name and renamed, so a failed write leaves the
        previous bank in place (and no temporary folder)."""
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            rows = cls._fill(tmp, chunks, n, tile_size)
            pl.DataFrame(rows, infer_schema_length=None).write_parquet(tmp / cls.TABLE)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
        return cls(folder)

    @classmethod
    def _fill(cls, folder: Path, chunks, n: int, tile_size: int) -> list[dict]:
        arr = np.lib.format.open_memmap(folder / cls.ARRAY, mode="w+", dtype=np.float16,
                                        shape=(n, 3, tile_size, tile_size))
        rows: list[dict] = []
        for chunk_rows, x in chunks:
            k = len(chunk_rows)
            if len(rows) + k > n:
                raise ValueError(f"tile bank: more than the announced {n} tiles")
            arr[len(rows):len(rows) + k] = x
            rows.extend(chunk_rows)
        if len(rows) != n:
            raise ValueError(f"tile bank: {len(rows)} tiles written, {n} announced")
        arr.flush()
        return rows


class _BankView:
    """Rows ``idx`` of a :class:`TileBank`, read lazily."""

    def __init__(self, bank: TileBank, idx: np.ndarray):
        self._bank, self._idx = bank, idx
        self._table = bank.table[idx]

    @property
    def table(self) -> pl.DataFrame:
        return self._table

    def __len__(self) -> int:
        return int(self._idx.size)

    def load(self, i: int) -> np.ndarray:
        return self._bank.load(int(self._idx[int(i)]))

    def array(self) -> np.ndarray:
        """All rows as one float16 array (for embedding a held-out set)."""
        return np.asarray(self._bank.tiles[self._idx])
