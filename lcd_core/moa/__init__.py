"""MoA classification: per-condition linear probes, incremental aggregation, metrics (SPEC §4.8).

Entry point::

    res = classify_moa(profiles, activity, holdout_compounds=("X-1", "X-2"), seed=0)
    res.per_condition      # one row per compound × dose × timepoint: softmax per class
    res.predictions        # one row per compound × mode × step: aggregated distribution
    res.metrics            # weighted F1 / accuracy / top-3 per set × mode × step
    res.confusion          # long confusion matrices per set × mode × step
    res.polypharmacology   # top-2 MoAs per compound × condition + ``stable_top2`` / ``stable_residual``

Inputs
------
``profiles``: normalized well profiles of every dose × timepoint, concatenated, in the cytomining
convention (``Metadata_compound``, ``Metadata_moa`` (null for DMSO / unknown), ``Metadata_role``
(``negative_control`` = DMSO, ``treatment``), ``Metadata_dose`` (``"10uM"``),
``Metadata_timepoint`` (``"04h"``), … + float features, :func:`lcd_core.profiling.profiles.feature_columns`).
``activity``: compound, dose, timepoint, map_es, active (as :mod:`lcd_core.profiling.activity`).

Classes
-------
The probe's classes are the ten MoAs (:data:`MOA_CLASSES`, the strings of
:data:`lcd_core.synth.MOAS`) plus ``"DMSO"`` (:data:`DMSO_CLASS`, every ``negative_control`` well);
:data:`PROBE_CLASSES` is their order. A treatment label outside :data:`MOA_CLASSES` is an error
naming the compound (:func:`validate_labels`). Compounds without a label are never trained on but
are predicted like any other.

Probabilities are wide: one column ``p_<class>`` per probe class, the class string verbatim
(``"p_Aurora kinase"``, ``"p_DMSO"``; :data:`PROB_COLUMNS`).

Per-condition probes (:func:`fit_condition_probe`, :func:`cv_condition`, :func:`holdout_predict`)
--------------------------------------------------------------------------------------------------
* A probe of a condition is ``StandardScaler`` + multinomial ``LogisticRegression`` (lbfgs,
  ``C=1``) trained on the wells of the compounds *active* at that condition that have a label,
  plus every DMSO well of the condition. MoA wells weigh 1; the DMSO wells together weigh as
  much as an average MoA class (they outnumber a compound's wells ~30:1). No per-class
  rebalancing: in CV a class is often down to one compound and would be inflated.
* Cross-validation (training set): stratified group k-fold over the active labelled compounds'
  wells, grouped by compound (a compound's wells are all in one fold; MoAs spread over the
  folds), ``min(n_splits, n compounds)`` folds, seeded (:func:`compound_folds`). Every DMSO
  well trains every fold (DMSO wells are never reported, so this leaks nothing into compound predictions).
  A compound's probability at a condition is the mean of its wells' out-of-fold probabilities.
  Classes absent from a fold's training get probability 0.
* Compounds of the condition that are not in its training set (inactive there, or unlabelled)
  are predicted by the probe fitted on all active labelled compounds (``source="probe"``), which
  never saw them; CV compounds have ``source="cv"`` and their ``fold``.
* Holdout compounds: the probe fitted on the active labelled *training* compounds of the
  condition is applied to every holdout well (``source="holdout"``).
* **Skipped conditions**: a condition is skipped when it has no DMSO wells, fewer than
  ``min_compounds`` (2) active labelled compounds or fewer than ``min_classes`` (2) MoAs among
  them (a one-MoA probe would vote that MoA for everything). Each compound of a skipped condition
  still gets a row, ``status="skipped"`` with the ``reason`` and null probabilities; skipped rows
  carry no weight in the aggregation.

Incremental aggregation (:func:`aggregate_incremental`)
--------------------------------------------------------
Doses are ordered by value (:func:`lcd_core.keys.parse_dose_key`). Step ``k`` (``mode =
"incremental"``) averages the per-condition distributions of the ``k`` lowest doses (all their
timepoints at once) with weights

* ``"map_es"`` (default): ``w = max(map_es, 0)`` — a condition counts in proportion to the
  compound's phenotypic strength there; inactive conditions with a small positive effect size
  keep a small weight (so a weak compound drifts towards DMSO, as in the paper), NaN / missing
  activity weighs 0;
* ``"active"``: ``w = 1`` where active, else 0;  ``"uniform"``: ``w = 1``.

Where the compound is called active (mAP-ES ≥ 0.8), the activity call already says it is not
DMSO there, so that condition's DMSO probability is set to 0 and its MoA probabilities are
renormalized before averaging (``active_not_dmso=True``, the default). A probe trained on few
active compounds often leaves most of the mass on DMSO at a clearly active condition, and
without this the strongly weighted mid doses pull the aggregate back to DMSO (measured on the
demo with handcrafted features: train-set CV weighted F1 over all doses 0.06 without, 0.51
with; the single highest dose 0.78–0.80 either way). Inactive conditions keep their DMSO
probability, so a compound never called active still drifts to DMSO, as in the paper.
When every weight of a step is 0 the step falls back to the unweighted mean of its conditions
(``fallback=True``). ``mode = "single"`` rows hold each dose alone (step = that dose's rank); the
single-highest-dose prediction of the paper is the ``single`` row of the highest dose
(:func:`single_highest`). Both are kept since they are complementary.

Metrics (:func:`metrics`, :func:`confusion`, :func:`mcnemar`)
--------------------------------------------------------------
Only compounds with a known label count. Weighted F1 (``sklearn.metrics.f1_score``, average
``"weighted"``), accuracy, and top-3 accuracy over the eleven probe classes (a ``DMSO``
prediction is wrong). McNemar: exact two-sided binomial test when the discordant count
``b + c < 25``, else the chi-square statistic with continuity correction.

Polypharmacology (:func:`polypharmacology`)
--------------------------------------------
Top-2 MoAs (DMSO left out of the ranking) per compound × condition. ``stable_top2`` is True
when the compound is active in at least two conditions of the high doses (default: the two
highest doses of the screen, all timepoints), the same unordered pair is its top-2 in at least
75 % of them, and the weaker MoA of the pair has a mean probability of at least ``min_prob``
(0.1, the 10-class chance share) over them. That is the paper's reading; a softmax ranks second
the class most like the *whole* mixture, so it also runs an explain-away reading
(:func:`explain_away`): each per-condition row of the high doses carries a probe's reading of what
the top MoA leaves unexplained (``residual_moa``, ``p_residual_moa``, ``p_residual_dmso``,
``residual_scale``; :func:`explain_away_readings`: one reading probe per timepoint pooled over the
high doses, compounds read out of fold), and ``stable_residual`` flags a compound whose residual
names the same second MoA in at least two high conditions (details in :func:`polypharmacology`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, top_k_accuracy_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lcd_core.keys import parse_dose_key
from lcd_core.profiling.profiles import feature_columns
from lcd_core.synth.design import MOAS

MOA_CLASSES: tuple[str, ...] = tuple(MOAS)
DMSO_CLASS = "DMSO"
PROBE_CLASSES: tuple[str, ...] = (*MOA_CLASSES, DMSO_CLASS)
PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{c}" for c in PROBE_CLASSES)
WEIGHTINGS = ("map_es", "active", "uniform")

_C, _M, _R = "Metadata_compound", "Metadata_moa", "Metadata_role"
_D, _T = "Metadata_dose", "Metadata_timepoint"
_CONTROL = "negative_control"


class SkippedCondition(ValueError):
    """A condition cannot carry a probe (the message is the reason)."""


@dataclass(frozen=True)
class ConditionProbe:
    """A fitted probe of one condition: ``predict_proba`` maps onto :data:`PROBE_CLASSES`."""

    model: Pipeline
    features: tuple[str, ...]
    compounds: tuple[str, ...]
    centroids: Mapping[str, np.ndarray] | None = None  # class → mean training profile

    def predict_proba(self, profiles: pl.DataFrame) -> np.ndarray:
        """Probabilities (n wells × len(PROBE_CLASSES)) of the given wells."""
        return _proba(self.model, profiles.select(self.features).to_numpy())


@dataclass(frozen=True)
class McNemar:
    """McNemar's test: ``b`` = only A correct, ``c`` = only B correct."""

    statistic: float
    p_value: float
    b: int
    c: int
    n_both: int
    n_neither: int
    method: str  # "exact" | "chi2"


