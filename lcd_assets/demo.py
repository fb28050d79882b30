"""``lcd demo``: a synthetic screen end to end through Dagster on the persistent instance."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from lcd_assets.definitions import build_definitions
from lcd_assets.partitions import (
    condition_key,
    dose_partitions,
    measurement_key,
    plate_partitions,
    timepoint_partitions,
)
from lcd_assets.resources import CELL_SEGMENTATION_MODEL, WAREHOUSE_POOL, resources_for_env
from lcd_core.io.inbox import MeasurementTimepoint, catalog
from lcd_core.io.platemap import load_screen
from lcd_core.io.warehouse import Warehouse

INSTANCE_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"
#: the code location as every entry point names it (workspace.yaml of the repository; `lcd ui`)
LOCATION_NAME = "lcd"
WORKSPACE_YAML = f"""load_from:
  - python_module:
      module_name: lcd_assets.definitions
      attribute: defs
      location_name: {LOCATION_NAME}
"""
FALLBACK_YAML = """concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    granularity: op
    default_limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 60
telemetry:
  enabled: false
"""


def instance_yaml(env: str | None = None, parallel: int | None = None) -> str:
    """The project's dagster.yaml for an environment: on a Ray cluster (``LCD_ENV=ray*``) the
    partitions run ``parallel`` at a time (``LCD_PARALLEL``, default 8): that many runs, and that
    many steps of the warehouse pool, whose heavy work is on the cluster and whose short DuckDB
    writes the warehouse's lock retries serialise. Elsewhere the file as it is."""
    text = INSTANCE_YAML.read_text() if INSTANCE_YAML.exists() else FALLBACK_YAML
    env = env or os.environ.get("LCD_ENV", "local")
    if not env.startswith("ray"):
        return text
    n = parallel or int(os.environ.get("LCD_PARALLEL", "8"))
    if n < 1:
        raise ValueError(f"LCD_PARALLEL={n}: expected a positive number of partitions")
    text = re.sub(r"max_concurrent_runs: \d+", f"max_concurrent_runs: {n}", text)
    return re.sub(r"default_limit: \d+", f"default_limit: {n}", text)


