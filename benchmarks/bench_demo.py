"""The main job's stages on a generated screen, each against its bound measured in the same run.

    python benchmarks/bench_demo.py [--scales 1 2] [--workers 2] [--seed 0] [--base DIR]

Prints, in one run:

a. the bounds on this machine: bf16 GEMM peak on one core and on all cores, the ViT-S/16 embedding
   rate of the demo's own inference path on one core (its ratio to that core's roofline at
   9.2 GFLOP per 224-px tile), and the LZW decode rate of the screen's own TIFFs (FOVs/s per core);
b. per screen scale (1× = the ``demo`` preset, 2× = twice its layouts, so twice the plates and
   tiles): every stage of ``lcd demo`` (generate, setup, acquisition, analysis, summary,
   time-lapse) with its wall time, tiles/s, the ratio of its rate to its bound where it has one
   (acquisition: the workers' ViT roofline; ingest, the ``tiles`` step: the workers' decode rate;
   the kept-tile pass: the ViT roofline), and peak RSS of the process tree and of its largest process;
c. Dagster's overhead per run: launch (run created) to first step, and run time not spent in steps;
d. how the cost grows: seconds per tile and peak RSS at 2× against 1×.

A full run (1× and 2×) takes about three times one ``make demo`` on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GFLOP_PER_TILE = 9.2  # ViT-S/16 forward at 224 px, as in bench_embed.py
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


# --------------------------------------------------------------------------------------------
# memory of a process tree


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_rss_mb(root: int) -> tuple[float, float]:
    """(sum, max) resident MB over ``root`` and its descendants."""
    kids, todo, sizes = _children(), [root], []
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                sizes.append(int(f.read().split()[1]) * PAGE_MB)
        except OSError:
            continue
    return (sum(sizes), max(sizes)) if sizes else (0.0, 0.0)


class StageMemory:
    """Samples the tree's RSS every ``period`` s and keeps the peak per ``result.stage``."""

    def __init__(self, result, period: float = 0.25) -> None:
        self.result, self.period = result, period
        self.peak: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            stage = self.result.stage or "other"
            tot, big = tree_rss_mb(os.getpid())
            old = self.peak.get(stage, (0.0, 0.0))
            self.peak[stage] = (max(old[0], tot), max(old[1], big))
            time.sleep(self.period)

    def __enter__(self) -> "StageMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------
# bounds


def gemm_peak(threads: int) -> float:
    """bf16 GEMM GFLOP/s on ``threads`` threads (best of several 2048² products)."""
    import torch

    from bench_embed import gemm_gflops

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return gemm_gflops(torch.bfloat16, 2048, 8)
    finally:
        torch.set_num_threads(old)


def vit_one_core(n_tiles: int = 64, batch_size: int | None = None, reps: int = 3) -> float:
    """Tiles/s of ``embed_batches`` (the demo's path: default dtype, the demo's batch size) on one
    thread, in steady state as in a demo worker: one pass to warm up, then the best of ``reps``."""
    import torch

    from lcd_assets.resources import EmbeddingSettings
    from lcd_core.embedding.inference import embed_batches
    from lcd_core.embedding.vit import create_vit

    batch_size = batch_size or EmbeddingSettings().batch_size
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = create_vit()
        tiles = np.random.default_rng(0).random((n_tiles, 3, 224, 224), dtype=np.float32).astype(np.float16)
        list(embed_batches(model, tiles, batch_size=batch_size))
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            list(embed_batches(model, tiles, batch_size=batch_size))
            best = min(best, time.perf_counter() - t)
        return n_tiles / best
    finally:
        torch.set_num_threads(old)


def decode_rate(home: Path, n_fovs: int = 64) -> float:
    """FOVs/s on one core: LZW decode (``read_fov``, every plane) of the first ``n_fovs`` FOVs of
    the screen's first measurement, as its ``image_index`` lists them."""
    from lcd_core.io.warehouse import Warehouse
    from lcd_core.tiles.partition import DECODED_FOVS, read_fov

    index = Warehouse(home).query("SELECT plate, timepoint, well, field, plane, path FROM image_index")
    first = index.sort("plate", "timepoint").row(0, named=True)
    fovs = (index.filter((index["plate"] == first["plate"]) & (index["timepoint"] == first["timepoint"]))
            .sort("well", "field", "plane").group_by("well", "field", maintain_order=True).agg("path")["path"]
            .to_list()[:n_fovs])
    read_fov(fovs[0])  # warm the codec and the page cache
    t = time.perf_counter()
    for paths in fovs:
        DECODED_FOVS.clear()  # every FOV decoded, none found in the process's cache
        read_fov(paths)
    return len(fovs) / (time.perf_counter() - t)