@dataclass(frozen=True)
class MoaResult:
    """Output of :func:`classify_moa`."""

    per_condition: pl.DataFrame
    predictions: pl.DataFrame
    metrics: pl.DataFrame
    confusion: pl.DataFrame
    polypharmacology: pl.DataFrame


# ---------------------------------------------------------------- labels


def validate_labels(profiles: pl.DataFrame) -> None:
    """Raise ``ValueError`` naming the compounds whose label is not one of :data:`MOA_CLASSES`.

    Null labels (unknown MoA) are fine; DMSO (``negative_control``) rows are not checked. A
    compound with two different labels is an error too.
    """
    tr = profiles.filter(pl.col(_R) != _CONTROL).select(_C, _M).unique()
    bad = tr.filter(pl.col(_M).is_not_null() & ~pl.col(_M).is_in(list(MOA_CLASSES))).sort(_C)
    if bad.height:
        items = ", ".join(f"{c} ({m!r})" for c, m in bad.iter_rows())
        raise ValueError(f"MoA labels outside the {len(MOA_CLASSES)} classes: {items}")
    multi = tr.drop_nulls(_M).group_by(_C).agg(pl.col(_M).n_unique().alias("n")).filter(pl.col("n") > 1)
    if multi.height:
        raise ValueError(f"compounds with more than one MoA label: {', '.join(sorted(multi[_C]))}")


# ---------------------------------------------------------------- probes


def _proba(model: Pipeline, X: np.ndarray) -> np.ndarray:
    out = np.zeros((X.shape[0], len(PROBE_CLASSES)))
    cols = [PROBE_CLASSES.index(c) for c in model.classes_]
    out[:, cols] = model.predict_proba(X)
    return out


def _labels(profiles: pl.DataFrame) -> np.ndarray:
    """Training label per well: DMSO for controls, the MoA otherwise (null → None)."""
    return (
        profiles.select(
            pl.when(pl.col(_R) == _CONTROL).then(pl.lit(DMSO_CLASS)).otherwise(pl.col(_M)).alias("y")
        )["y"].to_numpy()
    )


def _training_wells(profiles: pl.DataFrame, active: Collection[str]) -> pl.DataFrame:
    """DMSO wells + wells of active, labelled treatment compounds."""
    return profiles.filter(
        (pl.col(_R) == _CONTROL)
        | (pl.col(_C).is_in(list(active)) & pl.col(_M).is_not_null())
    )


def _check_trainable(train: pl.DataFrame, min_compounds: int, min_classes: int) -> None:
    tr = train.filter(pl.col(_R) != _CONTROL)
    if train.height == tr.height:
        raise SkippedCondition("no DMSO wells")
    n_cpd, n_moa = tr[_C].n_unique(), tr[_M].n_unique()
    if n_cpd < min_compounds:
        raise SkippedCondition(f"{n_cpd} active labelled compound(s) < {min_compounds}")
    if n_moa < min_classes:
        raise SkippedCondition(f"{n_moa} MoA class(es) among active compounds < {min_classes}")


def _features(profiles: pl.DataFrame) -> tuple[str, ...]:
    """Float feature columns (non-``Metadata_``; stray non-float columns are ignored)."""
    return tuple(c for c in feature_columns(profiles) if profiles.schema[c].is_float())


def _new_model(C: float, seed: int) -> Pipeline:
    return make_pipeline(
        StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed)
    )


def _fit(X: np.ndarray, y: np.ndarray, *, C: float, seed: int) -> Pipeline:
    """Fit a probe; DMSO wells are down-weighted to the mean MoA class's total weight.

    MoA wells weigh 1 each (no per-class rebalancing: a class held by a single compound would
    otherwise be inflated and attract every unusual profile); the DMSO wells together weigh as
    much as an average MoA class, so the many DMSO wells do not swamp the compounds.
    """
    is_dmso = y == DMSO_CLASS
    n_moa = len(set(y[~is_dmso].tolist()))
    w = np.ones(len(y))
    if is_dmso.any() and n_moa:
        w[is_dmso] = (~is_dmso).sum() / n_moa / is_dmso.sum()
    return _new_model(C, seed).fit(X, y, logisticregression__sample_weight=w)


