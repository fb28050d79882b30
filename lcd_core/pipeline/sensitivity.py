"""Sensitivity of activity readouts side by side: the paper's central claim, with intervals.

The claim (SPEC §4.5–4.6, §5): mAP-ES of image profiles calls more compounds active than the cell
count, most at low doses and early timepoints. :func:`sensitivity_comparison` puts any number of
readouts (``"mAP-ES (model)"``, ``"mAP-ES (handcrafted)"``, ``"cell count"``,
``"copairs mAP (FDR)"`` …) on one table, per dose × timepoint and over all conditions, and adds
paired differences (model − cell count by default) so the claim can be read per dose and
timepoint with an interval.

Readout tables: one row per compound × dose × timepoint with ``active`` (bool) and ``score``
(larger = more active: mAP-ES, ``-median_z`` of the count, copairs mAP). A condition is
*unscorable* in a readout when its score is null / non-finite or ``active`` is null; it is
*missing* when another readout has it and this one does not. Both are counted per row
(``n_unscorable``, ``n_missing``), never silently dropped; fractions are over the scored ones.

Truth (a synthetic screen's ``truth/conditions.parquet``: compound, dose, timepoint,
truly_active) is joined on the three keys as in :func:`lcd_core.ground_truth.activity_against_truth`
(dose and timepoint compared as strings).

Intervals (``level`` 95 %): fraction called and recall — Wilson score intervals; AUROC — a
stratified bootstrap (true actives and inactives resampled separately, ``n_boot`` resamples,
seeded); paired differences — a paired bootstrap over the conditions both readouts scored
(recall: over those truly active; AUROC: stratified, shared resamples).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats

from lcd_core.keys import parse_dose_key

__all__ = ["MODEL", "CELL_COUNT", "DEFAULT_PAIRS", "ALL", "wilson_interval", "auroc_bootstrap",
           "sensitivity_comparison"]

MODEL, CELL_COUNT = "mAP-ES (model)", "cell count"
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = ((MODEL, CELL_COUNT),)
ALL = "all"
KEYS = ["compound", "dose", "timepoint"]
SCHEMA = {"kind": pl.String, "readout": pl.String, "dose": pl.String, "timepoint": pl.String,
          "n_conditions": pl.Int64, "n_compounds": pl.Int64, "n_unscorable": pl.Int64, "n_missing": pl.Int64,
          "n_active": pl.Int64, "fraction_active": pl.Float64, "fraction_ci_low": pl.Float64,
          "fraction_ci_high": pl.Float64, "n_truly_active": pl.Int64, "true_calls": pl.Int64,
          "false_calls": pl.Int64, "recall": pl.Float64, "recall_ci_low": pl.Float64,
          "recall_ci_high": pl.Float64, "auroc": pl.Float64, "auroc_ci_low": pl.Float64,
          "auroc_ci_high": pl.Float64}


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion ``k / n`` (None, None for ``n == 0``)."""
    if n == 0:
        return None, None
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _rng(seed: int, *parts) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32("\x1f".join(map(str, parts)).encode())])


