"""Crash safety and concurrency through real Dagster instances built from the project's
dagster.yaml (a temporary DAGSTER_HOME each): eight partitions materialized at once by eight
processes, two runs of one partition in the run queue, and the pool slot of a killed run.

The child processes come from one fork server that imports Dagster and the project's resources
once (a spawned child would import them again: about 10 s of CPU each here)."""


import logging
import multiprocessing as mp
import multiprocessing.forkserver
import os
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml

from lcd_assets.partitions import (measurement_key, measurement_of, measurement_partitions, plate_partitions,
                                  timepoint_partitions)
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome

ROWS = 20_000  # rows each partition writes to the table and to the Parquet dataset


@dg.asset(partitions_def=measurement_partitions, pool=WAREHOUSE_POOL)
def concurrent_rows(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    """One partition's rows, written as the acquisition assets write theirs: a table partition
    (``replace_partition``) and a Parquet partition (``write_parquet_partition``)."""
    plate, timepoint = measurement_of(context)
    part = {"plate": plate, "timepoint": timepoint}
    df = pl.DataFrame({"row": np.arange(ROWS), "x": np.random.default_rng(0).random(ROWS)}).with_columns(
        pl.lit(plate).alias("plate"), pl.lit(timepoint).alias("timepoint"))
    wh = lcd.warehouse()
    t0 = time.monotonic()
    wh.replace_partition("concurrent_rows", df, part)
    wh.write_parquet_partition("concurrent_rows", part, df)
    return dg.MaterializeResult(metadata={"write_seconds": time.monotonic() - t0, "pid": os.getpid()})


@dg.asset(pool=WAREHOUSE_POOL)
def stuck_writer(lcd: LcdHome) -> None:
    """A warehouse writer that says it holds its pool slot, then never ends (until killed)."""
    (lcd.root / "began").write_text(str(os.getpid()))
    time.sleep(600)


@dg.op
def _noop() -> None:
    pass


@dg.job
def _acquisition_job() -> None:
    """A module-level job: the Python origin a submitted run must carry."""
    _noop()


# ------------------------------------------------------------------------------ helpers


#: what the fork server imports once: the project's resources and Dagster's SQLite storage (a
#: module missing from another Dagster version is skipped: the children then import what they need)
PRELOAD = ["lcd_assets.resources", "lcd_assets.partitions", "upath", "dagster._core.storage.sqlite_storage",
           "dagster._core.storage.runs.sqlite.sqlite_run_storage",
           "dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log",
           "dagster._core.storage.event_log.sqlite.sqlite_event_log",
           "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
           "dagster._core.storage.local_compute_log_manager"]


@pytest.fixture(scope="module", autouse=True)
def forkserver() -> mp.context.BaseContext:
    """The fork server, started when the module starts: it imports :data:`PRELOAD` while the
    tests without child processes run (those with them come last)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return ctx


def instance_yaml(env: str, parallel: int | None = None) -> str:
    """The project's dagster.yaml for ``env`` (:func:`lcd_assets.demo.instance_yaml`; imported
    here, not at the top: the child processes need not import the whole code location)."""
    from lcd_assets.demo import instance_yaml as project_yaml

    return project_yaml(env, parallel)


def _dagster_home(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(text)
    return path


def _materialize(dagster_home: str, lcd_home: str, asset: str, partition: str | None, barrier) -> None:
    """Child process: materialize ``asset`` (one partition) on the instance of ``dagster_home``."""
    assets = {"concurrent_rows": concurrent_rows, "stuck_writer": stuck_writer}
    with dg.DagsterInstance.from_config(dagster_home) as instance:
        if barrier is not None:
            barrier.wait(120)
        res = dg.materialize([assets[asset]], instance=instance, partition_key=partition,
                             resources={"lcd": LcdHome(home=lcd_home)}, raise_on_error=False)
    raise SystemExit(0 if res.success else 1)


# ------------------------------------------------------------------------------ the configuration


def test_instance_yaml_monitors_runs_and_serialises_partitions(tmp_path):
    """dagster.yaml (and its fallback copy in demo.py) turns run monitoring on, frees a finished
    run's pool slots, and limits each partition to one run at a time, on every environment."""
    from lcd_assets.demo import FALLBACK_YAML, INSTANCE_YAML

    assert yaml.safe_load(FALLBACK_YAML) == yaml.safe_load(INSTANCE_YAML.read_text())
    local, ray = (yaml.safe_load(instance_yaml(env)) for env in ("local", "ray"))
    assert ray["run_monitoring"] == local["run_monitoring"]
    assert ray["concurrency"]["runs"]["tag_concurrency_limits"] == local["concurrency"]["runs"]["tag_concurrency_limits"]
    home = _dagster_home(tmp_path / "dagster", instance_yaml("local"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
        assert instance.run_monitoring_max_resume_run_attempts == 0  # the default launcher can't resume
        assert "MONITORING" in instance.get_required_daemon_types()
        queue = instance.get_concurrency_config().run_queue_config
        assert [(t["key"], t["value"], t["limit"]) for t in queue.tag_concurrency_limits] == [
            ("dagster/partition", {"applyLimitPerUniqueValue": True}, 1)]


# ------------------------------------------------------------------------------ the run queue


def test_a_second_run_of_a_partition_waits_for_the_first(tmp_path):
    """Two runs of one plate × timepoint and one of another are queued together on the instance of
    LCD_ENV=ray (8 runs at once): one queue-daemon iteration launches the first and the other
    partition's, not the second, nor does the next; once the first ended (here: failed), the next
    iteration launches the second."""
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus as S
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    # the project's instance; the launcher only records what the queue hands it (nothing runs)
    text = instance_yaml("ray", 8) + "run_launcher:\n  module: dagster._core.test_utils\n  class: MockedRunLauncher\n"
    home = _dagster_home(tmp_path / "dagster", text)
    job = _acquisition_job
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("lcd"), "__repository__"), job.name)
    code_origin = dg.reconstructable(job).get_python_origin()
    with dg.DagsterInstance.from_config(str(home)) as instance, \
            create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace:

        def submit(plate: str) -> str:
            run = instance.create_run_for_job(
                job, tags={"dagster/partition": str(measurement_key(plate, "04h"))},
                remote_job_origin=origin, job_code_origin=code_origin)
            instance.submit_run(run.run_id, workspace.create_request_context())
            return run.run_id

        first, second, other = submit("R01-L01"), submit("R01-L01"), submit("R02-L01")
        status = lambda: [instance.get_run_by_id(r).status for r in (first, second, other)]  # noqa: E731
        assert status() == [S.QUEUED] * 3
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        list(daemon.run_iteration(workspace))
        assert status() == [S.STARTING, S.QUEUED, S.STARTING]
        list(daemon.run_iteration(workspace))
        assert status() == [S.STARTING, S.QUEUED, S.STARTING]  # still held while the first runs
        instance.report_run_failed(instance.get_run_by_id(first))
        list(daemon.run_iteration(workspace))
        assert status() == [S.FAILURE, S.STARTING, S.STARTING]
        launched = [r.run_id for r in instance.run_launcher.queue()]
        assert launched == [first, other, second]


