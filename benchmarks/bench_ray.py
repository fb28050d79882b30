"""The demo's acquisition locally and through a local Ray cluster, in one run; and what the
measured per-FOV and per-tile costs mean at the paper's scale.

    python benchmarks/bench_ray.py [--timepoints 1] [--workers 2] [--seed 0] [--preset demo]

1. Generates the preset's screen once and copies it into two homes.
2. Local: the acquisition partitions of the first ``--timepoints`` timepoints, ``--workers``
   at a time (``lcd demo``'s runner: spawned processes, one torch thread each).
3. Ray: a head on 127.0.0.1 with ``--workers`` CPUs (``local_ray_head``), ``LCD_ENV=ray``, the same
   partitions ``--workers`` at a time; each step's heavy work is a Ray task.
4. Prints both wall times and the speed-up; per-task overhead (a no-op task's round trip, and per
   partition the Ray steps' extra seconds over the local steps); the tables' agreement.
5. The paper's screen (430,080 FOV stacks, 5.7 M tiles; SPEC §1) from per-FOV (``tiles``,
   ``fov_nuclei``) and per-tile (``kept_tile_pass``) step seconds measured, locally, on a screen of
   paper-size FOVs (the ``small`` preset at 1080 × 1080 px, the generator's paper scale: a
   2×-binned 2160² field; one field per well, one timepoint): core-hours per stage and hours on N
   one-CPU Ray workers (linear; Ray's extra seconds per partition measured in 4 are added).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PAPER_FOVS, PAPER_TILES = 430_080, 5_700_000
GFLOP_PER_TILE = 9.2  # ViT-S/16 at 224 px
#: FOVs per acquisition partition at the paper's scale: 384 wells × 4 fields of one plate × timepoint
PAPER_FOVS_PER_PARTITION = 384 * 4
#: the generator's paper-scale FOV: 1080 px, a 2×-binned 2160 × 2160 field (lcd_core.synth.design)
PAPER_FOV_SIZE = 1080
STEPS = ("image_index", "tiles", "kept_tile_pass", "fov_nuclei", "fov_embeddings", "well_embeddings")


def _acquire(home: Path, timepoints: int, workers: int, env: str) -> tuple[float, int]:
    """The acquisition of ``home``'s first ``timepoints`` timepoints with ``LCD_ENV=env``:
    ``(wall seconds, partitions)``."""
    from lcd_assets.demo import acquire

    os.environ["LCD_ENV"] = env
    result = acquire(home, workers, timepoints)
    if result.failed:
        raise RuntimeError(f"{env}: failed runs {result.failed}")
    return result.seconds["acquisition"], result.runs.get("acquisition", 0)


def _round_trip_ms(address: str, n: int = 50) -> float:
    """Median milliseconds of a no-op Ray task, submitted and fetched one at a time."""
    import ray

    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    noop = ray.remote(lambda: None).options(num_cpus=1, max_retries=0)
    ray.get(noop.remote())  # a worker up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ray.get(noop.remote())
        times.append((time.perf_counter() - t0) * 1e3)
    ray.shutdown()
    return float(np.median(times))


def _steps(home: Path) -> tuple[dict[str, float], int]:
    import dagster as dg
    from bench_demo import run_overheads

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        acq = run_overheads(instance, "acquisition")
    return {k[5:]: v for k, v in acq.items() if k.startswith("step:")}, acq["runs"]


def _agreement(a: Path, b: Path) -> str:
    from lcd_core.io.warehouse import Warehouse

    q = "SELECT tile_id, kept, qc_reason FROM tiles ORDER BY tile_id"
    tiles_equal = Warehouse(a).query(q).equals(Warehouse(b).query(q))
    q = "SELECT tile_id, embedding FROM tile_embeddings ORDER BY tile_id"
    ea, eb = Warehouse(a).query(q), Warehouse(b).query(q)
    diff = float(np.abs(np.stack(ea["embedding"].to_list()) - np.stack(eb["embedding"].to_list())).max())
    q = "SELECT plate, well, field, n_nuclei FROM fov_nuclei ORDER BY plate, well, field"
    nuclei_equal = Warehouse(a).query(q).equals(Warehouse(b).query(q))
    return (f"tiles table equal: {tiles_equal}; fov_nuclei equal: {nuclei_equal}; "
            f"{ea.height} embeddings, largest |difference| {diff:.4f} (bf16, one thread against the local run's)")


def _paper_fov_costs(base: Path, seed: int, workers: int) -> tuple[dict[str, float], int, int, int]:
    """``(step seconds, FOVs, kept tiles, partitions)`` of a local acquisition of paper-size FOVs;
    the kept-tile pass split into the handcrafted features and the rest (the ViT, the decode)."""
    import dagster as dg
    from bench_demo import materialized

    from lcd_core.io.warehouse import Warehouse
    from lcd_core.synth import generate_screen

    home = base / "paper-fovs"
    shutil.rmtree(home, ignore_errors=True)
    generate_screen(home, preset="small", seed=seed, image_size=PAPER_FOV_SIZE, fields=1, timepoints_h=(4,))
    _, partitions = _acquire(home, 1, workers, "local")
    wh = Warehouse(home)
    tiles = int(wh.query("SELECT count(*) AS n FROM tiles WHERE kept")["n"][0])
    fovs = int(wh.query("SELECT count(*) AS n FROM (SELECT DISTINCT plate, well, field FROM tiles)")["n"][0])
    steps = _steps(home)[0]
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        features = sum(materialized(instance, "fov_features", "feature_seconds"))
    steps["kept_tile_pass: features"] = features
    steps["kept_tile_pass: ViT and decode"] = steps.pop("kept_tile_pass") - features
    return steps, fovs, tiles, partitions


def _projection(steps: dict[str, float], fovs: int, tiles: int, partitions: int, extra_s: float,
                gpu_tflops: float, cores_per_gpu: int) -> None:
    per_fov = {s: steps.get(s, 0.0) / fovs for s in ("tiles", "fov_nuclei")}
    per_tile = {s: steps.get(s, 0.0) / tiles for s in ("kept_tile_pass: ViT and decode", "kept_tile_pass: features")}
    rest = sum(v for k, v in steps.items() if k not in (*per_fov, *per_tile)) / partitions
    paper_parts = PAPER_FOVS / PAPER_FOVS_PER_PARTITION
    core_h = {f"{k} ({v * 1e3:.1f} ms/FOV)": v * PAPER_FOVS / 3600 for k, v in per_fov.items()}
    core_h.update({f"{k} ({v * 1e3:.1f} ms/tile)": v * PAPER_TILES / 3600 for k, v in per_tile.items()})
    core_h[f"other steps ({rest:.1f} s/partition)"] = rest * paper_parts / 3600
    core_h[f"Ray overhead ({extra_s:.1f} s/partition, measured above)"] = max(extra_s, 0.0) * paper_parts / 3600
    total = sum(core_h.values())
    print(f"\nThe paper's screen: {PAPER_FOVS:,} FOV stacks, {PAPER_TILES:,} tiles, {paper_parts:.0f} partitions of "
          f"{PAPER_FOVS_PER_PARTITION} FOVs; from this machine's step costs (one core each) on {fovs} FOVs of "
          f"{PAPER_FOV_SIZE}² px with {tiles} kept tiles ({tiles / max(fovs, 1):.1f} per FOV)")
    workers = (1, 16, 64, 256)
    print(f"{'stage':52s} {'core-h':>8s} " + " ".join(f"{f'{n} workers':>11s}" for n in workers))
    for stage, h in [*core_h.items(), ("all", total)]:
        print(f"{stage:52s} {h:8.1f} " + " ".join(f"{h / n:10.2f}h" for n in workers))
    vit_s = PAPER_TILES * GFLOP_PER_TILE / (gpu_tflops * 1e3)  # one GPU at its peak: a bound, not a measurement
    cpu_h = total - next(v for k, v in core_h.items() if k.startswith("kept_tile_pass: ViT"))
    print(f"With GPUs (not measured here: the ViT at the GPU's bf16 peak of {gpu_tflops:.0f} TFLOP/s, a lower bound "
          f"that bench_gpu.py replaces with a measured rate; the rest on {cores_per_gpu} CPU cores per GPU):")
    for g in (1, 8):
        print(f"  {g} GPU{'s' if g > 1 else ''}: ViT ≥ {vit_s / g / 60:.1f} min; decode, features, nuclei and the rest "
              f"{cpu_h / (cores_per_gpu * g):.2f} h on {cores_per_gpu * g} cores")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--timepoints", type=int, default=1, help="acquire the first N timepoints")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", type=Path, default=None)
    ap.add_argument("--gpu-tflops", type=float, default=989.0, help="GPU bf16 dense peak (H100 SXM: 989)")
    ap.add_argument("--cores-per-gpu", type=int, default=16, help="CPU cores beside each GPU (the lent H100 machine: 16)")
    args = ap.parse_args(argv)
    from lcd_assets.compute import local_ray_head
    from lcd_core._malloc import retain_freed_memory
    from lcd_core.io.warehouse import Warehouse
    from lcd_core.synth import generate_screen

    retain_freed_memory()
    base = args.base or Path(tempfile.mkdtemp(prefix="lcd-bench-ray-"))
    screen = base / "screen"
    shutil.rmtree(base / "screen", ignore_errors=True)
    t0 = time.perf_counter()
    generate_screen(screen, preset=args.preset, seed=args.seed)
    print(f"generated preset {args.preset!r} seed {args.seed} in {time.perf_counter() - t0:.0f} s")
    homes = {}
    for kind in ("local", "ray"):
        homes[kind] = base / kind
        shutil.rmtree(homes[kind], ignore_errors=True)
        shutil.copytree(screen, homes[kind])
    wall = {}
    wall["local"], n = _acquire(homes["local"], args.timepoints, args.workers, "local")
    with local_ray_head(num_cpus=args.workers) as address:
        os.environ["RAY_ADDRESS"] = address
        rt = _round_trip_ms(address)
        wall["ray"], _ = _acquire(homes["ray"], args.timepoints, args.workers, "ray")
    os.environ["LCD_ENV"] = "local"
    wh = Warehouse(homes["local"])
    tiles = int(wh.query("SELECT count(*) AS n FROM tiles WHERE kept")["n"][0])
    fovs = int(wh.query("SELECT count(*) AS n FROM (SELECT DISTINCT plate, well, field, timepoint FROM tiles)")["n"][0])
    steps = {k: _steps(h) for k, h in homes.items()}
    timepoints = wh.query("SELECT DISTINCT timepoint FROM tiles ORDER BY 1")["timepoint"].to_list()
    print(f"\n{n} acquisition partitions ({', '.join(timepoints)}), {fovs} FOVs, {tiles} kept tiles, "
          f"{args.workers} at a time on {os.cpu_count()} cores")
    print(f"local (spawned processes): {wall['local']:.1f} s; Ray ({args.workers}-CPU head on 127.0.0.1): "
          f"{wall['ray']:.1f} s; speed-up {wall['local'] / wall['ray']:.2f}x")
    print(f"no-op Ray task round trip: {rt:.1f} ms (median of 50)")
    extra = 0.0
    for s in STEPS:
        a, b = steps["local"][0].get(s, 0.0), steps["ray"][0].get(s, 0.0)
        extra += (b - a) / n
        print(f"  step {s:16s} local {a:7.1f} s  Ray {b:7.1f} s  per partition {(b - a) / n:+.2f} s")
    print(f"Ray's extra seconds per partition over the local steps: {extra:+.2f} s")
    print(_agreement(homes["local"], homes["ray"]))
    t0 = time.perf_counter()
    paper = _paper_fov_costs(base, args.seed, args.workers)
    print(f"\npaper-size FOVs generated and acquired locally in {time.perf_counter() - t0:.0f} s")
    _projection(*paper, extra, args.gpu_tflops, args.cores_per_gpu)


if __name__ == "__main__":
    main()
