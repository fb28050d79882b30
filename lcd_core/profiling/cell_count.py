"""The cell-count baseline of phenotypic activity (SPEC §4.6).

The paper's comparison readout: nuclei count per FOV, z-scored against the DMSO FOVs of the same
plate and timepoint; per compound × dose × timepoint the 95 % bootstrap interval of the median z
over all its FOVs; active when the upper bound is below 0 (fewer cells than DMSO).

Entry points::

    z = count_zscores(fovs)                      # one row per FOV, + count_z
    act = cell_count_activity(fovs, seed=0)      # one row per compound × dose × timepoint

Input
-----
One row per FOV with the FOV lineage columns (:data:`lcd_core.pipeline.acquisition.FOV_KEYS`:
plate, timepoint, replica, layout, dose, barcode, well, compound, moa, role, field; the
``Metadata_*`` spelling of the cytomining convention is accepted too) and a count column
(``n_nuclei`` by default; any per-FOV count works). Needed: plate, timepoint, dose, compound,
role and the count.

DMSO
----
A FOV is DMSO when ``role == "negative_control"`` (the plate map's role; the plate-map loader
guarantees that role sits exactly on the control compound). Each plate × timepoint is scaled by its
own DMSO FOVs: mean and sample SD (ddof 1). A plate × timepoint with treated FOVs but fewer than two
finite DMSO counts, or a DMSO SD of 0, raises a :class:`ValueError` naming it: a z-score against
no spread is undefined, and substituting a floor would invent a scale.

Missing counts (null / NaN, e.g. a FOV the detector could not read) are left out of every
statistic and counted per condition in ``n_fovs_missing``; a negative count raises.

Output (``cell_count_activity``)
--------------------------------
compound, dose, timepoint (strings), moa, n_fovs (finite FOVs used), n_fovs_missing, median_z,
ci_low, ci_high (2.5 / 97.5 percentiles of the bootstrap medians), active (``ci_high < 0``),
score (``-median_z``: larger = fewer cells, for ranking and AUROC). DMSO itself is not a row.
A condition without a finite FOV has NaN statistics and active False.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

__all__ = ["CONTROL_ROLE", "CONDITION_KEYS", "plain_lineage", "dmso_stats", "count_zscores",
           "bootstrap_median_ci", "cell_count_activity"]

CONTROL_ROLE = "negative_control"
CONDITION_KEYS = ("compound", "dose", "timepoint")
_MEASUREMENT = ("plate", "timepoint")
_NEEDED = ("plate", "timepoint", "dose", "compound", "role")


def plain_lineage(fovs: pl.DataFrame) -> pl.DataFrame:
    """``fovs`` with ``Metadata_<key>`` renamed to ``<key>`` where the plain name is absent."""
    ren = {c: c.removeprefix("Metadata_") for c in fovs.columns
           if c.startswith("Metadata_") and c.removeprefix("Metadata_") not in fovs.columns}
    return fovs.rename(ren)


def _check_columns(fovs: pl.DataFrame, value: str) -> None:
    missing = [c for c in (*_NEEDED, value) if c not in fovs.columns]
    if missing:
        raise ValueError(f"per-FOV table lacks column(s) {missing}; has {fovs.columns}")


def _finite(col: str) -> pl.Expr:
    return pl.col(col).is_not_null() & pl.col(col).cast(pl.Float64).is_finite()


def dmso_stats(fovs: pl.DataFrame, value: str, *, need_sd: bool = True) -> pl.DataFrame:
    """Mean and SD (ddof 1) of ``value`` over the DMSO FOVs of each plate × timepoint.

    Parameters
    ----------
    fovs
        Per-FOV rows (plain lineage names) with ``value``.
    value
        The per-FOV readout (count, confluency, …).
    need_sd
        Require at least two finite DMSO values and SD > 0 (z-scores); else only a mean ≠ 0
        (% inhibition).

    Returns
    -------
    pl.DataFrame
        plate, timepoint, dmso_n, dmso_mean, dmso_sd — one row per plate × timepoint of ``fovs``.

    Raises
    ------
    ValueError
        Naming every plate × timepoint whose DMSO cannot scale it.
    """
    meas = fovs.select(*_MEASUREMENT).unique()
    ctrl = fovs.filter((pl.col("role") == CONTROL_ROLE) & _finite(value))
    stats = ctrl.group_by(*_MEASUREMENT).agg(
        pl.len().alias("dmso_n"), pl.col(value).cast(pl.Float64).mean().alias("dmso_mean"),
        pl.col(value).cast(pl.Float64).std(ddof=1).alias("dmso_sd"))
    out = meas.join(stats, on=list(_MEASUREMENT), how="left").with_columns(pl.col("dmso_n").fill_null(0))
    if need_sd:
        bad = out.filter((pl.col("dmso_n") < 2) | ~(pl.col("dmso_sd") > 0))
        why = "fewer than 2 finite DMSO FOVs or a DMSO SD of 0"
    else:
        bad = out.filter((pl.col("dmso_n") < 1) | (pl.col("dmso_mean") == 0))
        why = "no finite DMSO FOV or a DMSO mean of 0"
    if bad.height:
        names = ", ".join(f"{p} × {t} (n={n}, mean={m}, sd={s})" for p, t, n, m, s in
                          bad.sort(*_MEASUREMENT).select(*_MEASUREMENT, "dmso_n", "dmso_mean", "dmso_sd").iter_rows())
        raise ValueError(f"{value!r}: {why} (role {CONTROL_ROLE!r}) in plate × timepoint: {names}")
    return out.sort(*_MEASUREMENT)


def count_zscores(fovs: pl.DataFrame, count: str = "n_nuclei") -> pl.DataFrame:
    """Each FOV's ``count`` z-scored against the DMSO FOVs of its plate × timepoint.

    Returns ``fovs`` (plain lineage names, ``dose`` / ``timepoint`` as strings) with ``count_z``
    (null where the count is missing) and the reference's dmso_mean, dmso_sd.
    """
    fovs = plain_lineage(fovs)
    _check_columns(fovs, count)
    fovs = fovs.with_columns(pl.col("dose").cast(pl.String), pl.col("timepoint").cast(pl.String))
    neg = fovs.filter(_finite(count) & (pl.col(count) < 0))
    if neg.height:
        raise ValueError(f"negative {count!r} in {neg.height} FOV(s), e.g. "
                         f"{neg.select(*_MEASUREMENT, *[c for c in ('well', 'field') if c in fovs.columns]).row(0)}")
    ref = dmso_stats(fovs, count).select(*_MEASUREMENT, "dmso_mean", "dmso_sd")
    return fovs.join(ref, on=list(_MEASUREMENT), how="left", maintain_order="left").with_columns(
        pl.when(_finite(count)).then((pl.col(count).cast(pl.Float64) - pl.col("dmso_mean")) / pl.col("dmso_sd"))
        .otherwise(None).alias("count_z"))


def _rng(seed: int, *parts) -> np.random.Generator:
    """A generator for one condition: the same draws whatever else is in the table."""
    return np.random.default_rng([int(seed), zlib.crc32("\x1f".join(map(str, parts)).encode())])


def bootstrap_median_ci(x: np.ndarray, rng: np.random.Generator, n_boot: int = 1000,
                        level: float = 0.95) -> tuple[float, float, float]:
    """Median of ``x`` and the percentile bootstrap interval of the median (one vectorised draw).

    Returns (median, low, high); NaNs for an empty ``x``. A single value gives a zero-width
    interval (the data hold no spread to resample).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.nan, np.nan, np.nan
    meds = np.median(x[rng.integers(0, x.size, size=(n_boot, x.size))], axis=1)
    lo, hi = np.percentile(meds, [50 * (1 - level), 50 * (1 + level)])
    return float(np.median(x)), float(lo), float(hi)