def prepare_instance(home: Path) -> Path:
    """Point ``DAGSTER_HOME`` at ``$LCD_HOME/dagster`` and give it the project's dagster.yaml
    (:func:`instance_yaml` of ``LCD_ENV``) and the workspace that names the code location ``lcd``
    (as the repository's workspace.yaml does: runs launched from either dequeue in the other)."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    workspace = dagster_home / "workspace.yaml"
    if not workspace.exists() or workspace.read_text() != WORKSPACE_YAML:
        workspace.write_text(WORKSPACE_YAML)
    target = dagster_home / "dagster.yaml"
    text = instance_yaml()
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ["LCD_HOME"] = str(home)
    return dagster_home


@dataclass
class DemoResult:
    """What a demo run did: runs per job, failures, timings and warehouse counts."""

    runs: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    science: list[str] = field(default_factory=list)
    stage: str = ""  # the stage running now (a benchmark's memory sampler reads it)


def _sync_partitions(instance: dg.DagsterInstance, name: str, keys: set[str]) -> None:
    existing = set(instance.get_dynamic_partitions(name))
    if keys - existing:
        instance.add_dynamic_partitions(name, sorted(keys - existing))
    for stale in sorted(existing - keys):
        instance.delete_dynamic_partition(name, stale)


def _prune_warehouse(wh: Warehouse, live: set[tuple[str, str]]) -> None:
    """Drop warehouse partitions of plates that are no longer in the inbox (a smaller re-run)."""
    if not wh.db_path.exists():
        return
    for table in ("image_index", "tiles"):
        if table not in wh.tables():
            continue
        have = wh.query(f"SELECT DISTINCT plate, timepoint FROM {table}")
        for plate, tp in have.iter_rows():
            if (plate, tp) not in live:
                wh.delete_table_partition(table, {"plate": plate, "timepoint": tp})
    for dataset in ("tile_embeddings", "fov_embeddings", "well_embeddings"):
        root = wh.parquet_root / dataset
        for part in root.glob("plate=*/timepoint=*") if root.exists() else []:
            key = (part.parent.name.split("=", 1)[1], part.name.split("=", 1)[1])
            if key not in live:
                wh.delete_partition(dataset, {"plate": key[0], "timepoint": key[1]})


#: the demo prints one line per run; every event still goes to the instance (the UI shows them)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _run_job(defs: dg.Definitions, instance: dg.DagsterInstance, result: DemoResult,
             log: Callable[[str], None], job_name: str, partition_key=None, tags=None) -> float:
    """Execute one job in process; count it, record and log a failure; return its seconds."""
    t0 = time.perf_counter()
    res = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, partition_key=partition_key, tags=tags, raise_on_error=False, run_config=QUIET)
    key = job_name if partition_key is None else f"{job_name}[{partition_key}]"
    result.runs[job_name] = result.runs.get(job_name, 0) + 1
    if not res.success:
        result.failed.append(f"{key} (run {res.run_id})")
        log(f"  FAILED: {key} (run {res.run_id})")
    return time.perf_counter() - t0


def _resources(home: Path, checkpoint: str | None = None, **pretraining) -> dict:
    from lcd_assets.resources import EmbeddingSettings, PretrainingSettings

    resources = resources_for_env(home=home)
    if checkpoint:
        resources["embedding"] = EmbeddingSettings(**{**resources["embedding"].model_dump(), "checkpoint": checkpoint})
    if pretraining:
        base = resources["pretraining"].model_dump()
        resources["pretraining"] = PretrainingSettings(**{**base, **{k: v for k, v in pretraining.items() if v}})
    return resources


def run_demo(
    home: Path,
    preset: str = "demo",
    seed: int = 0,
    log: Callable[[str], None] = print,
    instance: dg.DagsterInstance | None = None,
    checkpoint: str | None = None,
    overrides: Mapping[str, object] | None = None,
    workers: int = 2,
    result: DemoResult | None = None,
) -> DemoResult:
    """Generate a synthetic screen into ``home`` and materialize every asset of every partition.

    Re-running replaces: the inbox, metadata and ground truth are regenerated, partitions of plates
    that disappeared are removed, and every partition write replaces its previous rows.
    ``checkpoint`` names the model folder that embeds the tiles (default: the untrained ViT;
    ``ssl-<variant>`` after ``lcd pretrain``). ``overrides``: screen design knobs
    (:class:`lcd_core.synth.design.ScreenSpec` fields, e.g. ``{"n_polypharmacology": 3}``).
    ``workers``: processes, kept for the whole demo, that run the measurement and condition
    partitions (each with one torch thread; most steps are single-threaded), a run starting as
    soon as what it reads is written (:func:`demo_tasks`); 1 = in this process, one run after the
    other. The screen summary and the time-lapse run after them in this process, one after the
    other: each spreads over the cores by itself (BLAS threads in the MoA probes, MolCLIP's
    evaluation processes), so side by side they took longer (212 s against 158 s).
    ``result``: filled in as the demo goes (its ``stage`` names the stage running now).
    """
    home = home.expanduser().resolve()
    prepare_instance(home)
    result = result if result is not None else DemoResult()
    _generate(home, preset, seed, overrides, result, log)
    measurements = catalog(home / "inbox", load_screen(home / "metadata"))
    instance = instance or dg.DagsterInstance.get()
    _sync_instance(instance, home, measurements)
    defs = build_definitions(_resources(home, checkpoint))

    def run(job_name: str, partition_key=None, tags=None) -> None:
        _run_job(defs, instance, result, log, job_name, partition_key, tags)

    with _timed(result, "setup"):
        log("setup: plate maps, ViT checkpoint (nothing is trained)")
        run("setup")
    _run_tasks(home, checkpoint, demo_tasks(measurements), workers, result, log, instance)
    with _timed(result, "summary"):
        log("screen summary: activity sensitivity, normalization comparison, MoA, handcrafted baseline")
        run("screen_summary")
    with _timed(result, "timelapse"):
        log("time-lapse: trajectories, MolCLIP, molecule retrieval")
        run("timelapse")
    result.science = science_summary(home)
    result.counts = _counts(Warehouse(home), DEMO_TABLES)
    return result


@dataclass(frozen=True)
class Task:
    """One run of the demo: ``job`` on ``key`` (None: unpartitioned) with ``tags``, after the tasks
    named in ``after``; ``stage`` is the stage it is timed in."""

    name: str
    stage: str
    job: str
    key: object = None
    tags: Mapping[str, str] | None = None
    after: frozenset[str] = frozenset()


def demo_tasks(measurements: list[MeasurementTimepoint]) -> list[Task]:
    """The partitioned runs of the demo, with what each waits for: the acquisition of each
    measurement (by timepoint and plate), then the analysis of each dose × timepoint after the
    acquisitions of its timepoint (the plate → dose mapping reads every plate of it)."""
    acquisitions = [Task(f"a{i}", "acquisition", job, key, tags) for i, (job, key, tags) in
                    enumerate(acquisition_tasks(measurements))]
    by_tp: dict[str, set[str]] = {}
    for t in acquisitions:
        by_tp.setdefault(t.key.keys_by_dimension["timepoint"], set()).add(t.name)
    analyses = [Task(f"c{d}|{t}", "analysis", "analysis", condition_key(d, t), None, frozenset(by_tp[t]))
                for d, t in sorted({(m.dose, m.timepoint) for m in measurements})]
    return [*acquisitions, *analyses]


def acquisition_tasks(measurements: list[MeasurementTimepoint]) -> list[tuple]:
    """The ``acquisition`` runs of ``measurements`` as ``(job, partition key, tags)``, by timepoint and plate."""
    ordered = sorted(measurements, key=lambda m: (m.timepoint, m.plate))
    return [("acquisition", measurement_key(m.plate, m.timepoint), {"lcd/measurement": str(m.path)}) for m in ordered]


def acquire(home: Path, workers: int = 2, timepoints: int = 0, log: Callable[[str], None] = print) -> DemoResult:
    """``setup`` and the acquisition of the measurements in ``home``'s inbox (of its first
    ``timepoints`` timepoints; 0: all) on its persistent instance, ``workers`` partitions at a time,
    with ``LCD_ENV``'s resources; nothing after (the benchmarks time this).
    ``result.seconds["acquisition"]``: the partitions' wall time."""
    home = home.expanduser().resolve()
    prepare_instance(home)
    found = catalog(home / "inbox", load_screen(home / "metadata"))
    keep = sorted({m.timepoint for m in found})[: timepoints or None]
    measurements = [m for m in found if m.timepoint in keep]
    result = DemoResult()
    with dg.DagsterInstance.get() as instance:
        _sync_instance(instance, home, measurements)
        _run_job(build_definitions(_resources(home)), instance, result, log, "setup")
        with _timed(result, "acquisition"):
            _run_tasks(home, None, demo_tasks(measurements)[: len(measurements)], workers, result, lambda s: None,
                       instance)
    return result


