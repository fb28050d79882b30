"""Phenotype trajectories of a screen (SPEC §4.11): distance from DMSO over time, onsets, a map.

:func:`trajectories` reads the normalized well profiles of every dose × timepoint with the
activity calls (:func:`lcd_core.profiling.activity.compute_activity`) and, on a synthetic screen,
the generator's truth; the statistics are :mod:`lcd_core.trajectories`.

Tables of a :class:`TrajectoryResult`:

* ``table``: one row per compound × dose × timepoint, sorted by compound, dose (µM), hour:
  compound, moa, dose, timepoint, timepoint_h, distance (debiased centroid distance from DMSO,
  MAD units), ci_low / ci_high (95 % percentile bootstrap), null_p95 (the DMSO null's 95th
  percentile at the compound's well count), n_wells, n_dmso, active_distance (ci_low >
  null_p95), map_es and active (the mAP-ES call; null where the activity table has no row), pc1 /
  pc2 (the 2-D map, DMSO at the origin);
* ``onsets``: one row per compound × dose: compound, moa, dose, onset_map_es / onset_map_es_h /
  sustained_map_es (from ``active``), onset_distance / onset_distance_h / sustained_distance
  (from ``active_distance``); with truth also onset_truth / onset_truth_h / sustained_truth and
  outcome_map_es / outcome_distance (exact, early, late, missed, spurious; null where the truth
  lacks the compound × dose). Onsets are timepoint keys or ``"never"``;
* ``agreement``: per reading (map_es, distance) over all compound × doses and per dose, the
  exact and within-one-timepoint agreement with the truth onset with Wilson intervals, the
  outcome counts and the mean lag (:data:`lcd_core.trajectories.agreement.SUMMARY_SCHEMA`;
  empty without truth);
* ``confusion``: reading, onset_truth, onset, n (empty without truth).

``map`` keeps the fitted axes (:class:`lcd_core.trajectories.projection.TrajectoryMap`) so a new
DMSO-centred profile can be placed on the same map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from lcd_core.profiling.draws import ActivityColumns
from lcd_core.trajectories.agreement import (
    SUMMARY_SCHEMA,
    agreement_summary,
    onset_confusion,
    onset_pairs,
    truth_onsets,
)
from lcd_core.trajectories.conditions import dose_sort_key, require_columns, split_conditions
from lcd_core.trajectories.distance import distances
from lcd_core.trajectories.onset import onset_table
from lcd_core.trajectories.projection import TrajectoryMap, centroid_map

__all__ = ["READINGS", "TABLE_COLUMNS", "TrajectoryResult", "trajectories"]

KEYS = ["compound", "dose", "timepoint"]
#: the onset readings: name → the table's boolean call column
READINGS = {"map_es": "active", "distance": "active_distance"}
TABLE_COLUMNS = ["compound", "moa", "dose", "timepoint", "timepoint_h", "distance", "ci_low",
                 "ci_high", "null_p95", "n_wells", "n_dmso", "active_distance", "map_es", "active",
                 "pc1", "pc2"]
CONFUSION_SCHEMA = {"reading": pl.String, "onset_truth": pl.String, "onset": pl.String,
                    "n": pl.Int64}


@dataclass(frozen=True)
class TrajectoryResult:
    """What :func:`trajectories` returns (see the module doc)."""

    table: pl.DataFrame
    onsets: pl.DataFrame
    agreement: pl.DataFrame
    confusion: pl.DataFrame
    map: TrajectoryMap
    params: dict = field(default_factory=dict)


def _calls(activity: pl.DataFrame) -> pl.DataFrame:
    """The mAP-ES calls keyed by compound, dose, timepoint (as strings); one row per key."""
    require_columns(activity, [*KEYS, "map_es", "active"], "activity")
    calls = activity.select(*(pl.col(k).cast(pl.String) for k in KEYS),
                            pl.col("map_es").cast(pl.Float64), pl.col("active").cast(pl.Boolean))
    dup = calls.filter(calls.select(KEYS).is_duplicated())
    if dup.height:
        raise ValueError(f"activity repeats compound × dose × timepoint {dup.select(KEYS).row(0)}")
    return calls


def _sorted(table: pl.DataFrame) -> pl.DataFrame:
    doses = sorted(table["dose"].unique().to_list(), key=dose_sort_key)
    rank = pl.DataFrame({"dose": doses, "__d": range(len(doses))}, schema={"dose": pl.String, "__d": pl.Int64})
    return table.join(rank, on="dose").sort("compound", "__d", "timepoint_h").drop("__d")


def _onsets(table: pl.DataFrame) -> pl.DataFrame:
    by = ["compound", "moa", "dose"]
    out = None
    for name, call in READINGS.items():
        o = onset_table(table, call, name, by=by)
        out = o if out is None else out.join(o, on=by, how="left", nulls_equal=True,
                                             maintain_order="left")
    return out


def _against_truth(onsets: pl.DataFrame, table: pl.DataFrame, truth: pl.DataFrame,
                   level: float) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Onsets with the truth's and each reading's outcome; the summary; the confusion."""
    t = truth_onsets(truth, table.select("dose", "timepoint"))
    onsets = onsets.join(t, on=["compound", "dose"], how="left", maintain_order="left")
    pairs = onset_pairs(onsets, list(READINGS), table["timepoint"].unique().to_list())
    for name in READINGS:
        o = pairs.filter(pl.col("reading") == name).select(
            "compound", "dose", pl.col("outcome").alias(f"outcome_{name}"))
        onsets = onsets.join(o, on=["compound", "dose"], how="left", maintain_order="left")
    return onsets, agreement_summary(pairs, level=level), onset_confusion(pairs)