def fit_condition_probe(
    profiles: pl.DataFrame,
    active_compounds: Collection[str],
    *,
    C: float = 1.0,
    seed: int = 0,
    min_compounds: int = 2,
    min_classes: int = 2,
) -> ConditionProbe:
    """Fit the probe of one condition on its active labelled compounds + DMSO.

    Parameters
    ----------
    profiles
        Well profiles of one dose × timepoint.
    active_compounds
        Compounds active at this condition (unlabelled ones are ignored for training).

    Raises
    ------
    SkippedCondition
        When the condition cannot carry a probe (see the module docstring).
    """
    train = _training_wells(profiles, active_compounds)
    _check_trainable(train, min_compounds, min_classes)
    feats = _features(profiles)
    X, y = train.select(feats).to_numpy(), _labels(train)
    model = _fit(X, y, C=C, seed=seed)
    cpds = tuple(sorted(train.filter(pl.col(_R) != _CONTROL)[_C].unique()))
    return ConditionProbe(model=model, features=feats, compounds=cpds, centroids=class_centroids(X, y))


def class_centroids(X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Mean training profile of each class present in ``y`` (DMSO included)."""
    return {c: X[y == c].mean(axis=0) for c in sorted(set(y.tolist()))}


def explain_away(
    model: Pipeline, centroids: Mapping[str, np.ndarray], x: np.ndarray, top: str,
    scale: np.ndarray | None = None,
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
        (probabilities over :data:`PROBE_CLASSES` of the residual, ``a``).
    """
    d = centroids[DMSO_CLASS]
    mu, v = centroids[top] - d, x - d
    s = _input_scale(model, d.shape[0]) if scale is None else np.asarray(scale, dtype=float)
    mus = mu / s
    norm = float(mus @ mus)
    a = max(0.0, float((v / s) @ mus) / norm) if norm > 0 else 0.0
    return _proba(model, (d + v - a * mu)[None, :])[0], a


def _input_scale(model: object, n_features: int) -> np.ndarray:
    """Per-feature scale of the ``StandardScaler`` heading a probe pipeline (ones without one)."""
    head = model.steps[0][1] if isinstance(model, Pipeline) else None
    scale = getattr(head, "scale_", None)
    return np.ones(n_features) if scale is None else np.asarray(scale, dtype=float)


_RESIDUAL_SCHEMA = {"residual_moa": pl.Utf8, "p_residual_moa": pl.Float64, "p_residual_dmso": pl.Float64,
                    "residual_scale": pl.Float64}


def high_dose_keys(per_condition: pl.DataFrame, n_high: int = 2) -> list[str]:
    """The ``n_high`` highest dose keys of a per-condition table (ordered by value)."""
    doses = sorted(per_condition["dose"].unique().to_list(), key=parse_dose_key)
    return doses[-n_high:]


def explain_away_readings(
    per_condition: pl.DataFrame,
    profiles: pl.DataFrame,
    activity: Collection[str] | pl.DataFrame,
    *,
    high_doses: Sequence[str] | None = None,
    holdout_compounds: Collection[str] = (),
    n_splits: int = 5,
    seed: int = 0,
    C: float = 1.0,
    min_compounds: int = 2,
    min_classes: int = 2,
) -> pl.DataFrame:
    """Add the explain-away columns to the per-condition rows of the high doses.

    Each high-dose row (``status = "ok"``) gets :func:`explain_away` of the compound's mean
    profile there, its top MoA the row's most probable MoA: ``residual_moa`` (the residual's most
    probable MoA other than the top one), ``p_residual_moa``, ``p_residual_dmso``,
    ``residual_scale`` (``a``). Other rows get nulls.

    The residual is read by one probe per timepoint *pooled over the high doses* (the same
    estimator, weighting and training rule as a condition's probe: the active labelled training
    compounds of each high dose + their DMSO wells), not by the condition's own probe: a condition
    often has a single active compound of a MoA (on the demo at 20 h, one JAK compound at 2.5 µM,
    two at 10 µM), too few to tell that MoA's phenotype from its neighbours' in a residual. A
    MoA's phenotype differs across doses mainly in strength, which the pooled probe sees more of.
    No compound is read by a probe that trained on it: the pooled compounds are split into
    ``n_splits`` folds grouped by compound (:func:`compound_folds`) and each is read by the probe
    of the other folds; compounds outside the pool (holdout, unlabelled, inactive at every high
    dose) by the probe of all. A timepoint whose pool cannot carry a probe (see
    :func:`fit_condition_probe`) gets no readings. Existing residual columns are replaced.

    Measured against the planted two-MoA compounds of three synthetic screens (the demo, seed 0,
    one; seeds 1 and 2 with all three, screens not looked at while choosing the method), recovered
    / false flags of ``stable_residual``: condition probes with the share in raw units → condition
    probes with the scaled share (:func:`explain_away`) → pooled probes with the scaled share:

    * handcrafted features: 0/7; 0 → 0/7; 0 → 2/7; 1 (HSP-1, read as tubulin + ATPase);
    * cell segmentation alone: 1/7; 0 → 0/7; 0 → 1/7; 0;
    * ground-truth morphology: 2/7; 1 → 3/7; 0 → 3/7; 0;
    * untrained ViT: 0/7; 0 throughout.

    Parameters
    ----------
    per_condition
        Rows of :func:`cv_condition` / :func:`holdout_predict`.
    profiles
        The well profiles of the conditions (training and holdout, as given to :func:`classify_moa`).
    activity
        Active compounds (names, or an activity table compound, dose, timepoint, active).
    high_doses
        Dose keys read; default the two highest (:func:`high_dose_keys`).
    """
    high = list(high_doses) if high_doses is not None else high_dose_keys(per_condition)
    base = per_condition.drop(list(_RESIDUAL_SCHEMA), strict=False)
    rows = base.filter((pl.col("status") == "ok") & pl.col("dose").is_in(high))
    feats = list(_features(profiles))
    hold = list(holdout_compounds)
    treated = pl.col(_R) != _CONTROL
    readings = []
    for tp in sorted(rows["timepoint"].unique().to_list()):
        at = profiles.filter((pl.col(_T) == tp) & pl.col(_D).is_in(high))
        train = pl.concat([_training_wells(at.filter((pl.col(_D) == d) & ~(pl.col(_C).is_in(hold) & treated)),
                                           _active_at(activity, d, tp)) for d in high])
        try:
            _check_trainable(train, min_compounds, min_classes)
        except SkippedCondition:
            continue
        fold_of = compound_folds(train.filter(treated).select(_C, _M).unique(), n_splits=n_splits, seed=seed)
        X, y, cpd = train.select(feats).to_numpy(), _labels(train), train[_C].to_numpy()
        probes: dict[int, tuple[Pipeline, dict[str, np.ndarray]]] = {}
        means = at.filter(treated).group_by(_C, _D).agg(pl.col(feats).mean())
        for row in rows.filter(pl.col("timepoint") == tp).iter_rows(named=True):
            fold = fold_of.get(row["compound"], -1)
            if fold not in probes:
                keep = ~np.isin(cpd, [c for c, f in fold_of.items() if f == fold])
                probes[fold] = (_fit(X[keep], y[keep], C=C, seed=seed), class_centroids(X[keep], y[keep]))
            model, centroids = probes[fold]
            p = np.array([row[f"p_{c}"] for c in MOA_CLASSES])
            top = MOA_CLASSES[int(np.argmax(p))]
            x = means.filter((pl.col(_C) == row["compound"]) & (pl.col(_D) == row["dose"])).select(feats).to_numpy()
            if top not in centroids or DMSO_CLASS not in centroids or not len(x):
                continue
            pr, a = explain_away(model, centroids, x[0], top)
            q = pr[: len(MOA_CLASSES)].copy()
            q[MOA_CLASSES.index(top)] = -1.0
            j = int(np.argmax(q))
            readings.append({"compound": row["compound"], "dose": row["dose"], "timepoint": tp,
                             "residual_moa": MOA_CLASSES[j], "p_residual_moa": float(pr[j]),
                             "p_residual_dmso": float(pr[-1]), "residual_scale": a})
    schema = {"compound": pl.Utf8, "dose": pl.Utf8, "timepoint": pl.Utf8, **_RESIDUAL_SCHEMA}
    return base.join(pl.DataFrame(readings, schema=schema), on=["compound", "dose", "timepoint"], how="left")


def _conditions(profiles: pl.DataFrame) -> list[tuple[str, str]]:
    keys = profiles.select(_D, _T).unique().rows()
    return sorted(keys, key=lambda k: (parse_dose_key(k[0]), k[1]))


def _active_at(active: Collection[str] | pl.DataFrame, dose: str, tp: str) -> set[str]:
    if isinstance(active, pl.DataFrame):
        sel = active.filter((pl.col("dose") == dose) & (pl.col("timepoint") == tp) & pl.col("active"))
        return set(sel["compound"].to_list())
    return set(active)


def _compound_rows(
    wells: pl.DataFrame, P: np.ndarray | None, *, dose: str, tp: str, active: set[str],
    source: pl.Expr | str, fold: pl.Expr | None = None, status: str = "ok", reason: str | None = None,
) -> pl.DataFrame:
    """Average well probabilities per compound; one row per compound."""
    base = wells.select(pl.col(_C).alias("compound"), pl.col(_M).alias("moa"))
    if P is None:
        base = base.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in PROB_COLUMNS])
    else:
        base = base.with_columns(pl.DataFrame(P, schema=list(PROB_COLUMNS)))
    base = base.with_columns(fold=fold if fold is not None else pl.lit(None, dtype=pl.Int64))
    out = base.group_by("compound", maintain_order=True).agg(
        pl.col("moa").first(), pl.col("fold").first(), pl.len().alias("n_wells"),
        *[pl.col(c).mean() for c in PROB_COLUMNS],
    )
    out = out.with_columns(
        dose=pl.lit(dose), timepoint=pl.lit(tp), active=pl.col("compound").is_in(list(active)),
        source=source if isinstance(source, pl.Expr) else pl.lit(source),
        status=pl.lit(status), reason=pl.lit(reason, dtype=pl.Utf8),
    )
    return _with_top(out)


