"""Cross-batch (XB) pair sampler: the two global crops of a sample come from two different replicas
of the same compound, dose and timepoint (CDCL; the paper's "two experimental replicas").

Every step draws ``batch_size`` anchors (row indices of the tile table) from a per-epoch permutation
and, for each anchor, a partner of the same condition (``compound, dose, timepoint``), uniformly among

1. tiles of another replica (``cross_replica``: the normal case);
2. when the condition has this replica only: tiles of another plate (``fallback_plate``, same
   replica — e.g. the compound on two layouts);
3. otherwise another tile of the same plate (``fallback_tile``);
4. otherwise the anchor itself (``fallback_self``: a condition with a single tile).

Negative controls (``role == "negative_control"``, when the table has a ``role`` column) are one
condition per timepoint whatever the plate's dose: DMSO is the same treatment in every replica, and
in a screen where each replica carries one dose these are the only cross-replica pairs most
conditions have; they are what teaches the teacher to ignore the replica.

The fallbacks are counted in :attr:`CrossBatchSampler.stats`. Without XB the partner is the anchor
itself (``same_tile``): both global crops come from one tile, as in standard DINO.

Batches are a pure function of ``(seed, step)``: a resumed run sees the same data order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["CrossBatchSampler", "PairBatch", "CONDITION"]

CONDITION = ("compound", "dose", "timepoint")
CONTROL_ROLE = "negative_control"
KINDS = ("cross_replica", "fallback_plate", "fallback_tile", "fallback_self", "same_tile")


@dataclass
class PairBatch:
    anchor: np.ndarray  # (B,) row indices of the table
    partner: np.ndarray  # (B,)
    kind: list[str]  # one of KINDS per pair
    epoch: int


class CrossBatchSampler:
    def __init__(self, table: pl.DataFrame, *, cross_batch: bool = True, seed: int = 0,
                 condition: tuple[str, ...] = CONDITION, domain: str = "replica", plate: str = "plate"):
        need = [*condition, domain, plate] if cross_batch else []
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise ValueError(f"tile table lacks column(s) {missing} needed for cross-batch sampling")
        if table.height == 0:
            raise ValueError("empty tile table")
        self.n = table.height
        self.cross_batch, self.seed = bool(cross_batch), int(seed)
        self.stats: Counter[str] = Counter()
        if not cross_batch:
            return
        t = table.select(need + (["role"] if "role" in table.columns else [])).with_row_index("_i")
        if "role" in t.columns and "dose" in condition:
            t = t.with_columns(pl.when(pl.col("role") == CONTROL_ROLE).then(pl.lit("*"))
                               .otherwise(pl.col("dose").cast(pl.Utf8)).alias("dose"))
        t = t.with_columns(
            pl.struct(list(condition)).rank("dense").alias("_g"),
            pl.col(domain).rank("dense").alias("_r"),
            pl.col(plate).rank("dense").alias("_p"),
        )
        g, r, p = (t[c].to_numpy().astype(np.int64) for c in ("_g", "_r", "_p"))
        idx = t["_i"].to_numpy().astype(np.int64)
        # per anchor: its candidate list at the best available level (shared arrays per key)
        self._cand: list[np.ndarray] = [None] * self.n  # type: ignore[list-item]
        self._kind: list[str] = [""] * self.n
        cache: dict[tuple, np.ndarray] = {}
        order = np.argsort(g, kind="stable")
        bounds = np.flatnonzero(np.diff(g[order])) + 1
        for grp in np.split(order, bounds):
            gi, gr, gp = idx[grp], r[grp], p[grp]
            for j, i in enumerate(gi):
                key_r = (g[i], "r", r[i])
                if key_r not in cache:
                    cache[key_r] = gi[gr != r[i]]
                if cache[key_r].size:
                    self._cand[i], self._kind[i] = cache[key_r], "cross_replica"
                    continue
                key_p = (g[i], "p", p[i])
                if key_p not in cache:
                    cache[key_p] = gi[gp != p[i]]
                if cache[key_p].size:
                    self._cand[i], self._kind[i] = cache[key_p], "fallback_plate"
                elif gi.size > 1:
                    self._cand[i], self._kind[i] = gi[gi != i], "fallback_tile"
                else:
                    self._cand[i], self._kind[i] = gi, "fallback_self"

    def levels(self) -> Counter[str]:
        """How many anchors of the table fall to each level (a property of the table)."""
        return Counter(self._kind) if self.cross_batch else Counter({"same_tile": self.n})

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(self.n // batch_size, 1)

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 0x5EED, epoch]).permutation(self.n)

    def batch(self, step: int, batch_size: int) -> PairBatch:
        """The pairs of ``step`` (anchors: the epoch's permutation, drop-last; partners: drawn with
        an RNG seeded by (seed, step)). A table smaller than the batch repeats anchors."""
        spe = self.steps_per_epoch(batch_size)
        epoch, k = divmod(int(step), spe)
        perm = self._perm(epoch)
        anchor = np.resize(np.roll(perm, -k * batch_size), batch_size) if self.n < batch_size \
            else perm[k * batch_size:(k + 1) * batch_size]
        if not self.cross_batch:
            kinds = ["same_tile"] * batch_size
            self.stats.update(kinds)
            return PairBatch(anchor.copy(), anchor.copy(), kinds, epoch)
        rng = np.random.default_rng([self.seed, 0xB0B, int(step)])
        partner = np.empty_like(anchor)
        kinds = []
        for j, a in enumerate(anchor):
            c = self._cand[a]
            partner[j] = c[rng.integers(c.size)]
            kinds.append(self._kind[a])
        self.stats.update(kinds)
        return PairBatch(anchor.copy(), partner, kinds, epoch)
