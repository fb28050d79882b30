"""Draws of query / positives / negatives for mAP, and their APs (SPEC §4.5).

:mod:`lcd_core.profiling.activity` summarises these draws into mAP, the null and mAP-ES.

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

"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from lcd_core.profiling.average_precision import _ap_leading

__all__ = ["ActivityColumns", "DrawSizes", "DrawSet", "draw_sets", "draw_aps"]


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


@dataclass(frozen=True)
class DrawSizes:
    """Requested sizes of a draw set: positives and negatives per draw, number of draws."""

    n_pos: int = 3
    n_neg: int = 31
    n_draws: int = 1000


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


def _plan(ix: _ConditionIndex, compound: str | None, n_pos: int, n_neg: int,
          fallback: bool | None) -> _Plan:
    """The candidates, rule and list sizes of one draw set (``compound`` ``None``: the null)."""
    ctrl, plate, rep, lay = ix.ctrl, ix.plate, ix.rep, ix.lay
    qmask = ctrl if compound is None else (ix.compound == compound) & ~ctrl
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


def _drop_largest(keys: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """``cand`` without, in each row, the column of the largest key: the k = W − 1 smallest keys,
    i.e. the same subset as :func:`_pick` (in column order), without a partition."""
    W = keys.shape[1]
    left = np.arange(W - 1)[None, :] < keys.argmax(axis=1)[:, None]
    return np.where(left, cand[:, :-1], cand[:, 1:])


@dataclass
class _Keys:
    """One usable plan's random draws before the picks: its rows in the stacked arrays, the
    query rows, the positive keys (ineligible ones ``inf``) and the negative keys."""

    plan: _Plan
    rows: slice
    query: np.ndarray
    pos_keys: np.ndarray | None
    neg_keys: np.ndarray | None


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


def _draw_keys(ix: _ConditionIndex, plans: list[_Plan], rngs: list[np.random.Generator],
               n_draws: int) -> list[_Keys]:
    """Each usable plan's generator draws, in order: query indices, positive keys, negative keys
    (the same calls as a lone :func:`draw_sets`)."""
    width = ix.dmso_by_plate.shape[1]
    out: list[_Keys] = []
    for p, rng in zip(plans, rngs):
        if not p.Qv.size:
            continue
        qi = p.Qv[rng.integers(len(p.Qv), size=n_draws)]
        pkeys = _masked_keys(rng.random((n_draws, p.Q.size)), p.E[qi]) if p.n_pos else None
        nkeys = rng.random((n_draws, width)) if p.n_neg else None
        start = len(out) * n_draws
        out.append(_Keys(p, slice(start, start + n_draws), p.Q[qi], pkeys, nkeys))
    return out


def _pick_positives(drawn: list[_Keys], n_rows: int) -> np.ndarray:
    """(n_rows, widest n_pos) positives of the stacked draws (-1 pads narrower sets).

    Every drawn query is usable and the sizes are capped by the fewest candidates of a usable
    query, so each row has ≥ k eligible candidates: the picks are full. Sets sharing a candidate
    count and a size are picked in one call.
    """
    pos = np.full((n_rows, max((d.plan.n_pos for d in drawn), default=0)), -1, np.int64)
    groups: dict[tuple[int, int], list[_Keys]] = {}
    for d in drawn:
        if d.pos_keys is not None:
            groups.setdefault((d.pos_keys.shape[1], d.plan.n_pos), []).append(d)
    for (_, k), items in groups.items():
        cols = _pick(_stack([d.pos_keys for d in items]), k, full=True)
        for j, d in enumerate(items):
            pos[d.rows, :k] = d.plan.Q[cols[j * len(d.query):(j + 1) * len(d.query)]]
    return pos


def _pick_negatives(ix: _ConditionIndex, drawn: list[_Keys], query: np.ndarray) -> np.ndarray:
    """(n_rows, widest n_neg) DMSO negatives of the stacked draws, from the query's plate and
    never the query itself (-1 pads narrower sets); sets sharing a size are picked in one call."""
    Dm = ix.dmso_by_plate
    width = max((d.plan.n_neg for d in drawn), default=0)
    groups: dict[int, list[_Keys]] = {}
    for d in drawn:
        if d.neg_keys is not None:
            groups.setdefault(d.plan.n_neg, []).append(d)
    neg = None
    for k, items in groups.items():
        every = len(items) == len(drawn)
        rows = slice(None) if every else np.concatenate([np.arange(query.size)[d.rows]
                                                          for d in items])
        q = query[rows]
        cand = Dm[ix.plate[q]]
        keys = _masked_keys(_stack([d.neg_keys for d in items]), (cand >= 0) & (cand != q[:, None]))
        if k == Dm.shape[1] - 1:
            picked = _drop_largest(keys, cand)
        else:
            picked = np.take_along_axis(cand, _pick(keys, k, full=True), axis=1)
        if every and k == width:
            neg = picked
        else:
            if neg is None:
                neg = np.full((query.size, width), -1, np.int64)
            neg[rows, :k] = picked
    return np.full((query.size, width), -1, np.int64) if neg is None else neg


def _draw_planned(ix: _ConditionIndex, plans: list[_Plan], rngs: list[np.random.Generator],
                  n_draws: int) -> tuple[list[DrawSet], np.ndarray, np.ndarray, np.ndarray]:
    """The draws of several planned sets of one condition, sampled in a few stacked calls.

    Each set consumes its own generator exactly as a lone :func:`draw_sets` call does (query
    indices, then positive keys, then negative keys); the picks are row-wise, so every set is the
    one drawn alone, but the without-replacement picks of all sets sharing a shape are done at once
    (a handful of array operations per condition, not per set or per draw).

    Returns ``(sets, query, pos, neg)``: the DrawSets (empty ones for unusable plans) and the
    stacked (−1 padded) arrays of the non-empty sets in order, of which the sets' arrays are
    views.
    """
    drawn = _draw_keys(ix, plans, rngs, n_draws)
    query = (np.concatenate([d.query for d in drawn]) if drawn else np.zeros(0, np.int64)).astype(
        np.int64, copy=False)
    pos = _pick_positives(drawn, query.size)
    neg = _pick_negatives(ix, drawn, query)
    views = iter(drawn)  # the usable plans' draws, in plan order
    sets = [_empty_set(p) if not p.Qv.size else _set_view(next(views), query, pos, neg)
            for p in plans]
    return sets, query, pos, neg


def _empty_set(p: _Plan) -> DrawSet:
    return DrawSet(np.zeros(0, np.int64), np.zeros((0, p.n_pos), np.int64),
                   np.zeros((0, p.n_neg), np.int64), p.fallback, 0)


def _set_view(d: _Keys, query: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> DrawSet:
    """The DrawSet of ``d``: views of its rows of the stacked arrays."""
    p = d.plan
    return DrawSet(query[d.rows], pos[d.rows, :p.n_pos], neg[d.rows, :p.n_neg], p.fallback,
                   int(p.Qv.size))


def draw_sets(
    meta: pl.DataFrame,
    compound: str | None,
    rng: np.random.Generator,
    sizes: DrawSizes = DrawSizes(),
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
    sizes
        Positives and negatives per draw, capped at the fewest available to a usable query (all
        draws of the set have the same sizes), and the number of draws.
    fallback
        ``None``: strict rule (other replica and other layout) if any query has a strict
        candidate, else the fallback (other plate). ``True`` / ``False`` force a rule.

    Returns
    -------
    DrawSet
        ``sizes.n_draws`` draws, or an empty set (0 draws) if no query is usable.

    Notes
    -----
    Sampling: the query is ``rng.integers`` over the usable queries; each draw's positives (and
    negatives) are the ≤ k eligible candidates with the smallest ``rng.random`` keys — a uniform
    k-subset without replacement. :func:`~lcd_core.profiling.activity.compute_activity` draws all
    sets of a condition together (:func:`_draw_planned`) with results identical to calling this
    per set.
    """
    ix = meta if isinstance(meta, _ConditionIndex) else _ConditionIndex(meta, cols)
    plan = _plan(ix, compound, sizes.n_pos, sizes.n_neg, fallback)
    return _draw_planned(ix, [plan], [rng], sizes.n_draws)[0][0]


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

