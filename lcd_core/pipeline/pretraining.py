"""Self-supervised pre-training from the warehouse: the tile bank of every kept tile (train /
held-out split), and one resumable training run per ablation variant with its collapse check."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from lcd_core.embedding.inference import embed_tiles, input_size_of, resize_tiles
from lcd_core.embedding.vit import load_checkpoint
from lcd_core.io.warehouse import Warehouse
from lcd_core.pipeline.acquisition import brightfield_of
from lcd_core.ssl import ablation
from lcd_core.ssl.checkpoint import STATE_JSON
from lcd_core.ssl.config import SSLConfig, preset_config
from lcd_core.ssl.source import TileBank
from lcd_core.ssl.trainer import TrainResult, train
from lcd_core.tiles import partition as acq
from lcd_core.tiles.preprocess import TileConfig

Log = Callable[[str], None]
#: collapse: the held-out embeddings of a collapsed model have (nearly) one direction
MIN_EFFECTIVE_RANK = 2.0
MIN_STD_FRACTION = 0.05  # of the isotropic per-dimension std 1/√D
#: train tiles embedded for the collapse check when the bank has no held-out tile yet
COLLAPSE_TILES = 512


# --------------------------------------------------------------------------------------------
# the tile bank


def kept_tiles(wh: Warehouse) -> pl.DataFrame:
    """Every kept tile of the warehouse's ``tiles`` table, in bank order."""
    if "tiles" not in wh.tables():
        raise ValueError("no tiles table in the warehouse: materialize the acquisition partitions first")
    kept = wh.query("SELECT * FROM tiles WHERE kept ORDER BY plate, timepoint, well, field, tile_index")
    if kept.height == 0:
        raise ValueError("no kept tiles in the warehouse: materialize the acquisition partitions first")
    return kept


def with_split(kept: pl.DataFrame, layouts: pl.DataFrame, compounds: pl.DataFrame
               ) -> tuple[pl.DataFrame, list[str], str]:
    """The tiles with their ``split``: ``heldout`` on the layouts
    :func:`lcd_core.ssl.ablation.heldout_layouts` holds out, else ``train``.

    Returns
    -------
    (tiles, heldout layouts, why they are held out)
    """
    held, why = ablation.heldout_layouts(layouts, compounds)
    split = pl.when(pl.col("layout").is_in(held)).then(pl.lit("heldout")).otherwise(pl.lit("train"))
    return kept.with_columns(split.alias("split")), held, why


def bank_stream(wh: Warehouse, kept: pl.DataFrame, config_for: Callable[[int], TileConfig],
                log: Log | None = None) -> Iterator[tuple[list[dict], np.ndarray]]:
    """The ``kept`` tiles re-read from their TIFFs, measurement by measurement (``config_for``:
    the tiling of an image width), as ``(rows, tiles)`` for :meth:`TileBank.write`."""
    parts = kept.select("plate", "timepoint").unique().sort(["plate", "timepoint"]).rows()
    for i, (plate, tp) in enumerate(parts, 1):
        index = wh.query("SELECT * FROM image_index WHERE plate = $p AND timepoint = $t", {"p": plate, "t": tp})
        config = config_for(int(index["size_x"].max()))
        part = kept.filter((pl.col("plate") == plate) & (pl.col("timepoint") == tp))
        yield from acq.iter_kept_tiles(acq.fov_paths(index, brightfield_of(index)), part, config)
        if log:
            log(f"tile bank: {i}/{len(parts)} measurements ({plate} × {tp})")


# --------------------------------------------------------------------------------------------
# one variant's training run


@dataclass
class PretrainRun:
    """A training call of one variant: its config, the trainer's result, the checkpoint written,
    and the collapse indicators of its held-out embeddings."""

    config: SSLConfig
    result: TrainResult
    record: dict
    seconds: float
    n_train: int
    stats: dict[str, float]

    @property
    def collapsed(self) -> bool:
        """Effective rank or per-dimension std under the floors."""
        return not (self.stats["effective_rank"] >= MIN_EFFECTIVE_RANK
                    and self.stats["embed_std"] >= MIN_STD_FRACTION * self.stats["embed_std_iso"])

    @property
    def history(self) -> pl.DataFrame:
        """The logged steps (empty when none were logged)."""
        h = self.result.history
        return pl.DataFrame(h, infer_schema_length=None) if h else pl.DataFrame()


