"""Phenotypic activity: mAP distributions, the DMSO null, mAP-ES and sensitivity (SPEC §4.5).

Entry points::

    res = compute_activity(profiles, n_draws=1000, seed=0)   # profiles: normalized wells
    res.activity      # one row per compound × dose × timepoint (see below)
    res.null          # one row per dose × timepoint × positive rule used (null distribution)
    res.draws         # (keep_draws=True) every draw's AP, long form, for plots
    sensitivity(res.activity)                                # fraction active per condition

``activity_table(profiles, …)`` / ``null_table(profiles, …)`` return just one of the two tables.

Input
-----
Well profiles in the cytomining convention (``Metadata_*`` + features; normalized beforehand with
:func:`lcd_core.profiling.normalize.normalize` / :func:`~lcd_core.profiling.normalize.to_wells`),
or the long form with an ``embedding`` Array column (converted with
:func:`lcd_core.profiling.profiles.to_cytomining`). Needed metadata (names in
:class:`~lcd_core.profiling.draws.ActivityColumns`): compound, dose, timepoint, plate, replica,
layout, role (``negative_control`` marks DMSO), optional moa.

The draws (query, positives, negatives; list sizes; the null's rule; the generators) are
:mod:`lcd_core.profiling.draws`.

Outputs
-------
``activity``: compound, dose, timepoint, moa, map_mean (mean draw AP), map_sd, map_ci_low /
map_ci_high (2.5 / 97.5 percentiles of the draw APs — the spread of AP over draws, *not* a CI of
the mean), null_mean, map_es (Cohen's d, pooled SD, compound draws vs null draws), active
(``map_es ≥ threshold``, 0.8), fallback, n_draws, n_queries (usable query wells), n_pos, n_neg.
A compound with no usable query (e.g. on a single plate) has n_draws 0, NaN statistics and
active False.

``null``: one row per dose × timepoint × (fallback, n_pos): dose, timepoint, fallback, null_mean,
null_sd, null_ci_low, null_ci_high, n_draws, n_queries, n_pos, n_neg.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lcd_core.profiling.average_precision import cosine_similarity_matrix, map_es, percentile_ci
from lcd_core.profiling.draws import (
    ActivityColumns,
    DrawSet,
    DrawSizes,
    _condition_n_neg,
    _ConditionIndex,
    _draw_planned,
    _key_matrix,
    _plan,
    _rng,
    _stacked_aps,
    draw_sets,
)
from lcd_core.profiling.profiles import feature_columns, to_cytomining

__all__ = [
    "ActivityResult",
    "null_distribution",
    "compute_activity",
    "activity_table",
    "null_table",
    "sensitivity",
    "DEFAULT_THRESHOLDS",
]

#: mAP-ES thresholds of the sensitivity curve: 0.2, 0.3, … 2.0.
DEFAULT_THRESHOLDS = np.round(np.arange(0.2, 2.01, 0.1), 10)


@dataclass
class ActivityResult:
    """What :func:`compute_activity` returns (see the module doc for the columns)."""

    activity: pl.DataFrame
    null: pl.DataFrame
    draws: pl.DataFrame | None = None
    params: dict = field(default_factory=dict)



def null_distribution(
    meta: pl.DataFrame,
    S: np.ndarray,
    rng: np.random.Generator,
    sizes: DrawSizes = DrawSizes(),
    *,
    fallback: bool | None = None,
    cols: ActivityColumns = ActivityColumns(),
) -> tuple[np.ndarray, DrawSet]:
    """The null: ``sizes.n_draws`` APs of DMSO queries (:func:`~lcd_core.profiling.draws.draw_sets`
    with ``compound=None``)."""
    ds = draw_sets(meta, None, rng, sizes, fallback=fallback, cols=cols)
    return (ds.aps(S) if ds.n_draws else np.zeros(0)), ds


# ----------------------------------------------------------------------------------------------
# statistics of the draws

def _set_stats(aps: list[np.ndarray], ci: float) -> dict[str, np.ndarray]:
    """Per draw set: mean, sd (ddof 1), var (ddof 1), percentile interval, n (finite APs).

    One call per condition over all its sets (same values as :func:`_stats` / :func:`map_es`
    set by set: row reductions of a stacked matrix use numpy's same per-row algorithms); sets of
    unequal sizes or with non-finite APs take the per-set path.
    """
    n = len(aps)
    if n and len({a.size for a in aps}) == 1 and aps[0].size > 1:
        A = np.stack(aps)
        if np.isfinite(A).all():
            lo, hi = np.percentile(A, [50 * (1 - ci), 50 * (1 + ci)], axis=1)
            var = A.var(axis=1, ddof=1)
            return dict(mean=A.mean(axis=1), sd=np.sqrt(var), var=var, lo=lo, hi=hi,
                        n=np.full(n, A.shape[1]), rows=None)
    out = {k: np.full(n, np.nan) for k in ("mean", "sd", "var", "lo", "hi")}
    out["n"] = np.zeros(n, np.int64)
    out["rows"] = aps
    for i, a in enumerate(aps):
        out["mean"][i], out["sd"][i], out["lo"][i], out["hi"][i] = _stats(a, ci)
    return out


def _es(st: dict, i: int, j: int) -> float:
    """mAP-ES of set i vs null set j from :func:`_set_stats` (= :func:`map_es` of their APs)."""
    if st["rows"] is not None:
        return map_es(st["rows"][i], st["rows"][j])
    na, nb = int(st["n"][i]), int(st["n"][j])
    diff = st["mean"][i] - st["mean"][j]
    sp = np.sqrt(((na - 1) * st["var"][i] + (nb - 1) * st["var"][j]) / (na + nb - 2))
    if sp == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return float(diff / sp)


def _stats(aps: np.ndarray, ci: float) -> tuple[float, float, float, float]:
    if aps.size == 0:
        return (np.nan,) * 4
    lo, hi = percentile_ci(aps, ci)
    sd = float(aps.std(ddof=1)) if aps.size > 1 else np.nan
    return float(aps.mean()), sd, lo, hi



# ----------------------------------------------------------------------------------------------
# orchestration


@dataclass(frozen=True)
class _Run:
    """The settings of one :func:`compute_activity` call, shared by all its conditions."""

    sizes: DrawSizes
    seed: int
    threshold: float
    ci: float
    keep_draws: bool
    cols: ActivityColumns
    has_moa: bool


@dataclass
class _Rows:
    """What the conditions add up to: activity rows, null rows, per-draw frames."""

    activity: list[dict] = field(default_factory=list)
    null: list[dict] = field(default_factory=list)
    draws: list[pl.DataFrame] = field(default_factory=list)


def _as_profiles(profiles: pl.DataFrame) -> pl.DataFrame:
    if "embedding" in profiles.columns and not any(
            c.startswith("Metadata_") for c in profiles.columns):
        return to_cytomining(profiles)
    return profiles


def _dose_sort_key(v) -> tuple:
    try:
        from lcd_core.keys import parse_dose_key

        return (0, parse_dose_key(str(v)), str(v))
    except Exception:  # noqa: BLE001 - any non-key dose sorts as text after
        try:
            return (0, float(v), str(v))
        except (TypeError, ValueError):
            return (1, 0.0, str(v))


def _first_moa(sub: pl.DataFrame, ctrl: pl.Series, cols: ActivityColumns) -> dict:
    """Compound → its first non-null moa in the condition (None if it has none)."""
    out: dict = {}
    for c, mo, is_ctrl in zip(sub[cols.compound].to_list(), sub[cols.moa].to_list(),
                              ctrl.to_list()):
        if mo is not None and not is_ctrl and c not in out:
            out[c] = mo
    return out


def _conditions(df: pl.DataFrame, feats: list[str],
                cols: ActivityColumns) -> list[tuple[tuple, pl.DataFrame]]:
    """((dose, timepoint), metadata rows with ``__row``, their row in ``df``), dose-sorted."""
    meta_cols = [c for c in df.columns if c not in set(feats)]
    parts = df.select(meta_cols).with_row_index("__row").partition_by(
        cols.dose, cols.timepoint, as_dict=True, maintain_order=True)
    return [(k, parts[k]) for k in sorted(parts, key=lambda r: (_dose_sort_key(r[0]), str(r[1])))]


def _condition_draws(sub: pl.DataFrame, ctrl: pl.Series, key: tuple, run: _Run):
    """Every draw set of one condition: one per compound (sorted), then one null per (rule,
    n_pos) a compound used, so compound and null lists match in size.

    Returns ``(compounds, modes, sets, stacked)``: ``modes`` the nulls' (fallback, n_pos),
    ``stacked`` the (query, pos, neg) arrays of the non-empty sets.
    """
    cols = run.cols
    compounds = sorted(
        c for c in sub.filter(~ctrl)[cols.compound].unique().to_list() if c is not None)
    k_neg = _condition_n_neg(sub, ctrl.to_numpy(), run.sizes.n_neg, cols)
    ix = _ConditionIndex(sub, cols)
    plans = [_plan(ix, c, run.sizes.n_pos, k_neg, None) for c in compounds]
    modes = sorted({(p.fallback, p.n_pos) for p in plans if p.Qv.size})
    plans += [_plan(ix, None, kp, k_neg, fb) for fb, kp in modes]
    rngs = [_rng(run.seed, *key, c) for c in compounds] + [
        _rng(run.seed, *key, "__null__", fb, kp) for fb, kp in modes]
    sets, *stacked = _draw_planned(ix, plans, rngs, run.sizes.n_draws)
    return compounds, modes, sets, stacked


def _sizes_used(ds: DrawSet) -> dict:
    used = ds.n_draws > 0
    return dict(n_draws=ds.n_draws, n_queries=ds.n_queries,
                n_pos=ds.pos.shape[1] if used else 0, n_neg=ds.neg.shape[1] if used else 0)


def _summary(st: dict, i: int | None) -> tuple[float, float, float, float]:
    """Mean, sd, percentile interval of set ``i`` of :func:`_set_stats` (NaN for ``None``)."""
    if i is None:
        return (np.nan,) * 4
    return tuple(float(st[k][i]) for k in ("mean", "sd", "lo", "hi"))


def _activity_row(c: str, key: tuple, moa: str | None, ds: DrawSet, st: dict, i: int | None,
                  null_at: dict, threshold: float) -> dict:
    """The activity row of compound ``c`` (set ``i``) against the null of its rule and sizes."""
    m, sd, lo, hi = _summary(st, i)
    null_mean = es = np.nan
    j = None if i is None else null_at[(ds.fallback, ds.pos.shape[1])]
    if j is not None:
        null_mean, es = float(st["mean"][j]), _es(st, i, j)
    return dict(compound=c, dose=key[0], timepoint=key[1], moa=moa, map_mean=m, map_sd=sd,
                map_ci_low=lo, map_ci_high=hi, null_mean=null_mean, map_es=es,
                active=bool(np.isfinite(es) and es >= threshold), fallback=ds.fallback,
                **_sizes_used(ds))


def _add_condition(rows: _Rows, sub: pl.DataFrame, X: np.ndarray, key: tuple, run: _Run) -> None:
    """Append one condition's null rows, activity rows and (``keep_draws``) draw frames."""
    ctrl = (sub[run.cols.role] == run.cols.control_value).fill_null(False)
    S = cosine_similarity_matrix(X)
    compounds, modes, sets, stacked = _condition_draws(sub, ctrl, key, run)
    drawn = [s for s in sets if s.n_draws]
    aps = np.split(_stacked_aps(_key_matrix(S), *stacked),
                   np.cumsum([s.n_draws for s in drawn])[:-1]) if drawn else []
    st = _set_stats(aps, run.ci)
    at = {id(s): i for i, s in enumerate(drawn)}
    null_at = {}
    for (fb, kp), ds in zip(modes, sets[len(compounds):]):
        null_at[(fb, kp)] = i = at.get(id(ds))
        m, sd, lo, hi = _summary(st, i)
        rows.null.append(dict(dose=key[0], timepoint=key[1], fallback=fb, null_mean=m,
                              null_sd=sd, null_ci_low=lo, null_ci_high=hi, **_sizes_used(ds)))
        if run.keep_draws and ds.n_draws:
            rows.draws.append(_draw_frame(key, None, ds, aps[i]))
    moa = _first_moa(sub, ctrl, run.cols) if run.has_moa else {}
    for c, ds in zip(compounds, sets):
        i = at.get(id(ds))
        rows.activity.append(_activity_row(c, key, moa.get(c), ds, st, i, null_at, run.threshold))
        if run.keep_draws and ds.n_draws:
            rows.draws.append(_draw_frame(key, c, ds, aps[i]))


def _draw_frame(key: tuple, compound: str | None, ds: DrawSet, aps: np.ndarray) -> pl.DataFrame:
    n = ds.n_draws
    return pl.DataFrame({
        "dose": [key[0]] * n, "timepoint": [key[1]] * n,
        "compound": pl.Series([compound] * n, dtype=pl.Utf8),
        "fallback": [ds.fallback] * n, "draw": np.arange(n, dtype=np.int64),
        "query_row": ds.query, "ap": aps,
    })


def _frames(rows: _Rows, dose_t: pl.DataType, tp_t: pl.DataType,
            keep_draws: bool) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """The activity and null tables (typed, also when empty) and the draws (or None)."""
    sizes = {"n_draws": pl.Int64, "n_queries": pl.Int64, "n_pos": pl.Int64, "n_neg": pl.Int64}
    act_schema = {
        "compound": pl.Utf8, "dose": dose_t, "timepoint": tp_t, "moa": pl.Utf8,
        "map_mean": pl.Float64, "map_sd": pl.Float64, "map_ci_low": pl.Float64,
        "map_ci_high": pl.Float64, "null_mean": pl.Float64, "map_es": pl.Float64,
        "active": pl.Boolean, "fallback": pl.Boolean, **sizes,
    }
    null_schema = {
        "dose": dose_t, "timepoint": tp_t, "fallback": pl.Boolean, "null_mean": pl.Float64,
        "null_sd": pl.Float64, "null_ci_low": pl.Float64, "null_ci_high": pl.Float64, **sizes,
    }
    activity = pl.DataFrame(rows.activity, schema=act_schema, orient="row") if rows.activity \
        else pl.DataFrame(schema=act_schema)
    null = pl.DataFrame(rows.null, schema=null_schema) if rows.null else \
        pl.DataFrame(schema=null_schema)
    draws = pl.concat(rows.draws) if (keep_draws and rows.draws) else None
    return activity, null, draws


def compute_activity(
    profiles: pl.DataFrame,
    *,
    features: list[str] | None = None,
    n_draws: int = 1000,
    n_pos: int = 3,
    n_neg: int = 31,
    seed: int = 0,
    threshold: float = 0.8,
    ci: float = 0.95,
    keep_draws: bool = False,
    cols: ActivityColumns = ActivityColumns(),
) -> ActivityResult:
    """mAP distribution, null and mAP-ES of every compound × dose × timepoint.

    Parameters
    ----------
    profiles
        Normalized well profiles (cytomining frame, or the long form with ``embedding``).
    features
        Feature columns (default: every non-``Metadata_`` column).
    n_draws, n_pos, n_neg
        Draws per compound / null, positives and negatives per draw.
    seed
        Base seed (see :mod:`lcd_core.profiling.draws` for how generators are derived).
    threshold
        mAP-ES threshold for ``active``.
    ci
        Level of the percentile interval of the draw APs.
    keep_draws
        Also return every draw's AP (``result.draws``: dose, timepoint, compound — null for the
        null —, fallback, draw, query_row, ap).
    """
    df = _as_profiles(profiles)
    feats = list(features) if features is not None else feature_columns(df)
    need = [cols.compound, cols.dose, cols.timepoint, cols.plate, cols.replica, cols.layout,
            cols.role]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise KeyError(f"profiles lack metadata columns {missing}")
    run = _Run(DrawSizes(n_pos, n_neg, n_draws), seed, threshold, ci, keep_draws, cols,
               cols.moa in df.columns)
    X_all = df.select(feats).to_numpy()
    rows = _Rows()
    for key, sub in _conditions(df, feats, cols):
        _add_condition(rows, sub, X_all[sub["__row"].to_numpy()], key, run)
    params = dict(n_draws=n_draws, n_pos=n_pos, n_neg=n_neg, seed=seed, threshold=threshold,
                  ci=ci, similarity="cosine")
    return ActivityResult(*_frames(rows, df.schema[cols.dose], df.schema[cols.timepoint],
                                   keep_draws), params)


def activity_table(profiles: pl.DataFrame, **kwargs) -> pl.DataFrame:
    """``compute_activity(profiles, **kwargs).activity``."""
    return compute_activity(profiles, **kwargs).activity


def null_table(profiles: pl.DataFrame, **kwargs) -> pl.DataFrame:
    """``compute_activity(profiles, **kwargs).null`` (use compute_activity to get both at once)."""
    return compute_activity(profiles, **kwargs).null


def sensitivity(
    activity: pl.DataFrame,
    thresholds=DEFAULT_THRESHOLDS,
) -> pl.DataFrame:
    """Fraction of compounds active per dose × timepoint for each mAP-ES threshold.

    Columns: dose, timepoint, threshold, n_compounds (compounds with a finite mAP-ES), n_active
    (``map_es ≥ threshold``), sensitivity (n_active / n_compounds; NaN if no compound).
    """
    th = np.round(np.asarray(thresholds, dtype=np.float64), 10)
    base = activity.filter(pl.col("map_es").is_finite())
    grid = activity.select("dose", "timepoint").unique().join(
        pl.DataFrame({"threshold": th}), how="cross"
    )
    counted = (
        grid.join(base.select("dose", "timepoint", "map_es"), on=["dose", "timepoint"], how="left")
        .group_by("dose", "timepoint", "threshold")
        .agg(
            pl.col("map_es").is_not_null().sum().cast(pl.Int64).alias("n_compounds"),
            (pl.col("map_es") >= pl.col("threshold")).fill_null(False).sum().cast(pl.Int64)
            .alias("n_active"),
        )
        .with_columns(
            pl.when(pl.col("n_compounds") > 0)
            .then(pl.col("n_active") / pl.col("n_compounds"))
            .otherwise(None)
            .cast(pl.Float64)
            .alias("sensitivity")
        )
    )
    keys = sorted(counted.select("dose", "timepoint").unique().iter_rows(),
                  key=lambda r: (_dose_sort_key(r[0]), str(r[1])))
    order = pl.DataFrame({"dose": [k[0] for k in keys], "timepoint": [k[1] for k in keys],
                          "__o": np.arange(len(keys))},
                         schema={"dose": activity.schema["dose"],
                                 "timepoint": activity.schema["timepoint"], "__o": pl.Int64})
    return counted.join(order, on=["dose", "timepoint"]).sort("__o", "threshold").drop("__o")