def _run_tasks(home: Path, checkpoint: str | None, tasks: list[Task], workers: int, result: DemoResult,
               log: Callable[[str], None], instance: dg.DagsterInstance) -> None:
    """Run ``tasks``, each once what it waits for has ended (failed or not) and a worker is free,
    in list order: here when ``workers`` is 1, else in ``workers`` spawned processes kept for all
    of them (each loads the code location once), on the same instance and warehouse (its lock
    serialises the writes). No core waits at a stage's end while another stage's task is ready.

    ``result.seconds``: per stage, from the end of the stage before (or the start) to the end of
    its last task (the analysis: the part not hidden behind the acquisition)."""
    stages = list(dict.fromkeys(t.stage for t in tasks))
    left = {s: sum(t.stage == s for t in tasks) for s in stages}
    ends: dict[str, float] = {}
    t0 = time.perf_counter()

    def finished(task: Task, seconds: float, failed: list[str]) -> None:
        result.runs[task.job] = result.runs.get(task.job, 0) + 1
        result.failed += failed
        for f in failed:
            log(f"  FAILED: {f}")
        stage = task.stage
        left[stage] -= 1
        if not left[stage]:
            ends[stage] = time.perf_counter()
            before = max([t0, *(ends[s] for s in stages[: stages.index(stage)] if s in ends)])
            result.seconds[stage] = ends[stage] - before
        result.stage = next((s for s in stages if left[s]), "")

    result.stage = stages[0] if stages else ""
    if workers <= 1 or len(tasks) < 2:
        defs = build_definitions(_resources(home, checkpoint))
        for i, task in enumerate(tasks, 1):
            log(f"[{i}/{len(tasks)}] {task.job} {task.key or ''}")
            part = DemoResult()
            finished(task, _run_job(defs, instance, part, lambda s: None, task.job, task.key, task.tags), part.failed)
        return
    with _pool_limit(instance, WAREHOUSE_POOL, workers), _worker_pool(home, checkpoint, workers) as pool:
        _schedule(lambda t: pool.submit(_worker_run, t.job, t.key, t.tags), tasks, workers, finished, log)


