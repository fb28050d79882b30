"""The JUMP recipe's reading of phenotypic activity, with copairs, on the platform's well profiles.

What most labs run today on the same well profiles (copairs' "phenotypic activity" recipe):

* per query well, **positives** are the other replicate wells of its condition (same compound,
  dose and timepoint, any plate: the recipe's ``pos_diffby = []``), **negatives** the DMSO wells
  of its own plate × timepoint (the recipe's ``neg_sameby = [plate]``; a plate is one dose);
  DMSO wells get a unique ``Metadata_reference_index`` so they are never each other's positives;
* AP per query well (``copairs.map.average_precision``, cosine), then mAP per condition with a
  permutation null and Benjamini–Hochberg FDR over every condition passed in
  (``copairs.map.mean_average_precision``); **active** when the corrected p-value < 0.05.

Versus mAP-ES (:mod:`lcd_core.profiling.activity`): no random draws of 3 positives / 31
negatives from other plates and replicas, no Cohen's d against a DMSO-query null; the null is
copairs' rank permutation of each query's own (n_pos, n_total) list.

Entry point::

    table = copairs_activity(wells)     # wells: run_chain(...).profiles / screen_wells(...)

Input: normalized well profiles in the cytomining convention (``Metadata_compound``, ``_dose``,
``_timepoint``, ``_plate``, ``_role`` — ``negative_control`` marks DMSO — optional ``_moa``; every
other column a feature). FDR scope: the conditions of the table given; pass one dose × timepoint
to correct within it.

Output: compound, dose, timepoint (strings), moa, n_wells, n_queries (wells with a positive and a
negative), map (mean AP), p_value, corrected_p_value, active, score (= map). A condition with no
scorable query (a single replicate well) has null map / p-values, active False: unscorable, still
a row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from lcd_core.profiling.profiles import feature_columns

__all__ = ["NULL_SIZE", "FDR_THRESHOLD", "copairs_average_precision", "copairs_activity"]

NULL_SIZE = 100_000
FDR_THRESHOLD = 0.05
_C, _D, _T = "Metadata_compound", "Metadata_dose", "Metadata_timepoint"
_P, _R, _M = "Metadata_plate", "Metadata_role", "Metadata_moa"
_REF = "Metadata_reference_index"
_CONTROL = "negative_control"


def _check(wells: pl.DataFrame, feats: list[str]) -> np.ndarray:
    """The feature matrix; raises on missing metadata, no features, non-finite values or a
    measurement (plate × timepoint) with treated wells and no DMSO well, naming the offenders."""
    missing = [c for c in (_C, _D, _T, _P, _R) if c not in wells.columns]
    if missing or not feats:
        raise ValueError(f"well profiles lack {missing or 'feature columns'}; columns: {wells.columns[:12]}…")
    X = wells.select(feats).cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        rows = wells.filter(pl.Series(bad)).select(_P, _T, _C).head(5).rows()
        raise ValueError(f"{int(bad.sum())} well profile(s) with non-finite features, e.g. {rows}")
    per = wells.group_by(_P, _T).agg((pl.col(_R) == _CONTROL).sum().alias("n_dmso"))
    none = per.filter(pl.col("n_dmso") == 0).sort(_P, _T)
    if none.height:
        names = ", ".join(f"{p} × {t}" for p, t, _ in none.rows())
        raise ValueError(f"no DMSO ({_CONTROL!r}) well, so no negatives, in plate × timepoint: {names}")
    return X


def copairs_average_precision(wells: pl.DataFrame, *, pos_diffby: Sequence[str] = (),
                              neg_sameby: Sequence[str] = (_P, _T)):
    """AP of every treated well against its replicates (positives) and DMSO (negatives).

    Parameters
    ----------
    wells
        Normalized well profiles (module doc).
    pos_diffby
        Metadata a positive pair must differ in (the recipe: none; e.g. ``("Metadata_plate",)``).
    neg_sameby
        Metadata a query and its DMSO negatives share (default its plate × timepoint).

    Returns
    -------
    pandas.DataFrame
        copairs' AP rows of the treated wells (``average_precision``, ``n_pos_pairs``,
        ``n_total_pairs`` + metadata); NaN AP where a well has no positive.
    """
    from copairs.map import average_precision

    wells = wells.with_columns(pl.col(_D).cast(pl.String), pl.col(_T).cast(pl.String))
    feats = feature_columns(wells)
    X = _check(wells, feats)
    ctrl = (wells[_R] == _CONTROL).to_numpy()
    meta = wells.select(_C, _D, _T, _P, _R).with_columns(
        pl.Series(_REF, np.where(ctrl, np.arange(wells.height), -1))).to_pandas()
    pos_sameby = [_C, _D, _T, _REF]
    neg_sameby = list(neg_sameby)
    neg_diffby = [_C, _REF]
    ap = average_precision(meta, X, pos_sameby=pos_sameby, pos_diffby=list(pos_diffby),
                           neg_sameby=neg_sameby, neg_diffby=neg_diffby, progress_bar=False)
    return ap[ap[_R] != _CONTROL]


def _conditions(wells: pl.DataFrame) -> pl.DataFrame:
    """compound, dose, timepoint, moa, n_wells of the treated wells."""
    moa = pl.col(_M).drop_nulls().first() if _M in wells.columns else pl.lit(None, pl.String)
    return (wells.filter(pl.col(_R) != _CONTROL)
            .group_by(pl.col(_C).alias("compound"), pl.col(_D).cast(pl.String).alias("dose"),
                      pl.col(_T).cast(pl.String).alias("timepoint"))
            .agg(moa.cast(pl.String).alias("moa"), pl.len().cast(pl.Int64).alias("n_wells")))


def copairs_activity(wells: pl.DataFrame, *, null_size: int = NULL_SIZE, threshold: float = FDR_THRESHOLD,
                     seed: int = 0, pos_diffby: Sequence[str] = (), cache_dir: str | Path | None = None
                     ) -> pl.DataFrame:
    """Phenotypic activity per compound × dose × timepoint by the JUMP recipe (module doc).

    Parameters
    ----------
    wells
        Normalized well profiles (``run_chain(...).profiles`` or a dose × timepoint of it).
    null_size
        Permutations of copairs' null per (n_pos, n_total) configuration; p-values are at least
        ``1 / (null_size + 1)``.
    threshold
        Corrected p-value below which a condition is active.
    seed
        copairs' null seed.
    pos_diffby
        See :func:`copairs_average_precision`.
    cache_dir
        copairs' null cache; default a temporary folder removed afterwards (copairs would write
        ``~/.copairs``).
    """
    from copairs.map import mean_average_precision

    ap = copairs_average_precision(wells, pos_diffby=pos_diffby)  # checks the input first
    conds = _conditions(wells)
    ap = ap[(ap["n_pos_pairs"] > 0) & (ap["n_total_pairs"] > ap["n_pos_pairs"])]
    schema = {"compound": pl.String, "dose": pl.String, "timepoint": pl.String, "n_queries": pl.Int64,
              "map": pl.Float64, "p_value": pl.Float64, "corrected_p_value": pl.Float64}
    if len(ap):
        with tempfile.TemporaryDirectory() as tmp:
            res = mean_average_precision(ap, [_C, _D, _T], null_size=null_size, threshold=threshold, seed=seed,
                                         progress_bar=False, cache_dir=cache_dir or tmp)
        scored = pl.DataFrame({"compound": res[_C].astype(str).tolist(), "dose": res[_D].astype(str).tolist(),
                               "timepoint": res[_T].astype(str).tolist(),
                               "n_queries": [len(i) for i in res["indices"]],
                               "map": res["mean_average_precision"].to_numpy(np.float64),
                               "p_value": res["p_value"].to_numpy(np.float64),
                               "corrected_p_value": res["corrected_p_value"].to_numpy(np.float64)}, schema=schema)
    else:
        scored = pl.DataFrame(schema=schema)
    keys = ["compound", "dose", "timepoint"]
    return (conds.join(scored, on=keys, how="left").with_columns(
        pl.col("n_queries").fill_null(0),
        (pl.col("corrected_p_value") < threshold).fill_null(False).alias("active"),
        pl.col("map").alias("score"))
        .select(*keys, "moa", "n_wells", "n_queries", "map", "p_value", "corrected_p_value", "active", "score")
        .sort(keys))
