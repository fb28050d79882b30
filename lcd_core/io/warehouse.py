"""The DuckDB warehouse (``$LCD_HOME/warehouse.duckdb``) and Parquet datasets (``$LCD_HOME/parquet``).

Partitioned tables are rewritten one partition at a time in a single transaction (delete that
partition's rows, insert the new ones), so re-running never duplicates and a failure, or a writer
killed at any point, leaves the old rows; related tables of one asset are written in one transaction
(:meth:`Warehouse.replace_tables`, :meth:`Warehouse.replace_partitions`). Parquet partitions live at
``parquet/<dataset>/<k>=<v>/.../part-0.parquet`` and are written to a temporary file then
``os.replace``-d into place; the temporary names its writer's host and process, and one left by a
writer that no longer runs is removed by the next write of that partition.
:meth:`Warehouse.refresh_views` exposes each dataset as a DuckDB view with VARCHAR hive columns.

DuckDB allows one writer *process* per database file: :meth:`Warehouse.connect` retries a lock
conflict with backoff until a timeout (Dagster serialises writers too; this is the second line).
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lcd_core.tiles.cache import remove_stale_temporaries, writer_tag

DB_FILE = "warehouse.duckdb"
PARQUET_DIR = "parquet"
PART_FILE = "part-0.parquet"
DEFAULT_LOCK_TIMEOUT_S = 120.0

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INCOMING = "_lcd_incoming"

_INT_RANK = {"TINYINT": 1, "SMALLINT": 2, "INTEGER": 3, "BIGINT": 4, "HUGEINT": 5}
_UINT_RANK = {"UTINYINT": 1, "USMALLINT": 2, "UINTEGER": 3, "UBIGINT": 4, "UHUGEINT": 5}
_FLOAT_RANK = {"FLOAT": 1, "DOUBLE": 2}
_ARROW_TO_DUCKDB = {
    pa.float32(): "FLOAT", pa.float64(): "DOUBLE",
    pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT", pa.uint32(): "UINTEGER", pa.uint64(): "UBIGINT",
    pa.bool_(): "BOOLEAN",
}


class WarehouseLockError(TimeoutError):
    """The warehouse file stayed locked by another process past the timeout."""


def _ident(name: str, what: str = "identifier") -> str:
    """Validate a SQL identifier and return it double-quoted."""
    if not isinstance(name, str) or not _IDENT_RE.match(name):
        raise ValueError(f"{what} {name!r} must match {_IDENT_RE.pattern}")
    return f'"{name}"'


def _quote(name: str) -> str:
    """Double-quote any column name for SQL."""
    return '"' + str(name).replace('"', '""') + '"'


def _check_partition_value(key: str, value: str) -> str:
    _ident(key, "partition key")
    if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\\=\0"):
        raise ValueError(f"partition value {key}={value!r} must be a non-empty string without / \\ =")
    return value


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def check_partition_columns(df: pl.DataFrame, partition: Mapping[str, str], what: str = "data") -> pl.DataFrame:
    """Check every row of ``df`` carries the partition values; return ``df`` with them as String.

    Raises
    ------
    ValueError
        If a partition column is missing, or naming the first row whose value differs (or is null).
    """
    out = df
    for key, value in partition.items():
        _check_partition_value(key, value)
        if key not in df.columns:
            raise ValueError(f"{what}: has no column {key!r} for partition {dict(partition)}")
        col = df[key].cast(pl.String)
        bad = (col != value).fill_null(True)
        if bad.any():
            i = int(bad.arg_max())  # first True
            raise ValueError(
                f"{what}: row index {i} has {key}={col[i]!r}, not the partition value {value!r} "
                f"({int(bad.sum())} of {df.height} rows differ)"
            )
        if df.schema[key] != pl.String:
            out = out.with_columns(pl.col(key).cast(pl.String))
    return out


def _compatible(old: str, new: str) -> bool:
    """Whether values of DuckDB type ``new`` can be inserted into a column of type ``old`` losslessly."""
    if old == new or new == '"NULL"' or new == "NULL":
        return True
    if old in _INT_RANK and new in _INT_RANK:
        return _INT_RANK[new] <= _INT_RANK[old]
    if old in _UINT_RANK and new in _UINT_RANK:
        return _UINT_RANK[new] <= _UINT_RANK[old]
    if old in _INT_RANK and new in _UINT_RANK:
        return _UINT_RANK[new] < _INT_RANK[old]
    if old in _FLOAT_RANK and new in _FLOAT_RANK:
        return _FLOAT_RANK[new] <= _FLOAT_RANK[old]
    if old in _FLOAT_RANK and (new in _INT_RANK or new in _UINT_RANK):
        return True
    return False


class Warehouse:
    """DuckDB file plus Parquet datasets under one ``LCD_HOME``.

    Parameters
    ----------
    home : Path
        ``$LCD_HOME``; the database is ``home/warehouse.duckdb``, datasets under ``home/parquet``.
    lock_timeout_s : float
        How long :meth:`connect` retries a lock held by another process.
    """

    def __init__(self, home: Path | str, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.home = Path(home)
        self.lock_timeout_s = float(lock_timeout_s)

    def __repr__(self) -> str:
        return f"Warehouse({str(self.home)!r})"

    @classmethod
    def from_env(cls) -> "Warehouse":
        """Warehouse of ``$LCD_HOME``."""
        home = os.environ.get("LCD_HOME")
        if not home:
            raise RuntimeError("LCD_HOME is not set")
        return cls(Path(home))

    @property
    def db_path(self) -> Path:
        """Path of the DuckDB file."""
        return self.home / DB_FILE

    @property
    def parquet_root(self) -> Path:
        """Root folder of the Parquet datasets."""
        return self.home / PARQUET_DIR

    # ---------------------------------------------------------------------------- connections

    def _open(self, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
        """Open a connection, retrying lock conflicts with jittered exponential backoff."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        attempts = 0
        while True:
            attempts += 1
            try:
                return duckdb.connect(str(self.db_path), read_only=read_only)
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockError(
                        f"warehouse {self.db_path} is locked by another process; gave up after "
                        f"{timeout_s:.0f} s and {attempts} attempts ({exc})"
                    ) from exc
                time.sleep(min(remaining, delay * random.uniform(0.5, 1.0)))
                delay = min(delay * 2, 1.0)

    @contextmanager
    def connect(self, read_only: bool = False, timeout_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Connection to the warehouse, closed on exit.

        Parameters
        ----------
        read_only : bool
            Open read-only (creates the database first if missing). If this process already holds a
            read-write connection, DuckDB refuses a second configuration, so a read-write one is used.
        timeout_s : float, optional
            Lock-retry timeout; defaults to ``lock_timeout_s``.

        Raises
        ------
        WarehouseLockError
            When another process held the lock past the timeout.
        """
        timeout = self.lock_timeout_s if timeout_s is None else float(timeout_s)
        self.home.mkdir(parents=True, exist_ok=True)
        if read_only and not self.db_path.exists():
            self._open(False, timeout).close()
        try:
            con = self._open(read_only, timeout)
        except duckdb.ConnectionException as exc:
            if not (read_only and "different configuration" in str(exc)):
                raise
            con = self._open(False, timeout)
        try:
            yield con
        finally:
            con.close()

    # ---------------------------------------------------------------------------- tables

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return {name: dtype for name, dtype in rows}

    @staticmethod
    def _incoming_select(con: duckdb.DuckDBPyConnection, incoming: str = _INCOMING) -> str:
        """``SELECT`` of the incoming data with all-null (type NULL) columns typed VARCHAR."""
        nulls = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {incoming}").fetchall()
                 if r[1] in ("NULL", '"NULL"')]
        if not nulls:
            return f"SELECT * FROM {incoming}"
        casts = ", ".join(f"CAST({_quote(c)} AS VARCHAR) AS {_quote(c)}" for c in nulls)
        return f"SELECT * REPLACE ({casts}) FROM {incoming}"

    @staticmethod
    def _evolve(con: duckdb.DuckDBPyConnection, table: str, existing: dict[str, str],
                incoming: str = _INCOMING) -> None:
        """Add columns of the incoming data missing from ``table``; reject incompatible types."""
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {incoming}").fetchall()}
        bad = [
            f"{c}: table has {existing[c]}, data has {t}"
            for c, t in types.items()
            if c in existing and not _compatible(existing[c], t)
        ]
        if bad:
            raise ValueError(f"schema mismatch writing table {table!r}: " + "; ".join(bad))
        for c, t in types.items():
            if c not in existing:
                dtype = "VARCHAR" if t in ("NULL", '"NULL"') else t
                con.execute(f"ALTER TABLE {_ident(table)} ADD COLUMN {_quote(c)} {dtype}")

    @contextmanager
    def _frames_transaction(self, frames: Mapping[str, pl.DataFrame]) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with each frame registered under its key, inside one transaction.

        Commits when the block ends, rolls back (and re-raises) when it raises: a process killed
        before the ``COMMIT`` leaves none of the block's changes (DuckDB replays only committed
        transactions from its write-ahead log). The frames are unregistered either way.
        """
        with self.connect() as con:
            for name, df in frames.items():
                con.register(name, df)
            try:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                for name in frames:
                    con.unregister(name)

    @contextmanager
    def _incoming_transaction(self, df: pl.DataFrame) -> Iterator[duckdb.DuckDBPyConnection]:
        """:meth:`_frames_transaction` of ``df`` alone, registered as ``_lcd_incoming``."""
        with self._frames_transaction({_INCOMING: df}) as con:
            yield con

    @staticmethod
    def _incoming_names(tables: Mapping[str, pl.DataFrame]) -> dict[str, str]:
        """``{table: name its frame is registered under}``, validating the table names."""
        for table in tables:
            _ident(table, "table")
        return {t: f"{_INCOMING}_{i}" for i, t in enumerate(tables)}

    def replace_partitions(self, tables: Mapping[str, pl.DataFrame], partition: Mapping[str, str]) -> dict[str, int]:
        """Atomically replace one partition of several tables, in ONE transaction.

        Per table, as :meth:`replace_partition`: create it from its frame's schema if missing (adding
        new columns to an existing one), delete the rows matching ``partition``, insert the frame.
        A failure at any table (or a killed process) leaves every table as it was.

        Parameters
        ----------
        tables : dict of str to polars.DataFrame
            ``{table: new rows}``; every row must carry the partition values.
        partition : dict of str to str
            e.g. ``{"dose": "10uM", "timepoint": "04h"}``.

        Returns
        -------
        dict of str to int
            Rows written per table.

        Raises
        ------
        ValueError
            Naming the table, if a row lacks the partition values or on an incompatible column type.
        """
        if not partition:
            raise ValueError("replace_partitions needs at least one partition column; use replace_tables")
        names = self._incoming_names(tables)
        frames = {t: check_partition_columns(df, partition, f"data for {t}") for t, df in tables.items()}
        where = " AND ".join(f"{_ident(k)} = ?" for k in partition)
        with self._frames_transaction({names[t]: df for t, df in frames.items()}) as con:
            for table, incoming in names.items():
                qt, existing = _ident(table), self._columns(con, table)
                if existing:
                    self._evolve(con, table, existing, incoming)
                else:
                    con.execute(f"CREATE TABLE {qt} AS {self._incoming_select(con, incoming)} LIMIT 0")
                con.execute(f"DELETE FROM {qt} WHERE {where}", list(partition.values()))
                con.execute(f"INSERT INTO {qt} BY NAME SELECT * FROM {incoming}")
        return {t: df.height for t, df in frames.items()}

    def replace_partition(self, table: str, df: pl.DataFrame, partition: Mapping[str, str]) -> int:
        """Atomically replace one partition of a table with ``df``: :meth:`replace_partitions` of
        one table.

        Parameters
        ----------
        table : str
            Table name.
        df : polars.DataFrame
            New rows; every row must carry the partition values in its partition columns.
        partition : dict of str to str
            e.g. ``{"plate": "R03-L05", "timepoint": "04h"}``.

        Returns
        -------
        int
            Rows written.

        Raises
        ------
        ValueError
            If a row lacks the partition values, or on an incompatible column type.
        """
        _ident(table, "table")
        if not partition:
            raise ValueError("replace_partition needs at least one partition column; use replace_table")
        return self.replace_partitions({table: df}, partition)[table]

    def replace_tables(self, tables: Mapping[str, pl.DataFrame]) -> dict[str, int]:
        """Atomically replace several whole tables (``CREATE OR REPLACE`` each) in ONE transaction:
        a failure at any of them (or a killed process) leaves every table as it was.

        Returns
        -------
        dict of str to int
            Rows written per table.
        """
        names = self._incoming_names(tables)
        with self._frames_transaction({names[t]: df for t, df in tables.items()}) as con:
            for table, incoming in names.items():
                con.execute(f"CREATE OR REPLACE TABLE {_ident(table)} AS {self._incoming_select(con, incoming)}")
        return {t: df.height for t, df in tables.items()}

    def replace_table(self, table: str, df: pl.DataFrame) -> int:
        """Atomically replace a whole table with ``df``: :meth:`replace_tables` of one table.

        Returns
        -------
        int
            Rows written.
        """
        return self.replace_tables({table: df})[table]

    def delete_table_partition(self, table: str, partition: Mapping[str, str]) -> int:
        """Delete one partition's rows of a table (no-op if the table is missing); returns rows deleted."""
        qt = _ident(table, "table")
        for k, v in partition.items():
            _check_partition_value(k, v)
        where = " AND ".join(f"{_ident(k)} = ?" for k in partition) or "TRUE"
        with self.connect() as con:
            if not self._columns(con, table):
                return 0
            row = con.execute(f"DELETE FROM {qt} WHERE {where}", list(partition.values())).fetchone()
            return int(row[0]) if row else 0

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a query on a read-only connection and return the result as a polars DataFrame."""
        with self.connect(read_only=True) as con:
            rel = con.sql(sql, params=params)
            return rel.pl() if rel is not None else pl.DataFrame()

    def tables(self) -> list[str]:
        """Names of the tables and views of the warehouse, sorted."""
        if not self.db_path.exists():
            return []
        df = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
        )
        return df["table_name"].to_list()

    # ---------------------------------------------------------------------------- parquet

    def partition_dir(self, dataset: str, partition: Mapping[str, str]) -> Path:
        """Folder ``parquet/<dataset>/<k>=<v>/...`` of a partition."""
        _ident(dataset, "dataset")
        path = self.parquet_root / dataset
        for k, v in partition.items():
            path = path / f"{k}={_check_partition_value(k, v)}"
        return path

    def write_parquet_partition(self, dataset: str, partition: Mapping[str, str], df: pl.DataFrame) -> Path:
        """Write ``df`` as ``parquet/<dataset>/<k>=<v>/.../part-0.parquet`` atomically.

        Partition columns missing from ``df`` are added (as String, first); present ones must match.
        The file is written next to its destination and ``os.replace``-d, so readers see the old or
        the new file, never a partial one; other ``*.parquet`` files in that folder are removed.
        The temporary is named ``.part-0.parquet.<host>.<pid>.<random>.tmp``; those of this host's
        writers that no longer run (killed mid-write) are removed first
        (:func:`lcd_core.tiles.cache.remove_stale_temporaries`).

        Returns
        -------
        Path
            The written file.
        """
        folder = self.partition_dir(dataset, partition)
        missing = {k: v for k, v in partition.items() if k not in df.columns}
        if missing:
            df = df.select([pl.lit(v, dtype=pl.String).alias(k) for k, v in missing.items()] + df.columns)
        df = check_partition_columns(df, partition, f"data for dataset {dataset}")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / PART_FILE
        remove_stale_temporaries(target)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{PART_FILE}.{writer_tag()}.", suffix=".tmp", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            df.write_parquet(tmp)
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for stale in folder.glob("*.parquet"):
            if stale.name != PART_FILE:
                stale.unlink(missing_ok=True)
        return target

    def _partition_files(self, dataset: str, partition: Mapping[str, str]) -> list[Path]:
        folder = self.partition_dir(dataset, partition)
        return sorted(folder.rglob("*.parquet")) if folder.is_dir() else []

    def has_parquet_partition(self, dataset: str, partition: Mapping[str, str]) -> bool:
        """Whether a partition (or any sub-partition of it) has a Parquet file."""
        return bool(self._partition_files(dataset, partition))

    def read_parquet_partition(self, dataset: str, partition: Mapping[str, str]) -> pl.DataFrame:
        """Read the Parquet file(s) of a partition (or of all sub-partitions under a prefix).

        Hive columns of the path are added as String where the files lack them.

        Raises
        ------
        FileNotFoundError
            If the partition has no file.
        """
        files = self._partition_files(dataset, partition)
        if not files:
            raise FileNotFoundError(
                f"no Parquet file for dataset {dataset!r} partition {dict(partition)} under "
                f"{self.partition_dir(dataset, partition)}"
            )
        root = self.parquet_root / dataset
        frames = []
        for f in files:
            part = pl.read_parquet(f)
            hive = [seg.split("=", 1) for seg in f.parent.relative_to(root).parts if "=" in seg]
            extra = [pl.lit(v, dtype=pl.String).alias(k) for k, v in hive if k not in part.columns]
            frames.append(part.select(extra + part.columns) if extra else part)
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")

    def delete_partition(self, dataset: str, partition: Mapping[str, str]) -> int:
        """Delete a Parquet partition folder (and empty parents); returns the number of files removed."""
        folder = self.partition_dir(dataset, partition)
        if not folder.exists():
            return 0
        n = len(list(folder.rglob("*.parquet")))
        shutil.rmtree(folder)
        stop = self.parquet_root / dataset
        parent = folder.parent
        while parent != stop and parent.is_relative_to(stop):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return n

    # ---------------------------------------------------------------------------- views

    @staticmethod
    def _fixed_size_casts(schemas: Sequence[pa.Schema]) -> dict[str, str]:
        """``{column: "FLOAT[384]"}`` for fixed-size-list columns consistent across the files' ``schemas``.

        Parquet has no fixed-size list type, so DuckDB reads polars/pyarrow ``Array`` columns as
        ``FLOAT[]``; the Arrow schema stored in the file footer still knows the size.
        """
        found: dict[str, str | None] = {}
        for schema in schemas:
            for fld in schema:
                if not pa.types.is_fixed_size_list(fld.type):
                    continue
                base = _ARROW_TO_DUCKDB.get(fld.type.value_type)
                dtype = f"{base}[{fld.type.list_size}]" if base else None
                if found.get(fld.name, dtype) != dtype:
                    dtype = None
                found[fld.name] = dtype
        return {k: v for k, v in found.items() if v is not None}

    def refresh_views(self, names: Iterable[str]) -> list[str]:
        """(Re)create a view over each Parquet dataset that has files; drop the view otherwise.

        ``CREATE OR REPLACE VIEW <name> AS SELECT * FROM read_parquet('<root>/<name>/**/*.parquet',
        hive_partitioning = true, hive_types_autocast = false, union_by_name = true)``, with
        fixed-size float columns cast back to ``FLOAT[n]``. Hive columns stay VARCHAR.
        A view whose statement and files' columns are those it was made from (its comment holds
        their fingerprint) is left as it is: its glob already reads a new partition's file, and
        re-creating it would read every file's footer again (DuckDB binds ``union_by_name`` over
        all of them), a cost that grew with every partition of the screen.

        Returns
        -------
        list of str
            The views that now exist.
        """
        created: list[str] = []
        with self.connect() as con:
            made = dict(con.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())
            for name in names:
                qn = _ident(name, "view")
                folder = self.parquet_root / name
                files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
                if not files:
                    if name in made:
                        con.execute(f"DROP VIEW {qn}")
                    continue
                schemas = [_file_schema(f) for f in files]
                sql = self._view_sql(qn, folder, schemas)
                columns = sorted({(f.name, str(f.type)) for schema in schemas for f in schema})
                fingerprint = hashlib.sha1(repr((sql, columns)).encode()).hexdigest()[:16]
                if made.get(name) != fingerprint:
                    con.execute(sql)
                    con.execute(f"COMMENT ON VIEW {qn} IS {_sql_str(fingerprint)}")
                created.append(name)
        return created

    def _view_sql(self, qn: str, folder: Path, schemas: Sequence[pa.Schema]) -> str:
        """The ``CREATE OR REPLACE VIEW`` statement of one dataset (see :meth:`refresh_views`)."""
        glob = (folder.resolve() / "**" / "*.parquet").as_posix()
        casts = self._fixed_size_casts(schemas)
        replace = ""
        if casts:
            replace = " REPLACE (" + ", ".join(f"CAST({_quote(c)} AS {t}) AS {_quote(c)}" for c, t in casts.items()) + ")"
        return (f"CREATE OR REPLACE VIEW {qn} AS SELECT *{replace} FROM read_parquet({_sql_str(glob)}, "
                "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)")


def _file_schema(path: Path) -> pa.Schema:
    """The Arrow schema in a Parquet file's footer, read once per version of the file."""
    st = path.stat()
    return _schema_of(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=65536)
def _schema_of(path: str, size: int, mtime_ns: int, ino: int) -> pa.Schema:
    return pq.read_schema(path)