def _first_moa(g: pl.DataFrame) -> str | None:
    if "moa" not in g.columns:
        return None
    vals = g["moa"].drop_nulls()
    return vals[0] if len(vals) else None


def cell_count_activity(fovs: pl.DataFrame, count: str = "n_nuclei", *, n_boot: int = 1000,
                        seed: int = 0, level: float = 0.95) -> pl.DataFrame:
    """The cell-count activity of every treated compound × dose × timepoint (module doc).

    Parameters
    ----------
    fovs
        Per-FOV rows with the lineage and ``count``.
    count
        The count column.
    n_boot
        Bootstrap resamples of the condition's FOVs (with replacement).
    seed
        Base seed; each condition's generator derives from (seed, compound, dose, timepoint).
    level
        Interval level.
    """
    z = count_zscores(fovs, count).filter(pl.col("role") != CONTROL_ROLE)
    rows = []
    for key, g in z.partition_by(list(CONDITION_KEYS), as_dict=True, maintain_order=True).items():
        vals = np.sort(g["count_z"].drop_nulls().to_numpy())  # sorted: row order cannot change the draws
        med, lo, hi = bootstrap_median_ci(vals, _rng(seed, *key), n_boot, level)
        rows.append((*key, _first_moa(g), vals.size, g.height - vals.size, med, lo, hi))
    schema = {"compound": pl.String, "dose": pl.String, "timepoint": pl.String, "moa": pl.String,
              "n_fovs": pl.Int64, "n_fovs_missing": pl.Int64, "median_z": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64}
    out = pl.DataFrame(rows, schema=schema, orient="row")
    return out.with_columns(
        (pl.col("ci_high") < 0).fill_null(False).alias("active"),
        (-pl.col("median_z")).alias("score"),
    ).sort(*CONDITION_KEYS)