# ------------------------------------------------------------------------------ related tables


def test_plate_registry_writes_its_three_tables_in_one_transaction(lcd_home, instance):
    """``plate_registry`` replaces compounds, layouts and plates together: when the third cannot be
    written (here a view of that name stands in the way) the step fails naming it, and the first
    two keep their old rows (no new compounds beside an old registry)."""
    from lcd_assets.registry.assets import plate_registry

    wh = LcdHome(home=str(lcd_home)).warehouse()
    wh.replace_tables({"compounds": pl.DataFrame({"compound": ["old"]}), "layouts": pl.DataFrame({"layout": ["old"]})})
    with wh.connect() as con:
        con.execute("CREATE VIEW plates AS SELECT 'old' AS barcode")
    res = dg.materialize([plate_registry], instance=instance, resources={"lcd": LcdHome(home=str(lcd_home))},
                         raise_on_error=False)
    assert not res.success
    err = str(next(e for e in res.all_events if e.is_step_failure).step_failure_data.error)
    assert "plates" in err and "View" in err
    assert wh.query("SELECT * FROM compounds").rows() == [("old",)]
    assert wh.query("SELECT * FROM layouts").rows() == [("old",)]

# ------------------------------------------------------------------------------ a killed run


def test_a_killed_runs_pool_slot_is_freed_by_run_monitoring(tmp_path, forkserver):
    """A run killed (SIGKILL) inside a step of the ``duckdb_warehouse`` pool keeps the pool's only
    slot; once the run is marked failed (the code server does this when a run's process dies),
    the monitoring daemon's slot pass frees it ``free_slots_after_run_end_seconds`` after the end
    (60 s in dagster.yaml, 1 s here) and the next writer gets it."""
    text = instance_yaml("local").replace("free_slots_after_run_end_seconds: 60", "free_slots_after_run_end_seconds: 1")
    home, lcd_home = _dagster_home(tmp_path / "dagster", text), tmp_path / "lcd"
    lcd_home.mkdir()
    proc = forkserver.Process(target=_materialize, args=(str(home), str(lcd_home), "stuck_writer", None, None))
    proc.start()
    deadline = time.monotonic() + 60
    while not (lcd_home / "began").exists():
        assert proc.is_alive() and time.monotonic() < deadline, f"the writer did not start (exit {proc.exitcode})"
        time.sleep(0.02)
    proc.kill()
    proc.join(10)

    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster._daemon.monitoring import execute_concurrency_slots_iteration

    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        (run,) = instance.get_runs()
        held = lambda: [s.run_id for s in storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots]  # noqa: E731
        assert run.status == dg.DagsterRunStatus.STARTED and held() == [run.run_id]
        assert storage.get_concurrency_info(WAREHOUSE_POOL).slot_count == 1
        assert not storage.claim_concurrency_slot(WAREHOUSE_POOL, "next-run", "next_writer").is_claimed
        instance.report_run_failed(run)
        with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace:
            log = logging.getLogger("monitoring")
            list(execute_concurrency_slots_iteration(workspace, log))  # the daemon's pass over slots
            assert held() == [run.run_id]  # not before free_slots_after_run_end_seconds
            time.sleep(1.5)
            list(execute_concurrency_slots_iteration(workspace, log))
        assert held() == []
        assert storage.claim_concurrency_slot(WAREHOUSE_POOL, "next-run", "next_writer").is_claimed


