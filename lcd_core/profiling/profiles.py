"""Profiles in the cytomining convention (``Metadata_*`` columns + feature columns)."""

from __future__ import annotations

import numpy as np
import polars as pl

FEATURE_PREFIX = "emb_"


def feature_names(dim: int) -> list[str]:
    """``emb_000`` … feature column names for a ``dim``-dimensional embedding."""
    return [f"{FEATURE_PREFIX}{i:03d}" for i in range(dim)]


def to_cytomining(df: pl.DataFrame, col: str = "embedding") -> pl.DataFrame:
    """Wide profiles: every non-embedding column becomes ``Metadata_<name>``, the vector columns.

    Parameters
    ----------
    df
        Rows with an ``Array(Float32, d)`` column ``col`` and metadata columns.

    Returns
    -------
    polars.DataFrame
        ``Metadata_*`` columns first, then ``emb_000`` … ``emb_{d-1}`` as Float32.
    """
    if df.height == 0:
        return pl.DataFrame()
    emb = np.asarray(df[col].to_numpy(), dtype=np.float32)
    meta = df.drop(col).rename({c: f"Metadata_{c}" for c in df.columns if c != col})
    feats = pl.DataFrame(emb, schema=feature_names(emb.shape[1]), orient="row")
    return pl.concat([meta, feats], how="horizontal")


def feature_columns(df: pl.DataFrame) -> list[str]:
    """The feature (non-``Metadata_``) columns of a cytomining profile table."""
    return [c for c in df.columns if not c.startswith("Metadata_")]
