"""Benchmark of the tiling + embedding path on this machine.

    python benchmarks/bench_embed.py [--quick] [--compile] [--size 1080] [--fovs 6]

Prints, in one run:

a. the bf16 and fp32 GEMM peak (square matmuls, best of several);
b. ViT-S/16 embedding throughput through ``lcd_core.embedding.inference.embed_tiles`` (tiles/s) for the auto
   dtype (and fp32 / other batch sizes in the full run), and its ratio to the bf16 roofline using
   9.2 GFLOP per 224-px tile, next to the FLOPs counted by ``FlopCounterMode``;
c. tiling throughput (``tile_fov`` on synthetic 3-plane uint16 stacks: ``--size``² with binning 1
   and (2·size)² with binning 2) against LZW 16-bit TIFF decode speed of the same stacks (FOVs/s);
d. memory: peak RSS (``ru_maxrss``) and RSS sampled during a streamed embedding of many tiles,
   against the size of one batch and of the whole input, showing it is bounded by the batch.

``--quick`` stays under ~60 s; the full run under ~5 min on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lcd_core.embedding.inference import cpu_has_native_bf16, embed_tiles, resolve_device, resolve_dtype  # noqa: E402
from lcd_core.tiles.grid import tile_fov  # noqa: E402
from lcd_core.tiles.preprocess import TileConfig  # noqa: E402
from lcd_core.embedding.vit import create_vit  # noqa: E402

GFLOP_PER_TILE_224 = 9.2  # ViT-S/16 forward at 224 px (multiply-add = 2 FLOP), as in the brief


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def gemm_gflops(dtype: torch.dtype, n: int, reps: int) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def count_flops(model: torch.nn.Module, size: int = 224) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops() / 1e9


def vit_throughput(model, n_tiles: int, batch_size: int, dtype: str, **kw) -> tuple[float, float]:
    """(tiles/s, CPU share): CPU share = process CPU time / (wall × torch threads); well below 1
    means other processes competed for the cores and the figure is pessimistic."""
    rng = np.random.default_rng(0)
    tiles = rng.random((n_tiles, 3, 224, 224), dtype=np.float32).astype(np.float16)
    embed_tiles(model, tiles[:batch_size], batch_size=batch_size, dtype=dtype, **kw)  # warm-up
    c = time.process_time()
    t = time.perf_counter()
    out = embed_tiles(model, tiles, batch_size=batch_size, dtype=dtype, **kw)
    dt = time.perf_counter() - t
    share = (time.process_time() - c) / (dt * torch.get_num_threads())
    assert out.shape == (n_tiles, 384) and np.isfinite(out).all()
    return n_tiles / dt, share


def synthetic_stack(size: int, seed: int) -> np.ndarray:
    """3-plane uint16 brightfield-like FOV: smooth cell-scale texture (opposite contrast above /
    below focus), an illumination gradient, Gaussian camera noise; ~8000 ADU background."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    small = rng.standard_normal((size // 4, size // 4)).astype(np.float32)
    tex = ndimage.gaussian_filter(small, 2.0)
    tex = np.kron(tex, np.ones((4, 4), np.float32))[:size, :size]
    tex /= tex.std() + 1e-6
    yy = np.linspace(-1, 1, size, dtype=np.float32)[:, None]
    illum = 8000 * (1 + 0.08 * yy)
    planes = []
    for sign in (-1.0, 0.2, 1.0):
        img = illum * (1 + 0.04 * sign * tex) + rng.normal(0, 35, (size, size)).astype(np.float32)
        planes.append(np.clip(img, 0, 65535).astype(np.uint16))
    return np.stack(planes)


def tiling_vs_decode(size: int, binning: int, n_fovs: int, tmp: Path) -> dict:
    import tifffile

    stacks = [synthetic_stack(size, s) for s in range(n_fovs)]
    paths = []
    for i, st in enumerate(stacks):
        fov = []
        for p, plane in enumerate(st):
            path = tmp / f"s{size}_f{i}_p{p}.tiff"
            tifffile.imwrite(path, plane, compression="lzw")
            fov.append(path)
        paths.append(fov)
    cfg = TileConfig(binning=binning)
    tile_fov(stacks[0], cfg)  # warm-up
    t = time.perf_counter()
    n_tiles = n_kept = 0
    for st in stacks:
        tiles, rec = tile_fov(st, cfg)
        n_tiles += len(rec)
        n_kept += sum(r["qc_reason"] is None for r in rec)
    tile_s = time.perf_counter() - t
    for fov in paths[:1]:
        [tifffile.imread(p) for p in fov]  # warm the page cache / codec
    t = time.perf_counter()
    for fov in paths:
        np.stack([tifffile.imread(p) for p in fov])
    dec_s = time.perf_counter() - t
    mb = sum(p.stat().st_size for fov in paths for p in fov) / n_fovs / 2**20
    return {
        "size": size,
        "binning": binning,
        "tile_fovs_s": n_fovs / tile_s,
        "decode_fovs_s": n_fovs / dec_s,
        "tiles_per_fov": n_tiles / n_fovs,
        "kept_per_fov": n_kept / n_fovs,
        "tiff_mb_per_fov": mb,
    }