def _schedule(submit: Callable[[Task], Future], tasks: list[Task], workers: int,
              finished: Callable[[Task, float, list[str]], None], log: Callable[[str], None]) -> None:
    """Keep ``workers`` tasks running (``submit`` starts one; its future gives ``(seconds, failed
    runs)``): the first waiting task whose ``after`` have all ended, failed or not."""
    from concurrent.futures import FIRST_COMPLETED, wait

    waiting, ended, running = list(tasks), set(), {}
    n = len(tasks)
    while waiting or running:
        while len(running) < workers:
            ready = next((t for t in waiting if t.after <= ended), None)
            if ready is None:
                break
            waiting.remove(ready)
            log(f"[{n - len(waiting)}/{n}] {ready.job} {ready.key or ''}")
            running[submit(ready)] = ready
        if not running:
            raise RuntimeError(f"tasks wait for tasks that are not in the plan: {[t.name for t in waiting]}")
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            task = running.pop(fut)
            ended.add(task.name)
            finished(task, *fut.result())


@contextmanager
def _worker_pool(home: Path, checkpoint: str | None, workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(str(home), checkpoint)) as pool:
        yield pool


@contextmanager
def _pool_limit(instance: dg.DagsterInstance, pool: str, limit: int) -> Iterator[None]:
    """The pool's op limit raised for the block (the warehouse's own lock retries serialise the
    short DuckDB writes of two processes), then back to dagster.yaml's default."""
    storage = instance.event_log_storage
    storage.set_concurrency_slots(pool, limit)
    try:
        yield
    finally:
        storage.delete_concurrency_limit(pool)


_WORKER: dict = {}


def _worker_init(home: str, checkpoint: str | None) -> None:
    """A demo worker process: one torch thread and one BLAS thread (two workers with two-thread
    BLAS pools on two cores made ``moa_probes`` 12× slower), the instance and the code location
    loaded once."""
    import torch

    from lcd_core._parallel import single_blas_threads

    torch.set_num_threads(1)
    single_blas_threads()
    prepare_instance(Path(home))
    _WORKER["instance"] = dg.DagsterInstance.get()
    _WORKER["defs"] = build_definitions(_resources(Path(home), checkpoint))


def _worker_run(job: str, key, tags) -> tuple[float, list[str]]:
    """One run in a worker: its seconds and, if it failed, ``job[key] (run id)``."""
    part = DemoResult()
    seconds = _run_job(_WORKER["defs"], _WORKER["instance"], part, lambda s: None, job, key, tags)
    return seconds, part.failed


#: the tables whose row counts a demo reports
DEMO_TABLES = ("plates", "image_index", "tiles", "tile_embeddings", "well_embeddings", "activity",
               "normalization_comparison", "trajectories", "molclip_metrics", "molecule_retrieval")


@contextmanager
def _timed(result: DemoResult, stage: str) -> Iterator[None]:
    """Record the seconds of a stage of the demo in ``result.seconds``."""
    t0 = time.perf_counter()
    result.stage = stage
    try:
        yield
    finally:
        result.seconds[stage] = time.perf_counter() - t0
        result.stage = ""


