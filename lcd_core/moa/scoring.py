"""Scores of MoA predictions: weighted F1, accuracy, top-3, confusion, McNemar (SPEC §4.8).

Only compounds with a known label count. Weighted F1 (``sklearn.metrics.f1_score``, average
``"weighted"``), accuracy, and top-3 accuracy over the probe classes (the MoAs and DMSO; a
``DMSO`` prediction is wrong). McNemar: exact two-sided binomial test when the discordant count
``b + c < 25``, else the chi-square statistic with continuity correction.
:func:`compare_feature_sets` puts several feature sets' final calls side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score, top_k_accuracy_score

from lcd_core.moa.aggregation import single_highest
from lcd_core.moa.classes import MoaClasses

_TESTS_SCHEMA = {"set": pl.Utf8, "mode": pl.Utf8, "features_a": pl.Utf8, "features_b": pl.Utf8, "n": pl.Int64,
                 "b": pl.Int64, "c": pl.Int64, "statistic": pl.Float64, "p_value": pl.Float64, "method": pl.Utf8}


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
    classes: MoaClasses,
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
        yi = np.array([classes.probe.index(v) for v in y])
        P = g.select(classes.columns).to_numpy()
        top3 = top_k_accuracy_score(yi, P, k=3, labels=np.arange(len(classes.probe)))
        rows.append({**dict(zip(keys, key)), "n": g.height,
                     "weighted_f1": float(f1_score(y, yp, average="weighted", zero_division=0)),
                     "accuracy": float(np.mean(np.array(y) == np.array(yp))),
                     "top3_accuracy": float(top3)})
    if not rows:  # nothing scored: the columns, no rows (a warehouse table still gets written)
        return pl.DataFrame(schema={**{k: pl.String for k in by}, step_col: pl.Int64, "n": pl.Int64,
                                    "weighted_f1": pl.Float64, "accuracy": pl.Float64, "top3_accuracy": pl.Float64})
    return pl.DataFrame(rows).sort(keys)


def confusion(
    predictions: pl.DataFrame,
    step_col: str = "step",
    by: Sequence[str] = ("set", "mode"),
    *,
    classes: MoaClasses,
    active_only: bool = False,
) -> pl.DataFrame:
    """Confusion matrices as a long table: by…, step, true, predicted, n (every cell, zeros too)."""
    df = _scored(predictions, active_only)
    keys = [*by, step_col]
    parts = []
    for key, g in df.group_by(keys, maintain_order=True):
        M = confusion_matrix(g["moa"].to_list(), g["predicted"].to_list(), labels=list(classes.probe))
        i, j = np.indices(M.shape)
        parts.append(pl.DataFrame({
            **{k: [v] * M.size for k, v in zip(keys, key)},
            "true": [classes.probe[a] for a in i.ravel()],
            "predicted": [classes.probe[b] for b in j.ravel()],
            "n": M.ravel().astype(np.int64),
        }))
    if not parts:
        return pl.DataFrame(schema={**{k: pl.String for k in by}, step_col: pl.Int64, "true": pl.String,
                                    "predicted": pl.String, "n": pl.Int64})
    return pl.concat(parts).sort(keys)


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
    doses aggregated) and ``mode="single_highest"`` (:func:`~lcd_core.moa.aggregation.single_highest`)."""
    incr = predictions.filter(pl.col("mode") == "incremental")
    incr = incr.filter(pl.col("step") == pl.col("step").max().over("compound", "set"))
    single = single_highest(predictions).with_columns(mode=pl.lit("single_highest"))
    return pl.concat([incr, single], how="diagonal_relaxed")


def _final_scores(finals: Mapping[str, pl.DataFrame], classes: MoaClasses) -> pl.DataFrame:
    """features, set, mode, n, weighted_f1, accuracy, top3_accuracy of each feature set's final calls.

    A feature set that classified nothing (no probe could be trained) keeps its rows, with n = 0
    and null scores, so the comparison shows it rather than losing it."""
    cols = ["features", "set", "mode", "n", "weighted_f1", "accuracy", "top3_accuracy"]
    parts = {name: metrics(f.with_columns(step=pl.lit(0)), classes=classes).drop("step").with_columns(
        features=pl.lit(name)) for name, f in finals.items() if f.height}
    parts = {n: p for n, p in parts.items() if p.height}
    keys = pl.concat([p.select("set", "mode") for p in parts.values()]).unique(maintain_order=True) if parts \
        else pl.DataFrame({"set": [None], "mode": [None]}, schema={"set": pl.String, "mode": pl.String})
    none = {"n": pl.lit(0, pl.Int64), **{c: pl.lit(None, pl.Float64) for c in cols[4:]}}
    empty = [keys.with_columns(features=pl.lit(n), **none) for n in finals if n not in parts]
    return pl.concat([*parts.values(), *empty], how="diagonal_relaxed").select(cols)


def _pair_tests(a_name: str, a: pl.DataFrame, b_name: str, b: pl.DataFrame) -> list[dict]:
    """McNemar rows of two feature sets' final calls, per set × mode, on the compounds both score."""
    rows = []
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
    return rows


def compare_feature_sets(
    predictions: Mapping[str, pl.DataFrame], *, classes: MoaClasses
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Weighted F1 / accuracy / top-3 of several feature sets' final calls, and McNemar's test
    between every pair of them on the compounds both score (per set × mode).

    Parameters
    ----------
    predictions
        ``{feature set name: predictions}`` (as
        :func:`~lcd_core.moa.aggregation.aggregate_incremental`, same compounds).
    classes
        The screen's MoA classes.

    Returns
    -------
    (scores, tests)
        ``scores``: features, set, mode, n, weighted_f1, accuracy, top3_accuracy.
        ``tests``: set, mode, features_a, features_b, n, b (A right, B wrong), c, statistic,
        p_value, method.
    """
    finals = {name: final_predictions(p) for name, p in predictions.items()}
    names, rows = list(finals), []
    for i, a_name in enumerate(names):
        for b_name in names[i + 1:]:
            rows += _pair_tests(a_name, finals[a_name], b_name, finals[b_name])
    return _final_scores(finals, classes), pl.DataFrame(rows, schema=_TESTS_SCHEMA)
