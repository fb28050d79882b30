"""The live screen, as a user runs it (README "Using it on a real screen"): `lcd ui` running (webserver
and daemon: sensors, automation, run queue, run monitoring), the setup job launched, the
measurements of a screen copied into the inbox, and no hand after that. Prints when each stage's
tables filled, and fails if the activity and MoA tables are not reached within the time limit.

Usage: ``python benchmarks/exp_live_inbox.py [--preset small] [--limit-s 900] [--keep DIR]``
(a fresh ``LCD_HOME`` in a temporary folder unless ``--keep``; ``--timepoints N``: the measurements of the
first N timepoints are dropped, default 1: six of the ``small`` preset, as the issue's user did).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

from lcd_core.io.warehouse import Warehouse
from lcd_core.synth import generate_screen

#: what the user waits for: every dropped measurement ingested, then every condition of theirs
#: through the chain to the MoA probes, then the screen's MoA tables
STAGES = ("image_index", "condition_profiles", "normalized_profiles", "activity", "moa_probes", "moa_predictions")


def _partitions(instance: dg.DagsterInstance, asset: str, since: float) -> set[str]:
    """Partition keys of ``asset`` materialized after ``since`` ("" for an unpartitioned asset)."""
    recs = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return {r.partition_key or "" for r in recs if r.timestamp >= since}


def _wait_setup(instance: dg.DagsterInstance, run_id: str, limit_s: float) -> str:
    t0 = time.time()
    while time.time() - t0 < limit_s:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run.status.value
        time.sleep(2)
    return "TIMEOUT"


def _launch_setup(home: Path) -> str:
    """`dagster job launch` of the setup job, as a user would from a shell next to `lcd ui`."""
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "launch", "-w", str(home / "dagster" / "workspace.yaml"),
         "-j", "setup"], capture_output=True, text=True, check=True, env=os.environ.copy())
    return out.stdout + out.stderr


def _watch(instance: dg.DagsterInstance, n_measurements: int, n_conditions: int, limit_s: float) -> dict[str, float]:
    """Seconds from the drop until each stage had materialized every partition it should."""
    t0, seen = time.time(), {}
    wanted = {"image_index": n_measurements, "moa_predictions": 1}
    while time.time() - t0 < limit_s and len(seen) < len(STAGES):
        for name in STAGES:
            if name not in seen and len(_partitions(instance, name, t0)) >= wanted.get(name, n_conditions):
                seen[name] = round(time.time() - t0, 1)
                print(f"  {seen[name]:7.1f} s  {name}", flush=True)
        time.sleep(5)
    return seen


def _rows(wh: Warehouse, table: str) -> int:
    try:
        return int(wh.query(f"SELECT count(*) AS n FROM {table}")["n"][0])
    except Exception:  # not written
        return 0


def _conditions(folders: list[Path]) -> int:
    """Dose × timepoint conditions the measurements of ``folders`` deliver."""
    from lcd_core.io.inbox import resolve_timepoints
    from lcd_core.io.phenix import read_index
    from lcd_core.io.platemap import load_screen

    screen = load_screen(folders[0].parents[1] / "metadata")
    return len({(mt.dose, mt.timepoint) for f in folders for mt in resolve_timepoints(read_index(f), screen)})


def _first_timepoints(folders: tuple[Path, ...], n: int) -> list[Path]:
    """The measurement folders of the screen's first ``n`` timepoints."""
    from lcd_core.io.inbox import resolve_timepoints
    from lcd_core.io.phenix import read_index
    from lcd_core.io.platemap import load_screen

    screen = load_screen(folders[0].parents[1] / "metadata")
    tps = {f: resolve_timepoints(read_index(f), screen)[0].timepoint for f in folders}
    keep = sorted(set(tps.values()))[:n]
    return [f for f in folders if tps[f] in keep]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--limit-s", type=float, default=900)
    ap.add_argument("--keep")
    ap.add_argument("--timepoints", type=int, default=1, help="drop the measurements of the first N timepoints")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="lcd-live-"))
    home, staging = root / "home", root / "staging"
    shutil.rmtree(root / "home", ignore_errors=True)
    res = generate_screen(staging, preset=args.preset, seed=0)
    shutil.copytree(staging / "metadata", home / "metadata")
    os.environ.update(LCD_HOME=str(home), LCD_INBOX_SETTLE_S="2")
    (home / "inbox").mkdir(parents=True)
    ui = subprocess.Popen([sys.executable, "-m", "lcd_assets.cli", "ui", "--port", "3917"],
                          stdout=open(root / "ui.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        os.environ["DAGSTER_HOME"] = str(home / "dagster")
        time.sleep(25)  # the webserver and daemon start
        t_setup = time.time()
        _launch_setup(home)
        instance = dg.DagsterInstance.get()
        run_id = instance.get_runs(limit=1)[0].run_id
        status = _wait_setup(instance, run_id, 600)
        print(f"setup job: {status} in {time.time() - t_setup:.0f} s", flush=True)
        drop = _first_timepoints(res.measurement_dirs, args.timepoints)
        print(f"dropping {len(drop)} of {res.n_measurements} measurements into {home / 'inbox'}", flush=True)
        for folder in drop:
            shutil.copytree(folder, home / "inbox" / folder.name)
        seen = _watch(instance, len(drop), _conditions(drop), args.limit_s)
        runs = instance.get_runs()
        wh = Warehouse(home)
        by_status: dict[str, int] = {}
        for r in runs:
            by_status[r.status.value] = by_status.get(r.status.value, 0) + 1
        tables = ("image_index", "tiles", "activity", "moa_probe_results", "moa_predictions")
        print(f"runs: {by_status}; rows: " + ", ".join(f"{t} {_rows(wh, t)}" for t in tables))
        return 0 if len(seen) == len(STAGES) and "FAILURE" not in by_status else 1
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