def _with_top(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``predicted`` (argmax over all probe classes; null when probabilities are null)."""
    P = df.select(PROB_COLUMNS).to_numpy()
    ok = ~np.isnan(P).any(axis=1)
    idx = np.argmax(np.where(ok[:, None], P, 0.0), axis=1)
    pred = [PROBE_CLASSES[i] if o else None for i, o in zip(idx, ok)]
    return df.with_columns(predicted=pl.Series(pred, dtype=pl.Utf8))


_PC_ORDER = ["compound", "moa", "dose", "timepoint", "source", "fold", "active", "status", "reason",
             "n_wells", *PROB_COLUMNS, "predicted"]


def _empty_per_condition() -> pl.DataFrame:
    schema = {"compound": pl.Utf8, "moa": pl.Utf8, "dose": pl.Utf8, "timepoint": pl.Utf8,
              "source": pl.Utf8, "fold": pl.Int64, "active": pl.Boolean, "status": pl.Utf8,
              "reason": pl.Utf8, "n_wells": pl.UInt32, **{c: pl.Float64 for c in PROB_COLUMNS},
              "predicted": pl.Utf8}
    return pl.DataFrame(schema=schema)


def _finish(parts: list[pl.DataFrame]) -> pl.DataFrame:
    empty = _empty_per_condition()
    parts = [p.select(_PC_ORDER).cast(empty.schema) for p in parts if p.height]
    return pl.concat(parts) if parts else empty


def compound_folds(compounds: pl.DataFrame, n_splits: int = 5, seed: int = 0) -> dict[str, int]:
    """Stratified group folds: compound → fold, ``min(n_splits, n compounds)`` non-empty folds.

    ``compounds`` has ``Metadata_compound`` and ``Metadata_moa``. The compounds are shuffled
    (``seed``), ordered by MoA (stable) and dealt to the folds in turn, so each MoA is spread
    over the folds and fold sizes differ by at most one. (sklearn's ``StratifiedGroupKFold``
    refuses more folds than compounds per class and can leave folds empty, both common with a
    few compounds per MoA.)
    """
    moas = dict(zip(compounds[_C].to_list(), compounds[_M].to_list()))
    names = sorted(moas)
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    ordered = sorted(shuffled, key=lambda c: moas[c] or "")
    k = max(1, min(n_splits, len(ordered)))
    return {c: i % k for i, c in enumerate(ordered)}


def _cv_one(
    wells: pl.DataFrame, active: set[str], *, n_splits: int, C: float, seed: int,
    min_compounds: int, min_classes: int,
) -> list[pl.DataFrame]:
    dose, tp = wells[_D][0], wells[_T][0]
    treat = wells.filter(pl.col(_R) != _CONTROL)
    kw = dict(dose=dose, tp=tp, active=active)
    try:
        probe = fit_condition_probe(wells, active, C=C, seed=seed, min_compounds=min_compounds,
                                    min_classes=min_classes)
    except SkippedCondition as e:
        return [_compound_rows(treat, None, source="cv", status="skipped", reason=str(e), **kw)]
    cv_cpds = set(probe.compounds)
    cv = treat.filter(pl.col(_C).is_in(list(cv_cpds)))
    rest = treat.filter(~pl.col(_C).is_in(list(cv_cpds)))
    dmso = wells.filter(pl.col(_R) == _CONTROL)
    feats = list(probe.features)
    Xd, yd = dmso.select(feats).to_numpy(), _labels(dmso)
    X, y, g = cv.select(feats).to_numpy(), _labels(cv), cv[_C].to_numpy()
    fold_of = compound_folds(cv.select(_C, _M).unique(), n_splits=n_splits, seed=seed)
    folds = np.array([fold_of[c] for c in g], dtype=np.int64)
    P = np.zeros((cv.height, len(PROBE_CLASSES)))
    for f in np.unique(folds):
        te, tr = folds == f, folds != f
        Xf, yf = np.vstack([X[tr], Xd]), np.concatenate([y[tr], yd])
        m = _fit(Xf, yf, C=C, seed=seed)
        P[te] = _proba(m, X[te])
    out = [_compound_rows(cv, P, source="cv", fold=pl.Series(folds), **kw)]
    if rest.height:
        out.append(_probe_rows(rest, probe, source="probe", **kw))
    return out


def _probe_rows(wells: pl.DataFrame, probe: ConditionProbe, **kw) -> pl.DataFrame:
    """Compound rows of wells the probe never trained on."""
    return _compound_rows(wells, probe.predict_proba(wells), **kw)


def cv_condition(
    profiles: pl.DataFrame,
    active: Collection[str] | pl.DataFrame,
    n_splits: int = 5,
    seed: int = 0,
    *,
    C: float = 1.0,
    min_compounds: int = 2,
    min_classes: int = 2,
) -> pl.DataFrame:
    """Grouped cross-validated probe predictions, one row per compound × condition.

    Parameters
    ----------
    profiles
        Well profiles of one or more dose × timepoint conditions (each is handled on its own).
    active
        The compounds active at the condition (a collection of names, applied to every
        condition), or an activity table (compound, dose, timepoint, active).

    Returns
    -------
    pl.DataFrame
        compound, moa, dose, timepoint, source (``cv`` | ``probe``), fold (CV compounds),
        active, status (``ok`` | ``skipped``), reason, n_wells, ``p_<class>`` …, predicted.
    """
    parts: list[pl.DataFrame] = []
    for dose, tp in _conditions(profiles):
        wells = profiles.filter((pl.col(_D) == dose) & (pl.col(_T) == tp))
        parts += _cv_one(wells, _active_at(active, dose, tp), n_splits=n_splits, C=C, seed=seed,
                         min_compounds=min_compounds, min_classes=min_classes)
    return _finish(parts)


def holdout_predict(
    train_profiles: pl.DataFrame,
    train_active: Collection[str] | pl.DataFrame,
    holdout_profiles: pl.DataFrame,
    *,
    C: float = 1.0,
    seed: int = 0,
    min_compounds: int = 2,
    min_classes: int = 2,
    holdout_active: Collection[str] | pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Predict holdout compounds with probes fitted on the active training compounds.

    Each condition of ``holdout_profiles`` gets the probe of the same condition fitted on
    ``train_profiles`` (+ its DMSO wells); holdout treatment wells (labelled or not) are
    predicted and averaged per compound. ``holdout_active`` (names or an activity table) only
    fills the ``active`` column. Same columns as :func:`cv_condition`, ``source="holdout"``.
    """
    parts: list[pl.DataFrame] = []
    for dose, tp in _conditions(holdout_profiles):
        cond = (pl.col(_D) == dose) & (pl.col(_T) == tp)
        train = train_profiles.filter(cond)
        hold = holdout_profiles.filter(cond & (pl.col(_R) != _CONTROL))
        act = _active_at(holdout_active, dose, tp) if holdout_active is not None else set()
        kw = dict(dose=dose, tp=tp, active=act, source="holdout")
        try:
            probe = fit_condition_probe(train, _active_at(train_active, dose, tp), C=C, seed=seed,
                                        min_compounds=min_compounds, min_classes=min_classes)
        except SkippedCondition as e:
            parts.append(_compound_rows(hold, None, status="skipped", reason=str(e), **kw))
            continue
        parts.append(_probe_rows(hold, probe, **kw))
    return _finish(parts)


# ---------------------------------------------------------------- aggregation


def _weights(weighting: str) -> pl.Expr:
    if weighting == "map_es":
        es = pl.col("map_es").fill_nan(None).fill_null(0.0)
        return pl.max_horizontal(es, pl.lit(0.0))
    if weighting == "active":
        return pl.col("active_w").fill_null(False).cast(pl.Float64)
    if weighting == "uniform":
        return pl.lit(1.0)
    raise ValueError(f"weighting {weighting!r} is not one of {WEIGHTINGS}")


def _top_k(P: np.ndarray, k: int, classes: Sequence[str] = PROBE_CLASSES) -> list[list[str | None]]:
    order = np.argsort(-P, axis=1, kind="stable")[:, :k]
    return [[classes[j] for j in row] for row in order]


def aggregate_incremental(
    per_condition_probs: pl.DataFrame,
    activity: pl.DataFrame,
    weighting: str = "map_es",
    *,
    active_not_dmso: bool = True,
) -> pl.DataFrame:
    """Weighted averages of per-condition distributions, doses added one at a time.

    Parameters
    ----------
    per_condition_probs
        As :func:`cv_condition` / :func:`holdout_predict` (skipped rows are ignored).
    activity
        compound, dose, timepoint, map_es, active (missing rows weigh 0).
    weighting
        ``"map_es"`` (``max(map_es, 0)``), ``"active"`` or ``"uniform"``; see the module docstring.
    active_not_dmso
        Where the compound is called active (``active`` of ``activity``), its DMSO probability
        is set to 0 and the MoAs renormalized before averaging (module docstring).

    Returns
    -------
    pl.DataFrame
        One row per compound × mode × step: compound, moa, set (``train`` | ``holdout``),
        mode (``incremental`` | ``single``), step (1-based dose rank: the highest dose
        included), dose (that dose), n_conditions, weight_sum, fallback, n_active_conditions
        (over the whole screen), ``p_<class>`` …, predicted, top2_1, top2_2, top3.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting {weighting!r} is not one of {WEIGHTINGS}")
    pc = per_condition_probs.filter(pl.col("status") == "ok")
    act = activity.select("compound", "dose", "timepoint", "map_es", pl.col("active").alias("active_w"))
    pc = pc.join(act, on=["compound", "dose", "timepoint"], how="left")
    pc = pc.with_columns(w=_weights(weighting),
                         set=pl.when(pl.col("source") == "holdout").then(pl.lit("holdout")).otherwise(pl.lit("train")))
    doses = sorted(per_condition_probs["dose"].unique().to_list(), key=parse_dose_key)
    rank = {d: i + 1 for i, d in enumerate(doses)}
    pc = pc.with_columns(rank=pl.col("dose").replace_strict(rank, return_dtype=pl.Int64))
    if active_not_dmso:
        act_here = pc["active_w"].fill_null(False)
        moa_mass = pl.sum_horizontal([pl.col(c) for c in PROB_COLUMNS if c != f"p_{DMSO_CLASS}"])
        pc = pc.with_columns(
            [pl.when(act_here & (moa_mass > 0)).then(pl.col(c) / moa_mass).otherwise(pl.col(c)).alias(c)
             for c in PROB_COLUMNS if c != f"p_{DMSO_CLASS}"]
            + [pl.when(act_here & (moa_mass > 0)).then(0.0).otherwise(pl.col(f"p_{DMSO_CLASS}"))
               .alias(f"p_{DMSO_CLASS}")])
    n_act = per_condition_probs.group_by("compound").agg(
        pl.col("active").fill_null(False).sum().cast(pl.Int64).alias("n_active_conditions"))
    rows = []
    for (cpd, st), g in pc.group_by("compound", "set", maintain_order=True):
        moa = g["moa"][0]
        P, w, r = g.select(PROB_COLUMNS).to_numpy(), g["w"].to_numpy(), g["rank"].to_numpy()
        for step in range(1, len(doses) + 1):
            for mode, sel in (("incremental", r <= step), ("single", r == step)):
                if not sel.any():
                    continue
                ws = float(w[sel].sum())
                p = (w[sel] @ P[sel]) / ws if ws > 0 else P[sel].mean(axis=0)
                rows.append({"compound": cpd, "moa": moa, "set": st, "mode": mode, "step": step,
                             "dose": doses[step - 1], "n_conditions": int(sel.sum()),
                             "weight_sum": ws, "fallback": ws <= 0,
                             **dict(zip(PROB_COLUMNS, p.tolist()))})
    if not rows:
        return pl.DataFrame()
    out = pl.DataFrame(rows).sort("set", "compound", "mode", "step")
    P = out.select(PROB_COLUMNS).to_numpy()
    top = _top_k(P, 3)
    out = out.with_columns(
        predicted=pl.Series([t[0] for t in top]), top2_1=pl.Series([t[0] for t in top]),
        top2_2=pl.Series([t[1] for t in top]), top3=pl.Series(top),
    )
    return out.join(n_act, on="compound", how="left")


def single_highest(predictions: pl.DataFrame) -> pl.DataFrame:
    """The single-highest-dose prediction of each compound (``mode="single"``, top step)."""
    s = predictions.filter(pl.col("mode") == "single")
    return s.filter(pl.col("step") == pl.col("step").max().over("compound", "set"))


# ---------------------------------------------------------------- metrics


def _scored(predictions: pl.DataFrame, active_only: bool) -> pl.DataFrame:
    df = predictions.filter(pl.col("moa").is_not_null() & pl.col("predicted").is_not_null())
    if active_only:
        df = df.filter(pl.col("n_active_conditions") > 0)
    return df


def metrics(
    predictions: pl.DataFrame,
    step_col: str = "step",
    by: Sequence[str] = ("set", "mode"),
    *,
    active_only: bool = False,
) -> pl.DataFrame:
    """Weighted F1, accuracy and top-3 accuracy per ``by`` × ``step_col`` (labelled compounds).

    ``active_only`` keeps compounds active in at least one condition (the paper scores the
    compounds recovered as active). Returns by…, step, n, weighted_f1, accuracy, top3_accuracy.
    """
    df = _scored(predictions, active_only)
    keys = [*by, step_col]
    rows = []
    for key, g in df.group_by(keys, maintain_order=True):
        y, yp = g["moa"].to_list(), g["predicted"].to_list()
        yi = np.array([PROBE_CLASSES.index(v) for v in y])
        P = g.select(PROB_COLUMNS).to_numpy()
        top3 = top_k_accuracy_score(yi, P, k=3, labels=np.arange(len(PROBE_CLASSES)))
        rows.append({**dict(zip(keys, key)), "n": g.height,
                     "weighted_f1": float(f1_score(y, yp, average="weighted", zero_division=0)),
                     "accuracy": float(np.mean(np.array(y) == np.array(yp))),
                     "top3_accuracy": float(top3)})
    return pl.DataFrame(rows).sort(keys) if rows else pl.DataFrame()


def confusion(
    predictions: pl.DataFrame,
    step_col: str = "step",
    by: Sequence[str] = ("set", "mode"),
    *,
    active_only: bool = False,
) -> pl.DataFrame:
    """Confusion matrices as a long table: by…, step, true, predicted, n (every cell, zeros too)."""
    df = _scored(predictions, active_only)
    keys = [*by, step_col]
    parts = []
    for key, g in df.group_by(keys, maintain_order=True):
        M = confusion_matrix(g["moa"].to_list(), g["predicted"].to_list(), labels=list(PROBE_CLASSES))
        i, j = np.indices(M.shape)
        parts.append(pl.DataFrame({
            **{k: [v] * M.size for k, v in zip(keys, key)},
            "true": [PROBE_CLASSES[a] for a in i.ravel()],
            "predicted": [PROBE_CLASSES[b] for b in j.ravel()],
            "n": M.ravel().astype(np.int64),
        }))
    return pl.concat(parts).sort(keys) if parts else pl.DataFrame()


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool], *, exact_below: int = 25) -> McNemar:
    """McNemar's test between two classifiers' correctness on the same compounds.

    ``b`` = A right and B wrong, ``c`` = A wrong and B right. When ``b + c < exact_below`` the
    exact two-sided binomial test (``p = min(1, 2 · P[X ≤ min(b, c)])``, X ~ Bin(b + c, ½),
    statistic = min(b, c)); otherwise ``(|b − c| − 1)² / (b + c)`` against χ²(1).
    """
    a, b_ = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"correct_a and correct_b differ in length ({a.size} vs {b_.size})")
    b, c = int((a & ~b_).sum()), int((~a & b_).sum())
    both, neither, n = int((a & b_).sum()), int((~a & ~b_).sum()), b + c
    if n == 0:
        return McNemar(0.0, 1.0, b, c, both, neither, "exact")
    if n < exact_below:
        p = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), n, 0.5)))
        return McNemar(float(min(b, c)), p, b, c, both, neither, "exact")
    chi = (abs(b - c) - 1.0) ** 2 / n
    return McNemar(float(chi), float(stats.chi2.sf(chi, 1)), b, c, both, neither, "chi2")


def mcnemar_predictions(pred_a: pl.DataFrame, pred_b: pl.DataFrame, **kw) -> McNemar:
    """McNemar between two prediction tables of the same compounds (one row per compound each).

    Filter both to the same set / mode / step first; compounds must match exactly.
    """
    a = _scored(pred_a, False).select("compound", (pl.col("moa") == pl.col("predicted")).alias("a"))
    b = _scored(pred_b, False).select("compound", (pl.col("moa") == pl.col("predicted")).alias("b"))
    if a["compound"].is_duplicated().any() or b["compound"].is_duplicated().any():
        raise ValueError("one row per compound expected: filter set / mode / step first")
    if set(a["compound"]) != set(b["compound"]):
        diff = sorted(set(a["compound"]) ^ set(b["compound"]))
        raise ValueError(f"the two tables score different compounds: {', '.join(diff)}")
    j = a.join(b, on="compound")
    return mcnemar(j["a"].to_numpy(), j["b"].to_numpy(), **kw)


def final_predictions(predictions: pl.DataFrame) -> pl.DataFrame:
    """Each compound's two final calls per set: ``mode="incremental"`` at its last step (all
    doses aggregated) and ``mode="single_highest"`` (:func:`single_highest`)."""
    incr = predictions.filter(pl.col("mode") == "incremental")
    incr = incr.filter(pl.col("step") == pl.col("step").max().over("compound", "set"))
    single = single_highest(predictions).with_columns(mode=pl.lit("single_highest"))
    return pl.concat([incr, single], how="diagonal_relaxed")


def compare_feature_sets(predictions: Mapping[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Weighted F1 / accuracy / top-3 of several feature sets' final calls, and McNemar's test
    between every pair of them on the compounds both score (per set × mode).

    Parameters
    ----------
    predictions
        ``{feature set name: predictions}`` (as :func:`aggregate_incremental`, same compounds).

    Returns
    -------
    (scores, tests)
        ``scores``: features, set, mode, n, weighted_f1, accuracy, top3_accuracy.
        ``tests``: set, mode, features_a, features_b, n, b (A right, B wrong), c, statistic,
        p_value, method.
    """
    finals = {name: final_predictions(p) for name, p in predictions.items()}
    parts = [metrics(f.with_columns(step=pl.lit(0))).drop("step").with_columns(features=pl.lit(name))
             for name, f in finals.items() if f.height]
    scores = (pl.concat([p for p in parts if p.height], how="diagonal_relaxed")
              if any(p.height for p in parts) else pl.DataFrame())
    if scores.height:
        scores = scores.select("features", "set", "mode", "n", "weighted_f1", "accuracy", "top3_accuracy")
    names, rows = list(finals), []
    for i, a_name in enumerate(names):
        for b_name in names[i + 1:]:
            a, b = finals[a_name], finals[b_name]
            for (set_name, mode), ga in a.group_by(["set", "mode"], maintain_order=True):
                gb = b.filter((pl.col("set") == set_name) & (pl.col("mode") == mode))
                common = set(_scored(ga, False)["compound"]) & set(_scored(gb, False)["compound"])
                if not common:
                    continue
                keep = pl.col("compound").is_in(sorted(common))
                t = mcnemar_predictions(ga.filter(keep), gb.filter(keep))
                rows.append({"set": set_name, "mode": mode, "features_a": a_name, "features_b": b_name,
                             "n": len(common), "b": t.b, "c": t.c, "statistic": t.statistic,
                             "p_value": t.p_value, "method": t.method})
    schema = {"set": pl.Utf8, "mode": pl.Utf8, "features_a": pl.Utf8, "features_b": pl.Utf8, "n": pl.Int64,
              "b": pl.Int64, "c": pl.Int64, "statistic": pl.Float64, "p_value": pl.Float64, "method": pl.Utf8}
    return scores, pl.DataFrame(rows, schema=schema)


