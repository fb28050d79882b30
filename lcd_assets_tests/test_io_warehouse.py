"""Tests of lcd_core.io.warehouse against real DuckDB files and Parquet datasets in tmp_path."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

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


# ------------------------------------------------------------------------ related tables, one transaction


def test_related_tables_are_replaced_in_one_transaction(wh: Warehouse) -> None:
    """A failure at the second table of ``replace_tables`` / ``replace_partitions`` leaves the first
    as it was too (``plate_registry``: compounds, layouts, plates; ``activity``: activity, activity_null)."""
    old = {"compounds": pl.DataFrame({"compound": ["DMSO", "a"]}), "layouts": pl.DataFrame({"well": ["A01"]})}
    assert wh.replace_tables(old) == {"compounds": 2, "layouts": 1}
    with wh.connect() as con:  # an object the second table cannot replace: a view of that name
        con.execute("CREATE VIEW plates AS SELECT 1 AS x")
    new = {"compounds": pl.DataFrame({"compound": ["b"]}), "plates": pl.DataFrame({"plate": ["R01-L01"]})}
    with pytest.raises(duckdb.CatalogException, match="plates"):
        wh.replace_tables(new)
    assert wh.query("SELECT compound FROM compounds ORDER BY 1")["compound"].to_list() == ["DMSO", "a"]

    wh.replace_partitions({"activity": _rows(P1, 4), "activity_null": _rows(P1, 2)}, P1)
    bad_null = _rows(P1, 3).with_columns(pl.col("value").cast(pl.String))  # 2nd table: VARCHAR into BIGINT
    with pytest.raises(ValueError, match=r"schema mismatch writing table 'activity_null'"):
        wh.replace_partitions({"activity": _rows(P1, 9, start=20), "activity_null": bad_null}, P1)
    with pytest.raises(ValueError, match=r"data for activity_null: row index 0 has timepoint='08h'"):
        wh.replace_partitions({"activity": _rows(P1, 9, start=20), "activity_null": _rows(P2, 1)}, P1)
    assert (_count(wh, "activity", P1), _count(wh, "activity_null", P1)) == (4, 2)
    assert wh.query("SELECT max(value) AS m FROM activity")["m"][0] == 3


# ------------------------------------------------------------------------ writers killed or racing

#: a writer process: builds a frame of ``n`` rows of generation ``gen`` for partition P1, waits for
#: the file ``go`` (unless "-"), says "begin", writes it (``table``: replace_partition of ``rows``;
#: ``parquet``: write_parquet_partition of ``vectors``), says "done"
_WRITER = """
import os, sys, time
import numpy as np, polars as pl
from lcd_core.io.warehouse import Warehouse
home, what, gen, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
part = {"plate": "R01-L01", "timepoint": "04h"}
df = pl.DataFrame({"row": np.arange(n), "gen": np.full(n, gen),
                   "x": np.random.default_rng(gen).random(n)}).with_columns(
    pl.lit(part["plate"]).alias("plate"), pl.lit(part["timepoint"]).alias("timepoint"))
while go != "-" and not os.path.exists(go):
    time.sleep(0.005)
print("begin", flush=True)
wh = Warehouse(home, lock_timeout_s=60)
if "table" in what:
    wh.replace_partition("rows", df, part)
if "parquet" in what:
    wh.write_parquet_partition("vectors", part, df)