def _generate(home: Path, preset: str, seed: int, overrides: Mapping[str, object] | None, result: DemoResult,
              log: Callable[[str], None]) -> None:
    """A fresh synthetic screen (inbox, metadata, truth) in ``home``."""
    from lcd_core.synth import generate_screen

    with _timed(result, "generate"):
        for sub in ("inbox", "metadata", "truth"):
            shutil.rmtree(home / sub, ignore_errors=True)
        generate_screen(home, preset=preset, seed=seed, **dict(overrides or {}))
    log(f"generated preset {preset!r} (seed {seed}{', ' + str(dict(overrides)) if overrides else ''}) "
        f"in {result.seconds['generate']:.1f} s")


def _sync_instance(instance: dg.DagsterInstance, home: Path, measurements: list[MeasurementTimepoint]) -> None:
    """The dynamic partitions and the warehouse partitions are those of the inbox's measurements."""
    live = {(m.plate, m.timepoint) for m in measurements}
    _sync_partitions(instance, plate_partitions.name, {p for p, _ in live})
    _sync_partitions(instance, timepoint_partitions.name, {t for _, t in live})
    _sync_partitions(instance, dose_partitions.name, {m.dose for m in measurements})
    _prune_warehouse(Warehouse(home), live)


def _counts(wh: Warehouse, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows of each table (0 for a table a failed run never wrote)."""
    counts = {}
    for name in tables:
        try:
            counts[name] = int(wh.query(f"SELECT count(*) AS n FROM {name}")["n"][0])
        except Exception:  # a table a failed run never wrote
            counts[name] = 0
    return counts


def run_pretraining(
    home: Path,
    variants: list[str] | None = None,
    steps: int = 0,
    time_budget_s: float = 0.0,
    log: Callable[[str], None] = print,
    instance: dg.DagsterInstance | None = None,
    num_threads: int = 0,
    train: bool = True,
    n_draws: int = 0,
) -> DemoResult:
    """Pre-train the ablation variants on a screen already acquired under ``home`` (``lcd demo``
    first): tile bank → one ``ssl_checkpoint`` partition per variant → ``ssl_ablation``.
    ``train=False`` only re-scores the checkpoints already there; ``n_draws``: null draws of the
    ablation's screen-activity measure (0: the chain's 1,000)."""
    from lcd_assets.pretraining.assets import variant_partitions

    known = variant_partitions.get_partition_keys()
    unknown = sorted(set(variants or []) - set(known))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; expected some of {known}")

    home = home.expanduser().resolve()
    prepare_instance(home)
    instance = instance or dg.DagsterInstance.get()
    defs = build_definitions(_resources(home, steps=steps, time_budget_s=time_budget_s, num_threads=num_threads,
                                        n_draws=n_draws))
    variants = variants or variant_partitions.get_partition_keys()
    result = DemoResult()

    def run(job_name: str, partition_key=None) -> None:
        key = job_name if partition_key is None else f"{job_name}[{partition_key}]"
        result.seconds[key] = _run_job(defs, instance, result, log, job_name, partition_key)

    if train:
        log("tile bank")
        run("tile_bank")
        for v in variants:
            log(f"pre-training {v}")
            run("pretraining", v)
    log("ablation")
    run("ablation")
    wh = Warehouse(home)
    if "ablation" in wh.tables():
        table = wh.query("SELECT model, variant, retrieval_map, retrieval_map_ci_low, retrieval_map_ci_high, "
                         "replica_balanced_accuracy, replica_chance, activity_map, activity_auroc FROM ablation")
        result.counts["ablation"] = table.height
        result.science = [
            f"{m:40s} {v:26s} mAP {r:.4f} [{lo:.4f}, {hi:.4f}]  replica acc {a:.3f} (chance {c:.2f})  "
            f"screen activity mAP {sm:.4f}" + (f", AUROC {au:.3f}" if au is not None else "")
            for m, v, r, lo, hi, a, c, sm, au in table.iter_rows()
        ]
    return result


def science_summary(home: Path) -> list[str]:
    """Headline figures of a finished demo, scored against the screen's ground truth."""
    wh = Warehouse(home)
    tables = set(wh.tables())
    truth = home / "truth" / "conditions.parquet"
    truth = truth if truth.exists() else None
    return [*_activity_lines(wh, tables, truth), *_normalization_lines(wh, tables), *_moa_lines(wh, tables),
            *_handcrafted_activity_lines(wh, tables, truth), *_polypharmacology_lines(wh, tables),
            *_nuclei_lines(wh, tables), *_sensitivity_lines(wh, tables), *_trajectory_lines(wh, tables),
            *_molclip_lines(wh, tables), *_segmentation_lines(home)]


