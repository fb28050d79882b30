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
:func:`lcd_core.normalize.normalize` / :func:`~lcd_core.normalize.to_wells`), or the long form
with an ``embedding`` Array column (converted with :func:`lcd_core.profiles.to_cytomining`).
Needed metadata (names in :class:`ActivityColumns`): compound, dose, timepoint, plate, replica,
layout, role (``negative_control`` marks DMSO), optional moa.

The draws (per condition = dose × timepoint; all rows of that condition)
--------------------------------------------------------------------------
* **Query**: a well of the compound, uniformly at random among the compound's *usable* wells
  (those with ≥ 1 eligible positive and ≥ 1 negative).
* **Positives**: ``n_pos`` (3) wells of the same compound, dose and timepoint, uniformly without
  replacement among the eligible ones: a *different replica and a different layout*
  (randomization plate) than the query — the strict rule. **Fallback**: when no query of the
  compound has a strict candidate (the dose was run in one replica only), positives come from any
  *other plate* (other layout, same replica allowed) and the row is flagged ``fallback=True``.
* **Negatives**: ``n_neg`` (31) DMSO wells of the query's plate (the query itself excluded),
  uniformly without replacement.
* **List sizes** (small designs have fewer than 3 eligible positives or 31 DMSO wells per plate):
  every draw of a compound uses the same sizes, ``n_pos = min(3, fewest eligible positives of a
  usable query)`` and ``n_neg = min(31, fewest DMSO wells on a plate of the condition − 1)`` (the
  ``− 1`` leaves room for a DMSO query's own well). The output's ``n_pos`` / ``n_neg`` are the
  sizes used. AP depends on list sizes (its chance level is ≈ n_pos / (n_pos + n_neg)), so:
* **Null**: the same with a DMSO query, DMSO positives (same rule: other replica and layout, or
  other plate under fallback) and DMSO negatives from the query's plate, drawn with the *same*
  ``n_pos`` / ``n_neg``. A null is computed for each (rule, n_pos) a compound of that condition
  used, and each compound is compared with the null drawn under its own rule and sizes.
* ``n_draws`` (1000) draws per compound and per null. Randomness: one ``numpy`` generator per
  (seed, dose, timepoint, compound | null + rule), so results are reproducible and do not depend
  on which other conditions or compounds are in the frame.
* Similarity: cosine; the condition's similarity matrix is computed once and every draw indexes
  into it; all APs of a condition are one vectorised call of
  :func:`lcd_core.map_kernel.average_precision` (copairs' AP definition, ties included).

Outputs
-------
``activity``: compound, dose, timepoint, moa, map_mean (mean draw AP), map_sd, map_ci_low /
map_ci_high (2.5 / 97.5 percentiles of the draw APs — the spread of AP over draws, *not* a CI of
the mean), null_mean, map_es (Cohen's d, pooled SD, compound draws vs null draws), active
(``map_es ≥ threshold``, 0.8), fallback, n_draws, n_queries (usable query wells), n_pos, n_neg.
A compound with no usable query (e.g. on a single plate) has n_draws 0, NaN statistics and
active False.

``null``: one row per dose × timepoint × (fallback, n_pos): dose, timepoint, fallback, null_mean, null_sd, null_ci_low, null_ci_high, n_draws,
n_queries, n_pos, n_neg.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lcd_core.map_kernel import average_precision, cosine_similarity_matrix, map_es, percentile_ci
from lcd_core.profiles import feature_columns, to_cytomining

__all__ = [
    "ActivityColumns",
    "DrawSet",
    "ActivityResult",
    "draw_sets",
    "draw_aps",
    "null_distribution",
    "compute_activity",
    "activity_table",
    "null_table",
    "sensitivity",
    "DEFAULT_THRESHOLDS",
]

#: mAP-ES thresholds of the sensitivity curve: 0.2, 0.3, … 2.0.
DEFAULT_THRESHOLDS = np.round(np.arange(0.2, 2.01, 0.1), 10)


@dataclass(frozen=True)
class ActivityColumns:
    """Metadata column names (cytomining convention) used by the activity code."""

    compound: str = "Metadata_compound"
    dose: str = "Metadata_dose"
    timepoint: str = "Metadata_timepoint"
    plate: str = "Metadata_plate"
    replica: str = "Metadata_replica"
    layout: str = "Metadata_layout"
    role: str = "Metadata_role"
    moa: str = "Metadata_moa"
    control_value: str = "negative_control"


@dataclass
class DrawSet:
    """The random draws of one compound (or the null) in one condition.

    Row indices refer to the condition frame given to :func:`draw_sets`; ``-1`` pads lists shorter
    than asked. Positives occupy the leading columns of the rank list (copairs' tie order).
    """

    query: np.ndarray  # (n_draws,) int64
    pos: np.ndarray  # (n_draws, n_pos) int64, -1 = unused
    neg: np.ndarray  # (n_draws, n_neg) int64, -1 = unused
    fallback: bool
    n_queries: int = 0

    @property
    def n_draws(self) -> int:
        return int(self.query.size)

    @property
    def n_pos_used(self) -> np.ndarray:
        return (self.pos >= 0).sum(axis=1)

    @property
    def n_neg_used(self) -> np.ndarray:
        return (self.neg >= 0).sum(axis=1)

    def lists(self) -> tuple[np.ndarray, np.ndarray]:
        """(n_draws, n_pos + n_neg) member indices (-1 padded) and is-positive mask."""
        members = np.concatenate([self.pos, self.neg], axis=1)
        is_pos = np.zeros(members.shape, bool)
        is_pos[:, : self.pos.shape[1]] = True
        return members, is_pos

    def aps(self, S: np.ndarray) -> np.ndarray:
        """AP of every draw, from the condition's similarity matrix ``S``."""
        return draw_aps([self], S)


@dataclass
class ActivityResult:
    """What :func:`compute_activity` returns (see the module doc for the columns)."""

    activity: pl.DataFrame
    null: pl.DataFrame
    draws: pl.DataFrame | None = None
    params: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# draws


def _rng(seed: int, *parts) -> np.random.Generator:
    key = zlib.crc32("\x1f".join(str(p) for p in parts).encode())
    return np.random.default_rng([int(seed), key])


def _codes(s: pl.Series) -> np.ndarray:
    return np.unique(s.cast(pl.Utf8).fill_null("∅").to_numpy(), return_inverse=True)[1]


class _ConditionIndex:
    """Integer codes of one condition's metadata, built once and shared by all its draws."""

    def __init__(self, meta: pl.DataFrame, cols: ActivityColumns):
        self.ctrl = (meta[cols.role] == cols.control_value).fill_null(False).to_numpy()
        self.compound = meta[cols.compound].cast(pl.Utf8).to_numpy()
        self.plate, self.rep, self.lay = (
            _codes(meta[c]) for c in (cols.plate, cols.replica, cols.layout))
        D = np.flatnonzero(self.ctrl)
        n_plates = int(self.plate.max()) + 1 if self.plate.size else 0
        per_plate = [D[self.plate[D] == p] for p in range(n_plates)]
        width = max((len(x) for x in per_plate), default=0)
        self.dmso_by_plate = np.full((n_plates, max(width, 1)), -1, np.int64)
        for p, rows in enumerate(per_plate):
            self.dmso_by_plate[p, : len(rows)] = rows


def _sample(rng: np.random.Generator, eligible: np.ndarray, k: int) -> np.ndarray:
    """For each row of ``eligible`` (m, n) bool pick ≤ k column indices without replacement.

    Returns (m, k) int64, -1 where fewer than k are eligible.
    """
    m, n = eligible.shape
    if n == 0 or k == 0:
        return np.full((m, k), -1, np.int64)
    keys = rng.random((m, n))
    keys[~eligible] = np.inf
    kk = min(k, n)
    # the first kk of a random-key order = a uniform kk-subset (order inside it irrelevant)
    order = np.argpartition(keys, kk - 1, axis=1)[:, :kk] if kk < n else np.argsort(keys, axis=1)
    ok = np.isfinite(keys[np.arange(m)[:, None], order])
    out = np.where(ok, order, -1).astype(np.int64)
    if kk < k:
        out = np.concatenate([out, np.full((m, k - kk), -1, np.int64)], axis=1)
    return out


def draw_sets(
    meta: pl.DataFrame,
    compound: str | None,
    rng: np.random.Generator,
    n_pos: int = 3,
    n_neg: int = 31,
    n_draws: int = 1000,
    *,
    fallback: bool | None = None,
    cols: ActivityColumns = ActivityColumns(),
) -> DrawSet:
    """Draw query / positives / negatives for ``compound`` (``None``: the DMSO null).

    Parameters
    ----------
    meta
        The rows of one condition (dose × timepoint), in the order of the similarity matrix
        (or its precomputed internal index).
    compound
        Compound name; ``None`` draws DMSO queries and positives (the null).
    rng
        Generator; the draws are a pure function of its state and ``meta``.
    n_pos, n_neg, n_draws
        Positives and negatives per draw, capped at the fewest available to a usable query (all
        draws of the set have the same sizes), number of draws.
    fallback
        ``None``: strict rule (other replica and other layout) if any query has a strict
        candidate, else the fallback (other plate). ``True`` / ``False`` force a rule.

    Returns
    -------
    DrawSet
        ``n_draws`` draws, or an empty set (0 draws) if no query is usable.
    """
    ix = meta if isinstance(meta, _ConditionIndex) else _ConditionIndex(meta, cols)
    ctrl, plate, rep, lay, Dm = ix.ctrl, ix.plate, ix.rep, ix.lay, ix.dmso_by_plate
    if compound is None:
        qmask = ctrl
    else:
        qmask = (ix.compound == compound) & ~ctrl
    Q = np.flatnonzero(qmask)
    strict = (rep[Q][:, None] != rep[Q][None, :]) & (lay[Q][:, None] != lay[Q][None, :])
    use_fb = (not strict.any()) if fallback is None else bool(fallback)
    E = (plate[Q][:, None] != plate[Q][None, :]) if use_fb else strict
    n_neg_avail = (Dm[plate[Q]] >= 0).sum(axis=1) - (ctrl[Q] if Q.size else 0)
    usable = E.any(axis=1) & (n_neg_avail > 0)
    empty = DrawSet(np.zeros(0, np.int64), np.zeros((0, n_pos), np.int64),
                    np.zeros((0, n_neg), np.int64), use_fb, 0)
    if not usable.any():
        return empty
    Qv = np.flatnonzero(usable)
    # one list size for every draw: the request, capped by the fewest candidates of a usable query
    n_pos = int(min(n_pos, E[Qv].sum(axis=1).min()))
    n_neg = int(min(n_neg, n_neg_avail[Qv].min()))
    qi = Qv[rng.integers(len(Qv), size=n_draws)]
    query = Q[qi]
    pcol = _sample(rng, E[qi], n_pos)
    pos = np.where(pcol >= 0, Q[np.maximum(pcol, 0)], -1)
    cand = Dm[plate[query]]
    ncol = _sample(rng, (cand >= 0) & (cand != query[:, None]), n_neg)
    neg = np.where(ncol >= 0, cand[np.arange(n_draws)[:, None], np.maximum(ncol, 0)], -1)
    return DrawSet(query.astype(np.int64), pos.astype(np.int64), neg.astype(np.int64), use_fb,
                   int(len(Qv)))


def draw_aps(sets: list[DrawSet], S: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """APs of several draw sets of one condition in one vectorised kernel call.

    Returns one array per set (a single array if one set is given).
    """
    width_p = max(s.pos.shape[1] for s in sets)
    width_n = max(s.neg.shape[1] for s in sets)
    pad = lambda a, w: np.pad(a, ((0, 0), (0, w - a.shape[1])), constant_values=-1)  # noqa: E731
    q = np.concatenate([s.query for s in sets])
    members = np.concatenate(
        [np.concatenate([pad(s.pos, width_p), pad(s.neg, width_n)], axis=1) for s in sets]
    )
    valid = members >= 0
    sims = S[q[:, None], np.maximum(members, 0)]
    is_pos = np.zeros(members.shape[1], bool)
    is_pos[:width_p] = True
    ap = average_precision(sims, is_pos, valid) if q.size else np.zeros(0)
    out = np.split(ap, np.cumsum([s.n_draws for s in sets])[:-1])
    return out[0] if len(sets) == 1 else out


def null_distribution(
    meta: pl.DataFrame,
    S: np.ndarray,
    rng: np.random.Generator,
    n_pos: int = 3,
    n_neg: int = 31,
    n_draws: int = 1000,
    *,
    fallback: bool | None = None,
    cols: ActivityColumns = ActivityColumns(),
) -> tuple[np.ndarray, DrawSet]:
    """The null: ``n_draws`` APs of DMSO queries (see :func:`draw_sets` with ``compound=None``)."""
    ds = draw_sets(meta, None, rng, n_pos, n_neg, n_draws, fallback=fallback, cols=cols)
    return (ds.aps(S) if ds.n_draws else np.zeros(0)), ds


# ----------------------------------------------------------------------------------------------
# orchestration


def _as_profiles(profiles: pl.DataFrame) -> pl.DataFrame:
    if "embedding" in profiles.columns and not any(c.startswith("Metadata_") for c in profiles.columns):
        return to_cytomining(profiles)
    return profiles


def _condition_n_neg(sub: pl.DataFrame, ctrl: np.ndarray, n_neg: int, cols: ActivityColumns) -> int:
    """Negatives per draw in a condition: ``min(n_neg, fewest DMSO wells on a plate − 1)``.

    The ``− 1`` leaves room for a DMSO query's own well, so compound and null lists have the same
    number of negatives. Plates with < 2 DMSO wells do not lower the cap.
    """
    counts = sub.filter(pl.Series(ctrl)).group_by(cols.plate).len()["len"].to_numpy()
    counts = counts[counts >= 2]
    if counts.size == 0:
        return n_neg
    return int(max(1, min(n_neg, counts.min() - 1)))


def _dose_sort_key(v) -> tuple:
    try:
        from lcd_core.keys import parse_dose_key

        return (0, parse_dose_key(str(v)), str(v))
    except Exception:  # noqa: BLE001 - any non-key dose sorts as text after
        try:
            return (0, float(v), str(v))
        except (TypeError, ValueError):
            return (1, 0.0, str(v))


def _stats(aps: np.ndarray, ci: float) -> tuple[float, float, float, float]:
    if aps.size == 0:
        return (np.nan,) * 4
    lo, hi = percentile_ci(aps, ci)
    sd = float(aps.std(ddof=1)) if aps.size > 1 else np.nan
    return float(aps.mean()), sd, lo, hi


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
        Base seed (see the module doc for how generators are derived).
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
    has_moa = cols.moa in df.columns
    X_all = df.select(feats).to_numpy()
    meta_cols = [c for c in df.columns if c not in set(feats)]
    parts = df.select(meta_cols).with_row_index("__row").partition_by(
        cols.dose, cols.timepoint, as_dict=True, maintain_order=True)
    conds = sorted(parts, key=lambda r: (_dose_sort_key(r[0]), str(r[1])))
    act_rows, null_rows, draw_frames = [], [], []
    for dose, tp in conds:
        sub = parts[(dose, tp)]
        S = cosine_similarity_matrix(X_all[sub["__row"].to_numpy()])
        ctrl = (sub[cols.role] == cols.control_value).fill_null(False)
        compounds = sorted(
            c for c in sub.filter(~ctrl)[cols.compound].unique().to_list() if c is not None
        )
        k_neg = _condition_n_neg(sub, ctrl.to_numpy(), n_neg, cols)
        ix = _ConditionIndex(sub, cols)
        sets = [
            draw_sets(ix, c, _rng(seed, dose, tp, c), n_pos, k_neg, n_draws, cols=cols)
            for c in compounds
        ]
        # one null per (rule, list size) a compound used: compound and null lists match in size
        modes = sorted({(s.fallback, s.pos.shape[1]) for s in sets if s.n_draws})
        nulls = {
            (fb, kp): draw_sets(ix, None, _rng(seed, dose, tp, "__null__", fb, kp), kp, k_neg,
                                n_draws, fallback=fb, cols=cols)
            for fb, kp in modes
        }
        null_list = [nulls[fb] for fb in modes]
        all_sets = [s for s in sets + null_list if s.n_draws]
        aps_all = draw_aps(all_sets, S) if all_sets else []
        if len(all_sets) == 1:
            aps_all = [aps_all]
        it = iter(aps_all)
        ap_of = {id(s): next(it) for s in all_sets}
        get = lambda s: ap_of.get(id(s), np.zeros(0))  # noqa: E731
        for fb, kp in modes:
            ds = nulls[(fb, kp)]
            a = get(ds)
            m, sd, lo, hi = _stats(a, ci)
            null_rows.append(dict(
                dose=dose, timepoint=tp, fallback=fb, null_mean=m, null_sd=sd, null_ci_low=lo,
                null_ci_high=hi, n_draws=ds.n_draws, n_queries=ds.n_queries,
                n_pos=int(ds.n_pos_used.min()) if ds.n_draws else 0,
                n_neg=int(ds.n_neg_used.min()) if ds.n_draws else 0,
            ))
            if keep_draws and ds.n_draws:
                draw_frames.append(_draw_frame(dose, tp, None, fb, ds, a))
        moa = {}
        if has_moa:
            for c, mo in sub.filter(~ctrl).group_by(cols.compound).agg(
                pl.col(cols.moa).drop_nulls().first()
            ).iter_rows():
                moa[c] = mo
        for c, ds in zip(compounds, sets):
            a = get(ds)
            m, sd, lo, hi = _stats(a, ci)
            null_a = get(nulls[(ds.fallback, ds.pos.shape[1])]) if ds.n_draws else np.zeros(0)
            es = map_es(a, null_a) if ds.n_draws else np.nan
            act_rows.append(dict(
                compound=c, dose=dose, timepoint=tp, moa=moa.get(c), map_mean=m, map_sd=sd,
                map_ci_low=lo, map_ci_high=hi,
                null_mean=float(null_a.mean()) if null_a.size else np.nan,
                map_es=es, active=bool(np.isfinite(es) and es >= threshold),
                fallback=ds.fallback, n_draws=ds.n_draws, n_queries=ds.n_queries,
                n_pos=int(ds.n_pos_used.min()) if ds.n_draws else 0,
                n_neg=int(ds.n_neg_used.min()) if ds.n_draws else 0,
            ))
            if keep_draws and ds.n_draws:
                draw_frames.append(_draw_frame(dose, tp, c, ds.fallback, ds, a))
    dose_t = df.schema[cols.dose]
    tp_t = df.schema[cols.timepoint]
    act_schema = {
        "compound": pl.Utf8, "dose": dose_t, "timepoint": tp_t, "moa": pl.Utf8,
        "map_mean": pl.Float64, "map_sd": pl.Float64, "map_ci_low": pl.Float64,
        "map_ci_high": pl.Float64, "null_mean": pl.Float64, "map_es": pl.Float64,
        "active": pl.Boolean, "fallback": pl.Boolean, "n_draws": pl.Int64, "n_queries": pl.Int64,
        "n_pos": pl.Int64, "n_neg": pl.Int64,
    }
    null_schema = {
        "dose": dose_t, "timepoint": tp_t, "fallback": pl.Boolean, "null_mean": pl.Float64,
        "null_sd": pl.Float64, "null_ci_low": pl.Float64, "null_ci_high": pl.Float64,
        "n_draws": pl.Int64, "n_queries": pl.Int64, "n_pos": pl.Int64, "n_neg": pl.Int64,
    }
    activity = pl.DataFrame(act_rows, schema=act_schema, orient="row") if act_rows else \
        pl.DataFrame(schema=act_schema)
    null = pl.DataFrame(null_rows, schema=null_schema) if null_rows else \
        pl.DataFrame(schema=null_schema)
    draws = pl.concat(draw_frames) if (keep_draws and draw_frames) else None
    params = dict(n_draws=n_draws, n_pos=n_pos, n_neg=n_neg, seed=seed, threshold=threshold,
                  ci=ci, similarity="cosine")
    return ActivityResult(activity, null, draws, params)


def _draw_frame(dose, tp, compound, fb, ds: DrawSet, aps: np.ndarray) -> pl.DataFrame:
    n = ds.n_draws
    return pl.DataFrame({
        "dose": [dose] * n, "timepoint": [tp] * n,
        "compound": pl.Series([compound] * n, dtype=pl.Utf8),
        "fallback": [fb] * n, "draw": np.arange(n, dtype=np.int64),
        "query_row": ds.query, "ap": aps,
    })


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
