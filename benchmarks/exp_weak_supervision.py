"""Experiment: weakly supervised CNN features (DeepProfiler-style) through the platform's MoA stage.

    python benchmarks/exp_weak_supervision.py --home ~/.lcd            # after `lcd demo` + `lcd pretrain`
    python benchmarks/exp_weak_supervision.py --home ~/.lcd --epochs 20

Not an asset: a measured question for the MoA issue. Does a small CNN trained to tell the
*training* compounds apart (the weak labels DeepProfiler uses: the treatment, never the MoA)
give features that carry MoA, and the planted polypharmacology compound's second MoA?

What it does
------------
* Tiles: the tile bank (``$LCD_HOME/ssl/tile_bank``, every kept tile), 2× block-mean to 112 px,
  each plane z-scored per tile.
* Training set: tiles of the training compounds at the two highest doses (class = compound) and
  500 DMSO tiles (class = DMSO). **Holdout compounds are never shown to the CNN**, so the
  holdout MoA scores are clean; the CV scores are not (the CNN saw the CV compounds' identities).
* Model: four conv blocks (32 → 256 channels, batch norm, max-pool), global average pool, linear
  head; AdamW, one-cycle lr 2e-3, class-balanced (square-root) cross-entropy, random rot90 / flip /
  96-px crops; seeded.
* Features: the 256-d pooled output of the central 96-px crop of every bank tile, averaged per
  well, MAD-normalized per timepoint, then ``compute_activity`` (200 draws) and
  ``moa.classify_moa`` (CV + holdout, both polypharmacology readings), scored against the truth.

Printed: epoch losses, seconds, MoA weighted F1 (train CV / holdout; all doses / highest dose),
and ``polypharmacology_against_truth`` for both readings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lcd_core import moa  # noqa: E402
from lcd_core.profiling.activity import compute_activity  # noqa: E402
from lcd_core.embedding.aggregate import aggregate_embeddings  # noqa: E402
from lcd_core.ground_truth import polypharmacology_against_truth  # noqa: E402
from lcd_core.io.platemap import load_screen  # noqa: E402
from lcd_core.keys import parse_dose_key  # noqa: E402
from lcd_core.profiling.normalize import normalize  # noqa: E402
from lcd_core.profiling.profiles import to_cytomining  # noqa: E402

WELL_KEYS = ["plate", "timepoint", "well", "replica", "layout", "dose", "compound", "moa", "role"]


def _block(i: int, o: int) -> nn.Sequential:
    conv = lambda a, b: [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]  # noqa: E731
    return nn.Sequential(*conv(i, o), *conv(o, o), nn.MaxPool2d(2))


def _tiles(bank: Path) -> torch.Tensor:
    T = np.load(bank / "tiles.npy", mmap_mode="r")
    n, c, s, _ = T.shape
    X = torch.from_numpy(np.asarray(T, dtype=np.float32)).reshape(n, c, s // 2, 2, s // 2, 2).mean((3, 5))
    return (X - X.mean((2, 3), keepdim=True)) / (X.std((2, 3), keepdim=True) + 1e-6)


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    x = torch.rot90(x, int(rng.integers(4)), (2, 3))
    if rng.random() < 0.5:
        x = x.flip(3)
    oy, ox = rng.integers(0, x.shape[-1] - 96 + 1, 2)
    return x[:, :, oy:oy + 96, ox:ox + 96]


def train_features(X: torch.Tensor, table: pl.DataFrame, holdout: set[str], epochs: int, seed: int) -> np.ndarray:
    """Train the compound classifier; return the pooled features of every tile."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    doses = sorted(table.filter(pl.col("role") != "negative_control")["dose"].unique().to_list(), key=parse_dose_key)
    t = table.with_row_index("i")
    dmso = t.filter(pl.col("role") == "negative_control")
    train = pl.concat([
        dmso.sample(min(500, dmso.height), seed=seed),
        t.filter(pl.col("dose").is_in(doses[-2:]) & (pl.col("role") != "negative_control")
                 & ~pl.col("compound").is_in(sorted(holdout))),
    ])
    classes = sorted(set(train["compound"].to_list()))
    y = train["compound"].replace_strict({c: k for k, c in enumerate(classes)}, return_dtype=pl.Int64).to_numpy()
    idx = train["i"].to_numpy()
    counts = np.bincount(y, minlength=len(classes)).astype(np.float32)
    weight = torch.tensor(np.sqrt(counts.sum() / counts / len(counts)))
    net = nn.Sequential(_block(3, 32), _block(32, 64), _block(64, 128), _block(128, 256),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = nn.Linear(256, len(classes))
    opt = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * (len(idx) // 64 + 1))
    print(f"training tiles {len(idx)} ({len(classes)} classes: training compounds at {doses[-2:]} + DMSO)")
    t0 = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm, total = rng.permutation(len(idx)), 0.0
        for b in range(0, len(idx), 64):
            j = perm[b:b + 64]
            loss = F.cross_entropy(head(net(_augment(X[idx[j]], rng))), torch.from_numpy(y[j]), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(j)
        print(f"  epoch {epoch + 1:2d}  loss {total / len(idx):.3f}  {time.perf_counter() - t0:.0f} s", flush=True)
    net.eval()
    with torch.no_grad():
        return np.concatenate([net(X[b:b + 256, :, 8:104, 8:104]).numpy() for b in range(0, len(X), 256)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bank = args.home / "ssl" / "tile_bank"
    table = pl.read_parquet(bank / "tiles.parquet")
    truth = pl.read_parquet(args.home / "truth" / "compounds.parquet")
    holdout = set(truth.filter(pl.col("set") == "holdout")["compound"].to_list())
    E = train_features(_tiles(bank), table, holdout, args.epochs, args.seed)

    tiles = table.select(WELL_KEYS).with_columns(pl.Series("embedding", E, dtype=pl.Array(pl.Float32, E.shape[1])))
    wells = to_cytomining(aggregate_embeddings(tiles, by=WELL_KEYS))
    profiles = pl.concat([normalize(wells.filter(pl.col("Metadata_timepoint") == tp), "mad").profiles
                          for tp in sorted(wells["Metadata_timepoint"].unique().to_list())], how="diagonal_relaxed")
    activity = compute_activity(profiles, n_draws=200, seed=args.seed).activity.with_columns(
        pl.col("dose").cast(pl.String), pl.col("timepoint").cast(pl.String))
    present = set(profiles["Metadata_compound"].to_list())
    classes = moa.MoaClasses.from_compounds(load_screen(args.home / "metadata").compounds)
    res = moa.classify_moa(profiles, activity, classes=classes, holdout_compounds=sorted(holdout & present),
                           seed=args.seed)
    scores, _ = moa.compare_feature_sets({"weakly supervised CNN": res.predictions}, classes=classes)
    print(scores.select("set", "mode", "n", pl.col("weighted_f1").round(3), pl.col("accuracy").round(3),
                        pl.col("top3_accuracy").round(3)))
    print(polypharmacology_against_truth(res.polypharmacology, truth))


if __name__ == "__main__":
    main()