def auroc_bootstrap(scores: Sequence[np.ndarray], y: np.ndarray, rng: np.random.Generator,
                    n_boot: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """AUROC of each score vector against ``y`` and their stratified bootstrap replicates.

    All score vectors share the resamples (paired). Ties count one half (= scikit-learn's
    ``roc_auc_score``). Vectorised as resample weights: ``AUC_b = w⁺_b · C · w⁻_b / (n⁺ n⁻)``.

    Returns
    -------
    (auc, boot)
        ``auc``: shape (k,); ``boot``: shape (k, n_boot). NaN when ``y`` has one class only.
    """
    y = np.asarray(y, dtype=bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return np.full(len(scores), np.nan), np.full((len(scores), n_boot), np.nan)
    wp = rng.multinomial(npos, np.full(npos, 1 / npos), size=n_boot).astype(np.float64)
    wn = rng.multinomial(nneg, np.full(nneg, 1 / nneg), size=n_boot).astype(np.float64)
    auc, boot = [], []
    for s in scores:
        s = np.asarray(s, dtype=np.float64)
        sp, sn = s[y][:, None], s[~y][None, :]
        C = (sp > sn) + 0.5 * (sp == sn)
        auc.append(C.mean())
        boot.append(((wp @ C) * wn).sum(axis=1) / (npos * nneg))
    return np.array(auc), np.array(boot)


def _percentiles(x: np.ndarray, level: float) -> tuple[float | None, float | None]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None, None
    lo, hi = np.percentile(x, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _prepared(name: str, table: pl.DataFrame) -> pl.DataFrame:
    """compound, dose, timepoint (strings), active, score, scorable of one readout; raises on
    missing columns or duplicated conditions, naming the readout."""
    missing = [c for c in (*KEYS, "active", "score") if c not in table.columns]
    if missing:
        raise ValueError(f"readout {name!r} lacks column(s) {missing}; has {table.columns}")
    t = table.select(pl.col("compound").cast(pl.String), pl.col("dose").cast(pl.String),
                     pl.col("timepoint").cast(pl.String), pl.col("active").cast(pl.Boolean),
                     pl.col("score").cast(pl.Float64))
    dup = t.group_by(KEYS).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"readout {name!r} has {dup.height} duplicated condition(s), e.g. {dup.row(0)[:3]}")
    ok = pl.col("score").is_not_null() & pl.col("score").is_finite() & pl.col("active").is_not_null()
    return t.with_columns(ok.alias("scorable"))


def _wide(readouts: Mapping[str, pl.DataFrame], truth: pl.DataFrame | None) -> pl.DataFrame:
    """One row per condition of any readout: per readout ``present/scorable/active/score__<i>``,
    and ``truly_active`` (null without truth)."""
    prepared = [_prepared(n, t) for n, t in readouts.items()]
    wide = pl.concat([p.select(KEYS) for p in prepared]).unique()
    for i, p in enumerate(prepared):
        cols = p.select(*KEYS, pl.lit(True).alias(f"present__{i}"), pl.col("scorable").alias(f"scorable__{i}"),
                        pl.col("active").alias(f"active__{i}"), pl.col("score").alias(f"score__{i}"))
        wide = wide.join(cols, on=KEYS, how="left")
    if truth is not None:
        tr = truth.select(pl.col("compound").cast(pl.String), pl.col("dose").cast(pl.String),
                          pl.col("timepoint").cast(pl.String), pl.col("truly_active").cast(pl.Boolean))
        wide = wide.join(tr.unique(KEYS), on=KEYS, how="left")
    else:
        wide = wide.with_columns(pl.lit(None, pl.Boolean).alias("truly_active"))
    # a fixed row order (unique() and the joins have none): the seeded bootstraps repeat
    return wide.sort(KEYS).with_columns(pl.col(c).fill_null(False) for c in wide.columns
                                        if c.startswith(("present__", "scorable__")))


def _groups(wide: pl.DataFrame) -> list[tuple[str, str]]:
    def dose_order(d: str) -> tuple:
        try:
            return (0, parse_dose_key(d))
        except ValueError:
            try:
                return (0, float(d))
            except ValueError:
                return (1, 0.0)
    keys = sorted(wide.select("dose", "timepoint").unique().rows(), key=lambda r: (dose_order(r[0]), r[0], r[1]))
    return [*keys, (ALL, ALL)]


def _truth_stats(active: np.ndarray, score: np.ndarray, y: np.ndarray | None, rng, n_boot: int,
                 level: float) -> dict:
    """Recall, false calls and AUROC of scored conditions with a truth label."""
    if y is None or y.size == 0:
        return {}
    n_true = int(y.sum())
    tp, fp = int((active & y).sum()), int((active & ~y).sum())
    auc, boot = auroc_bootstrap([score], y, rng, n_boot)
    lo, hi = _percentiles(boot[0], level)
    r_lo, r_hi = wilson_interval(tp, n_true, level)
    return {"n_truly_active": n_true, "true_calls": tp, "false_calls": fp,
            "recall": tp / n_true if n_true else None, "recall_ci_low": r_lo, "recall_ci_high": r_hi,
            "auroc": float(auc[0]) if np.isfinite(auc[0]) else None, "auroc_ci_low": lo, "auroc_ci_high": hi}


def _readout_row(name: str, i: int, g: pl.DataFrame, group: tuple[str, str], seed: int, n_boot: int,
                 level: float) -> dict:
    scored = g.filter(pl.col(f"scorable__{i}"))
    act = scored[f"active__{i}"].to_numpy().astype(bool)
    k, n = int(act.sum()), scored.height
    lo, hi = wilson_interval(k, n, level)
    row = {"kind": "readout", "readout": name, "dose": group[0], "timepoint": group[1],
           "n_conditions": g.height, "n_compounds": n,
           "n_unscorable": int((g[f"present__{i}"] & ~g[f"scorable__{i}"]).sum()),
           "n_missing": int((~g[f"present__{i}"]).sum()), "n_active": k,
           "fraction_active": k / n if n else None, "fraction_ci_low": lo, "fraction_ci_high": hi}
    lab = scored.filter(pl.col("truly_active").is_not_null())
    y = lab["truly_active"].to_numpy().astype(bool) if lab.height else None
    row |= _truth_stats(lab[f"active__{i}"].to_numpy().astype(bool), lab[f"score__{i}"].to_numpy(), y,
                        _rng(seed, "auroc", name, *group), n_boot, level)
    return row


def _paired_bootstrap(d: np.ndarray, rng, n_boot: int, level: float) -> tuple[float | None, float | None, float | None]:
    """Mean of paired differences ``d`` and its percentile bootstrap interval."""
    if d.size == 0:
        return None, None, None
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = _percentiles(means, level)
    return float(d.mean()), lo, hi


def _paired_row(names: tuple[str, str], idx: tuple[int, int], g: pl.DataFrame, group: tuple[str, str],
                seed: int, n_boot: int, level: float) -> dict:
    (a, b), (i, j) = names, idx
    both = g.filter(pl.col(f"scorable__{i}") & pl.col(f"scorable__{j}"))
    da = both[f"active__{i}"].to_numpy().astype(np.float64) - both[f"active__{j}"].to_numpy().astype(np.float64)
    rng = _rng(seed, "paired", a, b, *group)
    diff, lo, hi = _paired_bootstrap(da, rng, n_boot, level)
    row = {"kind": "paired difference", "readout": f"{a} − {b}", "dose": group[0], "timepoint": group[1],
           "n_conditions": g.height, "n_compounds": both.height, "n_unscorable": g.height - both.height,
           "n_missing": None, "n_active": int(da.sum()), "fraction_active": diff,
           "fraction_ci_low": lo, "fraction_ci_high": hi}
    lab = both.filter(pl.col("truly_active").is_not_null())
    if lab.height:
        y = lab["truly_active"].to_numpy().astype(bool)
        ai, aj = (lab[f"active__{k}"].to_numpy().astype(bool) for k in (i, j))
        r, r_lo, r_hi = _paired_bootstrap((ai[y].astype(float) - aj[y]), rng, n_boot, level)
        auc, boot = auroc_bootstrap([lab[f"score__{i}"].to_numpy(), lab[f"score__{j}"].to_numpy()], y, rng, n_boot)
        a_lo, a_hi = _percentiles(boot[0] - boot[1], level)
        row |= {"n_truly_active": int(y.sum()), "true_calls": int((ai & y).sum() - (aj & y).sum()),
                "false_calls": int((ai & ~y).sum() - (aj & ~y).sum()), "recall": r, "recall_ci_low": r_lo,
                "recall_ci_high": r_hi, "auroc": float(auc[0] - auc[1]) if np.isfinite(auc).all() else None,
                "auroc_ci_low": a_lo, "auroc_ci_high": a_hi}
    return row


def sensitivity_comparison(readouts: Mapping[str, pl.DataFrame], truth: pl.DataFrame | None = None, *,
                           pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95) -> pl.DataFrame:
    """Fraction called active, recall, false calls and AUROC of each readout, with intervals.

    Parameters
    ----------
    readouts
        Name → table (compound, dose, timepoint, active, score); see the module doc.
    truth
        compound, dose, timepoint, truly_active, or None (truth columns stay null).
    pairs
        (a, b) readout names compared as ``a − b`` on the conditions both scored; a pair naming an
        absent readout is skipped.
    n_boot, seed, level
        Bootstrap resamples, base seed (each row's generator derives from it and the row's keys),
        interval level.

    Returns
    -------
    pl.DataFrame
        :data:`SCHEMA`. ``kind == "readout"``: one row per readout × dose × timepoint plus a
        ``dose == timepoint == "all"`` row; n_conditions (the union of every readout's
        conditions there), n_compounds (scored), n_unscorable, n_missing, n_active,
        fraction_active + Wilson interval; with truth: n_truly_active (scored, labelled),
        true_calls, false_calls, recall + Wilson interval, AUROC of score + stratified bootstrap
        interval. ``kind == "paired difference"``: ``a − b`` on the conditions both scored —
        differences of fraction called, of recall (true actives), of AUROC, with paired
        bootstrap intervals; true_calls / false_calls / n_active are differences of counts.
    """
    if not readouts:
        raise ValueError("no readouts to compare")
    names = list(readouts)
    wide = _wide(readouts, truth)
    rows = []
    for group in _groups(wide):
        in_group = (pl.col("dose") == group[0]) & (pl.col("timepoint") == group[1])
        g = wide if group == (ALL, ALL) else wide.filter(in_group)
        rows += [_readout_row(n, i, g, group, seed, n_boot, level) for i, n in enumerate(names)]
        rows += [_paired_row((a, b), (names.index(a), names.index(b)), g, group, seed, n_boot, level)
                 for a, b in pairs if a in readouts and b in readouts]
    out = pl.DataFrame(rows, schema=SCHEMA)
    return out.sort(pl.col("kind") == "paired difference", maintain_order=True)
