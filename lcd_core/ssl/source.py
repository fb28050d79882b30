"""Where training tiles come from: a small protocol and an in-memory implementation.

A tile source is a tile table (polars; one row per tile with at least ``compound``, ``dose``,
``timepoint``, ``replica``, ``plate`` for cross-batch sampling) plus random access to the tile
arrays by row index: ``load(i)`` → ``(3, T, T)`` float32 in [0, 1] (planes as channels, as
:mod:`lcd_core.tiles` writes them). The sampler picks row indices; the trainer loads them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

__all__ = ["TileSource", "InMemoryTileSource", "replica_index"]


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
