"""The GPU check: what one lent GPU does with the platform's models, in one run of ≤ 10 minutes.

    python benchmarks/bench_gpu.py [--preset small] [--steps 300] [--workers 8]
    python benchmarks/bench_gpu.py --tiny      # the same script on a CPU, in the tests

Prints, in one run:

a. the device and its bf16 GEMM rate (the roofline of the rest);
b. ViT-S/16 embedding (the platform's own inference path, ``embed_batches``: bf16 autocast on CUDA)
   in tiles/s, and its ratio to the roofline at 9.2 GFLOP per 224-px tile;
c. pre-training steps/s of the paper's recipe (``gpu`` preset: PA + DINO + Barlow + XB, batch 256
   pairs of 2 × 224² + 6 × 96² crops, K = 65536) on random tiles;
d. a demo-scale pre-training: the preset's screen generated and acquired through Dagster
   (``LCD_ENV=gpu``), the tile bank, two ablation variants of ``--steps`` steps each, and the
   ablation table (held-out retrieval mAP, replica predictability, screen activity).

``--tiny`` runs every part small on whatever device there is (a 1024² GEMM, 32 tiles, two steps
of a shrunk recipe, one timepoint and one field per well of the ``small`` preset, two-step
variants, acquired in one process), so the tests check that the script runs end to end without a GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GFLOP_PER_TILE = 9.2  # ViT-S/16 forward at 224 px (bench_embed.py counts it)
VARIANTS = ("dino", "pa_dino_barlow_xb")


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def gemm_rate(dev, n: int, reps: int) -> float:
    """bf16 GEMM GFLOP/s on ``dev`` (best of ``reps`` ``n``² products)."""
    import torch

    a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16) for _ in range(2))
    torch.mm(a, b)
    _sync(dev)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def embedding_rate(dev, n_tiles: int, batch: int) -> float:
    """Tiles/s of the untrained ViT-S/16 through ``embed_batches`` (a warm-up pass, then timed)."""
    import numpy as np

    from lcd_core.embedding.inference import embed_batches
    from lcd_core.embedding.vit import create_vit

    model = create_vit(seed=0).to(dev)
    tiles = np.random.default_rng(0).random((n_tiles, 3, 224, 224), dtype=np.float32).astype(np.float16)
    for _ in embed_batches(model, tiles[:batch], batch_size=batch, device=dev):
        pass
    t0 = time.perf_counter()
    n = sum(len(e) for e in embed_batches(model, tiles, batch_size=batch, device=dev))
    return n / (time.perf_counter() - t0)


def pretraining_rate(dev, tiny: bool, steps: int) -> tuple[float, str]:
    """Optimizer steps/s of the paper's recipe on random tiles (the first step is warm-up)."""
    from lcd_core.ssl.config import fit_to_steps, gpu_default
    from lcd_core.ssl.source import InMemoryTileSource
    from lcd_core.ssl.trainer import train

    config = gpu_default()
    if tiny:
        config = config.replace(batch_size=4, out_dim=256, arch="vit_tiny_patch16_224", n_local_crops_per_source=1)
    src = InMemoryTileSource.random(n_conditions=max(config.batch_size, 8), n_replicas=2, tiles_per=4, size=224)
    config = fit_to_steps(config, len(src), steps + 1)
    res = train(config, src, steps=steps + 1, device=dev, log_every=10**6)
    per_step = config.batch_size * config.n_crops
    label = (f"{config.arch}, batch {config.batch_size} pairs × {config.n_crops} crops "
             f"({config.global_crop_size}/{config.local_crop_size} px), K = {config.out_dim}")
    return res.crops_per_s / per_step, label


def demo_pretraining(base: Path, preset: str, timepoints: int, steps: int, workers: int, env: str,
                     fields: int = 0) -> list[str]:
    """Generate and acquire a screen (``fields`` per well, 0: the preset's), then two variants and
    the ablation table; its lines."""
    from lcd_assets.demo import acquire, run_pretraining
    from lcd_core.synth import generate_screen

    os.environ["LCD_ENV"] = env
    home = base / f"gpu-check-{preset}"
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.perf_counter()
    generate_screen(home, preset=preset, seed=0, **({"fields": fields} if fields else {}))
    acquired = acquire(home, workers, timepoints)
    print(f"d. {acquired.runs.get('acquisition', 0)} measurements generated and acquired in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    t1 = time.perf_counter()
    done = run_pretraining(home, list(VARIANTS), steps=steps, log=lambda s: None, n_draws=50 if steps < 10 else 0)
    if acquired.failed or done.failed:
        raise RuntimeError(f"failed runs: {acquired.failed + done.failed}")
    print(f"   tile bank, {len(VARIANTS)} variants × {steps} steps and the ablation in {time.perf_counter() - t1:.0f} s")
    return done.science


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="every part small, on any device (the tests)")
    ap.add_argument("--preset", default="small", help="screen of part d (small: 16 measurements)")
    ap.add_argument("--timepoints", type=int, default=0, help="acquire the first N timepoints (0: all)")
    ap.add_argument("--steps", type=int, default=300, help="pre-training steps per variant in part d")
    ap.add_argument("--workers", type=int, default=0, help="acquisition processes (0: one per 2 cores)")
    ap.add_argument("--base", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    from lcd_core._malloc import retain_freed_memory

    retain_freed_memory()
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine())
    print(f"device {dev} ({name}), torch {torch.__version__}, {os.cpu_count()} CPU cores"
          + ("" if cuda else " — no GPU: the figures below are this CPU's"), flush=True)
    tiny = args.tiny
    peak = gemm_rate(dev, 1024 if tiny else (8192 if cuda else 2048), 3 if tiny else 10)
    print(f"a. bf16 GEMM {peak:,.0f} GFLOP/s: ViT-S/16 roofline {peak / GFLOP_PER_TILE:,.0f} tiles/s", flush=True)
    n, batch = (32, 8) if tiny else ((16384, 512) if cuda else (256, 16))
    rate = embedding_rate(dev, n, batch)
    print(f"b. embedding {rate:,.1f} tiles/s (batch {batch}, {n} tiles): ratio to the roofline "
          f"{rate * GFLOP_PER_TILE / peak:.2f}", flush=True)
    steps_s, label = pretraining_rate(dev, tiny, 2 if tiny else 20)
    print(f"c. pre-training, paper recipe{' (shrunk: --tiny)' if tiny else ''}: {steps_s:.2f} steps/s "
          f"({label}); 60 epochs of 5.7 M tiles at batch 256 = {60 * 5.7e6 / 256 / max(steps_s, 1e-9) / 3600:,.0f} h",
          flush=True)
    base = args.base or Path(tempfile.mkdtemp(prefix="lcd-gpu-check-"))
    workers = args.workers or max(1, (os.cpu_count() or 2) // 2)
    lines = demo_pretraining(base, "small" if tiny else args.preset, 1 if tiny else args.timepoints,
                             2 if tiny else args.steps, 1 if tiny else workers, "local" if tiny or not cuda else "gpu",
                             fields=1 if tiny else 0)
    print("   ablation table:")
    for line in lines:
        print(f"   {line}")


if __name__ == "__main__":
    main()
