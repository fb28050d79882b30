"""The whole MoA stage on a screen's profiles + activity (SPEC §4.8): :func:`classify_moa`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import polars as pl

from lcd_core.moa.aggregation import aggregate_incremental
from lcd_core.moa.classes import MoaClasses
from lcd_core.moa.scoring import confusion, metrics
from lcd_core.moa.second_moa import explain_away_readings, polypharmacology
from lcd_core.moa.probes import cv_condition, holdout_predict
from lcd_core.moa.wells import COMPOUND, CONTROL, ROLE, validate_labels


@dataclass(frozen=True)
class MoaResult:
    """Output of :func:`classify_moa`."""

    per_condition: pl.DataFrame
    predictions: pl.DataFrame
    metrics: pl.DataFrame
    confusion: pl.DataFrame
    polypharmacology: pl.DataFrame


def condition_probes(profiles: pl.DataFrame, activity: pl.DataFrame, *, classes: MoaClasses,
                     holdout_compounds: Collection[str] = (), n_splits: int = 5, seed: int = 0,
                     C: float = 1.0) -> pl.DataFrame:
    """The probes' per-condition softmax: CV on the training compounds, and the holdout compounds
    (those present in ``profiles``) predicted by the probe of the active training compounds."""
    present = set(profiles[COMPOUND].to_list())
    hold = [c for c in holdout_compounds if c in present]
    is_hold = pl.col(COMPOUND).is_in(hold) & (pl.col(ROLE) != CONTROL)
    train = profiles.filter(~is_hold)
    parts = [cv_condition(train, activity, n_splits=n_splits, seed=seed, classes=classes, C=C)]
    if hold:
        parts.append(holdout_predict(train, activity, profiles.filter(is_hold), classes=classes, C=C,
                                     seed=seed, holdout_active=activity))
    return pl.concat(parts, how="diagonal_relaxed")


def _per_condition(profiles: pl.DataFrame, activity: pl.DataFrame, hold: list[str], *, classes: MoaClasses,
                   high_doses: Sequence[str] | None, n_splits: int, seed: int, C: float) -> pl.DataFrame:
    """CV on the training compounds, holdout prediction, then the explain-away readings."""
    probes = condition_probes(profiles, activity, classes=classes, holdout_compounds=hold, n_splits=n_splits,
                              seed=seed, C=C)
    return explain_away_readings(probes, profiles, activity, classes=classes, high_doses=high_doses,
                                 holdout_compounds=hold, n_splits=n_splits, seed=seed, C=C)


def classify_moa(
    profiles_by_condition: pl.DataFrame,
    activity: pl.DataFrame,
    *,
    classes: MoaClasses,
    holdout_compounds: Collection[str] = (),
    seed: int = 0,
    n_splits: int = 5,
    C: float = 1.0,
    weighting: str = "map_es",
    high_doses: Sequence[str] | None = None,
    min_prob: float = 0.1,
    active_only: bool = False,
) -> MoaResult:
    """The whole MoA stage: CV on the training compounds, holdout prediction, aggregation, scores.

    ``holdout_compounds`` are removed from every training set and predicted by the probes of the
    active training compounds (DMSO wells train both). ``classes`` are the screen's MoA classes
    (:meth:`MoaClasses.from_compounds`); a label outside them is an error naming the compound.
    Everything else: see the package docstring.
    """
    validate_labels(profiles_by_condition, classes=classes)
    hold = list(holdout_compounds)
    missing = sorted(set(hold) - set(profiles_by_condition[COMPOUND].unique().to_list()))
    if missing:
        raise ValueError(f"holdout compounds not in the profiles: {', '.join(missing)}")
    per_condition = _per_condition(profiles_by_condition, activity, hold, classes=classes, high_doses=high_doses,
                                   n_splits=n_splits, seed=seed, C=C)
    predictions = aggregate_incremental(per_condition, activity, weighting=weighting, classes=classes)
    return MoaResult(
        per_condition=per_condition,
        predictions=predictions,
        metrics=metrics(predictions, classes=classes, active_only=active_only),
        confusion=confusion(predictions, classes=classes, active_only=active_only),
        polypharmacology=polypharmacology(per_condition, high_doses=high_doses, min_prob=min_prob, classes=classes),
    )