# ------------------------------------------------------------------------------ eight at once


def test_eight_partitions_materialize_at_once(tmp_path, forkserver):
    """Eight processes each materialize one plate × timepoint partition at the same moment on one
    instance (the LCD_ENV=ray configuration: 8 runs and 8 warehouse-pool slots, so the writers meet
    at DuckDB's one-writer lock): every run succeeds (no lock failure), and every partition's rows
    are in the table and the Parquet dataset exactly once."""
    home, lcd_home = _dagster_home(tmp_path / "dagster", instance_yaml("ray", 8)), tmp_path / "lcd"
    plates, timepoints = [f"R0{i}-L01" for i in range(1, 5)], ["04h", "08h"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(plate_partitions.name, plates)
        instance.add_dynamic_partitions(timepoint_partitions.name, timepoints)
    keys = [(p, t) for p in plates for t in timepoints]
    barrier = forkserver.Barrier(len(keys))
    procs = [forkserver.Process(target=_materialize, args=(
        str(home), str(lcd_home), "concurrent_rows", str(measurement_key(p, t)), barrier)) for p, t in keys]
    t0 = time.monotonic()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    seconds = time.monotonic() - t0
    assert [proc.exitcode for proc in procs] == [0] * len(keys)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(str(measurement_key(*k)) for k in keys)
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        events = instance.fetch_materializations(dg.AssetKey("concurrent_rows"), limit=100).records
        assert len({e.asset_materialization.metadata["pid"].value for e in events}) == len(keys)
        waits = sorted(e.asset_materialization.metadata["write_seconds"].value for e in events)
    wh = LcdHome(home=str(lcd_home)).warehouse()
    counts = wh.query("SELECT plate, timepoint, count(*) AS n, count(DISTINCT row) AS rows "
                      "FROM concurrent_rows GROUP BY 1, 2 ORDER BY 1, 2")
    assert counts.rows() == [(p, t, ROWS, ROWS) for p, t in sorted(keys)]
    for p, t in keys:
        assert wh.read_parquet_partition("concurrent_rows", {"plate": p, "timepoint": t}).height == ROWS
    print(f"8 partitions at once: {seconds:.1f} s; writes took {waits[0]:.2f}-{waits[-1]:.2f} s")

