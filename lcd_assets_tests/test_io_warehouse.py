"""Tests of lcd_core.io.warehouse against real DuckDB files and Parquet datasets in tmp_path."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from lcd_core.io.warehouse import Warehouse, WarehouseLockError

P1 = {"plate": "R01-L01", "timepoint": "04h"}
P2 = {"plate": "R01-L01", "timepoint": "08h"}


def _rows(partition: dict[str, str], n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame({
        "plate": [partition["plate"]] * n,
        "timepoint": [partition["timepoint"]] * n,
        "well": [f"A{i + 1:02d}" for i in range(start, start + n)],
        "value": list(range(start, start + n)),
    })


def _embeddings(partition: dict[str, str], n: int, seed: int = 0) -> pl.DataFrame:
    vecs = np.random.default_rng(seed).random((n, 384), dtype=np.float32)
    return pl.DataFrame({
        "plate": [partition["plate"]] * n,
        "timepoint": [partition["timepoint"]] * n,
        "tile": list(range(n)),
    }).with_columns(pl.Series("embedding", vecs, dtype=pl.Array(pl.Float32, 384)))


@pytest.fixture()
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "home", lock_timeout_s=30)


def _count(wh: Warehouse, table: str, partition: dict[str, str] | None = None) -> int:
    if partition is None:
        return int(wh.query(f"SELECT count(*) AS n FROM {table}")["n"][0])
    return int(wh.query(f"SELECT count(*) AS n FROM {table} WHERE plate = ? AND timepoint = ?",
                        [partition["plate"], partition["timepoint"]])["n"][0])


def test_paths(wh: Warehouse) -> None:
    assert wh.db_path == wh.home / "warehouse.duckdb"
    assert wh.parquet_root == wh.home / "parquet"
    assert wh.tables() == []


def test_replace_partition_idempotent_and_isolated(wh: Warehouse) -> None:
    assert wh.replace_partition("tiles", _rows(P1, 5), P1) == 5
    assert wh.replace_partition("tiles", _rows(P2, 3), P2) == 3
    assert wh.replace_partition("tiles", _rows(P1, 5), P1) == 5  # re-run: no duplicates
    assert (_count(wh, "tiles", P1), _count(wh, "tiles", P2)) == (5, 3)
    wh.replace_partition("tiles", _rows(P1, 2, start=10), P1)  # replaces P1 only
    assert (_count(wh, "tiles", P1), _count(wh, "tiles", P2)) == (2, 3)
    assert wh.query("SELECT value FROM tiles WHERE timepoint = '04h' ORDER BY 1")["value"].to_list() == [10, 11]
    assert wh.tables() == ["tiles"]
    assert wh.delete_table_partition("tiles", P2) == 3
    assert _count(wh, "tiles") == 2


def test_rows_must_carry_partition_values(wh: Warehouse) -> None:
    df = pl.concat([_rows(P1, 3), _rows(P2, 1)])
    with pytest.raises(ValueError, match=r"row index 3 has timepoint='08h', not the partition value '04h'"):
        wh.replace_partition("tiles", df, P1)
    with pytest.raises(ValueError, match="no column 'plate'"):
        wh.replace_partition("tiles", _rows(P1, 2).drop("plate"), P1)
    assert wh.tables() == []


def test_failed_write_keeps_old_rows(wh: Warehouse) -> None:
    wh.replace_partition("tiles", _rows(P1, 4), P1)
    bad = _rows(P1, 2).with_columns(pl.col("value").cast(pl.String) + "x")
    with pytest.raises(ValueError, match=r"schema mismatch .*value: table has BIGINT, data has VARCHAR"):
        wh.replace_partition("tiles", bad, P1)
    assert _count(wh, "tiles", P1) == 4

    # a failure after the DELETE (constraint violated by the INSERT) rolls the DELETE back
    with wh.connect() as con:
        con.execute("CREATE TABLE checked (plate VARCHAR, timepoint VARCHAR, well VARCHAR, value BIGINT CHECK (value >= 0))")
    wh.replace_partition("checked", _rows(P1, 4), P1)
    with pytest.raises(duckdb.ConstraintException):
        wh.replace_partition("checked", _rows(P1, 3).with_columns(pl.lit(-1).alias("value")), P1)
    assert wh.query("SELECT value FROM checked ORDER BY 1")["value"].to_list() == [0, 1, 2, 3]


def test_incoming_transaction_commits_or_rolls_back(wh: Warehouse) -> None:
    with wh._incoming_transaction(_rows(P1, 2)) as con:
        con.execute("CREATE TABLE t AS SELECT * FROM _lcd_incoming")
    assert _count(wh, "t") == 2
    with pytest.raises(RuntimeError, match="boom"):
        with wh._incoming_transaction(_rows(P1, 3)) as con:
            con.execute("INSERT INTO t SELECT * FROM _lcd_incoming")
            raise RuntimeError("boom")
    assert _count(wh, "t") == 2  # the INSERT was rolled back


def test_schema_evolution_adds_columns(wh: Warehouse) -> None:
    wh.replace_partition("tiles", _rows(P1, 2), P1)
    wh.replace_partition("tiles", _rows(P2, 2).with_columns(pl.lit("edge").alias("qc_reason")), P2)
    out = wh.query("SELECT timepoint, qc_reason FROM tiles ORDER BY timepoint, well")
    assert out["qc_reason"].to_list() == [None, None, "edge", "edge"]
    # narrower ints insert into a wider column; a missing column becomes NULL
    wh.replace_partition("tiles", _rows(P1, 1).with_columns(pl.col("value").cast(pl.Int16)), P1)
    assert _count(wh, "tiles") == 3
    # an all-null polars column creates a VARCHAR column, not DuckDB's unusable NULL type
    wh.replace_partition("fresh", _rows(P1, 1).with_columns(pl.lit(None).alias("note")), P1)
    wh.replace_partition("fresh", _rows(P1, 1).with_columns(pl.lit("ok").alias("note")), P1)
    assert wh.query("SELECT note FROM fresh")["note"].to_list() == ["ok"]


def test_replace_table(wh: Warehouse) -> None:
    wh.replace_table("compounds", pl.DataFrame({"compound": ["DMSO", "a"]}))
    wh.replace_table("compounds", pl.DataFrame({"compound": ["b"], "moa": ["x"]}))
    assert wh.query("SELECT * FROM compounds").to_dicts() == [{"compound": "b", "moa": "x"}]


def test_parquet_roundtrip_and_view(wh: Warehouse) -> None:
    df1, df2 = _embeddings(P1, 7, seed=1), _embeddings(P2, 5, seed=2)
    path = wh.write_parquet_partition("tile_embeddings", P1, df1)
    assert path == wh.parquet_root / "tile_embeddings" / "plate=R01-L01" / "timepoint=04h" / "part-0.parquet"
    wh.write_parquet_partition("tile_embeddings", P1, df1)  # idempotent overwrite
    wh.write_parquet_partition("tile_embeddings", P2, df2.drop("plate", "timepoint"))  # columns added
    assert [p.name for p in path.parent.iterdir()] == ["part-0.parquet"]  # no temp files left

    back = wh.read_parquet_partition("tile_embeddings", P1)
    assert back.schema["embedding"] == pl.Array(pl.Float32, 384)
    assert back.equals(df1)
    assert wh.read_parquet_partition("tile_embeddings", P2).equals(df2)
    assert wh.read_parquet_partition("tile_embeddings", {"plate": "R01-L01"}).height == 12

    assert wh.refresh_views(["tile_embeddings", "fov_embeddings"]) == ["tile_embeddings"]
    assert wh.tables() == ["tile_embeddings"]
    types = wh.query("SELECT typeof(embedding) AS e, typeof(plate) AS p, typeof(timepoint) AS t "
                     "FROM tile_embeddings LIMIT 1").row(0)
    assert types == ("FLOAT[384]", "VARCHAR", "VARCHAR")
    counts = wh.query("SELECT timepoint, count(*) AS n FROM tile_embeddings GROUP BY 1 ORDER BY 1")
    assert counts.to_dicts() == [{"timepoint": "04h", "n": 7}, {"timepoint": "08h", "n": 5}]
    got = wh.query("SELECT embedding FROM tile_embeddings WHERE timepoint = '04h' ORDER BY tile")
    assert got.schema["embedding"] == pl.Array(pl.Float32, 384)
    np.testing.assert_array_equal(got["embedding"].to_numpy(), df1["embedding"].to_numpy())
    sim = wh.query("SELECT array_cosine_similarity(embedding, embedding) AS s FROM tile_embeddings")
    assert np.allclose(sim["s"].to_numpy(), 1.0, atol=1e-5)

    with pytest.raises(ValueError, match="not the partition value"):
        wh.write_parquet_partition("tile_embeddings", P2, df1)
    with pytest.raises(FileNotFoundError):
        wh.read_parquet_partition("tile_embeddings", {"plate": "R09-L09", "timepoint": "04h"})

    assert wh.delete_partition("tile_embeddings", P1) == 1
    wh.refresh_views(["tile_embeddings"])
    assert _count(wh, "tile_embeddings") == 5
    assert wh.delete_partition("tile_embeddings", P2) == 1
    assert wh.refresh_views(["tile_embeddings"]) == []
    assert wh.tables() == []


def test_hive_columns_stay_strings(wh: Warehouse) -> None:
    wh.write_parquet_partition("batches", {"batch": "007", "timepoint": "20h"}, pl.DataFrame({"x": [1.5]}))
    wh.refresh_views(["batches"])
    out = wh.query("SELECT * FROM batches")
    assert out.to_dicts() == [{"batch": "007", "timepoint": "20h", "x": 1.5}]
    assert out.schema["batch"] == pl.String


def _hold_lock(db_path: str, locked, seconds: float) -> None:
    con = duckdb.connect(db_path)
    con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
    locked.set()
    time.sleep(seconds)
    con.close()


def test_lock_conflict_from_other_process_is_retried(wh: Warehouse) -> None:
    wh.replace_partition("tiles", _rows(P1, 1), P1)
    ctx = mp.get_context("spawn")
    locked = ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(wh.db_path), locked, 2.0))
    proc.start()
    try:
        assert locked.wait(30), "lock holder did not start"
        impatient = Warehouse(wh.home, lock_timeout_s=0.3)
        with pytest.raises(WarehouseLockError, match="locked by another process"):
            impatient.replace_partition("tiles", _rows(P1, 2), P1)
        t0 = time.monotonic()
        assert wh.replace_partition("tiles", _rows(P1, 3), P1) == 3
        assert time.monotonic() - t0 > 0.5  # it had to wait for the other process
    finally:
        proc.join(30)
    assert proc.exitcode == 0
    assert _count(wh, "tiles", P1) == 3
    assert "held" in wh.tables()
