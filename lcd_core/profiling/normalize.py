"""Normalization of well / FOV profiles: one interface, six methods (SPEC §4.4 and sphering).

Entry point::

    res = normalize(profiles, "mad_harmony_fov")      # profiles: cytomining frame
    res.profiles                                      # normalized frame (Metadata_* + features)
    res.diagnostics                                   # one row per plate × timepoint
    wells = to_wells(res.profiles)                    # FOV rows → well rows (if FOV input)

``profiles`` is a polars frame in the cytomining convention (``Metadata_*`` columns + float
feature columns, see :mod:`lcd_core.profiling.profiles`; ``to_cytomining(well_embeddings)`` produces one).
Rows may be wells or FOVs (a ``Metadata_field`` column marks FOV rows).

Methods (``METHODS``)
---------------------
``"none"``
    Features unchanged (cast to Float64).
``"mad"``
    Robustize per measurement (``group_cols``, default plate × timepoint) against its own control
    (DMSO) rows: ``(x − median_DMSO) / (1.4826 · MAD_DMSO)`` — equal to pycytominer's
    ``RobustMAD`` fitted on the group's controls (up to its 1e-18 epsilon) wherever no floor
    applies (see *zero MAD* below).
``"harmony"``
    harmonypy (2.x, C++ core) on the raw features, batch variables ``harmony_vars``. Harmony is
    run on the features themselves (no PCA first), as the paper does on the 384-d embeddings.
``"fastmnn"``
    Our implementation of fastMNN (Haghverdi et al. 2018; batchelor's ``fastMNN``), see
    :func:`~lcd_core.profiling.batch_correction.fastmnn`: cosine-normalise rows, PCA
    (``mnn_npcs`` components, each batch weighted equally), then merge batches (``mnn_batch``,
    sorted order) one by one into the growing reference: mutual nearest neighbours (k = ``mnn_k``)
    between reference and batch, one correction vector per MNN pair (reference − batch), averaged
    per paired batch row, smoothed to every batch row with a Gaussian kernel on PC-space distance
    (bandwidth ``mnn_sigma``: ``w = exp(−d² / sigma)``, normalised per row, computed in log space
    so it never underflows to all-zero). Output features are the corrected PCs, columns
    ``mnn_000`` …
``"mad_harmony_fov"``
    The paper's best: ``"mad"`` per measurement, concatenate, then Harmony with the replica and
    the FOV index only (``harmony_vars`` default ``("Metadata_replica", "Metadata_field")``).
    Intended for FOV rows (``Metadata_field`` required); average to wells afterwards with
    :func:`to_wells`.
``"mad_spherize"``
    ``"mad"`` per measurement, then sphering (whitening) fitted on every control row of the frame:
    pycytominer's ``Spherize`` (``ZCA-cor``, ``spherize_epsilon`` default 1e-6), the JUMP
    profiling recipe's step for CellProfiler features (Kessy et al. 2016; "typical variation
    normalization", Ando et al. 2017). It makes DMSO's variation isotropic, so correlated
    handcrafted features no longer dominate the cosine; the handcrafted baseline's default.

Decisions (documented policy)
-----------------------------
* **Level.** Normalization runs on the rows it is given. For ``mad_harmony_fov`` the rows must be
  FOVs (the FOV index is a Harmony batch variable); wells are then the unweighted mean of their
  normalized FOVs (:func:`to_wells`, same rule as ``well_embeddings``). Other methods accept wells
  or FOVs; Harmony variables missing from the frame are skipped with a warning and recorded in
  ``result.notes`` (an error if none is left).
* **Minimum controls.** A MAD group (plate × timepoint) needs at least ``min_controls`` (default 5)
  distinct control *wells* (distinct ``Metadata_well`` if present, otherwise rows); fewer raises
  ``ValueError`` naming every such plate/timepoint (and its dose, with a ``Metadata_dose``
  column) and its count: a plate whose DMSO wells all failed QC has no control row and stops the
  timepoint's normalization, never yielding NaN profiles. ``harmony`` / ``fastmnn`` / ``none`` do
  not use controls.
* **Zero / tiny MAD.** The scale of feature f in group g is
  ``max(1.4826·MAD_gf, mad_floor · S_f)`` where ``S_f`` is the pooled scale of f over *all*
  control rows (``1.4826·MAD``, or their standard deviation if that MAD is 0). ``mad_floor``
  default 1e-2: a plate whose DMSO MAD is < 1 % of the screen-wide one is floored (counted per
  group in ``diagnostics["n_floored"]``), so a zero or near-zero MAD never yields inf or the
  1e18-sized values of pycytominer#161. A feature whose pooled scale is 0 (constant over every
  control row) carries no information against DMSO: it is dropped, with a warning, listed in
  ``result.dropped_features`` and counted in ``diagnostics["n_dropped"]``.
* **Non-finite input.** ``nan_policy="raise"`` (default): ``ValueError`` naming the first
  offending rows (plate, timepoint, well, field) and features. ``"drop"``: rows with any NaN/inf
  feature are removed and counted per group in ``diagnostics["n_dropped_rows"]``.
* **Output.** A new frame, same ``Metadata_*`` columns and row order (minus dropped rows),
  features as Float64. Normalization is deterministic for a given ``seed``.

The array-level steps live by family: :mod:`lcd_core.profiling.mad` (MAD, sphering) and
:mod:`lcd_core.profiling.batch_correction` (Harmony, fastMNN); this module is the frame-level
interface, its checks and diagnostics.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lcd_core.profiling.batch_correction import fastmnn, harmony
from lcd_core.profiling.mad import mad_robustize, spherize
from lcd_core.profiling.profiles import feature_columns

METHODS = ("none", "mad", "harmony", "fastmnn", "mad_harmony_fov", "mad_spherize")
_MAD_METHODS = ("mad", "mad_harmony_fov", "mad_spherize")

__all__ = ["METHODS", "NormalizationResult", "normalize", "to_wells", "normalize_to_wells"]


@dataclass
class NormalizationResult:
    """What :func:`normalize` returns.

    Attributes
    ----------
    profiles
        Normalized frame: the input ``Metadata_*`` columns then the feature columns (Float64).
    method
        The method name.
    features
        Feature columns of ``profiles`` (``mnn_*`` for fastMNN, else the input's minus dropped).
    diagnostics
        One row per plate × timepoint (``group_cols``): ``n_rows``, ``n_controls`` (distinct
        control wells), ``n_floored`` (features whose MAD was floored), ``n_dropped`` (features
        dropped screen-wide), ``n_dropped_rows`` (non-finite rows removed).
    dropped_features
        Features removed (constant over all controls).
    notes
        Human-readable remarks (skipped Harmony variables, …).
    """

    profiles: pl.DataFrame
    method: str
    features: list[str]
    diagnostics: pl.DataFrame
    dropped_features: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# helpers


def _group_codes(df: pl.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, pl.DataFrame]:
    """Integer group id per row and the (sorted) table of group keys."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"grouping columns {missing} not in profiles (have {df.columns[:12]} …)")
    keys = df.select(cols).with_row_index("__row")
    uniq = keys.select(cols).unique(maintain_order=False).sort(cols).with_row_index("__g")
    codes = keys.join(uniq, on=list(cols), how="left", nulls_equal=True).sort("__row")["__g"]
    return codes.to_numpy().astype(np.int64), uniq.drop("__g")


def _row_labels(df: pl.DataFrame, rows: np.ndarray) -> list[str]:
    cols = [c for c in ("Metadata_plate", "Metadata_timepoint", "Metadata_well", "Metadata_field")
            if c in df.columns]
    out = []
    for r in rows:
        if cols:
            out.append("row %d (%s)" % (r, ", ".join(f"{c[9:]}={df[c][int(r)]}" for c in cols)))
        else:
            out.append(f"row {r}")
    return out


def _check_finite(df: pl.DataFrame, X: np.ndarray, feats: list[str], policy: str) -> np.ndarray:
    """Boolean keep-mask of rows; raises on non-finite values unless policy == 'drop'."""
    bad = ~np.isfinite(X)
    bad_rows = np.flatnonzero(bad.any(axis=1))
    if bad_rows.size == 0:
        return np.ones(X.shape[0], bool)
    if policy == "drop":
        keep = np.ones(X.shape[0], bool)
        keep[bad_rows] = False
        return keep
    if policy != "raise":
        raise ValueError(f"nan_policy must be 'raise' or 'drop', not {policy!r}")
    bad_feats = [feats[j] for j in np.flatnonzero(bad.any(axis=0))]
    rows = _row_labels(df, bad_rows[:5])
    raise ValueError(
        f"{bad_rows.size} profile row(s) have NaN/inf features, e.g. {rows}; "
        f"features affected ({len(bad_feats)}): {bad_feats[:10]}"
        f"{' …' if len(bad_feats) > 10 else ''}. Fix the input or pass nan_policy='drop'."
    )


def _n_control_wells(df: pl.DataFrame, ctrl: np.ndarray) -> int:
    if "Metadata_well" in df.columns:
        return df.filter(pl.Series(ctrl)).select(
            [c for c in ("Metadata_plate", "Metadata_well") if c in df.columns]
        ).unique().height
    return int(ctrl.sum())


def _warn(notes: list[str], msg: str) -> None:
    """Warn (attributed to :func:`normalize`'s caller) and keep the remark in ``notes``."""
    warnings.warn(msg, stacklevel=4)
    notes.append(msg)


# ----------------------------------------------------------------------------------------------
# the steps of normalize


@dataclass
class _Input:
    """The rows :func:`normalize` works on (after the non-finite policy) and their groups."""

    df: pl.DataFrame  # kept rows
    X: np.ndarray  # (n, d) float64 features of the kept rows
    feats: list[str]
    groups: np.ndarray  # (n,) group id (``group_cols``)
    keys: pl.DataFrame  # one row per group, in id order (groups of dropped rows included)
    is_ctrl: np.ndarray  # (n,) bool, control rows
    n_ctrl: np.ndarray  # (n_groups,) distinct control wells
    dropped_rows: np.ndarray  # (n_groups,) rows removed by nan_policy="drop"
    notes: list[str]


def _prepare(profiles: pl.DataFrame, features: list[str] | None, group_cols: tuple[str, ...],
             control_col: str, control_value: str, nan_policy: str) -> _Input:
    """Features, non-finite policy, MAD groups and control rows of ``profiles``."""
    feats = list(features) if features is not None else feature_columns(profiles)
    if not feats:
        raise ValueError("profiles have no feature columns")
    X = profiles.select(feats).to_numpy().astype(np.float64)
    keep_rows = _check_finite(profiles, X, feats, nan_policy)
    all_groups, keys = _group_codes(profiles, group_cols)
    dropped_rows = np.bincount(all_groups[~keep_rows], minlength=keys.height)
    df = profiles.filter(pl.Series(keep_rows)) if not keep_rows.all() else profiles
    groups = all_groups[keep_rows]
    notes: list[str] = []
    if (~keep_rows).any():
        notes.append(f"dropped {int((~keep_rows).sum())} row(s) with non-finite features")
    if control_col not in df.columns:
        raise KeyError(f"control column {control_col!r} not in profiles")
    is_ctrl = (df[control_col] == control_value).fill_null(False).to_numpy()
    n_ctrl = np.array([_n_control_wells(df, (groups == g) & is_ctrl) for g in range(keys.height)],
                      dtype=np.int64)
    return _Input(df, X[keep_rows], feats, groups, keys, is_ctrl, n_ctrl, dropped_rows, notes)


def _require_controls(inp: _Input, group_cols: tuple[str, ...], min_controls: int,
                      control_value: str) -> None:
    """``ValueError`` naming every MAD group with fewer than ``min_controls`` control wells."""
    low = np.flatnonzero(inp.n_ctrl < min_controls)
    if not low.size:
        return
    doses = _group_doses(inp)
    named = [
        ", ".join(f"{c[9:] if c.startswith('Metadata_') else c}={inp.keys[c][int(g)]}"
                  for c in group_cols) + (f", dose={doses[g]}" if doses else "") + f" ({inp.n_ctrl[g]} control wells)"
        for g in low
    ]
    raise ValueError(
        f"MAD normalization needs ≥ {min_controls} {control_value} wells per "
        f"{' × '.join(group_cols)}; too few in: {named} (a well whose tiles all failed QC has no "
        "profile row; re-image such a plate or leave it out of the timepoint)"
    )


def _group_doses(inp: _Input) -> list[str]:
    """The ``Metadata_dose`` value(s) of each MAD group, joined with ``/``; empty without that column."""
    if "Metadata_dose" not in inp.df.columns:
        return []
    doses = inp.df["Metadata_dose"].cast(pl.String).fill_null("?").to_list()
    seen: list[set[str]] = [set() for _ in range(inp.keys.height)]
    for g, d in zip(inp.groups, doses):
        seen[g].add(d)
    return ["/".join(sorted(s)) or "?" for s in seen]


def _mad_step(inp: _Input, mad_floor: float,
              control_value: str) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """MAD per group: the robustized features, kept feature names, floored counts, dropped."""
    # rows of a group absent after dropping are impossible here (n_ctrl ≥ min_controls)
    Z, keepf, n_floored = mad_robustize(inp.X, inp.groups, inp.is_ctrl, mad_floor=mad_floor)
    dropped = [f for f, k in zip(inp.feats, keepf) if not k]
    if dropped:
        _warn(inp.notes, f"{len(dropped)} feature(s) constant over all {control_value} rows "
                         f"dropped: {dropped[:10]}{' …' if len(dropped) > 10 else ''}")
    return Z, [f for f, k in zip(inp.feats, keepf) if k], n_floored, dropped


def _harmony_step(inp: _Input, X: np.ndarray, method: str, harmony_vars: tuple[str, ...],
                  seed: int, harmony_kwargs: dict | None) -> np.ndarray:
    """Harmony on ``X`` with the ``harmony_vars`` present (absent ones skipped and noted)."""
    df = inp.df
    if method == "mad_harmony_fov" and "Metadata_field" not in df.columns:
        raise ValueError(
            "mad_harmony_fov needs FOV-level rows with a Metadata_field column "
            "(use fov_embeddings); average to wells afterwards with to_wells()"
        )
    vars_use = [v for v in harmony_vars if v in df.columns]
    skipped = [v for v in harmony_vars if v not in df.columns]
    if skipped:
        _warn(inp.notes, f"Harmony variables {skipped} not in profiles: skipped")
    if not vars_use:
        raise ValueError(f"none of the Harmony variables {list(harmony_vars)} is in profiles")
    meta = {v: df[v].cast(pl.Utf8).fill_null("∅").to_numpy() for v in vars_use}
    return harmony(X, meta, vars_use, seed=seed, **(harmony_kwargs or {}))


def _fastmnn_step(df: pl.DataFrame, X: np.ndarray, batch: str, k: int, n_pcs: int,
                  sigma: float) -> tuple[np.ndarray, list[str]]:
    """fastMNN over the ``batch`` column: corrected PCs and their names ``mnn_000`` …"""
    if batch not in df.columns:
        raise KeyError(f"fastMNN batch column {batch!r} not in profiles")
    X = fastmnn(X, df[batch].cast(pl.Utf8).to_numpy(), k=k, n_pcs=n_pcs, sigma=sigma)
    return X, [f"mnn_{i:03d}" for i in range(X.shape[1])]


def _diagnostics(inp: _Input, n_floored: np.ndarray, n_dropped: int) -> pl.DataFrame:
    """One row per group: rows, control wells, floored and dropped features, dropped rows."""
    return inp.keys.with_columns(
        pl.Series("n_rows", np.bincount(inp.groups, minlength=inp.keys.height), dtype=pl.Int64),
        pl.Series("n_controls", inp.n_ctrl, dtype=pl.Int64),
        pl.Series("n_floored", n_floored, dtype=pl.Int64),
        pl.lit(n_dropped, dtype=pl.Int64).alias("n_dropped"),
        pl.Series("n_dropped_rows", inp.dropped_rows, dtype=pl.Int64),
    )


# ----------------------------------------------------------------------------------------------
# frame level


def normalize(
    profiles: pl.DataFrame,
    method: str,
    *,
    features: list[str] | None = None,
    control_col: str = "Metadata_role",
    control_value: str = "negative_control",
    group_cols: tuple[str, ...] = ("Metadata_plate", "Metadata_timepoint"),
    harmony_vars: tuple[str, ...] = ("Metadata_replica", "Metadata_field"),
    harmony_kwargs: dict | None = None,
    mnn_batch: str = "Metadata_plate",
    mnn_k: int = 20,
    mnn_npcs: int = 50,
    mnn_sigma: float = 0.1,
    min_controls: int = 5,
    mad_floor: float = 1e-2,
    nan_policy: str = "raise",
    seed: int = 0,
    spherize_epsilon: float = 1e-6,
) -> NormalizationResult:
    """Normalize cytomining profiles with ``method`` (one of :data:`METHODS`).

    Parameters
    ----------
    profiles
        Wells or FOVs, ``Metadata_*`` + feature columns.
    method
        ``"none" | "mad" | "harmony" | "fastmnn" | "mad_harmony_fov" | "mad_spherize"``.
    features
        Feature columns (default: every non-``Metadata_`` column).
    control_col, control_value
        Which rows are the negative controls (DMSO).
    group_cols
        The MAD unit (a measurement: plate × timepoint); also the diagnostics' rows.
    harmony_vars, harmony_kwargs
        Harmony batch variables (``harmony`` and ``mad_harmony_fov``; absent ones are skipped
        with a warning, except ``Metadata_field`` for ``mad_harmony_fov``: required) and extra
        ``harmonypy.run_harmony`` arguments (theta, max_iter_harmony, ncores, …).
    mnn_batch, mnn_k, mnn_npcs, mnn_sigma
        fastMNN batch column, neighbours, PCs and kernel bandwidth.
    min_controls, mad_floor
        Minimum distinct control wells per MAD group (``ValueError`` naming the groups if fewer);
        scale floor as a fraction of the pooled control scale (zero-MAD policy, module doc).
    nan_policy
        ``"raise"`` or ``"drop"`` for rows with NaN/inf features.
    seed, spherize_epsilon
        Harmony's random state; ``mad_spherize``'s pycytominer ``Spherize`` epsilon.
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalization method {method!r}; known: {METHODS}")
    inp = _prepare(profiles, features, group_cols, control_col, control_value, nan_policy)
    X, feats, n_floored, dropped = inp.X, inp.feats, np.zeros(inp.keys.height, np.int64), []
    if method in _MAD_METHODS:
        _require_controls(inp, group_cols, min_controls, control_value)
        X, feats, n_floored, dropped = _mad_step(inp, mad_floor, control_value)
    if method in ("harmony", "mad_harmony_fov"):
        X = _harmony_step(inp, X, method, harmony_vars, seed, harmony_kwargs)
    if method == "mad_spherize":
        X = spherize(X, inp.is_ctrl, epsilon=spherize_epsilon)
    if method == "fastmnn":
        X, feats = _fastmnn_step(inp.df, X, mnn_batch, mnn_k, mnn_npcs, mnn_sigma)
    if not np.isfinite(X).all():  # defensive: every path above is finite by construction
        raise RuntimeError(f"normalization {method!r} produced non-finite values")
    meta_cols = [c for c in inp.df.columns if c not in set(inp.feats)]
    out = pl.concat([inp.df.select(meta_cols), pl.DataFrame(X, schema=feats, orient="row")],
                    how="horizontal")
    return NormalizationResult(out, method, feats, _diagnostics(inp, n_floored, len(dropped)),
                               dropped, inp.notes)


def to_wells(
    fov_profiles: pl.DataFrame,
    *,
    features: list[str] | None = None,
    well_keys: tuple[str, ...] = ("Metadata_plate", "Metadata_timepoint", "Metadata_well"),
    fov_cols: tuple[str, ...] = ("Metadata_field",),
    count_col: str = "Metadata_n_tiles",
) -> pl.DataFrame:
    """Average FOV rows into well rows (unweighted mean over FOVs, as ``well_embeddings``).

    Rows are grouped by ``well_keys``; ``fov_cols`` are dropped; ``count_col`` (if present) is
    summed; every other ``Metadata_*`` column takes its first value (constant within a well).
    A ``Metadata_n_fov`` column counts the FOVs averaged. Output sorted by ``well_keys``.
    """
    feats = list(features) if features is not None else feature_columns(fov_profiles)
    meta = [c for c in fov_profiles.columns
            if c not in set(feats) and c not in set(fov_cols) and c not in set(well_keys)]
    aggs = []
    for c in meta:
        aggs.append(pl.col(c).sum() if c == count_col else pl.col(c).first())
    aggs.append(pl.len().alias("Metadata_n_fov"))
    aggs += [pl.col(f).mean() for f in feats]
    out = fov_profiles.group_by(list(well_keys), maintain_order=False).agg(aggs).sort(well_keys)
    order = list(well_keys) + meta + ["Metadata_n_fov"] + feats
    return out.select(order)


def normalize_to_wells(
    fov_profiles: pl.DataFrame, method: str, *, seed: int = 0, **kwargs
) -> tuple[pl.DataFrame, NormalizationResult]:
    """Normalize FOV profiles with ``method`` and average the result into well profiles.

    FOV rows are what the paper's MAD + Harmony/FOV needs (the FOV index is a Harmony batch
    variable); every method runs on the same FOV rows so that the methods are comparable, and
    wells are the unweighted mean of their normalized FOVs.
    """
    result = normalize(fov_profiles, method, seed=seed, **kwargs)
    return to_wells(result.profiles, features=result.features), result