# ---------------------------------------------------------------- polypharmacology


def polypharmacology(
    per_condition_probs: pl.DataFrame,
    high_doses: Sequence[str] | None = None,
    min_prob: float = 0.1,
    *,
    n_high: int = 2,
    min_conditions: int = 2,
    min_fraction: float = 0.75,
    min_residual_prob: float = 0.5,
) -> pl.DataFrame:
    """Top-2 MoAs per compound × condition and the ``stable_top2`` / ``stable_residual`` flags.

    The MoAs are ranked by probability with DMSO left out; ``q_top1`` / ``q_top2`` are their
    shares of the MoA mass (``p / (1 − p_DMSO)``), so how far the compound is from DMSO does
    not decide the pair. ``pair`` is the top-2 as ``"A|B"`` (sorted). Over the *high*
    conditions where the compound is active (skipped conditions left out):

    * ``stable_pair``: the most frequent pair, when it is the pair of at least
      ``min_fraction`` (0.75) of them and there are at least ``min_conditions`` (2) of them
      (the paper's TAK-901 has Aurora kinase + JAK in every high condition, Fig. 3C; 0.75
      tolerates one noisy probe among four conditions);
    * ``pair_share``: the smaller of the two MoAs' mean probabilities over those conditions.
      Rank alone is not enough (every compound has a second MoA, and a weak compound's
      DMSO-like profile often ranks the same runner-up everywhere), while one condition's
      softmax is too sharp at strong doses (a genuine second MoA can hold < 5 % there and take
      the lead in the next condition), so the flag asks that the weaker MoA of the pair hold
      on average at least ``min_prob`` (0.1, its chance share among ten MoAs);
    * ``stable_top2`` = both (the paper's reading, Fig. 3C).

    The softmax of a mixture ranks second the class that looks most like the *whole* profile, not
    the second mechanism: Aurora kinase + JAK (enlarged, multinucleated *and* elongated cells)
    ranks HDAC or the retinoid agonist (enlarged and elongated) above JAK (elongated, smaller),
    even on ground-truth cell measurements. The explain-away reading asks what is left once the
    top MoA is accounted for (:func:`explain_away`; columns ``residual_moa``,
    ``p_residual_moa``, ``p_residual_dmso`` that :func:`explain_away_readings` adds to the
    per-condition table): ``residual_pair`` is the top MoA with the residual's MoA. Over the
    same high active conditions, a condition *calls* a second MoA when its residual's MoA holds
    at least ``min_residual_prob`` (0.5: the residual looks more like that MoA than like DMSO
    and every other class together; a single-MoA compound leaves a DMSO-like residual, and so
    does a second mechanism that has not set in yet, e.g. a slow one at the early timepoint).
    ``stable_residual`` asks that at least ``min_conditions`` calls name the same pair
    (``stable_residual_pair``) and that it be at least ``min_fraction`` of the calls;
    ``residual_share`` is the mean residual probability of that pair's MoA over the high active
    conditions where the pair came out.

    Parameters
    ----------
    high_doses
        Dose keys counted as "high"; default the ``n_high`` (2) highest doses present (all their
        timepoints).

    Returns
    -------
    pl.DataFrame
        compound, moa, source, dose, timepoint, active, high, p_DMSO, top1, p_top1, q_top1,
        top2, p_top2, q_top2, pair, residual_moa, p_residual_moa, p_residual_dmso, residual_pair,
        then per compound n_high_active, stable_pair, pair_share, stable_top2,
        stable_residual_pair, residual_share, stable_residual (residual columns null / False when
        the per-condition table has none).
    """
    pc = per_condition_probs.filter(pl.col("status") == "ok")
    if high_doses is None:
        high_doses = high_dose_keys(per_condition_probs, n_high)
    for col, dtype in _RESIDUAL_SCHEMA.items():
        if col not in pc.columns:
            pc = pc.with_columns(pl.lit(None, dtype=dtype).alias(col))
    P = pc.select([f"p_{c}" for c in MOA_CLASSES]).to_numpy()
    Q = P / np.clip(P.sum(axis=1, keepdims=True), 1e-12, None)
    order = np.argsort(-P, axis=1, kind="stable")[:, :2]
    r = np.arange(len(P))
    t1 = [MOA_CLASSES[i] for i in order[:, 0]]
    t2 = [MOA_CLASSES[i] for i in order[:, 1]]
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
    out = out.with_columns(residual_pair=pl.when(pl.col("residual_moa").is_not_null()).then(
        pl.concat_list("top1", "residual_moa").list.sort().list.join("|")))
    sel = (out["high"] & out["active"].fill_null(False)).to_numpy()
    summary = []
    for cpd in out.filter(pl.Series(sel))["compound"].unique(maintain_order=True).to_list():
        rows = sel & (out["compound"] == cpd).to_numpy()
        pairs = out["pair"].filter(pl.Series(rows)).to_list()
        modal = max(sorted(set(pairs)), key=pairs.count)
        share = min(P[rows, MOA_CLASSES.index(m)].mean() for m in modal.split("|"))
        stable = len(pairs) >= min_conditions and pairs.count(modal) >= min_fraction * len(pairs) - 1e-9
        res_pairs = out["residual_pair"].filter(pl.Series(rows)).to_list()
        res_p = out["p_residual_moa"].filter(pl.Series(rows)).fill_null(0.0).to_numpy()
        calls = [p for p, q in zip(res_pairs, res_p) if p is not None and q >= min_residual_prob]
        res_modal, res_share, res_stable = None, float("nan"), False
        if calls:
            res_modal = max(sorted(set(calls)), key=calls.count)
            res_share = float(res_p[np.array([p == res_modal for p in res_pairs])].mean())
            res_stable = (calls.count(res_modal) >= min_conditions
                          and calls.count(res_modal) >= min_fraction * len(calls) - 1e-9)
        summary.append({"compound": cpd, "n_high_active": len(pairs),
                        "stable_pair": modal if stable else None, "pair_share": float(share),
                        "stable_top2": bool(stable and share >= min_prob),
                        "stable_residual_pair": res_modal if res_stable else None, "residual_share": res_share,
                        "stable_residual": res_stable})
    schema = {"compound": pl.Utf8, "n_high_active": pl.Int64, "stable_pair": pl.Utf8,
              "pair_share": f64, "stable_top2": pl.Boolean, "stable_residual_pair": pl.Utf8,
              "residual_share": f64, "stable_residual": pl.Boolean}
    out = out.join(pl.DataFrame(summary, schema=schema), on="compound", how="left").with_columns(
        pl.col("n_high_active").fill_null(0), pl.col("stable_top2").fill_null(False),
        pl.col("stable_residual").fill_null(False),
        stable_pair=pl.when(pl.col("stable_top2")).then(pl.col("stable_pair")),
        stable_residual_pair=pl.when(pl.col("stable_residual")).then(pl.col("stable_residual_pair")),
    )
    dose_value = pl.col("dose").map_elements(parse_dose_key, return_dtype=pl.Float64)
    return out.sort("compound", dose_value, "timepoint")


