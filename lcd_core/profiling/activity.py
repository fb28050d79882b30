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
:func:`lcd_core.profiling.normalize.normalize` / :func:`~lcd_core.profiling.normalize.to_wells`), or the long form
with an ``embedding`` Array column (converted with :func:`lcd_core.profiling.profiles.to_cytomining`).
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
  into it; all APs of a condition are one vectorised kernel call (copairs' AP definition, ties
  included; same values as :func:`lcd_core.profiling.average_precision.average_precision`).
* Sampling (vectorised): each set's generator draws, in this order, the query indices
  (``integers``), one random key per candidate positive and per DMSO slot of the query's plate
  (``random``); the picks are the eligible candidates with the smallest keys (a uniform subset
  without replacement). The picks of all sets of a condition are done together in a few array
  operations (no loop over draws), with the same result as drawing each set alone.

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

from lcd_core.profiling.average_precision import _ap_leading, cosine_similarity_matrix, map_es, percentile_ci
from lcd_core.profiling.profiles import feature_columns, to_cytomining

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
        self.dmso_count = (self.dmso_by_plate >= 0).sum(axis=1)


def _masked_keys(keys: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    keys[~eligible] = np.inf
    return keys


def _pick(keys: np.ndarray, k: int, full: bool = False) -> np.ndarray:
    """Columns of the ≤ k smallest finite random keys of each row (-1 pads): a uniform
    k-subset without replacement of the eligible (finite-key) columns.

    Row-wise: the result of a row depends only on that row's keys, so rows of many draw sets can
    be stacked and picked in one call. ``full``: the caller guarantees every row has ≥ k finite
    keys (no -1 check needed).
    """
    m, n = keys.shape
    kk = min(k, n)
    # the first kk of a random-key order = a uniform kk-subset (order inside it irrelevant)
    order = np.argpartition(keys, kk - 1, axis=1)[:, :kk] if kk < n else np.argsort(keys, axis=1)
    if full and kk == k:
        return order.astype(np.int64, copy=False)
    ok = np.isfinite(np.take_along_axis(keys, order, axis=1))
    out = np.where(ok, order, -1).astype(np.int64, copy=False)
    if kk < k:
        out = np.concatenate([out, np.full((m, k - kk), -1, np.int64)], axis=1)
    return out


@dataclass
class _Plan:
    """What a draw set needs before any randomness: queries, rule, candidate matrix, sizes."""

    Q: np.ndarray  # candidate query / positive rows (the compound's, or all DMSO)
    E: np.ndarray  # (|Q|, |Q|) bool: E[i, j] = Q[j] is an eligible positive of query Q[i]
    Qv: np.ndarray  # positions in Q of the usable queries
    n_pos: int
    n_neg: int
    fallback: bool


def _plan(ix: "_ConditionIndex", compound: str | None, n_pos: int, n_neg: int,
          fallback: bool | None) -> _Plan:
    ctrl, plate, rep, lay = ix.ctrl, ix.plate, ix.rep, ix.lay
    if compound is None:
        qmask = ctrl
    else:
        qmask = (ix.compound == compound) & ~ctrl
    Q = np.flatnonzero(qmask)
    rQ, lQ = rep[Q], lay[Q]
    strict = (rQ[:, None] != rQ[None, :]) & (lQ[:, None] != lQ[None, :])
    use_fb = (not strict.any()) if fallback is None else bool(fallback)
    E = (plate[Q][:, None] != plate[Q][None, :]) if use_fb else strict
    n_neg_avail = ix.dmso_count[plate[Q]] - (ctrl[Q] if Q.size else 0)
    usable = E.any(axis=1) & (n_neg_avail > 0)
    Qv = np.flatnonzero(usable)
    if Qv.size:
        # one list size for every draw: the request, capped by the fewest candidates of a usable
        # query
        n_pos = int(min(n_pos, E[Qv].sum(axis=1).min()))
        n_neg = int(min(n_neg, n_neg_avail[Qv].min()))
    return _Plan(Q, E, Qv, n_pos, n_neg, use_fb)


def _drop_largest(keys: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``cand`` without, in each row, the column of the largest key: the k = W − 1 smallest keys,
    i.e. the same subset as :func:`_pick` (in column order), without a partition."""
    W = keys.shape[1]
    left = np.arange(W - 1)[None, :] < keys.argmax(axis=1)[:, None]
    return np.where(left, cand[:, :-1], cand[:, 1:])


def _draw_planned(ix: "_ConditionIndex", plans: list[_Plan], rngs: list[np.random.Generator],
                  n_draws: int):
    """The draws of several planned sets of one condition, sampled in a few stacked calls.

    Each set consumes its own generator exactly as a lone :func:`draw_sets` call does (query
    indices, then positive keys, then negative keys); the picks are row-wise, so every set is the
    one drawn alone, but the without-replacement picks of all sets sharing a shape are done at once
    (a handful of array operations per condition, not per set or per draw).

    Returns ``(sets, query, pos, neg)``: the DrawSets (empty ones for unusable plans) and the
    stacked (−1 padded) arrays of the non-empty sets in order, which the sets' arrays are views of.
    """
    plate, Dm = ix.plate, ix.dmso_by_plate
    W = Dm.shape[1]
    out: list[DrawSet | None] = [None] * len(plans)
    drawn = []  # (plan index, row offset, query, masked positive keys | None, negative keys | None)
    M = 0
    for i, (p, rng) in enumerate(zip(plans, rngs)):
        if not p.Qv.size:
            out[i] = DrawSet(np.zeros(0, np.int64), np.zeros((0, p.n_pos), np.int64),
                             np.zeros((0, p.n_neg), np.int64), p.fallback, 0)
            continue
        qi = p.Qv[rng.integers(len(p.Qv), size=n_draws)]
        pkeys = _masked_keys(rng.random((n_draws, p.Q.size)), p.E[qi]) if p.n_pos else None
        nkeys = rng.random((n_draws, W)) if p.n_neg else None
        drawn.append((i, M, p.Q[qi], pkeys, nkeys))
        M += n_draws
    width_p = max((plans[d[0]].n_pos for d in drawn), default=0)
    width_n = max((plans[d[0]].n_neg for d in drawn), default=0)
    query = (np.concatenate([d[2] for d in drawn]) if drawn else np.zeros(0, np.int64)).astype(
        np.int64, copy=False)
    # Every drawn query is usable and the sizes are capped by the fewest candidates of a usable
    # query, so each row has ≥ k eligible candidates: the picks are full (no -1 padding).
    groups: dict[tuple[int, int], list] = {}
    for d in drawn:
        if d[3] is not None:
            groups.setdefault((d[3].shape[1], plans[d[0]].n_pos), []).append(d)
    pos = np.full((M, width_p), -1, np.int64)
    for (_, k), items in groups.items():
        cols = _pick(np.concatenate([d[3] for d in items]) if len(items) > 1 else items[0][3], k,
                     full=True)
        for j, d in enumerate(items):
            pos[d[1]:d[1] + n_draws, :k] = plans[d[0]].Q[cols[j * n_draws:(j + 1) * n_draws]]
    ngroups: dict[int, list] = {}
    for d in drawn:
        if d[4] is not None:
            ngroups.setdefault(plans[d[0]].n_neg, []).append(d)
    neg = None
    for k, items in ngroups.items():
        rows = np.concatenate([np.arange(d[1], d[1] + n_draws) for d in items]) \
            if len(items) < len(drawn) else None
        q = query if rows is None else query[rows]
        cand = Dm[plate[q]]
        keys = _masked_keys(np.concatenate([d[4] for d in items]) if len(items) > 1
                            else items[0][4], (cand >= 0) & (cand != q[:, None]))
        if k == W - 1:
            picked = _drop_largest(keys, cand)
        else:
            picked = np.take_along_axis(cand, _pick(keys, k, full=True), axis=1)
        if rows is None and k == width_n:
            neg = picked
        else:
            if neg is None:
                neg = np.full((M, width_n), -1, np.int64)
            neg[rows if rows is not None else slice(None), :k] = picked
    if neg is None:
        neg = np.full((M, width_n), -1, np.int64)
    for i, off, *_ in drawn:
        p = plans[i]
        out[i] = DrawSet(query[off:off + n_draws], pos[off:off + n_draws, :p.n_pos],
                         neg[off:off + n_draws, :p.n_neg], p.fallback, int(p.Qv.size))
    return out, query, pos, neg


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

    Notes
    -----
    Sampling: the query is ``rng.integers`` over the usable queries; each draw's positives (and
    negatives) are the ≤ k eligible candidates with the smallest ``rng.random`` keys — a uniform
    k-subset without replacement. :func:`compute_activity` draws all sets of a condition together
    (:func:`_draw_planned`) with results identical to calling this per set.
    """
    ix = meta if isinstance(meta, _ConditionIndex) else _ConditionIndex(meta, cols)
    return _draw_planned(ix, [_plan(ix, compound, n_pos, n_neg, fallback)], [rng], n_draws)[0][0]


def _key_matrix(S: np.ndarray) -> np.ndarray:
    """``1 − S`` (the rank key) with an extra last column of ``inf``: index ``-1`` (padding)
    gathers ``inf``, which sorts last — the kernel's padding convention."""
    n = S.shape[0]
    K = np.empty((n, S.shape[1] + 1), np.float64)
    np.subtract(1.0, S, out=K[:, :-1])
    K[:, -1] = np.inf
    return K


def _draw_aps_keys(sets: list[DrawSet], K: np.ndarray) -> list[np.ndarray]:
    """APs of ``sets`` (one kernel call) from the key matrix of :func:`_key_matrix`."""
    if not sets:
        return []
    width_p = max(s.pos.shape[1] for s in sets)
    width_n = max(s.neg.shape[1] for s in sets)
    pad = lambda a, w: np.pad(a, ((0, 0), (0, w - a.shape[1])), constant_values=-1)  # noqa: E731
    ap = _stacked_aps(K, np.concatenate([s.query for s in sets]),
                      np.concatenate([pad(s.pos, width_p) for s in sets]),
                      np.concatenate([pad(s.neg, width_n) for s in sets]))
    return np.split(ap, np.cumsum([s.n_draws for s in sets])[:-1])


def _stacked_aps(K: np.ndarray, query: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AP of every row of stacked draws (−1 padded member indices), key matrix ``K``."""
    if not query.size:
        return np.zeros(0)
    return _ap_leading(K[query[:, None], pos], K[query[None, :], neg.T])


def draw_aps(sets: list[DrawSet], S: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """APs of several draw sets of one condition in one vectorised kernel call.

    Returns one array per set (a single array if one set is given).
    """
    out = _draw_aps_keys(list(sets), _key_matrix(np.asarray(S, np.float64)))
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


def _first_moa(sub: pl.DataFrame, ctrl: pl.Series, cols: ActivityColumns) -> dict:
    """Compound → its first non-null moa in the condition (None if it has none)."""
    out: dict = {}
    for c, mo, is_ctrl in zip(sub[cols.compound].to_list(), sub[cols.moa].to_list(),
                              ctrl.to_list()):
        if mo is not None and not is_ctrl and c not in out:
            out[c] = mo
    return out


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
        plans = [_plan(ix, c, n_pos, k_neg, None) for c in compounds]
        # one null per (rule, list size) a compound used: compound and null lists match in size
        modes = sorted({(p.fallback, p.n_pos) for p in plans if p.Qv.size})
        plans += [_plan(ix, None, kp, k_neg, fb) for fb, kp in modes]
        rngs = [_rng(seed, dose, tp, c) for c in compounds] + [
            _rng(seed, dose, tp, "__null__", fb, kp) for fb, kp in modes]
        drawn, q_all, pos_all, neg_all = _draw_planned(ix, plans, rngs, n_draws)
        sets, null_list = drawn[: len(compounds)], drawn[len(compounds):]
        nulls = dict(zip(modes, null_list))
        all_sets = [s for s in drawn if s.n_draws]
        aps_all = np.split(_stacked_aps(_key_matrix(S), q_all, pos_all, neg_all),
                           np.cumsum([s.n_draws for s in all_sets])[:-1]) if all_sets else []
        st = _set_stats(aps_all, ci)
        pos_of = {id(s): i for i, s in enumerate(all_sets)}
        null_rows_at = {}
        for fb, kp in modes:
            ds = nulls[(fb, kp)]
            i = pos_of.get(id(ds))
            m, sd, lo, hi = (np.nan,) * 4 if i is None else (
                float(st["mean"][i]), float(st["sd"][i]), float(st["lo"][i]), float(st["hi"][i]))
            null_rows_at[(fb, kp)] = i
            null_rows.append(dict(
                dose=dose, timepoint=tp, fallback=fb, null_mean=m, null_sd=sd, null_ci_low=lo,
                null_ci_high=hi, n_draws=ds.n_draws, n_queries=ds.n_queries,
                n_pos=ds.pos.shape[1] if ds.n_draws else 0,
                n_neg=ds.neg.shape[1] if ds.n_draws else 0,
            ))
            if keep_draws and ds.n_draws:
                draw_frames.append(_draw_frame(dose, tp, None, fb, ds, aps_all[i]))
        moa = _first_moa(sub, ctrl, cols) if has_moa else {}
        for c, ds in zip(compounds, sets):
            i = pos_of.get(id(ds))
            if i is None:
                m = sd = lo = hi = null_mean = es = np.nan
            else:
                j = null_rows_at[(ds.fallback, ds.pos.shape[1])]
                m, sd, lo, hi = (float(st[k][i]) for k in ("mean", "sd", "lo", "hi"))
                null_mean = float(st["mean"][j]) if j is not None else np.nan
                es = _es(st, i, j) if j is not None else np.nan
            act_rows.append(dict(
                compound=c, dose=dose, timepoint=tp, moa=moa.get(c), map_mean=m, map_sd=sd,
                map_ci_low=lo, map_ci_high=hi, null_mean=null_mean,
                map_es=es, active=bool(np.isfinite(es) and es >= threshold),
                fallback=ds.fallback, n_draws=ds.n_draws, n_queries=ds.n_queries,
                n_pos=ds.pos.shape[1] if ds.n_draws else 0,
                n_neg=ds.neg.shape[1] if ds.n_draws else 0,
            ))
            if keep_draws and ds.n_draws:
                draw_frames.append(_draw_frame(dose, tp, c, ds.fallback, ds, aps_all[i]))
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
