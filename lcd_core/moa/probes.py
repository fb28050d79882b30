"""Per-condition linear probes: fit, grouped cross-validation, holdout prediction (SPEC §4.8).

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
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lcd_core.moa.classes import DMSO_CLASS, MoaClasses
from lcd_core.moa.wells import (
    COMPOUND, CONTROL, DOSE, MOA, ROLE, TIMEPOINT, active_at, conditions, float_features, training_wells,
    well_labels,
)


class SkippedCondition(ValueError):
    """A condition cannot carry a probe (the message is the reason)."""


@dataclass(frozen=True)
class ConditionProbe:
    """A fitted probe of one condition: ``predict_proba`` maps onto ``classes.probe``."""

    model: Pipeline
    features: tuple[str, ...]
    compounds: tuple[str, ...]
    classes: MoaClasses
    centroids: Mapping[str, np.ndarray] | None = None  # class → mean training profile

    def predict_proba(self, profiles: pl.DataFrame) -> np.ndarray:
        """Probabilities (n wells × len(classes.probe)) of the given wells."""
        return probe_proba(self.model, profiles.select(self.features).to_numpy(), self.classes)


def probe_proba(model: Pipeline, X: np.ndarray, classes: MoaClasses) -> np.ndarray:
    """A model's probabilities over every probe class (0 for a class it never saw)."""
    out = np.zeros((X.shape[0], len(classes.probe)))
    cols = [classes.probe.index(c) for c in model.classes_]
    out[:, cols] = model.predict_proba(X)
    return out


def check_trainable(train: pl.DataFrame, min_compounds: int, min_classes: int) -> None:
    """Raise :class:`SkippedCondition` when training wells cannot carry a probe."""
    tr = train.filter(pl.col(ROLE) != CONTROL)
    if train.height == tr.height:
        raise SkippedCondition("no DMSO wells")
    n_cpd, n_moa = tr[COMPOUND].n_unique(), tr[MOA].n_unique()
    if n_cpd < min_compounds:
        raise SkippedCondition(f"{n_cpd} active labelled compound(s) < {min_compounds}")
    if n_moa < min_classes:
        raise SkippedCondition(f"{n_moa} MoA class(es) among active compounds < {min_classes}")


def fit_probe_model(X: np.ndarray, y: np.ndarray, *, C: float, seed: int) -> Pipeline:
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
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
    return model.fit(X, y, logisticregression__sample_weight=w)


