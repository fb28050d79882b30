"""The cell readouts of a screen and every activity readout side by side (SPEC §4.6, §4.9).

* :func:`cell_readouts`: from the per-FOV nuclei (``fov_nuclei``) of the FOVs QC kept, the
  cell-count baseline (:func:`lcd_core.profiling.cell_count.cell_count_activity`), the % inhibition
  of count and confluency per condition and their correlation
  (:mod:`lcd_core.profiling.inhibition`);
* :func:`copairs_reading`: the JUMP recipe's reading of the model's normalized well profiles,
  one dose × timepoint at a time (:mod:`lcd_core.profiling.copairs_reading`; its FDR correction
  runs within each dose × timepoint, as mAP-ES is called per dose × timepoint);
* :func:`compare_sensitivity`: mAP-ES of the model and of the handcrafted features, the cell count
  and the copairs reading through :func:`lcd_core.pipeline.sensitivity.sensitivity_comparison`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from lcd_core.pipeline.sensitivity import CELL_COUNT, MODEL, sensitivity_comparison
from lcd_core.profiling.cell_count import cell_count_activity
from lcd_core.profiling.copairs_reading import copairs_activity
from lcd_core.profiling.inhibition import condition_inhibition, inhibition_correlation

__all__ = ["HANDCRAFTED", "COPAIRS", "CellReadouts", "activity_readout", "cell_readouts", "compare_sensitivity",
           "copairs_reading", "qc_kept_fovs"]

HANDCRAFTED, COPAIRS = "mAP-ES (handcrafted)", "copairs mAP, FDR 5 % (model profiles)"


def qc_kept_fovs(fov_nuclei: pl.DataFrame, kept_tiles: pl.DataFrame) -> pl.DataFrame:
    """The FOVs of which QC kept at least one tile (debris, defocus and empty FOVs would bias a
    count); ``kept_tiles``: plate, timepoint, well, field of the kept tiles."""
    keys = ["plate", "timepoint", "well", "field"]
    kept = kept_tiles.select(*keys[:3], pl.col("field").cast(pl.Int64)).unique()
    return fov_nuclei.with_columns(pl.col("field").cast(pl.Int64)).join(kept, on=keys, how="semi")


@dataclass(frozen=True)
class CellReadouts:
    """``count_activity`` (table ``cell_count_activity``), ``inhibition`` (per condition, table
    ``nuclei_inhibition``) and ``correlation`` (one row: confluency vs count inhibition)."""

    count_activity: pl.DataFrame
    inhibition: pl.DataFrame
    correlation: pl.DataFrame


def cell_readouts(fovs: pl.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> CellReadouts:
    """The cell-count baseline and % inhibition of a screen's per-FOV nuclei (QC-kept FOVs)."""
    inhibition = condition_inhibition(fovs)
    return CellReadouts(cell_count_activity(fovs, "n_nuclei", n_boot=n_boot, seed=seed), inhibition,
                        inhibition_correlation(inhibition, n_boot=n_boot, seed=seed))


def copairs_reading(conditions: Iterable[pl.DataFrame], *, seed: int = 0) -> pl.DataFrame:
    """copairs' activity of each dose × timepoint's normalized well profiles, concatenated."""
    tables = [copairs_activity(wells, seed=seed) for wells in conditions]
    return pl.concat(tables, how="vertical_relaxed") if tables else pl.DataFrame()


def activity_readout(activity: pl.DataFrame) -> pl.DataFrame:
    """An ``activity`` table (mAP-ES) as a readout: compound, dose, timepoint, active, score."""
    return activity.select("compound", pl.col("dose").cast(pl.String), pl.col("timepoint").cast(pl.String),
                           "active", pl.col("map_es").alias("score"))


def compare_sensitivity(model: pl.DataFrame, *, handcrafted: pl.DataFrame | None = None,
                        cell_count: pl.DataFrame | None = None, copairs: pl.DataFrame | None = None,
                        truth: pl.DataFrame | None = None, seed: int = 0) -> pl.DataFrame:
    """The ``sensitivity_comparison`` table of the readouts present (activity tables for the
    model and the handcrafted features, :func:`cell_readouts`' count activity, :func:`copairs_reading`).
    Paired differences: model − cell count, model − handcrafted, model − copairs."""
    readouts = {MODEL: activity_readout(model)}
    if handcrafted is not None:
        readouts[HANDCRAFTED] = activity_readout(handcrafted)
    if cell_count is not None:
        readouts[CELL_COUNT] = cell_count.select("compound", "dose", "timepoint", "active", "score")
    if copairs is not None and copairs.height:
        readouts[COPAIRS] = copairs.select("compound", "dose", "timepoint", "active", "score")
    pairs = [(MODEL, CELL_COUNT), (MODEL, HANDCRAFTED), (MODEL, COPAIRS)]
    return sensitivity_comparison(readouts, truth, pairs=pairs, seed=seed)