def _vs_truth(wh: Warehouse, table: str, truth: Path) -> dict:
    import polars as pl

    from lcd_core.ground_truth import activity_against_truth

    return activity_against_truth(wh.query(f"SELECT * FROM {table}"), pl.read_parquet(truth))


def _activity_lines(wh: Warehouse, tables: set[str], truth: Path | None) -> list[str]:
    if "activity" not in tables or truth is None:
        return []
    score = _vs_truth(wh, "activity", truth)
    return [f"activity vs truth: AUROC of mAP-ES {score['auroc']:.3f} over {score['n']} compound-"
            f"conditions; at mAP-ES >= 0.8: {score['tp']} TP, {score['fp']} FP, {score['tn']} TN, "
            f"{score['fn']} FN"]


def _handcrafted_activity_lines(wh: Warehouse, tables: set[str], truth: Path | None) -> list[str]:
    if "handcrafted_activity" not in tables or truth is None:
        return []
    score = _vs_truth(wh, "handcrafted_activity", truth)
    return [f"handcrafted activity vs truth: AUROC of mAP-ES {score['auroc']:.3f} over {score['n']} "
            f"compound-conditions"]


def _normalization_lines(wh: Warehouse, tables: set[str]) -> list[str]:
    if "normalization_comparison" not in tables:
        return []
    comp = wh.query(
        "SELECT method, avg(mean_map) AS mean_map, avg(auroc_vs_truth) AS auroc "
        "FROM normalization_comparison GROUP BY method ORDER BY mean_map DESC"
    )
    return ["normalization (mean mAP | AUROC): " + ", ".join(
        f"{m} {v:.3f} | {a:.3f}" if a is not None else f"{m} {v:.3f}" for m, v, a in comp.iter_rows())]


def _moa_lines(wh: Warehouse, tables: set[str]) -> list[str]:
    lines = []
    for table_name, label in (("moa_metrics", "ViT"), ("handcrafted_moa_metrics", "handcrafted features")):
        if table_name not in tables:
            continue
        final = wh.query(f"SELECT set, step, weighted_f1 FROM {table_name} WHERE mode = 'incremental' "
                         "ORDER BY set, step")
        for set_name, g in final.group_by("set", maintain_order=True):
            lines.append(f"MoA {set_name[0]}, {label} (incremental, F1 per doses added): " + " -> ".join(
                f"{f:.2f}" for f in g["weighted_f1"].to_list()))
    if "moa_feature_comparison" in tables:
        comp = wh.query("SELECT features, set, mode, weighted_f1, accuracy FROM moa_feature_comparison "
                        "ORDER BY set, mode, features")
        lines += [f"MoA final calls: {f:36s} {st:8s} {m:15s} F1 {f1:.2f}  accuracy {a:.2f}" if f1 is not None
                  else f"MoA final calls: {f:36s} {st:8s} {m:15s} nothing classified (no probe could be trained)"
                  for f, st, m, f1, a in comp.iter_rows()]
    return lines


def _polypharmacology_lines(wh: Warehouse, tables: set[str]) -> list[str]:
    lines = []
    for table_name, label in (("moa_polypharmacology", "ViT"), ("handcrafted_polypharmacology", "handcrafted")):
        if table_name not in tables:
            continue
        for flag, pair, reading in (("stable_top2", "stable_pair", "top-2"),
                                    ("stable_residual", "stable_residual_pair", "explain-away")):
            flagged = wh.query(f"SELECT DISTINCT compound, {pair} FROM {table_name} WHERE {flag} ORDER BY compound")
            lines.append(f"polypharmacology flagged ({label}, {reading}): " + (", ".join(
                f"{c} ({p})" for c, p in flagged.iter_rows()) or "none"))
    if "polypharmacology_vs_truth" in tables:
        score = wh.query("SELECT features, flag, planted, recovered, false_flags FROM polypharmacology_vs_truth "
                         "ORDER BY features, flag")
        lines += [f"polypharmacology vs truth: {f:38s} {fl:16s} recovered {r}/{p}, false flags {n}"
                  for f, fl, p, r, n in score.iter_rows()]
    return lines