def class_centroids(X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Mean training profile of each class present in ``y`` (DMSO included)."""
    return {c: X[y == c].mean(axis=0) for c in sorted(set(y.tolist()))}


def fit_condition_probe(
    profiles: pl.DataFrame,
    active_compounds: Collection[str],
    *,
    classes: MoaClasses,
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
    classes
        The screen's MoA classes (:class:`MoaClasses`).

    Raises
    ------
    SkippedCondition
        When the condition cannot carry a probe (see the module docstring).
    """
    train = training_wells(profiles, active_compounds)
    check_trainable(train, min_compounds, min_classes)
    feats = float_features(profiles)
    X, y = train.select(feats).to_numpy(), well_labels(train)
    model = fit_probe_model(X, y, C=C, seed=seed)
    cpds = tuple(sorted(train.filter(pl.col(ROLE) != CONTROL)[COMPOUND].unique()))
    return ConditionProbe(model=model, features=feats, compounds=cpds, classes=classes,
                          centroids=class_centroids(X, y))


def compound_folds(compounds: pl.DataFrame, n_splits: int = 5, seed: int = 0) -> dict[str, int]:
    """Stratified group folds: compound → fold, ``min(n_splits, n compounds)`` non-empty folds.

    ``compounds`` has ``Metadata_compound`` and ``Metadata_moa``. The compounds are shuffled
    (``seed``), ordered by MoA (stable) and dealt to the folds in turn, so each MoA is spread
    over the folds and fold sizes differ by at most one. (sklearn's ``StratifiedGroupKFold``
    refuses more folds than compounds per class and can leave folds empty, both common with a
    few compounds per MoA.)
    """
    moas = dict(zip(compounds[COMPOUND].to_list(), compounds[MOA].to_list()))
    names = sorted(moas)
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    ordered = sorted(shuffled, key=lambda c: moas[c] or "")
    k = max(1, min(n_splits, len(ordered)))
    return {c: i % k for i, c in enumerate(ordered)}


# ---------------------------------------------------------------- per-condition table


def _with_top(df: pl.DataFrame, classes: MoaClasses) -> pl.DataFrame:
    """Add ``predicted`` (argmax over all probe classes; null when probabilities are null)."""
    P = df.select(classes.columns).to_numpy()
    ok = ~np.isnan(P).any(axis=1)
    idx = np.argmax(np.where(ok[:, None], P, 0.0), axis=1)
    pred = [classes.probe[i] if o else None for i, o in zip(idx, ok)]
    return df.with_columns(predicted=pl.Series(pred, dtype=pl.Utf8))


def _compound_rows(
    wells: pl.DataFrame, P: np.ndarray | None, *, classes: MoaClasses, dose: str, tp: str, active: set[str],
    source: pl.Expr | str, fold: pl.Expr | None = None, status: str = "ok", reason: str | None = None,
) -> pl.DataFrame:
    """Average well probabilities per compound; one row per compound."""
    cols = list(classes.columns)
    base = wells.select(pl.col(COMPOUND).alias("compound"), pl.col(MOA).alias("moa"))
    if P is None:
        base = base.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in cols])
    else:
        base = base.with_columns(pl.DataFrame(P, schema=cols))
    base = base.with_columns(fold=fold if fold is not None else pl.lit(None, dtype=pl.Int64))
    out = base.group_by("compound", maintain_order=True).agg(
        pl.col("moa").first(), pl.col("fold").first(), pl.len().alias("n_wells"),
        *[pl.col(c).mean() for c in cols],
    )
    out = out.with_columns(
        dose=pl.lit(dose), timepoint=pl.lit(tp), active=pl.col("compound").is_in(list(active)),
        source=source if isinstance(source, pl.Expr) else pl.lit(source),
        status=pl.lit(status), reason=pl.lit(reason, dtype=pl.Utf8),
    )
    return _with_top(out, classes)


def _per_condition_schema(classes: MoaClasses) -> dict[str, pl.DataType]:
    return {"compound": pl.Utf8, "moa": pl.Utf8, "dose": pl.Utf8, "timepoint": pl.Utf8,
            "source": pl.Utf8, "fold": pl.Int64, "active": pl.Boolean, "status": pl.Utf8,
            "reason": pl.Utf8, "n_wells": pl.UInt32, **{c: pl.Float64 for c in classes.columns},
            "predicted": pl.Utf8}


def _finish(parts: list[pl.DataFrame], classes: MoaClasses) -> pl.DataFrame:
    """The per-condition table: the parts in column order, or an empty table of that schema."""
    schema = _per_condition_schema(classes)
    parts = [p.select(list(schema)).cast(schema) for p in parts if p.height]
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _probe_rows(wells: pl.DataFrame, probe: ConditionProbe, **kw) -> pl.DataFrame:
    """Compound rows of wells the probe never trained on."""
    return _compound_rows(wells, probe.predict_proba(wells), classes=probe.classes, **kw)


# ---------------------------------------------------------------- CV and holdout