# --------------------------------------------------------------------------------------------
# the Dagster event log


def run_overheads(instance, job: str) -> dict[str, float]:
    """Median seconds from run creation to its first step, and of run time outside steps."""
    import dagster as dg

    launch, outside, steps_by = [], [], {}
    for rec in instance.get_run_records(dg.RunsFilter(job_name=job)):
        events = [e for e in instance.all_logs(rec.dagster_run.run_id) if e.dagster_event]
        kinds = [(e.dagster_event.event_type_value, e.step_key, e.timestamp) for e in events]
        starts = {k: t for ty, k, t in kinds if ty == "STEP_START"}
        ends = {k: t for ty, k, t in kinds if ty in ("STEP_SUCCESS", "STEP_FAILURE")}
        if not starts:
            continue
        last = max(t for _, _, t in kinds)
        first = min(starts.values())
        in_steps = sum(ends[k] - starts[k] for k in starts if k in ends)
        launch.append(first - rec.create_timestamp.timestamp())
        outside.append(last - rec.create_timestamp.timestamp() - in_steps)
        for k in starts:
            if k in ends:
                steps_by.setdefault(k, []).append(ends[k] - starts[k])
    out = {"runs": len(launch), "launch_to_first_step_s": float(np.median(launch)) if launch else float("nan"),
           "outside_steps_s": float(np.median(outside)) if outside else float("nan")}
    out.update({f"step:{k}": float(np.sum(v)) for k, v in sorted(steps_by.items())})
    return out


def materialized(instance, asset: str, key: str) -> list[float]:
    """The ``key`` metadata value of every materialization of ``asset``."""
    import dagster as dg

    recs = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
    vals = []
    for r in recs:
        meta = r.asset_materialization.metadata if r.asset_materialization else {}
        if key in meta:
            vals.append(float(meta[key].value))
    return vals


# --------------------------------------------------------------------------------------------
# one screen


def run_screen(base: Path, scale: int, seed: int, workers: int, preset: str = "demo") -> dict:
    """``lcd demo`` on a screen of ``scale`` × the demo's layouts, with per-stage memory."""
    import dagster as dg

    from lcd_assets.demo import DemoResult, run_demo
    from lcd_core.io.warehouse import Warehouse

    from lcd_core.synth.design import PRESETS, ScreenSpec

    home = base / f"{preset}-scale{scale}"
    shutil.rmtree(home, ignore_errors=True)  # a fresh instance: its event log holds this run only
    layouts = {**ScreenSpec().to_dict(), **PRESETS[preset]}["n_layouts"]
    result = DemoResult()
    t0 = time.perf_counter()
    with StageMemory(result) as mem:
        run_demo(home, preset=preset, seed=seed, workers=workers,
                 overrides={"n_layouts": layouts * scale} if scale != 1 else None,
                 log=lambda s: None, result=result)
    wall = time.perf_counter() - t0
    wh = Warehouse(home)
    tiles = int(wh.query("SELECT count(*) AS n FROM tiles WHERE kept")["n"][0])
    fovs = int(wh.query("SELECT count(*) AS n FROM (SELECT DISTINCT plate, timepoint, well, field FROM tiles)")["n"][0])
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        acq = run_overheads(instance, "acquisition")
        emb_s, emb_n = materialized(instance, "tile_embeddings", "seconds"), materialized(instance, "tile_embeddings", "tiles")
    return {"scale": scale, "home": home, "wall": wall, "seconds": dict(result.seconds), "failed": result.failed,
            "tiles": tiles, "fovs": fovs, "memory": mem.peak, "acq": acq,
            "pass_tiles_s": sum(emb_n) / max(sum(emb_s), 1e-9)}


