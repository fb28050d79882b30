"""lcd_assets.compute on a real local Ray cluster (a head on 127.0.0.1 with 2 CPUs, started by
``ray start``): the same screen through Ray and locally gives the same tables, and a worker killed
in the middle of a partition costs a retry, never a row."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lcd_assets.compute import Compute, RayCompute, compute_for_env, local_ray_head
from lcd_assets.definitions import build_definitions
from lcd_assets.partitions import condition_key, measurement_key
from lcd_assets.resources import resources_for_env
from lcd_assets_tests.conftest import add_partitions, local_resources, new_home, run_job
from lcd_core.io.warehouse import Warehouse
from lcd_core.keys import well_name

PLATES, TP, DOSE = ["R02-L01", "R02-L02"], "04h", "10uM"  # R02 received 10 µM


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head on 127.0.0.1 with 2 CPUs and no GPU (its own process group); its address."""
    pytest.importorskip("ray")
    with local_ray_head(num_cpus=2) as address:
        yield address


def _ray_resources(home: Path, address: str) -> dict:
    return {**local_resources(home), "compute": RayCompute(address=address, ray_init_options={
        "ignore_reinit_error": True, "log_to_driver": False})}


def _screen(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[str]:
    """setup, the two 10 µM plates at 4 h, their condition; the run ids."""
    add_partitions(instance, PLATES, [TP], [DOSE])
    runs = [run_job(defs, "setup", instance)]
    runs += [run_job(defs, "acquisition", instance, measurement_key(p, TP)) for p in PLATES]
    runs.append(run_job(defs, "analysis", instance, condition_key(DOSE, TP)))
    assert all(r.success for r in runs)
    return [r.run_id for r in runs]


def _table(home: Path, sql: str) -> pl.DataFrame:
    return Warehouse(home).query(sql)


def _ray_tasks(instance: dg.DagsterInstance, run_ids: list[str]) -> list[str]:
    return [e.user_message for r in run_ids for e in instance.all_logs(r) if "as Ray task" in e.user_message]


def test_ray_run_gives_the_local_tables(ray_cluster, small_screen, tmp_path):
    homes = {k: new_home(tmp_path / k, small_screen) for k in ("local", "ray")}
    tasks = {}
    for kind, home in homes.items():
        res = local_resources(home) if kind == "local" else _ray_resources(home, ray_cluster)
        with dg.instance_for_test() as instance:
            tasks[kind] = _ray_tasks(instance, _screen(build_definitions(res), instance))
    # tiles, kept-tile pass and nuclei per plate, activity and probes per condition, all on Ray
    assert not tasks["local"] and len(tasks["ray"]) == 3 * len(PLATES) + 2
    local, ray = homes["local"], homes["ray"]
    for table, order in [("tiles", "tile_id"), ("fov_nuclei", "well, field")]:
        sql = f"SELECT * FROM {table} ORDER BY plate, {order}"
        assert _table(local, sql).equals(_table(ray, sql)), table
    sql = "SELECT tile_id, embedding FROM tile_embeddings ORDER BY tile_id"
    a, b = _table(local, sql), _table(ray, sql)
    assert a["tile_id"].to_list() == b["tile_id"].to_list() and a.height > 0
    # one torch thread on a Ray worker against the test's threads: bf16 sums in another order
    np.testing.assert_allclose(np.stack(a["embedding"].to_list()), np.stack(b["embedding"].to_list()), atol=0.05)
    sql = "SELECT compound, map_es, active FROM activity ORDER BY compound"
    a, b = _table(local, sql), _table(ray, sql)
    assert a["compound"].to_list() == b["compound"].to_list() and a["active"].to_list() == b["active"].to_list()
    np.testing.assert_allclose(a["map_es"].to_numpy(), b["map_es"].to_numpy(), atol=0.05)
    sql = "SELECT compound, source, predicted FROM moa_probe_results ORDER BY compound, source"
    assert _table(local, sql).height == _table(ray, sql).height


def _kill_when_running(title: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first process whose title is ``title`` (a Ray worker running that task)."""
    while not stop.is_set() and not killed:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if cmd.strip() == title:
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.01)


def test_worker_killed_mid_partition_is_retried(ray_cluster, small_screen, tmp_path):
    home = new_home(tmp_path / "home", small_screen)
    defs = build_definitions(_ray_resources(home, ray_cluster))
    plate = PLATES[0]
    with dg.instance_for_test() as instance:
        add_partitions(instance, [plate], [TP])
        assert run_job(defs, "setup", instance).success
        killed: list[int] = []
        stop = threading.Event()
        killer = threading.Thread(target=_kill_when_running, args=("ray::kept_tile_pass", killed, stop))
        killer.start()
        try:
            res = run_job(defs, "acquisition", instance, measurement_key(plate, TP))
        finally:
            stop.set()
            killer.join()
        assert killed, "the kept-tile pass never ran on a Ray worker"
        assert res.success
        restarts = [e for e in instance.all_logs(res.run_id)
                    if e.dagster_event and e.dagster_event.event_type_value == "STEP_RESTARTED"]
        assert [e.step_key for e in restarts] == ["kept_tile_pass"]
    kept = _table(home, f"SELECT tile_id FROM tiles WHERE plate = '{plate}' AND kept ORDER BY tile_id")
    emb = _table(home, f"SELECT tile_id FROM tile_embeddings WHERE plate = '{plate}' ORDER BY tile_id")
    assert kept.height > 0 and emb["tile_id"].to_list() == kept["tile_id"].to_list()  # nothing lost or doubled
    wells = _table(home, "SELECT well, n_tiles FROM well_embeddings")
    assert wells["n_tiles"].sum() == kept.height and wells["well"].n_unique() == wells.height
    assert not list((home / "cache").rglob("*.tmp"))


def test_gpu_work_falls_back_to_a_cpu_worker_without_gpus(ray_cluster):
    compute = RayCompute(address=ray_cluster, gpus_per_task=1.0, ray_init_options={"log_to_driver": False})
    context = dg.build_asset_context()
    # the cluster has no GPU: the task runs on a CPU worker instead of waiting for one forever
    assert compute.run(context, well_name, 2, 3, gpu=True) == "B03"


def test_environment_chooses_the_compute(monkeypatch, tmp_path):
    assert type(resources_for_env("local", home=tmp_path)["compute"]) is Compute
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    ray = resources_for_env("ray", home=tmp_path)["compute"]
    assert isinstance(ray, RayCompute) and ray.address == "10.0.0.5:6379" and ray.gpus_per_task == 0
    assert ray.host == "10.0.0.5" and ray.backend == "ray"
    gpu = resources_for_env("ray-gpu", home=tmp_path)
    assert gpu["compute"].gpus_per_task == 1 and gpu["pretraining"].preset == "gpu"
    assert gpu["embedding"].device == "auto"  # cuda on a GPU worker, the CPU elsewhere
    assert compute_for_env("gpu").backend == "local"
    with pytest.raises(ValueError, match="ray-gpu"):
        resources_for_env("cluster", home=tmp_path)


def test_on_ray_partitions_run_side_by_side(monkeypatch):
    from lcd_assets.demo import INSTANCE_YAML, instance_yaml

    assert instance_yaml("local") == INSTANCE_YAML.read_text()  # one warehouse writer at a time
    ray = instance_yaml("ray", 6)
    assert "max_concurrent_runs: 6" in ray and "default_limit: 6" in ray
    monkeypatch.setenv("LCD_PARALLEL", "3")
    assert "default_limit: 3" in instance_yaml("ray-gpu")
    monkeypatch.setenv("LCD_PARALLEL", "0")
    with pytest.raises(ValueError, match="LCD_PARALLEL=0"):
        instance_yaml("ray")


def test_a_connection_is_kept_for_the_same_cluster_only():
    from lcd_assets.compute import _same_cluster

    assert _same_cluster("auto", "10.0.0.5:6379")
    assert _same_cluster("127.0.0.1:6379", "192.0.2.2:6379")  # a local head reports its node address
    assert _same_cluster("10.0.0.5:6379", "10.0.0.5:6379")
    assert not _same_cluster("10.0.0.6:6379", "10.0.0.5:6379")
    assert not _same_cluster("127.0.0.1:6380", "192.0.2.2:6379")
