"""Where the heavy work of a step runs: in the step's own process, or on a Ray cluster.

The assets hand their per-partition work (a function of :mod:`lcd_core` with plain arguments:
tables, settings, paths under ``LCD_HOME``) to the ``compute`` resource and write what comes back.
Dagster keeps the partitions, runs, sensors, checks and lineage; only the head process (the
step) opens the DuckDB warehouse, so a worker never writes it.

* :class:`Compute` (``LCD_ENV=local`` / ``gpu``): the function runs here.
* :class:`RayCompute` (``LCD_ENV=ray`` / ``ray-gpu``): dagster-ray's :class:`dagster_ray.RayResource`
  for a cluster that already runs (``ray start --head`` here, or any cluster's address); the
  function runs as a Ray task with ``cpus_per_task`` CPUs, and the GPU work (embedding,
  pre-training) with ``gpus_per_task`` GPUs. Ray does not retry a task whose worker died
  (``max_retries=0``): the step fails and Dagster's retry policy runs it again, so one place
  decides about retries and every attempt is in the run's log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import dagster as dg
from dagster_ray import RayResource
from pydantic import Field

T = TypeVar("T")

#: how a step that failed because its worker died (or any other error) is run again
STEP_RETRIES = dg.RetryPolicy(max_retries=2, delay=1.0)


class Compute(dg.ConfigurableResource):
    """Runs a step's heavy work in the step's own process (the default)."""

    def run(self, context: dg.AssetExecutionContext, fn: Callable[..., T], *args: Any,
            gpu: bool = False, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``; ``gpu``: the work uses the GPU where there is one."""
        return fn(*args, **kwargs)

    def progress(self, context: dg.AssetExecutionContext) -> Callable[[str], None]:
        """Where the work's progress lines go: the step's log."""
        return context.log.info

    @property
    def backend(self) -> str:
        return "local"


class RayCompute(RayResource, Compute):
    """Runs a step's heavy work as a task on a running Ray cluster (dagster-ray's resource).

    ``address``: the cluster (``auto``: the one ``ray start`` runs on this machine; ``host:port``
    of a head's GCS; ``ray://host:10001`` for Ray Client). The cluster's workers need this package
    installed and ``LCD_HOME`` at the same path (a shared filesystem). A run connects when it
    starts (dagster-ray's lifecycle); the connection stays with the process, so a process that
    runs many runs (``lcd demo``'s workers) keeps the cluster's workers warm (imports, loaded
    models) instead of starting new ones per run. The cluster itself is never created nor
    deleted here.
    """

    address: str = Field(default="auto", description="Ray cluster address (RAY_ADDRESS)")
    cpus_per_task: float = Field(default=1.0, description="CPUs a task reserves")
    gpus_per_task: float = Field(default=0.0, description="GPUs the embedding and pre-training tasks reserve")

    @property
    def backend(self) -> str:
        return "ray"

    @property
    def host(self) -> str:
        return urlparse(self.address if "://" in self.address else f"ray://{self.address}").hostname or "127.0.0.1"

    @property
    def name(self) -> str:
        return f"Ray cluster {self.address}"

    @property
    def ray_address(self) -> str:  # type: ignore[override]
        return self.address

    @property
    def created(self) -> bool:  # the cluster runs outside Dagster
        return True

    @property
    def ready(self) -> bool:
        return True

    def connect(self, context):
        import ray

        if ray.is_initialized():
            if _same_cluster(self.address, ray.get_runtime_context().gcs_address):
                return None
            ray.shutdown()  # this process was connected to another cluster
        return super().connect(context)

    def cleanup(self, context, exception: BaseException | None) -> None:
        """The external cluster outlives the run, and the process keeps its connection."""

    def run(self, context: dg.AssetExecutionContext, fn: Callable[..., T], *args: Any,
            gpu: bool = False, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` as a Ray task; its result (or error) comes back here."""
        import ray

        self.connect(context)
        name = getattr(fn, "__name__", "task")
        gpus = self.gpus_per_task if gpu else 0
        if gpus and not ray.cluster_resources().get("GPU"):  # the task would wait forever for one
            context.log.warning(f"{name}: no GPU in {self.name}; it runs on a CPU worker")
            gpus = 0
        options = {"num_cpus": self.cpus_per_task, "num_gpus": gpus, "max_retries": 0, "name": name}
        ref = ray.remote(fn).options(**options).remote(*args, **kwargs)
        context.log.info(f"{name} as Ray task {ref.task_id().hex()} ({options['num_cpus']:g} CPU, "
                         f"{options['num_gpus']:g} GPU) on {self.name}")
        return ray.get(ref)

    def progress(self, context: dg.AssetExecutionContext) -> Callable[[str], None]:
        """A task's progress lines go to its worker's log (``ray logs``), which Ray forwards to
        the step's standard output."""
        return print


def _same_cluster(address: str, gcs_address: str) -> bool:
    """Whether ``address`` names the cluster whose GCS is at ``gcs_address`` (``auto``: the
    connected one)."""
    if address == "auto":
        return True
    host, _, port = address.rpartition("://")[-1].rpartition(":")
    gcs_host, _, gcs_port = gcs_address.rpartition(":")
    return port == gcs_port and (host == gcs_host or host in ("127.0.0.1", "localhost"))


def compute_for_env(env: str) -> Compute:
    """The ``compute`` resource of an environment (``ray`` / ``ray-gpu``: the cluster of
    ``RAY_ADDRESS``, default ``auto``)."""
    if not env.startswith("ray"):
        return Compute()
    return RayCompute(address=os.environ.get("RAY_ADDRESS", "auto"),
                      gpus_per_task=1.0 if env == "ray-gpu" else 0.0,
                      ray_init_options={"ignore_reinit_error": True, "log_to_driver": True})


@contextmanager
def local_ray_head(num_cpus: int = 2, num_gpus: int = 0, timeout_s: float = 90.0) -> Iterator[str]:
    """A Ray head on 127.0.0.1 (``ray start --head --block``) for the block; yields its address.

    Its processes run in a session of their own and are stopped as a group on exit, so no other
    Ray on the machine is touched (``ray stop`` would stop them all). For tests, benchmarks and a
    one-machine try of ``LCD_ENV=ray``; a real cluster is started by its own tooling.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, head, timeout_s)
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:  # `ray start --block` may not stop its children in time
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(port: int, head: subprocess.Popen, timeout_s: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"no Ray head on 127.0.0.1:{port} after {timeout_s:.0f} s")
