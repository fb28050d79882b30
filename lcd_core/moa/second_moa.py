"""Polypharmacology: the top-2 MoAs and the explain-away reading of a second MoA (SPEC §4.8).

The paper's reading (:func:`polypharmacology`): the MoAs are ranked by probability with DMSO left
out; ``q_top1`` / ``q_top2`` are their shares of the MoA mass (``p / (1 − p_DMSO)``), so how far
the compound is from DMSO does not decide the pair. ``pair`` is the top-2 as ``"A|B"`` (sorted).
Over the *high* conditions where the compound is active (skipped conditions left out; default
the two highest doses of the screen, all timepoints):

* ``stable_pair``: the most frequent pair, when it is the pair of at least ``min_fraction``
  (0.75) of them and there are at least ``min_conditions`` (2) of them (the paper's TAK-901 has
  Aurora kinase + JAK in every high condition, Fig. 3C; 0.75 tolerates one noisy probe among
  four conditions);
* ``pair_share``: the smaller of the two MoAs' mean probabilities over those conditions. Rank
  alone is not enough (every compound has a second MoA, and a weak compound's DMSO-like profile
  often ranks the same runner-up everywhere), while one condition's softmax is too sharp at
  strong doses (a genuine second MoA can hold < 5 % there and take the lead in the next
  condition), so the flag asks that the weaker MoA of the pair hold on average at least
  ``min_prob`` (0.1, its chance share among ten MoAs);
* ``stable_top2`` = both (the paper's reading, Fig. 3C).

The explain-away reading: the softmax of a mixture ranks second the class that looks most like
the *whole* profile, not the second mechanism: Aurora kinase + JAK (enlarged, multinucleated
*and* elongated cells) ranks HDAC or the retinoid agonist (enlarged and elongated) above JAK
(elongated, smaller), even on ground-truth cell measurements. So each per-condition row of the
high doses also carries a probe's reading of what the top MoA leaves unexplained
(:func:`explain_away`; columns ``residual_moa``, ``p_residual_moa``, ``p_residual_dmso``,
``residual_scale`` that :func:`explain_away_readings` adds): ``residual_pair`` is the top MoA
with the residual's MoA. Over the same high active conditions, a condition *calls* a second MoA
when its residual's MoA holds at least ``min_residual_prob`` (0.5: the residual looks more like
that MoA than like DMSO and every other class together; a single-MoA compound leaves a DMSO-like
residual, and so does a second mechanism that has not set in yet, e.g. a slow one at the early
timepoint). ``stable_residual`` asks that at least ``min_conditions`` calls name the same pair
(``stable_residual_pair``) and that it be at least ``min_fraction`` of the calls;
``residual_share`` is the mean residual probability of that pair's MoA over the high active
conditions where the pair came out.

The residual is read by one probe per timepoint *pooled over the high doses* (the same
estimator, weighting and training rule as a condition's probe: the active labelled training
compounds of each high dose + their DMSO wells), not by the condition's own probe: a condition
often has a single active compound of a MoA (on the demo at 20 h, one JAK compound at 2.5 µM,
two at 10 µM), too few to tell that MoA's phenotype from its neighbours' in a residual. A MoA's
phenotype differs across doses mainly in strength, which the pooled probe sees more of. No
compound is read by a probe that trained on it: the pooled compounds are split into ``n_splits``
folds grouped by compound (:func:`~lcd_core.moa.probes.compound_folds`) and each is read by the
probe of the other folds; compounds outside the pool (holdout, unlabelled, inactive at every
high dose) by the probe of all. A timepoint whose pool cannot carry a probe gets no readings.

Measured against the planted two-MoA compounds of three synthetic screens (the demo, seed 0,
one; seeds 1 and 2 with all three, screens not looked at while choosing the method), recovered
/ false flags of ``stable_residual``: condition probes with the share in raw units → condition
probes with the scaled share (:func:`explain_away`) → pooled probes with the scaled share:

* handcrafted features: 0/7; 0 → 0/7; 0 → 2/7; 1 (HSP-1, read as tubulin + ATPase);
* cell segmentation alone: 1/7; 0 → 0/7; 0 → 1/7; 0;
* ground-truth morphology: 2/7; 1 → 3/7; 0 → 3/7; 0;
* untrained ViT: 0/7; 0 throughout.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import polars as pl
from sklearn.pipeline import Pipeline

from lcd_core._parallel import map_in_processes
from lcd_core.keys import parse_dose_key
from lcd_core.moa.classes import DMSO_CLASS, MoaClasses
from lcd_core.moa.probes import (
    SkippedCondition, check_trainable, class_centroids, compound_folds, fit_probe_model, probe_proba,
)
from lcd_core.moa.wells import (
    COMPOUND, CONTROL, DOSE, MOA, ROLE, TIMEPOINT, active_at, float_features, training_wells, well_labels,
)

_RESIDUAL_SCHEMA = {"residual_moa": pl.Utf8, "p_residual_moa": pl.Float64, "p_residual_dmso": pl.Float64,
                    "residual_scale": pl.Float64}
_SUMMARY_SCHEMA = {"compound": pl.Utf8, "n_high_active": pl.Int64, "stable_pair": pl.Utf8,
                   "pair_share": pl.Float64, "stable_top2": pl.Boolean, "stable_residual_pair": pl.Utf8,
                   "residual_share": pl.Float64, "stable_residual": pl.Boolean}


def high_dose_keys(per_condition: pl.DataFrame, n_high: int = 2) -> list[str]:
    """The ``n_high`` highest dose keys of a per-condition table (ordered by value)."""
    doses = sorted(per_condition["dose"].unique().to_list(), key=parse_dose_key)
    return doses[-n_high:]


# ---------------------------------------------------------------- explain-away


def _input_scale(model: object, n_features: int) -> np.ndarray:
    """Per-feature scale of the ``StandardScaler`` heading a probe pipeline (ones without one)."""
    head = model.steps[0][1] if isinstance(model, Pipeline) else None
    scale = getattr(head, "scale_", None)
    return np.ones(n_features) if scale is None else np.asarray(scale, dtype=float)


def explain_away(
    model: Pipeline, centroids: Mapping[str, np.ndarray], x: np.ndarray, top: str,
    scale: np.ndarray | None = None, *, classes: MoaClasses,
) -> tuple[np.ndarray, float]:
    """The probe's distribution on what the top MoA leaves unexplained in a profile.

    With DMSO's centroid ``d`` as the origin, the top MoA's direction is ``μ = centroid(top) − d``
    and its least-squares share of the profile is ``a = max(0, ⟨s(x − d), s(μ)⟩ / ⟨s(μ), s(μ)⟩)``,
    ``s`` dividing each feature by ``scale``. The residual ``d + (x − d) − a·μ`` is what a second
    mechanism would have to explain; the probe reads it like any profile. A single-MoA compound
    leaves a DMSO-like residual, a two-MoA compound leaves the other MoA's phenotype.

    ``scale`` defaults to the probe's own feature scaling (the ``StandardScaler`` at the head of
    its pipeline; 1 for a model without one), so the share is measured in the space the probe
    reads: a feature whose DMSO spread is tiny does not decide it alone (after MAD normalization
    the cell segmentation's multinucleated fraction made the Aurora kinase direction 550–580
    units long at the demo's 20 h high doses, against 5–75 for the other MoAs).

    Returns
    -------
    tuple
        (probabilities over ``classes.probe`` of the residual, ``a``).
    """
    d = centroids[DMSO_CLASS]
    mu, v = centroids[top] - d, x - d
    s = _input_scale(model, d.shape[0]) if scale is None else np.asarray(scale, dtype=float)
    mus = mu / s
    norm = float(mus @ mus)
    a = max(0.0, float((v / s) @ mus) / norm) if norm > 0 else 0.0
    return probe_proba(model, (d + v - a * mu)[None, :], classes)[0], a


def _pooled_training(at: pl.DataFrame, high: Sequence[str], activity: Collection[str] | pl.DataFrame,
                     hold: list[str], tp: str) -> pl.DataFrame:
    """The reading probe's training wells at one timepoint: each high dose's, holdout left out."""
    held = pl.col(COMPOUND).is_in(hold) & (pl.col(ROLE) != CONTROL)
    return pl.concat([training_wells(at.filter((pl.col(DOSE) == d) & ~held), active_at(activity, d, tp))
                      for d in high])


def _residual_reading(model: Pipeline, centroids: Mapping[str, np.ndarray], row: dict, x: np.ndarray,
                      classes: MoaClasses) -> dict | None:
    """The residual columns of one per-condition row (its top MoA explained away from ``x``)."""
    p = np.array([row[c] for c in classes.moa_columns])
    top = classes.moas[int(np.argmax(p))]
    if top not in centroids or DMSO_CLASS not in centroids or not len(x):
        return None
    pr, a = explain_away(model, centroids, x[0], top, classes=classes)
    q = pr[: len(classes.moas)].copy()
    q[classes.moas.index(top)] = -1.0
    j = int(np.argmax(q))
    return {"residual_moa": classes.moas[j], "p_residual_moa": float(pr[j]),
            "p_residual_dmso": float(pr[-1]), "residual_scale": a}


def _timepoint_probes(rows: pl.DataFrame, train: pl.DataFrame, feats: list[str], *, n_splits: int,
                      seed: int) -> tuple[dict[str, int], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The compound → fold map of one timepoint's pooled training wells and, per fold a row needs,
    the ``(X, y)`` its probe is fitted on (the wells of the other folds' compounds)."""
    treated = pl.col(ROLE) != CONTROL
    fold_of = compound_folds(train.filter(treated).select(COMPOUND, MOA).unique(), n_splits=n_splits, seed=seed)
    X, y, cpd = train.select(feats).to_numpy(), well_labels(train), train[COMPOUND].to_numpy()
    fits = {}
    for fold in dict.fromkeys(fold_of.get(c, -1) for c in rows["compound"].to_list()):
        keep = ~np.isin(cpd, [c for c, f in fold_of.items() if f == fold])
        fits[fold] = (X[keep], y[keep])
    return fold_of, fits


def _fit_reading_probe(job: tuple[np.ndarray, np.ndarray, float, int]) -> tuple[Pipeline, dict[str, np.ndarray]]:
    X, y, C, seed = job
    return fit_probe_model(X, y, C=C, seed=seed), class_centroids(X, y)


def _timepoint_readings(rows: pl.DataFrame, at: pl.DataFrame, feats: list[str], fold_of: dict[str, int],
                        probes: dict[int, tuple[Pipeline, dict[str, np.ndarray]]], classes: MoaClasses) -> list[dict]:
    """Readings of one timepoint's rows, each by the pooled probe of the folds without its compound."""
    means = at.filter(pl.col(ROLE) != CONTROL).group_by(COMPOUND, DOSE).agg(pl.col(feats).mean())
    out = []
    for row in rows.iter_rows(named=True):
        x = means.filter((pl.col(COMPOUND) == row["compound"]) & (pl.col(DOSE) == row["dose"])).select(feats)
        reading = _residual_reading(*probes[fold_of.get(row["compound"], -1)], row, x.to_numpy(), classes)
        if reading is not None:
            out.append({"compound": row["compound"], "dose": row["dose"], "timepoint": row["timepoint"], **reading})
    return out


def explain_away_readings(
    per_condition: pl.DataFrame,
    profiles: pl.DataFrame,
    activity: Collection[str] | pl.DataFrame,
    *,
    classes: MoaClasses,
    high_doses: Sequence[str] | None = None,
    holdout_compounds: Collection[str] = (),
    n_splits: int = 5,
    seed: int = 0,
    C: float = 1.0,
    min_compounds: int = 2,
    min_classes: int = 2,
    workers: int = 1,
) -> pl.DataFrame:
    """Add the explain-away columns to the per-condition rows of the high doses.

    Each high-dose row (``status = "ok"``) gets :func:`explain_away` of the compound's mean
    profile there, its top MoA the row's most probable MoA: ``residual_moa`` (the residual's most
    probable MoA other than the top one), ``p_residual_moa``, ``p_residual_dmso``,
    ``residual_scale`` (``a``). Other rows get nulls; existing residual columns are replaced.
    The reading probes are pooled per timepoint over the high doses (module docstring).

    Parameters
    ----------
    per_condition
        Rows of :func:`~lcd_core.moa.probes.cv_condition` / :func:`~lcd_core.moa.probes.holdout_predict`.
    profiles
        The well profiles of the conditions (training and holdout, as given to
        :func:`~lcd_core.moa.classify.classify_moa`).
    activity
        Active compounds (names, or an activity table compound, dose, timepoint, active).
    classes
        The screen's MoA classes.
    high_doses
        Dose keys read; default the two highest (:func:`high_dose_keys`).
    workers
        Processes fitting the reading probes (one per timepoint × fold) side by side; the
        readings do not depend on it.
    """
    high = list(high_doses) if high_doses is not None else high_dose_keys(per_condition)
    base = per_condition.drop(list(_RESIDUAL_SCHEMA), strict=False)
    rows = base.filter((pl.col("status") == "ok") & pl.col("dose").is_in(high))
    feats = list(float_features(profiles))
    plans = []  # (timepoint rows, their profiles, fold map, fold → training wells)
    for tp in sorted(rows["timepoint"].unique().to_list()):
        at = profiles.filter((pl.col(TIMEPOINT) == tp) & pl.col(DOSE).is_in(high))
        train = _pooled_training(at, high, activity, list(holdout_compounds), tp)
        try:
            check_trainable(train, min_compounds, min_classes)
        except SkippedCondition:
            continue
        tp_rows = rows.filter(pl.col("timepoint") == tp)
        plans.append((tp_rows, at, *_timepoint_probes(tp_rows, train, feats, n_splits=n_splits, seed=seed)))
    jobs = [(X, y, C, seed) for *_, fits in plans for X, y in fits.values()]
    fitted = iter(map_in_processes(_fit_reading_probe, jobs, workers, one_blas_thread=True))  # the ~30 fits are independent
    readings = []
    for tp_rows, at, fold_of, fits in plans:
        probes = {fold: next(fitted) for fold in fits}
        readings += _timepoint_readings(tp_rows, at, feats, fold_of, probes, classes)
    schema = {"compound": pl.Utf8, "dose": pl.Utf8, "timepoint": pl.Utf8, **_RESIDUAL_SCHEMA}
    return base.join(pl.DataFrame(readings, schema=schema), on=["compound", "dose", "timepoint"], how="left")


# ---------------------------------------------------------------- the two readings


def _top2_table(pc: pl.DataFrame, high_doses: Sequence[str], classes: MoaClasses) -> tuple[pl.DataFrame, np.ndarray]:
    """Per-condition top-2 MoAs (DMSO left out) and the MoA probabilities ``P`` of the rows."""
    for col, dtype in _RESIDUAL_SCHEMA.items():
        if col not in pc.columns:
            pc = pc.with_columns(pl.lit(None, dtype=dtype).alias(col))
    P = pc.select(classes.moa_columns).to_numpy()
    Q = P / np.clip(P.sum(axis=1, keepdims=True), 1e-12, None)
    order = np.argsort(-P, axis=1, kind="stable")[:, :2]
    r = np.arange(len(P))
    t1, t2 = [classes.moas[i] for i in order[:, 0]], [classes.moas[i] for i in order[:, 1]]
    f64 = pl.Float64
    out = pc.select("compound", "moa", "source", "dose", "timepoint", "active", f"p_{DMSO_CLASS}",
                    "residual_moa", "p_residual_moa", "p_residual_dmso").with_columns(
        high=pl.col("dose").is_in(list(high_doses)),
        top1=pl.Series(t1, dtype=pl.Utf8), p_top1=pl.Series(P[r, order[:, 0]], dtype=f64),
        q_top1=pl.Series(Q[r, order[:, 0]], dtype=f64),
        top2=pl.Series(t2, dtype=pl.Utf8), p_top2=pl.Series(P[r, order[:, 1]], dtype=f64),
        q_top2=pl.Series(Q[r, order[:, 1]], dtype=f64),
        pair=pl.Series(["|".join(sorted(ab)) for ab in zip(t1, t2)], dtype=pl.Utf8),
    )
    return out.with_columns(residual_pair=pl.when(pl.col("residual_moa").is_not_null()).then(
        pl.concat_list("top1", "residual_moa").list.sort().list.join("|"))), P


def _modal(items: list[str]) -> str:
    """The most frequent item (ties: the first in sorted order)."""
    return max(sorted(set(items)), key=items.count)


def _pair_reading(pairs: list[str], P: np.ndarray, classes: MoaClasses, *, min_prob: float,
                  min_conditions: int, min_fraction: float) -> dict:
    """The paper's reading of one compound's high active conditions (top-2 pairs, MoA probabilities)."""
    modal = _modal(pairs)
    share = min(P[:, classes.moas.index(m)].mean() for m in modal.split("|"))
    stable = len(pairs) >= min_conditions and pairs.count(modal) >= min_fraction * len(pairs) - 1e-9
    return {"n_high_active": len(pairs), "stable_pair": modal if stable else None, "pair_share": float(share),
            "stable_top2": bool(stable and share >= min_prob)}


def _residual_flag(res_pairs: list[str | None], res_p: np.ndarray, *, min_residual_prob: float,
                   min_conditions: int, min_fraction: float) -> dict:
    """The explain-away reading of one compound's high active conditions (residual pairs and p)."""
    calls = [p for p, q in zip(res_pairs, res_p) if p is not None and q >= min_residual_prob]
    if not calls:
        return {"stable_residual_pair": None, "residual_share": float("nan"), "stable_residual": False}
    modal = _modal(calls)
    share = float(res_p[np.array([p == modal for p in res_pairs])].mean())
    stable = calls.count(modal) >= min_conditions and calls.count(modal) >= min_fraction * len(calls) - 1e-9
    return {"stable_residual_pair": modal if stable else None, "residual_share": share, "stable_residual": stable}


def _compound_readings(out: pl.DataFrame, P: np.ndarray, classes: MoaClasses, *, min_prob: float,
                       min_conditions: int, min_fraction: float, min_residual_prob: float) -> pl.DataFrame:
    """Both readings per compound over its high active conditions (schema :data:`_SUMMARY_SCHEMA`)."""
    sel = (out["high"] & out["active"].fill_null(False)).to_numpy()
    thresholds = {"min_conditions": min_conditions, "min_fraction": min_fraction}
    summary = []
    for cpd in out.filter(pl.Series(sel))["compound"].unique(maintain_order=True).to_list():
        rows = sel & (out["compound"] == cpd).to_numpy()
        mine = out.filter(pl.Series(rows))
        summary.append({
            "compound": cpd,
            **_pair_reading(mine["pair"].to_list(), P[rows], classes, min_prob=min_prob, **thresholds),
            **_residual_flag(mine["residual_pair"].to_list(), mine["p_residual_moa"].fill_null(0.0).to_numpy(),
                             min_residual_prob=min_residual_prob, **thresholds),
        })
    return pl.DataFrame(summary, schema=_SUMMARY_SCHEMA)


def polypharmacology(
    per_condition_probs: pl.DataFrame,
    high_doses: Sequence[str] | None = None,
    min_prob: float = 0.1,
    *,
    classes: MoaClasses,
    n_high: int = 2,
    min_conditions: int = 2,
    min_fraction: float = 0.75,
    min_residual_prob: float = 0.5,
) -> pl.DataFrame:
    """Top-2 MoAs per compound × condition and the ``stable_top2`` / ``stable_residual`` flags.

    The two readings and their thresholds are described in the module docstring.

    Parameters
    ----------
    per_condition_probs
        Per-condition rows (skipped ones are left out), with the explain-away columns of
        :func:`explain_away_readings` or without them.
    high_doses
        Dose keys counted as "high"; default the ``n_high`` (2) highest doses present (all their
        timepoints).
    classes
        The screen's MoA classes.

    Returns
    -------
    pl.DataFrame
        compound, moa, source, dose, timepoint, active, high, p_DMSO, top1, p_top1, q_top1,
        top2, p_top2, q_top2, pair, residual_moa, p_residual_moa, p_residual_dmso, residual_pair,
        then per compound n_high_active, stable_pair, pair_share, stable_top2,
        stable_residual_pair, residual_share, stable_residual (residual columns null / False when
        the per-condition table has none).
    """
    if high_doses is None:
        high_doses = high_dose_keys(per_condition_probs, n_high)
    out, P = _top2_table(per_condition_probs.filter(pl.col("status") == "ok"), high_doses, classes)
    summary = _compound_readings(out, P, classes, min_prob=min_prob, min_conditions=min_conditions,
                                 min_fraction=min_fraction, min_residual_prob=min_residual_prob)
    out = out.join(summary, on="compound", how="left").with_columns(
        pl.col("n_high_active").fill_null(0), pl.col("stable_top2").fill_null(False),
        pl.col("stable_residual").fill_null(False),
        stable_pair=pl.when(pl.col("stable_top2")).then(pl.col("stable_pair")),
        stable_residual_pair=pl.when(pl.col("stable_residual")).then(pl.col("stable_residual_pair")),
    )
    dose_value = pl.col("dose").map_elements(parse_dose_key, return_dtype=pl.Float64)
    return out.sort("compound", dose_value, "timepoint")
