"""The handcrafted baseline (SPEC §4.7) and its comparison with the model, through the one chain.

Every feature set goes through :func:`lcd_core.pipeline.downstream.run_chain` with the same
settings as the model's assets (MAD + Harmony/FOV by default). The rows of the comparison:

* ``handcrafted``: the tile features (the paper's CellProfiler baseline; no trained model);
* ``handcrafted (mad_spherize)``: the same features normalized as the JUMP recipe treats
  CellProfiler features (MAD, then ZCA-cor sphering on DMSO): an extra comparison row;
* where the optional ``cell_segmentation`` job ran (a network trained on generator renders, so
  labelled as trained on synthetic annotations): ``handcrafted + cells (RayNet, …)``, the tile
  features joined with the segmented cells' features, and ``cell segmentation (RayNet, …)``, the
  cells' features alone (when enough FOVs have a live nucleus);
* ``ground-truth morphology (reference)``: on a synthetic screen, what a perfect segmentation
  would measure (labelled as using the generator's truth);
* the model's own row, read from its assets' tables by the caller.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import polars as pl

from lcd_core import moa
from lcd_core.ground_truth import (POLY_TRUTH_SCHEMA, TRUTH_MORPHOLOGY_FEATURES, activity_against_truth, nan_safe,
                                   polypharmacology_against_truth, truth_morphology)
from lcd_core.pipeline.acquisition import FOV_KEYS as LINEAGE_KEYS
from lcd_core.pipeline.downstream import ChainResult, ChainSettings, run_chain

HANDCRAFTED = "handcrafted"
HANDCRAFTED_SPHERIZED = "handcrafted (mad_spherize)"
#: the rows of the optional segmentation network, trained on the generator's annotated renders
CELL_SEGMENTATION = "cell segmentation (RayNet, trained on synthetic annotations)"
HANDCRAFTED_WITH_CELLS = "handcrafted + cells (RayNet, trained on synthetic annotations)"
TRUTH_MORPHOLOGY = "ground-truth morphology (reference)"
MIN_SEGMENTED_FOVS = 0.5  # the cells-alone row needs live nuclei in at least this share of the FOVs
FOV_KEYS = ("plate", "timepoint", "well", "field")


@dataclass(frozen=True)
class Readout:
    """What the comparison needs of one feature set: its activity, final MoA predictions and
    polypharmacology readings (the model's come from its tables, the others from the chain)."""

    activity: pl.DataFrame
    predictions: pl.DataFrame
    polypharmacology: pl.DataFrame


@dataclass(frozen=True)
class Comparison:
    """The comparison of feature sets: ``scores`` (weighted F1, accuracy, top-3 per feature set),
    ``tests`` (McNemar between feature sets), ``poly_truth`` (both polypharmacology readings of every
    set against the planted compounds; empty without truth) and a per-set ``summary``."""

    scores: pl.DataFrame
    tests: pl.DataFrame
    poly_truth: pl.DataFrame
    summary: dict[str, dict]


def feature_set_inputs(fovs: pl.DataFrame, cell_features: Collection[str], truth_fovs: pl.DataFrame | None,
                       settings: ChainSettings) -> tuple[dict[str, tuple[pl.DataFrame, ChainSettings]], list[str]]:
    """The feature sets to run (name → FOV profiles and chain settings) and notes on those left out.

    ``fovs``: handcrafted FOV profiles (``Metadata_*`` + features, the RayNet cell features joined
    where segmented: they enter only the RayNet rows); ``cell_features``: the names of the cell
    features; ``truth_fovs``: the ground-truth morphology of the same FOVs (:func:`truth_morphology_profiles`) or None.
    """
    meta = [c for c in fovs.columns if c.startswith("Metadata_")]
    tile = fovs.drop([c for c in cell_features if c in fovs.columns])
    sets = {HANDCRAFTED: (tile, settings), HANDCRAFTED_SPHERIZED: (tile, settings.with_method("mad_spherize"))}
    notes = []
    if "cs_nuclei" not in fovs.columns:
        notes.append("no cell_features (the optional cell_segmentation job did not run): no RayNet rows")
    elif (segmented := float((fovs["cs_nuclei"] > 0).mean())) >= MIN_SEGMENTED_FOVS:
        sets[HANDCRAFTED_WITH_CELLS] = (fovs, settings)
        sets[CELL_SEGMENTATION] = (fovs.select(*meta, *cell_features), settings)
    else:
        notes.append(f"the segmentation found a live nucleus in {segmented:.0%} of the FOVs (< "
                     f"{MIN_SEGMENTED_FOVS:.0%}): no RayNet rows")
    if truth_fovs is not None and truth_fovs.height:
        sets[TRUTH_MORPHOLOGY] = (truth_fovs, settings)
    return sets, notes


def run_feature_sets(sets: Mapping[str, tuple[pl.DataFrame, ChainSettings]], *, classes: moa.MoaClasses,
                     holdout_compounds: Collection[str]) -> dict[str, ChainResult]:
    """Each feature set through the chain (with the MoA stage): name → its result."""
    return {name: run_chain(fovs, settings, classes=classes, holdout_compounds=holdout_compounds)
            for name, (fovs, settings) in sets.items()}


def readout(result: ChainResult) -> Readout:
    """The :class:`Readout` of a chain's result."""
    return Readout(result.activity, result.moa.predictions, result.moa.polypharmacology)


def _flagged(poly: pl.DataFrame, flag: str, pair: str) -> str:
    if flag not in poly.columns:
        return "n/a"
    rows = poly.filter(pl.col(flag)).select("compound", pair).unique().sort("compound")
    return "; ".join(f"{c} ({p})" for c, p in rows.iter_rows()) or "none"


def _summary(r: Readout, truth_conditions: pl.DataFrame | None, threshold: float) -> dict:
    out = {"polypharmacology_top2": _flagged(r.polypharmacology, "stable_top2", "stable_pair"),
           "polypharmacology_residual": _flagged(r.polypharmacology, "stable_residual", "stable_residual_pair")}
    if truth_conditions is not None:
        out["activity_auroc_vs_truth"] = nan_safe(activity_against_truth(r.activity, truth_conditions,
                                                                         threshold))["auroc"]
    return out


def compare_readouts(readouts: Mapping[str, Readout], *, classes: moa.MoaClasses,
                     truth_conditions: pl.DataFrame | None = None, truth_compounds: pl.DataFrame | None = None,
                     threshold: float = 0.8) -> Comparison:
    """Score the feature sets against each other (and the truth, on a synthetic screen)."""
    scores, tests = moa.compare_feature_sets({n: r.predictions for n, r in readouts.items()}, classes=classes)
    poly_truth = pl.concat([polypharmacology_against_truth(r.polypharmacology, truth_compounds).select(
        pl.lit(n).alias("features"), pl.all()) for n, r in readouts.items()]
    ) if truth_compounds is not None else pl.DataFrame(schema={"features": pl.String, **POLY_TRUTH_SCHEMA})
    summary = {n: _summary(r, truth_conditions, threshold) for n, r in readouts.items()}
    return Comparison(scores, tests, poly_truth, summary)


def join_cell_features(fovs: pl.DataFrame, cells: pl.DataFrame | None, cell_features: Collection[str]
                       ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``fovs`` joined with the cell features when every FOV was segmented (never drops a FOV).

    Both frames have the plain lineage columns (plate, timepoint, …, well, field) of the
    warehouse views ``fov_features`` and ``cell_features``.

    Returns the profiles and the measurements (plate, timepoint) whose FOVs lack cell features
    (empty when joined, or when there are no cell features at all).
    """
    if cells is None:
        return fovs, pl.DataFrame()
    keys = list(LINEAGE_KEYS)
    cells = cells.select(*keys, *cell_features)
    joined = fovs.join(cells, on=keys, how="inner", maintain_order="left", nulls_equal=True)  # DMSO: no moa
    if joined.height == fovs.height:
        return joined, pl.DataFrame()
    missing = fovs.join(cells, on=keys, how="anti", nulls_equal=True).select("plate", "timepoint").unique()
    return fovs, missing


def truth_morphology_profiles(fovs: pl.DataFrame, cells: pl.DataFrame, fov_truth: pl.DataFrame) -> pl.DataFrame:
    """The ground-truth morphology (:func:`lcd_core.ground_truth.truth_morphology`) of the FOVs of
    ``fovs`` (cytomining convention), with their ``Metadata_*`` lineage."""
    gt = truth_morphology(cells, fov_truth).rename({k: f"Metadata_{k}" for k in FOV_KEYS})
    meta = [c for c in fovs.columns if c.startswith("Metadata_")]
    keys = [f"Metadata_{k}" for k in FOV_KEYS]
    return fovs.select(meta).with_columns(pl.col("Metadata_field").cast(pl.Int64)).join(
        gt, on=keys, how="inner").select(*meta, *TRUTH_MORPHOLOGY_FEATURES)
