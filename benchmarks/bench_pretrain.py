"""Self-supervised training throughput (crops/s) of the pre-training presets.

    python benchmarks/bench_pretrain.py [--steps 6] [--threads 0] [--device auto]

Trains a few steps of each configuration on random tiles (the data path — multi-crop
augmentation, cross-batch pairing — is included, as in a real run) and prints crops/s over the
steps after the first (warm-up) one, with the seconds per step. Configurations:

* ``cpu preset``: what the ``ssl_checkpoint`` assets run on a CPU (``CPU_PRETRAINING``);
* ``paper crops, cpu batch``: ViT-S/16 on 224/96-px crops, 2 + 6 crops per pair, batch 16;
* on CUDA also ``paper (gpu preset)``: the paper recipe in bf16 at batch 64 and 256 pairs.

Figures are from one run on a shared machine: compare the rows of one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402

from lcd_core.ssl.config import CPU_PRETRAINING, cpu_default, fit_to_steps, preset_config  # noqa: E402
from lcd_core.ssl.source import InMemoryTileSource  # noqa: E402
from lcd_core.ssl.trainer import train  # noqa: E402


def run(name: str, config, steps: int, threads: int | None, device: str, n_tiles: int) -> None:
    src = InMemoryTileSource.random(n_conditions=max(n_tiles // 8, 2), n_replicas=2, tiles_per=4, size=224)
    config = fit_to_steps(config, len(src), steps)
    t0 = time.perf_counter()
    res = train(config, src, steps=steps, num_threads=threads, device=device, log_every=10 ** 6)
    wall = time.perf_counter() - t0
    per_step = config.batch_size * config.n_crops
    print(f"{name:28s} {config.arch:22s} {config.global_crop_size:>3d}/{config.local_crop_size:<3d} "
          f"batch {config.batch_size:>3d} × {config.n_crops} crops  {res.crops_per_s:8.1f} crops/s  "
          f"{per_step / max(res.crops_per_s, 1e-9):6.2f} s/step  ({wall:.0f} s wall)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    threads = args.threads or None
    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    dev = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    n_threads = threads or torch.get_num_threads()
    print(f"device {dev} ({name}), torch {torch.__version__}, threads {n_threads}, steps {args.steps}")
    cpu_cfg, _ = preset_config("cpu", "pa_dino_barlow_xb", 1000)
    print(f"cpu preset: {CPU_PRETRAINING}")
    run("cpu preset", cpu_cfg, args.steps, threads, dev, 256)
    run("paper crops, cpu batch", cpu_default(batch_size=16), args.steps, threads, dev, 256)
    if cuda:
        gpu_cfg, _ = preset_config("gpu", "pa_dino_barlow_xb", 100_000)
        run("paper (gpu preset), b64", gpu_cfg.replace(batch_size=64), args.steps, threads, dev, 1024)
        run("paper (gpu preset), b256", gpu_cfg, args.steps, threads, dev, 4096)


if __name__ == "__main__":
    main()