print("done", flush=True)
"""


def _writer(home: Path, what: str, gen: int, n: int, go: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(home), what, str(gen), str(n), str(go or "-")],
                            stdout=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, when: Callable[[], bool]) -> bool:
    """SIGKILL ``proc`` once it began writing and ``when()`` holds (polled every 2 ms); whether it
    had finished by then."""
    assert proc.stdout.readline().strip() == "begin"
    while proc.poll() is None and not when():
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    done = "done" in proc.stdout.read()
    proc.wait()
    return done


def _grown(path: Path, nbytes: int) -> Callable[[], bool]:
    """Whether ``path`` has grown by ``nbytes`` since now (DuckDB writes an INSERT's row groups to
    the database file as it goes: the write is under way)."""
    size = path.stat().st_size
    return lambda: path.stat().st_size >= size + nbytes


def _exists(folder: Path, pattern: str) -> Callable[[], bool]:
    return lambda: any(folder.glob(pattern))


def _after(seconds: float) -> Callable[[], bool]:
    """True ``seconds`` after its first call (the kill loop's first poll: once the write began)."""
    start: list[float] = []

    def when() -> bool:
        if not start:
            start.append(time.monotonic())
        return time.monotonic() - start[0] >= seconds

    return when


def _generation(df: pl.DataFrame, sizes: dict[int, int], what: str) -> int:
    """The one generation ``df`` holds, all of it: never a mix, never a part."""
    gens = df["gen"].unique().to_list()
    assert gens, f"{what}: no rows (the old ones deleted, the new ones never written)"
    assert len(gens) == 1, f"{what}: rows of generations {sorted(gens)} mixed"
    assert df.height == sizes[gens[0]] == df["row"].n_unique(), f"{what}: {df.height} rows of generation {gens[0]}"
    return gens[0]


def _seed_partitions(home: Path) -> Warehouse:
    """Generation 0 in P1 (1000 rows) and P2 (10 rows) of table ``rows`` and dataset ``vectors``."""
    wh = Warehouse(home, lock_timeout_s=60)
    for part, n in ((P1, 1000), (P2, 10)):
        df = _rows(part, n).rename({"value": "row"}).with_columns(
            pl.lit(0, dtype=pl.Int64).alias("gen"), pl.lit(0.5).alias("x"))
        wh.replace_partition("rows", df, part)
        wh.write_parquet_partition("vectors", part, df)
    return wh


@pytest.mark.parametrize("what", ["table", "parquet"])
def test_a_writer_killed_mid_write_leaves_the_old_or_the_new_partition(tmp_path: Path, what: str) -> None:
    """SIGKILL during a large partition write (DuckDB ``replace_partition``, Parquet
    ``write_parquet_partition``): in the middle of it (the database file growing, the temporary
    Parquet file there), at the commit (its write-ahead log there), and at set times; after each
    the warehouse opens, the partition holds exactly its old rows or exactly the new ones, the
    other partition is untouched, and the killed writer's temporary file is removed by the next
    write of the partition."""
    n = 400_000
    homes = [tmp_path / f"trial{i}" for i in range(3)]
    whs = [_seed_partitions(home) for home in homes]
    if what == "table":  # in the INSERT (the database file grows), at the COMMIT (the WAL appears)
        triggers = [_grown(whs[0].db_path, 1 << 20), _exists(whs[1].home, "*.wal"), _after(0.3)]
    else:  # writing the temporary, then at set times
        triggers = [_exists(whs[0].partition_dir("vectors", P1), ".part-0.parquet.*.tmp"), _after(0.1), _after(0.3)]
    procs = [_writer(home, what, 1, n) for home in homes]
    with ThreadPoolExecutor(len(procs)) as pool:
        finished = list(pool.map(_kill_when, procs, triggers))
    assert not finished[0], "the writer finished before the kill that was meant to land mid-write"
    sizes, outcomes = {0: 1000, 1: n}, []
    for wh, done in zip(whs, finished):
        if what == "table":
            got = wh.query("SELECT * FROM rows WHERE plate = ? AND timepoint = ?", list(P1.values()))
            assert _count(wh, "rows", P2) == 10
        else:
            got = wh.read_parquet_partition("vectors", P1)
            assert wh.read_parquet_partition("vectors", P2).height == 10
        outcomes.append(_generation(got, sizes, f"{wh.home.name} P1"))
        assert outcomes[-1] == 1 or not done, f"{wh.home.name}: the write finished, yet the old rows remain"
        wh.replace_partition("rows", _rows(P1, 3).rename({"value": "row"}), P1)  # the next run writes
        folder = wh.partition_dir("vectors", P1)
        left = list(folder.glob(".part-0.parquet.*.tmp"))
        wh.write_parquet_partition("vectors", P1, _rows(P1, 3))
        assert not list(folder.glob("*.tmp")), f"{wh.home.name}: temporaries {left} left"
        assert wh.read_parquet_partition("vectors", P1).height == 3 and _count(wh, "rows", P1) == 3
        if what == "parquet" and wh is whs[0]:
            assert left, f"{wh.home.name}: a writer killed mid-write left no temporary"
    assert outcomes[0] == 0  # killed mid-write: the old rows


def test_a_live_writers_temporary_is_kept(wh: Warehouse) -> None:
    """Only temporaries of writers that no longer run are removed (one of another, live process of
    this host, or of another host, stays)."""
    folder = wh.partition_dir("vectors", P1)
    folder.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    stale, live, other = (folder / f".part-0.parquet.{h}.{pid}.abc123.tmp"
                          for h, pid in ((host, dead.pid), (host, os.getppid()), ("elsewhere", dead.pid)))
    for f in (stale, live, other):
        f.write_bytes(b"PAR1")
    wh.write_parquet_partition("vectors", P1, _rows(P1, 2))
    assert sorted(p.name for p in folder.iterdir()) == sorted(["part-0.parquet", live.name, other.name])


def test_two_writers_of_one_partition_never_mix(tmp_path: Path) -> None:
    """Two processes write different frames to the same partition at the same moment (table and
    Parquet): both succeed (the lock is waited for, not failed), and the partition holds exactly
    one of the two frames."""
    home, go = tmp_path / "home", tmp_path / "go"
    _seed_partitions(home)
    sizes = {1: 400_000, 2: 300_000}
    procs = [_writer(home, "table parquet", g, n, go) for g, n in sizes.items()]
    time.sleep(0.5)  # both are waiting at the gate with their frames built
    go.touch()
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and all("done" in o for o in outs), outs
    wh = Warehouse(home)
    table = wh.query("SELECT * FROM rows WHERE plate = ? AND timepoint = ?", list(P1.values()))
    assert _generation(table, sizes, "table rows P1") in sizes
    assert _generation(wh.read_parquet_partition("vectors", P1), sizes, "dataset vectors P1") in sizes
    assert _count(wh, "rows", P2) == 10


def test_a_view_is_made_again_only_when_its_files_columns_change(wh: Warehouse) -> None:
    def made() -> str:
        return wh.query("SELECT comment FROM duckdb_views() WHERE view_name = 'tile_embeddings'").item()

    wh.write_parquet_partition("tile_embeddings", P1, _embeddings(P1, 7, seed=1))
    wh.refresh_views(["tile_embeddings"])
    first = made()
    wh.write_parquet_partition("tile_embeddings", P2, _embeddings(P2, 5, seed=2))
    wh.refresh_views(["tile_embeddings"])
    assert made() == first and _count(wh, "tile_embeddings") == 12  # the glob reads the new partition
    extra = {"plate": "R02-L01", "timepoint": "04h"}
    wh.write_parquet_partition("tile_embeddings", extra, _embeddings(extra, 2, seed=3).with_columns(qc=pl.lit(1.0)))
    wh.refresh_views(["tile_embeddings"])
    assert made() != first  # a new column: the view is made again and shows it
    assert wh.query("SELECT count(qc) AS n FROM tile_embeddings").item() == 2
    with wh.connect() as con:
        con.execute("DROP VIEW tile_embeddings")  # another process's drop: made again
    assert wh.refresh_views(["tile_embeddings"]) == ["tile_embeddings"] and _count(wh, "tile_embeddings") == 14
