"""Experiment: what the one downstream chain changes in the ablation's screen-activity columns.

Until the chain was shared, the ablation scored a model's screen activity with its own steps:
tiles averaged straight into wells, MAD per plate, 200 draws. It now runs the platform's chain
(tiles → FOVs → MAD + Harmony/FOV → wells, 1,000 draws). This script scores the rows that need no
training — the untrained ViT-S/16 at 224 px (the embedding default) and at 112 px (the trained
models' input), and the handcrafted features of the same tiles — both ways, on the same
embeddings, and prints the two measures side by side with the bootstrap interval of the AUROC.

Run after ``lcd demo`` (it reads the warehouse and the truth of ``LCD_HOME``)::

    .venv/bin/python benchmarks/exp_ablation_chain.py            # LCD_HOME or ~/.lcd
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lcd_assets.resources import TilingSettings  # noqa: E402
from lcd_core.embedding.aggregate import aggregate_embeddings  # noqa: E402
from lcd_core.embedding.vit import create_vit  # noqa: E402
from lcd_core.ground_truth import activity_against_truth  # noqa: E402
from lcd_core.io.platemap import load_screen  # noqa: E402
from lcd_core.io.warehouse import Warehouse  # noqa: E402
from lcd_core.pipeline import ablation  # noqa: E402
from lcd_core.pipeline import pretraining as steps  # noqa: E402
from lcd_core.pipeline.downstream import ChainSettings  # noqa: E402
from lcd_core.profiling.activity import compute_activity  # noqa: E402
from lcd_core.profiling.normalize import normalize  # noqa: E402
from lcd_core.profiling.profiles import to_cytomining  # noqa: E402
from lcd_core.ssl.source import TileBank  # noqa: E402

WELL_KEYS = [k for k in ablation.FOV_KEYS if k != "field"]


def previous_measure(embeddings: np.ndarray, table: pl.DataFrame, truth: pl.DataFrame) -> dict:
    """The ablation's screen measure before the chain was shared: wells = mean tile embedding,
    MAD per plate × timepoint, 200 draws."""
    tiles = table.select(WELL_KEYS).with_columns(
        pl.Series("embedding", embeddings.astype(np.float32), dtype=pl.Array(pl.Float32, embeddings.shape[1])))
    wells = to_cytomining(aggregate_embeddings(tiles, by=WELL_KEYS))
    act = compute_activity(normalize(wells, "mad").profiles, n_draws=200, seed=0).activity
    act = act.with_columns(pl.col("dose").cast(pl.String), pl.col("timepoint").cast(pl.String))
    scored = act.filter(pl.col("map_mean").is_finite())
    return {"activity_map": float(scored["map_mean"].mean()), "activity_auroc": activity_against_truth(act, truth)["auroc"]}


def tile_bank(home: Path, folder: Path) -> TileBank:
    wh = Warehouse(home)
    screen = load_screen(home / "metadata")
    kept, _, _ = steps.with_split(steps.kept_tiles(wh), screen.layouts, screen.compounds)
    return TileBank.write(folder, steps.bank_stream(wh, kept, TilingSettings().config_for), kept.height, 224)


def main() -> int:
    home = Path(os.environ.get("LCD_HOME", Path.home() / ".lcd"))
    truth = pl.read_parquet(home / "truth" / "conditions.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bank = tile_bank(home, Path(tmp) / "bank")
        print(f"tile bank: {len(bank)} tiles ({time.perf_counter() - t0:.0f} s)")
        candidates = [ablation.Candidate(f"untrained ViT-S/16, {s} px", "untrained", {"input_size": s},
                                         lambda s=s: steps.embed_bank_tiles(create_vit(seed=0),
                                                                            {"input_size": s}, bank.tiles))
                      for s in (224, 112)] + [ablation.handcrafted_candidate(bank.tiles)]
        print("| model | before: activity mAP / AUROC (MAD, 200 draws) | now: activity mAP / AUROC [95 % CI] "
              "(the chain: MAD + Harmony/FOV, 1,000 draws) |\n| --- | --- | --- |")
        for c in candidates:
            every = c.embed()
            old = previous_measure(every, bank.table, truth)
            new = ablation.screen_activity(every, bank.table, truth, settings=ChainSettings())
            print(f"| {c.name} | {old['activity_map']:.3f} / {old['activity_auroc']:.3f} | "
                  f"{new['activity_map']:.3f} / {new['activity_auroc']:.3f} "
                  f"[{new['activity_auroc_ci_low']:.3f}, {new['activity_auroc_ci_high']:.3f}] |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