def trajectories(profiles: pl.DataFrame, features: Sequence[str], activity: pl.DataFrame,
                 truth: pl.DataFrame | None = None, n_boot: int = 1000, seed: int = 0, *,
                 level: float = 0.95, cols: ActivityColumns = ActivityColumns()) -> TrajectoryResult:
    """Trajectories, onsets and (with ``truth``) their agreement with the truth.

    Parameters
    ----------
    profiles
        Normalized well profiles, all doses × timepoints (cytomining convention).
    features
        Their feature columns.
    activity
        The mAP-ES calls: compound, dose, timepoint, map_es, active.
    truth
        A synthetic screen's conditions: compound, dose, timepoint, truly_active.
    n_boot
        Bootstrap resamples (and DMSO null draws) per compound × condition.
    seed
        Base seed of every generator.
    level
        Level of the distance intervals and of the agreement's Wilson intervals.
    cols
        Metadata column names of ``profiles``.

    Raises
    ------
    ValueError
        Naming a missing column (of profiles, activity or truth), or a dose × timepoint whose
        compounds have no DMSO wells.
    """
    calls = _calls(activity)
    if truth is not None:
        require_columns(truth, [*KEYS, "truly_active"], "truth")
    conditions = split_conditions(profiles, features, cols=cols)
    coords, tmap = centroid_map(conditions, features)
    table = _sorted(distances(conditions, n_boot=n_boot, seed=seed, level=level)
                    .join(coords, on=KEYS, how="left")
                    .join(calls, on=KEYS, how="left").select(TABLE_COLUMNS))
    onsets = _onsets(table)
    agreement, confusion = pl.DataFrame(schema=SUMMARY_SCHEMA), pl.DataFrame(schema=CONFUSION_SCHEMA)
    if truth is not None:
        onsets, agreement, confusion = _against_truth(onsets, table, truth, level)
    params = dict(n_boot=n_boot, seed=seed, level=level, n_features=len(features),
                  explained=[float(v) for v in tmap.explained],
                  n_without_call=int(table["active"].null_count()))
    return TrajectoryResult(table, onsets, agreement, confusion, tmap, params)
