"""Attention maps (SPEC §4.3, §4.10): what the ViT attends to in tiles of each active compound
and of DMSO. Thin glue over :mod:`lcd_core.pipeline.attention`."""

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.resources import EmbeddingSettings, LcdHome, TilingSettings
from lcd_core.embedding.inference import input_size_of
from lcd_core.embedding.vit import load_checkpoint
from lcd_core.pipeline import attention as steps
from lcd_core.pipeline.acquisition import brightfield_of
from lcd_core.tiles import partition as acq

#: compounds shown inline in the UI (every figure is saved under previews/attention/)
SHOWN = 6


class AttentionConfig(dg.Config):
    """Tiles shown per compound (and per DMSO timepoint)."""

    per_compound: int = 3
    seed: int = 0


def _fovs_of(lcd: LcdHome, tiling: TilingSettings):
    def fovs_of(plate: str, timepoint: str):
        index = lcd.warehouse().query("SELECT * FROM image_index WHERE plate = $p AND timepoint = $t",
                                      {"p": plate, "t": timepoint})
        return acq.fov_paths(index, brightfield_of(index)), tiling.config_for(int(index["size_x"].max()))
    return fovs_of


@dg.asset(
    group_name="attention",
    kinds={"pytorch", "png"},
    deps=["activity", "tiles", "model_checkpoint"],
    description=(
        "Last-layer CLS attention of the embedding checkpoint over sampled tiles (SPEC §4.10): per compound "
        "called active, tiles of its highest active dose, and DMSO tiles of the same timepoints; per tile the "
        "tile, the mean over heads and each head. PNGs under `$LCD_HOME/previews/attention/`, the first shown "
        "here. `lcd_core.embedding.attention.attention_maps(model, tiles)` gives them for any tile."
    ),
)
def attention_maps(context: dg.AssetExecutionContext, config: AttentionConfig, lcd: LcdHome,
                   embedding: EmbeddingSettings, tiling: TilingSettings) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    kept = wh.query("SELECT * FROM tiles WHERE kept").with_columns(pl.col("dose").cast(pl.String))
    samples = steps.sample_tiles(wh.query("SELECT * FROM activity"), kept, per_compound=config.per_compound,
                                 seed=config.seed)
    model, record = load_checkpoint(lcd.model_folder(embedding.checkpoint))
    tiles = steps.read_tiles(samples, _fovs_of(lcd, tiling))
    panels = steps.attention_panels(model, samples, tiles, input_size_of(record, tiles.shape[-1]))
    folder = lcd.previews_dir / "attention"
    meta = {"tiles": samples.height, "panels": len(panels), "checkpoint": embedding.checkpoint,
            "trained": bool(record.get("trained", False)), "folder": dg.MetadataValue.path(str(folder))}
    for i, (panel, png) in enumerate(panels.items()):
        shown = md.image(png, f"attention: {panel}", folder / f"{panel.replace(' ', '_')}.png")
        if i < SHOWN or panel.startswith(steps.DMSO):
            meta[f"attention_{panel}"] = shown
    return dg.MaterializeResult(metadata=meta)
