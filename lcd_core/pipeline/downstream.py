"""The one downstream chain: FOV profiles → normalization → well profiles → activity → MoA.

The paper runs the same steps on every feature set ("identical for all models and the
CellProfiler baseline"). Here they are written once and called by everything that scores
features:

* the model's assets, one partition at a time: ``normalized_profiles`` (:func:`condition_wells`),
  ``activity`` (:func:`condition_activity`), then the MoA assets over the whole screen;
* the handcrafted baseline and its reference rows (:func:`run_chain` on their FOV features);
* the pre-training ablation (:func:`run_chain` on each model's embedding of the tile bank).

:class:`ChainSettings` holds the one set of defaults: the paper's MAD + Harmony/FOV, 1,000 draws,
the call at mAP-ES ≥ 0.8. Other normalizations are extra comparison rows, never a silent default.

Normalization scope: every FOV of a timepoint (all plates, all doses) is normalized together, then
averaged into wells (:func:`lcd_core.profiling.normalize.normalize_to_wells`); a dose's wells are
a filter of that. Activity draws derive their generators from (seed, dose, timepoint, compound),
so one call over the screen equals one call per condition.

Example
-------
>>> result = run_chain(fov_profiles, ChainSettings(), classes=classes, holdout_compounds=hold)
>>> result.activity, result.moa.predictions
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

import polars as pl

from lcd_core import moa
from lcd_core.profiling.activity import ActivityResult, compute_activity
from lcd_core.profiling.normalize import METHODS, NormalizationResult, normalize_to_wells

__all__ = ["ChainSettings", "ChainResult", "condition_wells", "condition_activity", "screen_wells",
           "run_chain", "string_keys", "DEFAULT_METHOD"]

DEFAULT_METHOD = "mad_harmony_fov"
_TP, _DOSE, _COMPOUND = "Metadata_timepoint", "Metadata_dose", "Metadata_compound"


@dataclass(frozen=True)
class ChainSettings:
    """Settings of the downstream chain, the same for every feature set.

    Parameters
    ----------
    method
        Normalization (one of :data:`lcd_core.profiling.normalize.METHODS`); default the paper's
        MAD + Harmony/FOV.
    n_draws
        Draws of (query, positives, negatives) per compound-condition and of the DMSO null.
    threshold
        mAP-ES at or above which a compound-condition is called active.
    seed
        Base seed of normalization (Harmony's initialisation), draws and MoA probes.
    """

    method: str = DEFAULT_METHOD
    n_draws: int = 1000
    threshold: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"normalization method {self.method!r}: expected one of {METHODS}")
        if self.n_draws < 1:
            raise ValueError(f"n_draws must be >= 1, got {self.n_draws}")

    def with_method(self, method: str) -> ChainSettings:
        """The same settings with another normalization (a comparison row)."""
        return replace(self, method=method)


@dataclass(frozen=True)
class ChainResult:
    """What the chain returns for one feature set: normalized well profiles of every timepoint
    (cytomining convention), the activity table, and the MoA stage's result (None when the chain
    ran without MoA classes)."""

    profiles: pl.DataFrame
    activity: pl.DataFrame
    moa: moa.MoaResult | None


def string_keys(df: pl.DataFrame) -> pl.DataFrame:
    """``dose`` and ``timepoint`` as strings (the warehouse's partition keys)."""
    return df.with_columns([pl.col(c).cast(pl.String) for c in ("dose", "timepoint") if c in df.columns])


def condition_wells(fovs: pl.DataFrame, dose: str, settings: ChainSettings
                    ) -> tuple[pl.DataFrame, NormalizationResult]:
    """Normalized well profiles of one dose × timepoint.

    ``fovs`` are every FOV profile of the timepoint (all doses: normalization needs them all);
    the wells of ``dose`` are kept, tagged with the method in ``Metadata_normalization``.
    """
    wells, result = normalize_to_wells(fovs, settings.method, seed=settings.seed)
    wells = wells.filter(pl.col(_DOSE) == dose).with_columns(
        pl.lit(settings.method).alias("Metadata_normalization"))
    return wells, result


def condition_activity(wells: pl.DataFrame, settings: ChainSettings, *, keep_draws: bool = False
                       ) -> ActivityResult:
    """mAP, DMSO null and mAP-ES of the compounds in ``wells`` (any number of conditions),
    with string partition keys."""
    res = compute_activity(wells, n_draws=settings.n_draws, seed=settings.seed,
                           threshold=settings.threshold, keep_draws=keep_draws)
    return replace(res, activity=string_keys(res.activity), null=string_keys(res.null))


def screen_wells(fovs: pl.DataFrame, settings: ChainSettings) -> pl.DataFrame:
    """Normalized well profiles of every timepoint: each timepoint's FOVs normalized together."""
    timepoints = sorted(fovs[_TP].unique().to_list())
    parts = [normalize_to_wells(fovs.filter(pl.col(_TP) == tp), settings.method, seed=settings.seed)[0]
             for tp in timepoints]
    return pl.concat(parts, how="diagonal_relaxed")


def run_chain(fovs: pl.DataFrame, settings: ChainSettings, *, classes: moa.MoaClasses | None = None,
              holdout_compounds: Collection[str] = ()) -> ChainResult:
    """The whole chain on one feature set's FOV profiles (cytomining convention, every timepoint).

    Parameters
    ----------
    fovs
        One row per FOV: ``Metadata_*`` lineage (plate, timepoint, well, field, replica, layout,
        dose, compound, moa, role) and the features.
    settings
        :class:`ChainSettings`.
    classes
        The screen's MoA classes (from its compounds table); None stops after activity.
    holdout_compounds
        Compounds predicted by the probes of the training compounds, never trained on; those absent
        from ``fovs`` are ignored.
    """
    wells = screen_wells(fovs, settings)
    activity = condition_activity(wells, settings).activity
    if classes is None:
        return ChainResult(wells, activity, None)
    present = set(wells[_COMPOUND].to_list())
    hold = [c for c in holdout_compounds if c in present]
    result = moa.classify_moa(wells, activity, classes=classes, holdout_compounds=hold, seed=settings.seed)
    return ChainResult(wells, activity, result)