# ---------------------------------------------------------------- orchestration


def classify_moa(
    profiles_by_condition: pl.DataFrame,
    activity: pl.DataFrame,
    *,
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
    active training compounds (DMSO wells train both). Everything else: see the module docstring.
    """
    validate_labels(profiles_by_condition)
    hold = list(holdout_compounds)
    missing = sorted(set(hold) - set(profiles_by_condition[_C].unique().to_list()))
    if missing:
        raise ValueError(f"holdout compounds not in the profiles: {', '.join(missing)}")
    is_hold = pl.col(_C).is_in(hold) & (pl.col(_R) != _CONTROL)
    train = profiles_by_condition.filter(~is_hold)
    parts = [cv_condition(train, activity, n_splits=n_splits, seed=seed, C=C)]
    if hold:
        parts.append(holdout_predict(train, activity, profiles_by_condition.filter(is_hold), C=C,
                                     seed=seed, holdout_active=activity))
    per_condition = explain_away_readings(pl.concat(parts), profiles_by_condition, activity, high_doses=high_doses,
                                          holdout_compounds=hold, n_splits=n_splits, seed=seed, C=C)
    predictions = aggregate_incremental(per_condition, activity, weighting=weighting)
    return MoaResult(
        per_condition=per_condition,
        predictions=predictions,
        metrics=metrics(predictions, active_only=active_only),
        confusion=confusion(predictions, active_only=active_only),
        polypharmacology=polypharmacology(per_condition, high_doses=high_doses, min_prob=min_prob),
    )