def streamed_memory(model, n_tiles: int, batch_size: int, dtype: str) -> dict:
    """Embed ``n_tiles`` produced lazily (16 per 'FOV'), sampling RSS every 20 ms."""
    rng = np.random.default_rng(1)

    def source():
        for _ in range(0, n_tiles, 16):
            yield rng.random((16, 3, 224, 224), dtype=np.float32).astype(np.float16)

    gc.collect()
    base = rss_mb()
    peak = [base]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.02)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    t = time.perf_counter()
    n = 0
    from lcd_core.embedding.inference import embed_batches

    for out in embed_batches(model, source(), batch_size=batch_size, dtype=dtype, total=n_tiles):
        n += len(out)
    dt = time.perf_counter() - t
    stop.set()
    th.join()
    return {
        "n_tiles": n,
        "tiles_s": n / dt,
        "rss_before_mb": base,
        "rss_peak_mb": peak[0],
        "batch_mb": batch_size * 3 * 224 * 224 * 4 / 2**20,
        "input_mb_fp16": n_tiles * 3 * 224 * 224 * 2 / 2**20,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (< ~60 s)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (≈30 s extra)")
    ap.add_argument("--size", type=int, default=1080, help="synthetic FOV size for binning=1 (default 1080)")
    ap.add_argument("--fovs", type=int, default=None, help="synthetic FOVs per tiling case")
    ap.add_argument("--batch-size", type=int, default=None, help="default: lcd_core.embedding.inference's CPU/CUDA default")
    args = ap.parse_args(argv)
    q = args.quick
    t_start = time.perf_counter()
    dev = resolve_device("auto")
    amp = resolve_dtype("auto", dev)
    auto_name = "bf16" if amp is torch.bfloat16 else ("fp16" if amp is torch.float16 else "fp32")
    print(
        f"torch {torch.__version__}  threads={torch.get_num_threads()}  cpus={os.cpu_count()}  "
        f"device={dev}  native bf16={cpu_has_native_bf16()}  auto dtype={auto_name}  "
        f"loadavg(1 min) at start={os.getloadavg()[0]:.2f}"
    )
    rows: list[tuple[str, str]] = []

    # (a) GEMM peaks
    sizes = (2048,) if q else (2048, 4096)
    peak = {}
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        best = max(gemm_gflops(dt, n, 3 if q else 5) for n in sizes)
        peak[name] = best
        rows.append((f"(a) {name} GEMM peak ({'/'.join(map(str, sizes))}²)", f"{best:8.1f} GFLOP/s"))

    # (b) ViT throughput
    model = create_vit(seed=0)
    counted = count_flops(model)
    rows.append(("(b) ViT-S/16 FLOPs per 224 tile: FlopCounterMode", f"{counted:8.2f} GFLOP (nominal {GFLOP_PER_TILE_224})"))
    from lcd_core.embedding.inference import DEFAULT_BATCH_CPU, DEFAULT_BATCH_CUDA

    bs = args.batch_size or (DEFAULT_BATCH_CUDA if dev.type == "cuda" else DEFAULT_BATCH_CPU)
    n = 4 * bs if q else 8 * bs
    tps, share = vit_throughput(model, n, bs, "auto")
    roof = peak["bf16"] if auto_name == "bf16" else peak["fp32"]
    rows.append((f"(b) embed_tiles {auto_name} batch {bs} ({n} tiles)", f"{tps:8.1f} tiles/s  (CPU share {share:.2f})"))
    rows.append(
        (
            f"(b) ratio to {auto_name} roofline (9.2 GFLOP/tile | counted)",
            f"{100 * tps * GFLOP_PER_TILE_224 / roof:7.1f} % | {100 * tps * counted / roof:.1f} %",
        )
    )
    if not q:
        for b2 in (16, 64, 128):
            if b2 == bs:
                continue
            t2, sh2 = vit_throughput(model, max(2 * b2, 128), b2, "auto")
            rows.append((f"(b) embed_tiles {auto_name} batch {b2}", f"{t2:8.1f} tiles/s  (CPU share {sh2:.2f})"))
        if auto_name == "bf16" and dev.type == "cpu":
            ta, sha = vit_throughput(model, 4 * bs, bs, "auto", bf16_weights=False)
            rows.append((f"(b) bf16 autocast on fp32 weights, fused attn, batch {bs}", f"{ta:8.1f} tiles/s  (CPU share {sha:.2f})"))
        t32, sh32 = vit_throughput(model, 64, 32, "float32")
        rows.append(("(b) embed_tiles fp32 batch 32 (64 tiles)", f"{t32:8.1f} tiles/s  (CPU share {sh32:.2f})"))
        rows.append(("(b) fp32 ratio to fp32 roofline", f"{100 * t32 * GFLOP_PER_TILE_224 / peak['fp32']:7.1f} %"))
    if args.compile:
        t = time.perf_counter()
        embed_tiles(model, np.zeros((bs, 3, 224, 224), np.float16), batch_size=bs, compile=True)
        ct = time.perf_counter() - t
        tc, shc = vit_throughput(model, n, bs, "auto", compile=True)
        rows.append((f"(b) torch.compile {auto_name} batch {bs} (compile {ct:.0f} s)", f"{tc:8.1f} tiles/s  (CPU share {shc:.2f})"))

    # (c) tiling vs TIFF decode
    nf = args.fovs or (3 if q else 8)
    with tempfile.TemporaryDirectory() as td:
        for size, binning in ((args.size, 1), (2 * args.size, 2)):
            r = tiling_vs_decode(size, binning, nf, Path(td))
            label = f"{size}² ×3 planes, binning {binning}"
            rows.append(
                (
                    f"(c) tile_fov {label}",
                    f"{r['tile_fovs_s']:8.2f} FOV/s ({r['tiles_per_fov']:.0f} tiles, {r['kept_per_fov']:.0f} kept)",
                )
            )
            rows.append(
                (
                    f"(c) LZW TIFF decode {label} ({r['tiff_mb_per_fov']:.1f} MB)",
                    f"{r['decode_fovs_s']:8.2f} FOV/s  → tiling/decode = {r['tile_fovs_s'] / r['decode_fovs_s']:.2f}",
                )
            )
        fx = Path(__file__).resolve().parents[1].parent / "shared/fixtures/phenix/harmony-v5/r01c01f01p01-ch2sk1fk1fl1.tiff"
        if not fx.exists():
            fx = Path("/work/shared/fixtures/phenix/harmony-v5/r01c01f01p01-ch2sk1fk1fl1.tiff")
        if fx.exists():
            import tifffile

            tifffile.imread(fx)
            t = time.perf_counter()
            k = 5 if q else 20
            for _ in range(k):
                tifffile.imread(fx)
            per_plane = (time.perf_counter() - t) / k
            rows.append(("(c) real fixture 1080² LZW plane decode (×3 planes)", f"{1 / (3 * per_plane):8.2f} FOV/s"))

    # (d) memory: a short and a 3-4x longer stream must peak at the same RSS
    for n_mem in ((2 * bs, 8 * bs) if q else (4 * bs, 32 * bs)):
        m = streamed_memory(model, n_mem, bs, "auto")
        rows.append(
            (
                f"(d) streamed {m['n_tiles']} tiles (input {m['input_mb_fp16']:.0f} MB fp16): RSS before → peak",
                f"{m['rss_before_mb']:8.0f} → {m['rss_peak_mb']:.0f} MB (+{m['rss_peak_mb'] - m['rss_before_mb']:.0f} MB), "
                f"{m['tiles_s']:.1f} tiles/s",
            )
        )
    rows.append(("(d) one fp32 input batch", f"{m['batch_mb']:8.0f} MB (batch {bs})"))
    rows.append(("(d) ru_maxrss (whole process, incl. benchmarks above)", f"{maxrss_mb():8.0f} MB"))

    w = max(len(k) for k, _ in rows)
    print("-" * (w + 40))
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    print("-" * (w + 40))
    print(f"total benchmark time {time.perf_counter() - t_start:.0f} s; loadavg(1 min) at end={os.getloadavg()[0]:.2f}")
    print("CPU share < ~0.9 means other processes competed for the cores: throughput figures are then low.")


if __name__ == "__main__":
    main()