def _nuclei_lines(wh: Warehouse, tables: set[str]) -> list[str]:
    if "fov_nuclei" not in tables:
        return []
    n = wh.query("SELECT count(*) AS fovs, sum(n_nuclei) AS nuclei, median(n_nuclei) AS med, "
                 "median(confluency) AS conf, any_value(method) AS method FROM fov_nuclei").row(0, named=True)
    lines = [f"nuclei ({n['method']}, unsupervised): {n['nuclei']} in {n['fovs']} FOVs, median {n['med']:.0f} per FOV, "
             f"median confluency {n['conf']:.2f}"]
    if "nuclei_inhibition" in tables:
        r = wh.query("SELECT corr(count_inhibition, confluency_inhibition) AS r FROM nuclei_inhibition")["r"][0]
        lines.append(f"% inhibition: confluency vs count r = {r:.2f} over conditions (paper: 0.83)")
    return lines


def _sensitivity_lines(wh: Warehouse, tables: set[str]) -> list[str]:
    if "sensitivity_comparison" not in tables:
        return []
    rows = wh.query("SELECT readout, n_compounds, n_active, fraction_active, true_calls, false_calls, auroc "
                    "FROM sensitivity_comparison WHERE kind = 'readout' AND dose = 'all'")
    return [f"called active: {r:40s} {a}/{n} ({f:.2f})" + (f", {t} true, {fa} false, AUROC {au:.3f}"
                                                           if au is not None else "")
            for r, n, a, f, t, fa, au in rows.iter_rows()]


def _trajectory_lines(wh: Warehouse, tables: set[str]) -> list[str]:
    if "trajectory_onset_agreement" not in tables:
        return []
    rows = wh.query("SELECT reading, n, exact, exact_ci_low, exact_ci_high, within_one FROM trajectory_onset_agreement "
                    "WHERE dose = 'all' ORDER BY reading")
    return [f"onset vs truth ({r}): exact {e:.2f} [{lo:.2f}, {hi:.2f}], within one timepoint {w:.2f}, over {n} "
            "compound x doses" for r, n, e, lo, hi, w in rows.iter_rows()]


def _molclip_lines(wh: Warehouse, tables: set[str]) -> list[str]:
    lines = []
    if "molclip_metrics" in tables:
        rows = wh.query("SELECT metric, map_without, map_with, gain, gain_lo, gain_hi FROM molclip_metrics ORDER BY metric")
        lines += [f"MolCLIP {m}: mAP {a:.3f} without -> {b:.3f} with the molecule branch, gain {g:+.1%} "
                  f"[{lo:+.1%}, {hi:+.1%}] (paper: drug +51.2 %, MoA +20.5 %)" for m, a, b, g, lo, hi in rows.iter_rows()]
    if "molecule_retrieval_hits" in tables:
        rows = wh.query("SELECT k, hit_rate, random, n_queries FROM molecule_retrieval_hits ORDER BY k")
        lines.append("zero-shot molecule retrieval (holdout): " + ", ".join(
            f"top-{k} {h:.2f} (random {r:.2f})" for k, h, r, _ in rows.iter_rows()))
    return lines


def _segmentation_lines(home: Path) -> list[str]:
    record = home / "models" / CELL_SEGMENTATION_MODEL / "raynet.json"
    if not record.exists():
        return []
    v = json.loads(record.read_text())["validation"]
    return [f"cell segmentation (RayNet, trained on synthetic annotations) on {v['fovs']} fresh annotated FOVs: nucleus recall {v['recall']:.2f}, "
            f"precision {v['precision']:.2f}; per cell r (log area, log elongation) "
            f"{v['cell_log_area_r']:.2f}, {v['cell_log_elongation_r']:.2f}; per FOV r "
            f"{v['fov_log_area_r']:.2f}, {v['fov_log_elongation_r']:.2f}"]
