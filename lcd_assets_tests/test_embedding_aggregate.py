"""Tile → FOV → well aggregation (lcd_core.embedding.aggregate): equals a naive group-by."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.embedding.aggregate import aggregate_embeddings


def test_aggregate_embeddings_equals_naive_groupby():
    rng = np.random.default_rng(0)
    n, d = 500, 384
    df = pl.DataFrame(
        {
            "plate": rng.choice(["R01-L01", "R02-L03"], n),
            "well": rng.choice(["B02", "C07", "P24", None], n),
            "field": rng.integers(1, 5, n),
            "embedding": rng.standard_normal((n, d)).astype(np.float32),
        },
        schema_overrides={"embedding": pl.Array(pl.Float32, d)},
    )
    fov = aggregate_embeddings(df, ["plate", "well", "field"])
    assert fov.schema["embedding"] == pl.Array(pl.Float32, d) and fov["n_tiles"].sum() == n
    emb = df["embedding"].to_numpy()
    keys = list(zip(df["plate"], df["well"], df["field"]))
    for row in fov.iter_rows(named=True):
        k = (row["plate"], row["well"], row["field"])
        idx = [i for i, kk in enumerate(keys) if kk == k]
        assert row["n_tiles"] == len(idx)
        np.testing.assert_allclose(np.asarray(row["embedding"]), emb[idx].mean(0), rtol=1e-5, atol=1e-6)
    assert fov.height == len(set(keys))
    # FOV -> well: unweighted mean over FOVs, n_tiles summed, number of FOVs reported
    well = aggregate_embeddings(fov, ["plate", "well"], rows_col="n_fovs")
    assert well["n_tiles"].sum() == n and well["n_fovs"].sum() == fov.height
    femb = fov["embedding"].to_numpy()
    for row in well.iter_rows(named=True):
        m = (fov["plate"] == row["plate"]).to_numpy() & np.array(
            [w == row["well"] for w in fov["well"]], dtype=bool
        )
        np.testing.assert_allclose(np.asarray(row["embedding"]), femb[m].mean(0), rtol=1e-5, atol=1e-6)
    empty = aggregate_embeddings(df.head(0), ["plate"])
    assert empty.height == 0 and empty.schema["embedding"] == pl.Array(pl.Float32, d)
    with pytest.raises(ValueError):
        aggregate_embeddings(df, ["nope"])