def saved_state(folder: Path) -> dict | None:
    """The resumable training state recorded in ``folder``, if any."""
    f = folder / STATE_JSON
    return json.loads(f.read_text()) if f.is_file() else None


def pretrain_variant(bank: TileBank, variant: str, out: Path, *, preset: str, steps: int = 0, seed: int = 0,
                     time_budget_s: float = 0.0, device: str = "auto", num_threads: int = 0,
                     log: Log = print) -> PretrainRun:
    """Train ``variant`` on the bank's ``train`` tiles into ``out``, resuming an unfinished run of
    the same config (a finished one is retrained from scratch); then embed the held-out tiles
    with the teacher for the collapse indicators. ``0`` means the preset's steps / no budget /
    torch's threads."""
    source = bank.subset((bank.table["split"] == "train").to_numpy())
    config, n_steps = preset_config(preset, variant, len(source), steps=steps or None, seed=seed)
    saved = saved_state(out)
    resume = bool(saved and saved.get("config") == config.to_dict() and saved["step"] < saved["total_steps"])
    log(f"{config.variant}: {n_steps} steps of {config.batch_size} pairs × {config.n_crops} crops on "
        f"{len(source)} tiles ({config.arch}, {config.global_crop_size}/{config.local_crop_size} px)"
        + (f"; resuming at step {saved['step']}" if resume else ""))
    t0 = time.perf_counter()
    result = train(config, source, checkpoint_dir=out, resume=resume, progress=lambda rec: log(progress_line(rec)),
                   name=out.name, log_every=max(1, min(25, n_steps // 20)), checkpoint_every=max(10, n_steps // 10),
                   time_budget_s=time_budget_s or None, device=device, num_threads=num_threads or None)
    seconds = time.perf_counter() - t0
    model, record = load_checkpoint(out)
    emb = embed_heldout(model, record, bank, or_train=COLLAPSE_TILES)
    return PretrainRun(config, result, record, seconds, len(source), ablation.collapse_stats(emb))


def progress_line(rec: dict) -> str:
    """One log line of a trainer progress record."""
    return (f"step {rec['step']}/{rec['total_steps']} loss {rec['loss']:.4f} (DINO {rec['dino']:.3f}"
            + (f", Barlow {rec['barlow']:.3f}" if rec["barlow"] is not None else "")
            + f") {rec['crops_per_s']:.0f} crops/s ETA {rec['eta_call_s']:.0f} s; teacher entropy "
            f"{rec['teacher_entropy']:.3f}, embed std {rec['embed_std']:.4f}, eff. rank {rec['effective_rank']:.1f}")


def embed_heldout(model, record: dict, bank: TileBank, *, or_train: int = 0, batch: int = 256) -> np.ndarray:
    """Embeddings of the bank's held-out tiles; with none (their plates not acquired yet) and
    ``or_train``, of that many evenly spaced train tiles instead."""
    mask = (bank.table["split"] == "heldout").to_numpy()
    if not mask.any() and or_train:
        mask = np.zeros(len(bank), bool)
        mask[np.linspace(0, len(bank) - 1, min(or_train, len(bank))).astype(int)] = True
    return embed_bank_tiles(model, record, bank.subset(mask).array(), batch=batch)


def embed_bank_tiles(model, record: dict, tiles: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """Embeddings of ``tiles`` (a bank's array or memmap, streamed ``batch`` at a time: bounded
    memory), resized to the checkpoint ``record``'s input size."""
    size = input_size_of(record, tiles.shape[-1])
    return embed_tiles(model, (resize_tiles(np.asarray(tiles[i:i + batch]), size)
                               for i in range(0, len(tiles), batch)))
