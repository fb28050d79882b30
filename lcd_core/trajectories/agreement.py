"""Onsets against the truth of a synthetic screen: per compound × dose, a confusion, a summary.

The truth onset of a compound × dose is the first timepoint with ``truly_active`` (the generator's
``conditions.parquet``), read over the timepoints the screen profiled, as any other reading
(:func:`lcd_core.trajectories.onset.onset_table`). A reading's onset against it, counted in
timepoint *steps* of the screen's time order:

* ``exact``: the same timepoint, or both never;
* ``early`` / ``late``: both have an onset, the reading's before / after the truth's;
* ``missed``: truly active at some timepoint, the reading never;
* ``spurious``: never truly active, the reading calls an onset;
* ``within_one``: exact, or both have onsets at most one step apart.

:func:`agreement_summary` gives per reading, over all compound × doses and per dose, the exact
and within-one fractions with 95 % Wilson score intervals (compound × doses as the units), the
counts of each outcome and the mean lag in hours (reading − truth, over the pairs with both
onsets; positive = the reading sees it later).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import polars as pl

from lcd_core.trajectories.conditions import ordered, require_columns, timepoint_hours
from lcd_core.trajectories.onset import NEVER, onset_table

__all__ = ["OUTCOMES", "ALL", "PAIR_SCHEMA", "SUMMARY_SCHEMA", "wilson_interval", "truth_onsets",
           "onset_pairs", "agreement_summary", "onset_confusion"]

OUTCOMES = ("exact", "early", "late", "missed", "spurious")
ALL = "all"
PAIR_SCHEMA = {"reading": pl.String, "compound": pl.String, "dose": pl.String, "onset": pl.String,
               "onset_truth": pl.String, "steps": pl.Int64, "lag_h": pl.Float64,
               "outcome": pl.String, "exact": pl.Boolean, "within_one": pl.Boolean}
SUMMARY_SCHEMA = {"reading": pl.String, "dose": pl.String, "n": pl.Int64,
                  "n_truth_onset": pl.Int64, "n_exact": pl.Int64, "exact": pl.Float64,
                  "exact_ci_low": pl.Float64, "exact_ci_high": pl.Float64,
                  "n_within_one": pl.Int64, "within_one": pl.Float64,
                  "within_one_ci_low": pl.Float64, "within_one_ci_high": pl.Float64,
                  **{f"n_{o}": pl.Int64 for o in OUTCOMES[1:]}, "mean_lag_h": pl.Float64}


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of the proportion ``k / n`` (None, None for ``n == 0``)."""
    if n == 0:
        return None, None
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def truth_onsets(truth: pl.DataFrame, conditions: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per compound × dose of ``truth`` the onset of ``truly_active`` (``onset_truth``, …).

    ``conditions`` (dose, timepoint): read only these, the conditions the screen profiled.

    Raises
    ------
    ValueError
        Naming a missing column or a repeated compound × dose × timepoint.
    """
    keys = ["compound", "dose", "timepoint"]
    require_columns(truth, [*keys, "truly_active"], "truth")
    t = truth.select(*(pl.col(k).cast(pl.String) for k in keys), pl.col("truly_active").cast(pl.Boolean))
    if conditions is not None:
        c = conditions.select(pl.col("dose").cast(pl.String), pl.col("timepoint").cast(pl.String))
        t = t.join(c.unique(), on=["dose", "timepoint"], how="semi")
    dup = t.filter(t.select(keys).is_duplicated())
    if dup.height:
        raise ValueError(f"truth repeats compound × dose × timepoint {dup.select(keys).row(0)}")
    return onset_table(t.sort(keys), "truly_active", "truth")


def _compare(onset: str, truth: str, step: dict[str, int]) -> tuple[int | None, str, bool]:
    """(steps, outcome, within_one) of one reading's onset against the truth's."""
    if onset == NEVER or truth == NEVER:
        outcome = {(True, True): "exact", (True, False): "missed",
                   (False, True): "spurious"}[(onset == NEVER, truth == NEVER)]
        return None, outcome, outcome == "exact"
    s = step[onset] - step[truth]
    return s, "exact" if s == 0 else "early" if s < 0 else "late", abs(s) <= 1


def onset_pairs(onsets: pl.DataFrame, readings: Sequence[str],
                timepoints: Sequence[str]) -> pl.DataFrame:
    """Each compound × dose × reading against the truth (:data:`PAIR_SCHEMA`).

    ``onsets``: compound, dose, ``onset_truth`` and ``onset_{reading}`` per reading;
    ``timepoints``: the screen's timepoints (their hour order defines a step).
    """
    require_columns(onsets, ["compound", "dose", "onset_truth",
                             *(f"onset_{r}" for r in readings)], "onsets")
    step = {t: i for i, t in enumerate(ordered(map(str, timepoints), kind="timepoint"))}
    rows = []
    for r in readings:
        for c, d, o, t in onsets.select("compound", "dose", f"onset_{r}", "onset_truth").iter_rows():
            if o is None or t is None:
                continue
            s, outcome, within = _compare(o, t, step)
            lag = None if s is None else timepoint_hours(o) - timepoint_hours(t)
            rows.append((r, c, d, o, t, s, lag, outcome, outcome == "exact", within))
    return pl.DataFrame(rows, schema=PAIR_SCHEMA, orient="row")


def _summary_row(reading: str, dose: str, g: pl.DataFrame, level: float) -> dict:
    n = g.height
    counts = {o: int((g["outcome"] == o).sum()) for o in OUTCOMES}
    n_within = int(g["within_one"].sum())
    e_lo, e_hi = wilson_interval(counts["exact"], n, level)
    w_lo, w_hi = wilson_interval(n_within, n, level)
    return dict(reading=reading, dose=dose, n=n, n_truth_onset=int((g["onset_truth"] != NEVER).sum()),
                n_exact=counts["exact"], exact=counts["exact"] / n if n else None,
                exact_ci_low=e_lo, exact_ci_high=e_hi, n_within_one=n_within,
                within_one=n_within / n if n else None, within_one_ci_low=w_lo,
                within_one_ci_high=w_hi, **{f"n_{o}": counts[o] for o in OUTCOMES[1:]},
                mean_lag_h=g["lag_h"].mean())


def agreement_summary(pairs: pl.DataFrame, *, level: float = 0.95) -> pl.DataFrame:
    """Per reading: all compound × doses (dose ``"all"``), then each dose in dose order
    (:data:`SUMMARY_SCHEMA`)."""
    rows = []
    for reading in pairs["reading"].unique(maintain_order=True).to_list():
        g = pairs.filter(pl.col("reading") == reading)
        rows.append(_summary_row(reading, ALL, g, level))
        for dose in ordered(g["dose"].to_list(), kind="dose"):
            rows.append(_summary_row(reading, dose, g.filter(pl.col("dose") == dose), level))
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA) if rows else pl.DataFrame(schema=SUMMARY_SCHEMA)


def onset_confusion(pairs: pl.DataFrame) -> pl.DataFrame:
    """Long confusion of onsets: reading, onset_truth, onset, n (the non-empty cells, truth onset
    in time order, never last)."""
    def hours(onset: str) -> float:
        return float("inf") if onset == NEVER else timepoint_hours(onset)

    readings = {r: i for i, r in enumerate(pairs["reading"].unique(maintain_order=True))}
    counted = pairs.group_by("reading", "onset_truth", "onset").len("n")
    order = sorted(counted.iter_rows(), key=lambda r: (readings[r[0]], hours(r[1]), hours(r[2])))
    return pl.DataFrame(order, schema={"reading": pl.String, "onset_truth": pl.String,
                                       "onset": pl.String, "n": pl.Int64}, orient="row")
