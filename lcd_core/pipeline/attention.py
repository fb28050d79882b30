"""Attention maps of sampled tiles (SPEC §4.3, §4.10): for every compound, tiles of its highest
active dose, and DMSO tiles of the same timepoints, with the ViT's last-layer CLS attention per
head and mean (:func:`lcd_core.embedding.attention.attention_maps`), one figure per compound."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import torch

from lcd_core.embedding.attention import attention_maps
from lcd_core.embedding.inference import resize_tiles
from lcd_core.plots import attention_figure
from lcd_core.tiles import partition as acq
from lcd_core.tiles.preprocess import TileConfig

__all__ = ["DMSO", "attention_panels", "read_tiles", "sample_tiles"]

DMSO = "DMSO"


def sample_tiles(activity: pl.DataFrame, kept: pl.DataFrame, *, per_compound: int = 3, seed: int = 0) -> pl.DataFrame:
    """The tiles to show: per compound called active, ``per_compound`` kept tiles of its highest
    active dose (at the timepoint of its largest mAP-ES there); ``per_compound`` DMSO tiles per
    timepoint shown. ``kept``: kept ``tiles`` rows with lineage. Adds ``panel`` (the figure's name)
    and ``label`` (a tile's title)."""
    act = activity.filter(pl.col("active")).with_columns(pl.col("dose").cast(pl.String),
                                                         pl.col("timepoint").cast(pl.String))
    if not act.height:
        return kept.clear().with_columns(pl.lit("").alias("panel"), pl.lit("").alias("label"))
    dose_um = pl.col("dose").str.extract(r"([0-9.]+)").cast(pl.Float64)
    best = act.sort(dose_um, "map_es", descending=True).unique("compound", keep="first", maintain_order=True)
    treated = kept.join(best.select("compound", "dose", "timepoint"), on=["compound", "dose", "timepoint"])
    dmso = kept.filter((pl.col("role") == "negative_control") & pl.col("timepoint").is_in(best["timepoint"].unique()))
    parts = [treated.with_columns(pl.col("compound").alias("panel")),
             dmso.with_columns((pl.lit(f"{DMSO} ") + pl.col("timepoint")).alias("panel"))]
    picked = pl.concat(parts, how="diagonal_relaxed").sample(fraction=1.0, shuffle=True, seed=seed)
    picked = picked.group_by("panel", maintain_order=True).head(per_compound).sort("panel", "tile_id")
    return picked.with_columns(pl.concat_str([pl.col("panel"), pl.col("dose"), pl.col("timepoint"), pl.col("well")],
                                             separator=" ").alias("label"))


def read_tiles(samples: pl.DataFrame, fovs_of: Callable[[str, str], tuple[pl.DataFrame, TileConfig]]) -> np.ndarray:
    """The pixels of the sampled tiles, in the order of ``samples``; ``fovs_of(plate, timepoint)``
    gives a measurement's :func:`~lcd_core.tiles.partition.fov_paths` and tiling."""
    by_id: dict[str, np.ndarray] = {}
    for (plate, timepoint), rows in samples.group_by("plate", "timepoint", maintain_order=True):
        fovs, config = fovs_of(plate, timepoint)
        for tile_rows, tiles in acq.iter_kept_tiles(fovs, rows, config):
            by_id.update({r["tile_id"]: t for r, t in zip(tile_rows, tiles)})
    return np.stack([by_id[t] for t in samples["tile_id"]]) if samples.height else np.zeros((0, 3, 1, 1), np.float32)


def attention_panels(model: torch.nn.Module, samples: pl.DataFrame, tiles: np.ndarray,
                     input_size: int) -> dict[str, bytes]:
    """One PNG per panel: each tile, its mean attention and every head's (none without samples)."""
    if not samples.height:
        return {}
    x = resize_tiles(tiles.astype(np.float32), input_size)
    _, heads = attention_maps(model, x, batch_size=32, dtype="auto")  # for display: bf16 where native
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    shown = (x - lo) / np.maximum(x.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-6)
    out = {}
    for panel, idx in samples.with_row_index("i").group_by("panel", maintain_order=True).agg("i").iter_rows():
        out[panel] = attention_figure(shown[idx], heads[idx], samples["label"].gather(idx).to_list())
    return out