def _out_of_fold(wells: pl.DataFrame, cv: pl.DataFrame, probe: ConditionProbe, *, n_splits: int, C: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of the CV wells and their folds; DMSO wells train every fold."""
    dmso = wells.filter(pl.col(ROLE) == CONTROL)
    feats = list(probe.features)
    Xd, yd = dmso.select(feats).to_numpy(), well_labels(dmso)
    X, y, g = cv.select(feats).to_numpy(), well_labels(cv), cv[COMPOUND].to_numpy()
    fold_of = compound_folds(cv.select(COMPOUND, MOA).unique(), n_splits=n_splits, seed=seed)
    folds = np.array([fold_of[c] for c in g], dtype=np.int64)
    P = np.zeros((cv.height, len(probe.classes.probe)))
    for f in np.unique(folds):
        te, tr = folds == f, folds != f
        m = fit_probe_model(np.vstack([X[tr], Xd]), np.concatenate([y[tr], yd]), C=C, seed=seed)
        P[te] = probe_proba(m, X[te], probe.classes)
    return P, folds


def _cv_one(
    wells: pl.DataFrame, active: set[str], *, classes: MoaClasses, n_splits: int, C: float, seed: int,
    min_compounds: int, min_classes: int,
) -> list[pl.DataFrame]:
    """The per-condition rows of one condition: CV compounds, then the others by the full probe."""
    treat = wells.filter(pl.col(ROLE) != CONTROL)
    kw = dict(dose=wells[DOSE][0], tp=wells[TIMEPOINT][0], active=active)
    try:
        probe = fit_condition_probe(wells, active, classes=classes, C=C, seed=seed,
                                    min_compounds=min_compounds, min_classes=min_classes)
    except SkippedCondition as e:
        return [_compound_rows(treat, None, classes=classes, source="cv", status="skipped", reason=str(e), **kw)]
    in_cv = pl.col(COMPOUND).is_in(list(probe.compounds))
    cv, rest = treat.filter(in_cv), treat.filter(~in_cv)
    P, folds = _out_of_fold(wells, cv, probe, n_splits=n_splits, C=C, seed=seed)
    out = [_compound_rows(cv, P, classes=classes, source="cv", fold=pl.Series(folds), **kw)]
    if rest.height:
        out.append(_probe_rows(rest, probe, source="probe", **kw))
    return out


def cv_condition(
    profiles: pl.DataFrame,
    active: Collection[str] | pl.DataFrame,
    n_splits: int = 5,
    seed: int = 0,
    *,
    classes: MoaClasses,
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
    classes
        The screen's MoA classes.

    Returns
    -------
    pl.DataFrame
        compound, moa, dose, timepoint, source (``cv`` | ``probe``), fold (CV compounds),
        active, status (``ok`` | ``skipped``), reason, n_wells, ``p_<class>`` …, predicted.
    """
    parts: list[pl.DataFrame] = []
    for dose, tp in conditions(profiles):
        wells = profiles.filter((pl.col(DOSE) == dose) & (pl.col(TIMEPOINT) == tp))
        parts += _cv_one(wells, active_at(active, dose, tp), classes=classes, n_splits=n_splits, C=C,
                         seed=seed, min_compounds=min_compounds, min_classes=min_classes)
    return _finish(parts, classes)


def holdout_predict(
    train_profiles: pl.DataFrame,
    train_active: Collection[str] | pl.DataFrame,
    holdout_profiles: pl.DataFrame,
    *,
    classes: MoaClasses,
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
    for dose, tp in conditions(holdout_profiles):
        cond = (pl.col(DOSE) == dose) & (pl.col(TIMEPOINT) == tp)
        hold = holdout_profiles.filter(cond & (pl.col(ROLE) != CONTROL))
        act = active_at(holdout_active, dose, tp) if holdout_active is not None else set()
        kw = dict(dose=dose, tp=tp, active=act, source="holdout")
        try:
            probe = fit_condition_probe(train_profiles.filter(cond), active_at(train_active, dose, tp),
                                        classes=classes, C=C, seed=seed, min_compounds=min_compounds,
                                        min_classes=min_classes)
        except SkippedCondition as e:
            parts.append(_compound_rows(hold, None, classes=classes, status="skipped", reason=str(e), **kw))
            continue
        parts.append(_probe_rows(hold, probe, **kw))
    return _finish(parts, classes)