def report(r: dict, bounds: dict, workers: int) -> None:
    vit_bound = workers * bounds["gemm_1"] / GFLOP_PER_TILE  # tiles/s if the workers did nothing but GEMMs
    print(f"\n== screen {r['scale']}x: {r['tiles']} kept tiles, {r['fovs']} FOVs, {workers} workers, "
          f"{r['wall']:.0f} s in all{'; FAILED ' + str(r['failed']) if r['failed'] else ''}")
    print(f"{'stage':12s} {'wall s':>8s} {'tiles/s':>8s} {'bound':>8s} {'ratio':>6s} {'tree RSS MB':>12s} {'max proc MB':>12s}")
    for stage, s in r["seconds"].items():
        rate = r["tiles"] / s if s else float("nan")
        bound = vit_bound if stage == "acquisition" else float("nan")
        tot, big = r["memory"].get(stage, (float("nan"), float("nan")))
        ratio = f"{rate / bound:6.2f}" if stage == "acquisition" else f"{'':6s}"
        print(f"{stage:12s} {s:8.1f} {rate:8.1f} {bound:8.1f} {ratio} {tot:12.0f} {big:12.0f}")
    acq = r["acq"]
    ingest = acq.get("step:tiles", float("nan"))
    ingest_rate = r["fovs"] / ingest if ingest else float("nan")
    print(f"ingest (`tiles` steps): {ingest:.1f} s of steps, {ingest_rate:.1f} FOV/s per worker against "
          f"{bounds['decode_fovs_s']:.1f} FOV/s LZW decode on one core: ratio {ingest_rate / bounds['decode_fovs_s']:.2f}")
    one_core = bounds["gemm_1"] / GFLOP_PER_TILE
    print(f"kept-tile pass (decode + features + ViT, per worker): {r['pass_tiles_s']:.1f} tiles/s against the "
          f"ViT roofline of one core {one_core:.1f}: ratio {r['pass_tiles_s'] / one_core:.2f}")
    steps = {k[5:]: v for k, v in acq.items() if k.startswith("step:")}
    print("acquisition step seconds (all partitions): " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()))
    print(f"Dagster per acquisition run ({acq['runs']} runs, median): launch to first step "
          f"{acq['launch_to_first_step_s']:.2f} s, run time outside steps {acq['outside_steps_s']:.2f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="demo", help="screen preset (``small``: a check of this script in seconds)")
    ap.add_argument("--base", type=Path, default=None, help="folder for the screens (default: a temporary one)")
    args = ap.parse_args(argv)
    from lcd_core._malloc import retain_freed_memory

    retain_freed_memory()  # as every process of the code location does (lcd_core._malloc)
    base = args.base or Path(tempfile.mkdtemp(prefix="lcd-bench-demo-"))
    cores = os.cpu_count() or 1
    bounds = {"gemm_1": gemm_peak(1), "gemm_all": gemm_peak(cores)}
    vit = vit_one_core()
    print(f"bounds: bf16 GEMM {bounds['gemm_1']:.0f} GFLOP/s on one core, {bounds['gemm_all']:.0f} on {cores}; "
          f"ViT roofline {bounds['gemm_1'] / GFLOP_PER_TILE:.1f} tiles/s per core")
    print(f"ViT-S/16 (embed_batches, one thread): {vit:.1f} tiles/s = {vit * GFLOP_PER_TILE:.0f} GFLOP/s, "
          f"ratio to the one-core roofline {vit * GFLOP_PER_TILE / bounds['gemm_1']:.2f}")
    runs = []
    for scale in args.scales:
        r = run_screen(base, scale, args.seed, args.workers, args.preset)
        if "decode_fovs_s" not in bounds:
            bounds["decode_fovs_s"] = decode_rate(r["home"])
        report(r, bounds, args.workers)
        runs.append(r)
    if len(runs) > 1:
        a, b = runs[0], runs[-1]
        per_tile = (b["wall"] / b["tiles"]) / (a["wall"] / a["tiles"])
        mem = max(v[1] for v in b["memory"].values()) / max(v[1] for v in a["memory"].values())
        print(f"\n{b['scale']}x against {a['scale']}x: {b['tiles'] / a['tiles']:.2f}x the tiles, "
              f"{b['wall'] / a['wall']:.2f}x the time, {per_tile:.2f}x the seconds per tile, "
              f"{mem:.2f}x the largest process's peak RSS")


if __name__ == "__main__":
    main()
