"""% inhibition of the count and the confluency, and how the two agree (SPEC §4.9).

``% inhibition = 100 · (mean_DMSO − x) / mean_DMSO``: 0 for a DMSO-like FOV, 100 for an empty
one, negative for more cells than DMSO. ``mean_DMSO`` is the mean of the DMSO FOVs
(``role == "negative_control"``) of the FOV's own plate × timepoint, as for the z-scores of
:mod:`lcd_core.profiling.cell_count`.

Entry points::

    per_fov = fov_inhibition(fovs)                 # + count_inhibition, confluency_inhibition
    cond = condition_inhibition(fovs)              # one row per compound × dose × timepoint
    inhibition_correlation(cond)                   # Pearson r, Fisher and bootstrap intervals

A condition's inhibition is the mean of its FOVs' inhibitions (each against its own plate's
DMSO): within one plate that is exactly the formula applied to the condition's mean, across plates
it averages already-normalized values. Missing values (null / NaN) are left out and counted. A
plate × timepoint without a finite DMSO value, or with a DMSO mean of 0, raises a
:class:`ValueError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
from scipy import stats

from lcd_core.profiling.cell_count import (CONDITION_KEYS, CONTROL_ROLE, _check_columns, _finite,
                                           _rng, dmso_stats, plain_lineage)

__all__ = ["DEFAULT_READOUTS", "percent_inhibition", "fov_inhibition", "condition_inhibition",
           "inhibition_correlation"]

#: output name → per-FOV column: ``count_inhibition`` from ``n_nuclei``, ``confluency_inhibition``
#: from ``confluency``.
DEFAULT_READOUTS: Mapping[str, str] = {"count": "n_nuclei", "confluency": "confluency"}


def percent_inhibition(x, dmso_mean):
    """``100 · (dmso_mean − x) / dmso_mean`` (numbers, arrays or polars expressions)."""
    return 100.0 * (dmso_mean - x) / dmso_mean


def fov_inhibition(fovs: pl.DataFrame, readouts: Mapping[str, str] = DEFAULT_READOUTS) -> pl.DataFrame:
    """Per-FOV % inhibition of each readout against its plate × timepoint's DMSO mean.

    Parameters
    ----------
    fovs
        Per-FOV rows with the lineage (plate, timepoint, dose, compound, role; ``Metadata_*`` names
        accepted) and the readout columns.
    readouts
        Output name → column; adds ``<name>_inhibition`` (null where the value is missing).

    Returns
    -------
    pl.DataFrame
        ``fovs`` (plain names, dose / timepoint as strings) with one inhibition column per readout.
    """
    fovs = plain_lineage(fovs).with_columns(pl.col("dose").cast(pl.String), pl.col("timepoint").cast(pl.String))
    for name, col in readouts.items():
        _check_columns(fovs, col)
        ref = dmso_stats(fovs, col, need_sd=False).select("plate", "timepoint", pl.col("dmso_mean").alias("__m"))
        fovs = fovs.join(ref, on=["plate", "timepoint"], how="left", maintain_order="left").with_columns(
            pl.when(_finite(col)).then(percent_inhibition(pl.col(col).cast(pl.Float64), pl.col("__m")))
            .otherwise(None).alias(f"{name}_inhibition")).drop("__m")
    return fovs


def condition_inhibition(fovs: pl.DataFrame, readouts: Mapping[str, str] = DEFAULT_READOUTS) -> pl.DataFrame:
    """Mean % inhibition per treated compound × dose × timepoint.

    Returns
    -------
    pl.DataFrame
        compound, dose, timepoint, n_fovs, and per readout ``<name>_inhibition`` (mean over its
        finite FOVs; null if none) and ``<name>_n_missing``. DMSO is not a row.
    """
    per = fov_inhibition(fovs, readouts).filter(pl.col("role") != CONTROL_ROLE)
    aggs = [pl.len().alias("n_fovs")]
    for name in readouts:
        c = f"{name}_inhibition"
        aggs += [pl.col(c).mean().alias(c), pl.col(c).is_null().sum().cast(pl.Int64).alias(f"{name}_n_missing")]
    return per.group_by(*CONDITION_KEYS).agg(*aggs).with_columns(pl.col("n_fovs").cast(pl.Int64)).sort(*CONDITION_KEYS)


def _pearson_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) matrices (NaN where a row has no spread)."""
    xc = X - X.mean(axis=1, keepdims=True)
    yc = Y - Y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(axis=1) / den, np.nan)


def inhibition_correlation(table: pl.DataFrame, x: str = "count_inhibition", y: str = "confluency_inhibition",
                           *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pl.DataFrame:
    """Pearson r between two inhibition columns (the paper: confluency vs count, r = 0.83).

    Parameters
    ----------
    table
        Rows to correlate (conditions from :func:`condition_inhibition`, or FOVs).
    x, y
        The two columns.
    n_boot, seed, level
        Percentile bootstrap over rows (one vectorised draw) and the interval level.

    Returns
    -------
    pl.DataFrame
        One row: n (rows with both values finite), n_excluded, r, fisher_ci_low, fisher_ci_high
        (Fisher z, ``atanh(r) ± z_q / sqrt(n − 3)``; null for n ≤ 3), boot_ci_low, boot_ci_high
        (null for n < 3). r is null when either column has no spread.
    """
    ok = table.filter(_finite(x) & _finite(y))
    xs, ys = ok[x].cast(pl.Float64).to_numpy(), ok[y].cast(pl.Float64).to_numpy()
    n = xs.size
    r = float(_pearson_rows(xs[None], ys[None])[0]) if n >= 2 else np.nan
    f_lo = f_hi = b_lo = b_hi = None
    q = stats.norm.ppf(0.5 + level / 2)
    if n > 3 and np.isfinite(r):
        zr = np.arctanh(np.clip(r, -1 + 1e-15, 1 - 1e-15))
        f_lo, f_hi = float(np.tanh(zr - q / np.sqrt(n - 3))), float(np.tanh(zr + q / np.sqrt(n - 3)))
    if n >= 3 and np.isfinite(r):
        idx = _rng(seed, "inhibition_correlation", x, y).integers(0, n, size=(n_boot, n))
        rb = _pearson_rows(xs[idx], ys[idx])
        if np.isfinite(rb).any():
            b_lo, b_hi = (float(v) for v in np.nanpercentile(rb, [50 * (1 - level), 50 * (1 + level)]))
    return pl.DataFrame([{"x": x, "y": y, "n": n, "n_excluded": table.height - n,
                          "r": r if np.isfinite(r) else None, "fisher_ci_low": f_lo, "fisher_ci_high": f_hi,
                          "boot_ci_low": b_lo, "boot_ci_high": b_hi}],
                        schema={"x": pl.String, "y": pl.String, "n": pl.Int64, "n_excluded": pl.Int64,
                                "r": pl.Float64, "fisher_ci_low": pl.Float64, "fisher_ci_high": pl.Float64,
                                "boot_ci_low": pl.Float64, "boot_ci_high": pl.Float64})
