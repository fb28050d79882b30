"""Tile → FOV → well aggregation of embeddings (``pl.Array(pl.Float32, D)`` columns).

:func:`aggregate_embeddings` averages the tile embeddings of each FOV, then the FOV embeddings of
each well (unweighted over FOVs); the handcrafted features go through the same function.
"""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["aggregate_embeddings"]


def _output_schema(df: pl.DataFrame, by: list[str], col: str, count_col: str,
                   rows_col: str | None) -> dict:
    """The result's schema; ``ValueError`` for missing columns or a non-Array ``col``."""
    if not by:
        raise ValueError("aggregate_embeddings needs at least one grouping column")
    missing = [c for c in [*by, col] if c not in df.columns]
    if missing:
        raise ValueError(f"aggregate_embeddings: missing column(s) {missing}; have {df.columns}")
    dt = df.schema[col]
    if not isinstance(dt, pl.Array):
        raise ValueError(f"column {col!r} must be pl.Array(pl.Float32, D), got {dt}")
    schema = {**{c: df.schema[c] for c in by}, col: pl.Array(pl.Float32, dt.size),
              count_col: pl.Int64}
    if rows_col:
        schema[rows_col] = pl.Int64
    return schema


def _group_rows(df: pl.DataFrame, by: list[str]):
    """Groups of ``by`` in first-appearance order: (key frame, row order sorted by group, start
    of each group in that order, group sizes)."""
    groups = df.select(by).with_row_index("__row").group_by(by, maintain_order=True).agg(
        pl.col("__row"))
    rows = groups["__row"]
    lengths = rows.list.len().to_numpy().astype(np.int64)
    order = rows.explode().to_numpy().astype(np.int64)  # row indices sorted by group
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return groups.drop("__row"), order, starts, lengths


def aggregate_embeddings(
    df: pl.DataFrame,
    by: list[str],
    col: str = "embedding",
    *,
    count_col: str = "n_tiles",
    rows_col: str | None = None,
) -> pl.DataFrame:
    """Mean of the ``pl.Array(pl.Float32, D)`` column ``col`` per group of ``by``.

    Returns one row per group (first-appearance order; null keys form their own group) with the
    ``by`` columns, ``col`` (``pl.Array(pl.Float32, D)``, accumulated in float64) and
    ``count_col``: the number of rows in the group, or, when the input already has a
    ``count_col`` column (e.g. FOV rows carrying their ``n_tiles``), its sum (so a well's
    ``n_tiles`` counts tiles, while its embedding is the unweighted mean over FOVs).
    ``rows_col`` (optional, e.g. ``"n_fovs"``) adds the number of rows per group.
    Vectorised: one sort + ``np.add.reduceat``; no per-group Python loop.
    """
    by = list(by)
    schema = _output_schema(df, by, col, count_col, rows_col)
    if df.height == 0:
        return pl.DataFrame(schema=schema)
    keys, order, starts, lengths = _group_rows(df, by)
    emb = df[col].to_numpy()
    if emb.ndim != 2:  # nulls inside the array column
        raise ValueError(f"column {col!r} contains null embeddings")
    sums = np.add.reduceat(emb[order].astype(np.float64, copy=False), starts, axis=0)
    means = (sums / lengths[:, None]).astype(np.float32)
    counts = lengths
    if count_col in df.columns:
        counts = np.add.reduceat(df[count_col].to_numpy().astype(np.int64)[order], starts)
    out = keys.with_columns(pl.Series(col, means, dtype=schema[col]),
                            pl.Series(count_col, counts, dtype=pl.Int64))
    if rows_col:
        out = out.with_columns(pl.Series(rows_col, lengths, dtype=pl.Int64))
    return out
