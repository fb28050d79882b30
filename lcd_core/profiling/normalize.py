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
    :func:`fastmnn`: cosine-normalise rows, PCA (``mnn_npcs`` components, each batch weighted
    equally), then merge batches (``mnn_batch``, sorted order) one by one into the growing
    reference: mutual nearest neighbours (k = ``mnn_k``) between reference and batch, one
    correction vector per MNN pair (reference − batch), averaged per paired batch row, smoothed to
    every batch row with a Gaussian kernel on PC-space distance (bandwidth ``mnn_sigma``:
    ``w = exp(−d² / sigma)``, normalised per row, computed in log space so it never underflows to
    all-zero). Output features are the corrected PCs, columns ``mnn_000`` …
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
  ``ValueError`` naming every such plate/timepoint and its count. ``harmony`` / ``fastmnn`` /
  ``none`` do not use controls.
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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lcd_core.profiling.profiles import feature_columns

METHODS = ("none", "mad", "harmony", "fastmnn", "mad_harmony_fov", "mad_spherize")
MAD_SCALE = 1.4826

__all__ = [
    "METHODS",
    "NormalizationResult",
    "normalize",
    "mad_robustize",
    "harmony",
    "fastmnn",
    "to_wells",
    "spherize",
]


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


def _mad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    med = np.median(x, axis=0)
    return med, np.median(np.abs(x - med), axis=0)


def _n_control_wells(df: pl.DataFrame, ctrl: np.ndarray) -> int:
    if "Metadata_well" in df.columns:
        return df.filter(pl.Series(ctrl)).select(
            [c for c in ("Metadata_plate", "Metadata_well") if c in df.columns]
        ).unique().height
    return int(ctrl.sum())


# ----------------------------------------------------------------------------------------------
# methods on arrays


def mad_robustize(
    X: np.ndarray,
    groups: np.ndarray,
    is_control: np.ndarray,
    *,
    mad_floor: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group robust z-score against the group's control rows (array level).

    Parameters
    ----------
    X
        (n, d) features.
    groups
        (n,) integer group id (e.g. plate × timepoint).
    is_control
        (n,) bool, control (DMSO) rows.
    mad_floor
        Floor of each group's scale as a fraction of the pooled control scale (see module doc).

    Returns
    -------
    Z, keep_features, n_floored
        ``Z`` (n, d_kept) float64; ``keep_features`` (d,) bool; ``n_floored`` (n_groups,) features
        floored per group.
    """
    X = np.asarray(X, dtype=np.float64)
    ctrl = np.asarray(is_control, bool)
    if not ctrl.any():
        raise ValueError("no control rows: MAD normalization needs DMSO (negative_control) rows")
    pmed, pmad = _mad(X[ctrl])
    pooled = MAD_SCALE * pmad
    zero = pooled == 0
    if zero.any():
        pooled[zero] = X[ctrl][:, zero].std(axis=0)
    keep = pooled > 0
    X = X[:, keep]
    floor = mad_floor * pooled[keep]
    ng = int(groups.max()) + 1 if groups.size else 0
    Z = np.empty_like(X)
    n_floored = np.zeros(ng, np.int64)
    for g in range(ng):
        rows = groups == g
        c = rows & ctrl
        med, mad = _mad(X[c])
        scale = MAD_SCALE * mad
        low = scale < floor
        n_floored[g] = int(low.sum())
        scale = np.where(low, floor, scale)
        Z[rows] = (X[rows] - med) / scale
    return Z, keep, n_floored


def harmony(
    X: np.ndarray,
    meta,
    vars_use: list[str],
    *,
    seed: int = 0,
    **kwargs,
) -> np.ndarray:
    """harmonypy's ``run_harmony`` on ``X`` (n, d); returns the corrected (n, d) matrix.

    ``meta`` is a pandas frame or dict of arrays holding ``vars_use``. ``Z_corr`` is n × d in
    harmonypy 2.x and d × n in 0.0.x: both are handled.
    """
    import harmonypy

    X = np.ascontiguousarray(X, dtype=np.float64)
    n, d = X.shape
    meta = {v: np.asarray(meta[v]).astype(str) for v in vars_use}
    # a variable with one level carries nothing to correct; harmonypy would still run
    kw = dict(verbose=False, random_state=seed)
    kw.update(kwargs)
    h = harmonypy.run_harmony(X, meta, list(vars_use), **kw)
    Z = np.asarray(h.Z_corr, dtype=np.float64)
    if Z.shape == (n, d):
        return Z
    if Z.shape == (d, n):
        return Z.T.copy()
    raise RuntimeError(f"unexpected harmonypy Z_corr shape {Z.shape} for data {X.shape}")


def spherize(X: np.ndarray, is_control: np.ndarray, *, epsilon: float = 1e-6) -> np.ndarray:
    """ZCA-cor sphering of ``X`` fitted on its control rows (pycytominer's ``Spherize``).

    Parameters
    ----------
    X
        (n, d) features (e.g. MAD-robustized).
    is_control
        (n,) bool, the rows the transform is fitted on (DMSO).
    epsilon
        Added to the singular values (pycytominer's default 1e-6).

    Returns
    -------
    numpy.ndarray
        (n, d) float64: the control rows have identity correlation afterwards.
    """
    import pandas as pd
    from pycytominer.operations.transform import Spherize

    ctrl = np.asarray(is_control, dtype=bool)
    if ctrl.sum() < 3:
        raise ValueError(f"sphering needs ≥ 3 control rows, got {int(ctrl.sum())}")
    spherer = Spherize(epsilon=epsilon, method="ZCA-cor", return_numpy=True)
    spherer.fit(pd.DataFrame(X[ctrl]))
    return np.asarray(spherer.transform(pd.DataFrame(X)), dtype=np.float64)


def _cosine_normalise(X: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(nrm == 0):
        raise ValueError(f"{int((nrm == 0).sum())} all-zero profile row(s): cosine norm undefined")
    return X / nrm


def _knn(A: np.ndarray, B: np.ndarray, k: int) -> np.ndarray:
    """Indices (len(A), k) of the k nearest rows of B to each row of A (Euclidean)."""
    d2 = (A * A).sum(1)[:, None] - 2 * A @ B.T + (B * B).sum(1)[None, :]
    k = min(k, B.shape[0])
    idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
    return idx


def fastmnn(
    X: np.ndarray,
    batches: np.ndarray,
    *,
    k: int = 20,
    n_pcs: int = 50,
    sigma: float = 0.1,
) -> np.ndarray:
    """fastMNN on ``X`` (n, d) with batch labels ``batches`` (n,); returns corrected PCs.

    1. Rows are L2 (cosine) normalised.
    2. PCA with each batch weighted equally (rows centred on the mean of batch means, each
       batch's rows scaled by 1/sqrt(n_batch) for the SVD), ``min(n_pcs, n-1, d)`` components;
       every row is projected.
    3. Batches (sorted labels) are merged in order into the reference (the first batch, then the
       growing corrected union). For batch B: mutual nearest neighbours between reference R and
       B (k nearest each way, ``k`` capped at the smaller side); correction of pair (r, b) is
       ``R[r] − B[b]``; averaged per paired row b; then every row of B gets the Gaussian-weighted
       mean of those per-row corrections, weights ``exp(−‖B[i] − B[b]‖² / sigma)`` over the paired
       rows b (normalised per row, log-space). A batch without any MNN pair is left unchanged.

    Batchelor's orthogonalisation against the batch vector and automatic merge order are not
    implemented.
    """
    X = _cosine_normalise(np.asarray(X, dtype=np.float64))
    labels, b = np.unique(np.asarray(batches).astype(str), return_inverse=True)
    n, d = X.shape
    mu = np.mean([X[b == i].mean(0) for i in range(len(labels))], axis=0)
    Xc = X - mu
    w = 1.0 / np.sqrt(np.bincount(b)[b])
    npc = int(max(1, min(n_pcs, n - 1, d)))
    _, _, vt = np.linalg.svd(Xc * w[:, None], full_matrices=False)
    P = Xc @ vt[:npc].T
    out = P.copy()
    order = list(range(len(labels)))
    ref_rows = np.flatnonzero(b == order[0])
    for bi in order[1:]:
        rows = np.flatnonzero(b == bi)
        R, B = out[ref_rows], P[rows]
        kk = max(1, min(k, len(ref_rows), len(rows)))
        nn_b2r = _knn(B, R, kk)           # for each B row, its k nearest R rows
        nn_r2b = _knn(R, B, kk)
        r_has = np.zeros((len(ref_rows), len(rows)), bool)
        r_has[np.repeat(np.arange(len(ref_rows)), kk), nn_r2b.ravel()] = True
        bi_idx = np.repeat(np.arange(len(rows)), kk)
        ri_idx = nn_b2r.ravel()
        mutual = r_has[ri_idx, bi_idx]
        pb, pr = bi_idx[mutual], ri_idx[mutual]
        if pb.size:
            corr = R[pr] - B[pb]
            paired = np.unique(pb)
            csum = np.zeros((len(rows), P.shape[1]))
            np.add.at(csum, pb, corr)
            cnt = np.bincount(pb, minlength=len(rows))
            vec = csum[paired] / cnt[paired, None]
            Bp = B[paired]
            d2 = (B * B).sum(1)[:, None] - 2 * B @ Bp.T + (Bp * Bp).sum(1)[None, :]
            logw = -np.maximum(d2, 0) / sigma
            logw -= logw.max(axis=1, keepdims=True)
            wts = np.exp(logw)
            wts /= wts.sum(axis=1, keepdims=True)
            out[rows] = B + wts @ vec
        ref_rows = np.concatenate([ref_rows, rows])
    return out


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
    harmony_vars
        Harmony batch variables (``harmony`` and ``mad_harmony_fov``); absent ones are skipped
        with a warning, except ``Metadata_field`` for ``mad_harmony_fov`` (required).
    harmony_kwargs
        Extra ``harmonypy.run_harmony`` arguments (theta, max_iter_harmony, ncores, …).
    mnn_batch, mnn_k, mnn_npcs, mnn_sigma
        fastMNN batch column, neighbours, PCs and kernel bandwidth.
    min_controls
        Minimum distinct control wells per MAD group (``ValueError`` naming the groups if fewer).
    mad_floor
        Scale floor as a fraction of the pooled control scale (zero-MAD policy, module doc).
    nan_policy
        ``"raise"`` or ``"drop"`` for rows with NaN/inf features.
    seed
        Harmony's random state.
    spherize_epsilon
        ``mad_spherize``: pycytominer ``Spherize``'s epsilon (added to the singular values).
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalization method {method!r}; known: {METHODS}")
    feats = list(features) if features is not None else feature_columns(profiles)
    if not feats:
        raise ValueError("profiles have no feature columns")
    meta_cols = [c for c in profiles.columns if c not in set(feats)]
    X = profiles.select(feats).to_numpy().astype(np.float64)
    keep_rows = _check_finite(profiles, X, feats, nan_policy)
    all_groups, all_keys = _group_codes(profiles, group_cols)
    dropped_rows = np.bincount(all_groups[~keep_rows], minlength=all_keys.height)
    df = profiles.filter(pl.Series(keep_rows)) if not keep_rows.all() else profiles
    X = X[keep_rows]
    groups = all_groups[keep_rows]
    notes: list[str] = []
    if (~keep_rows).any():
        notes.append(f"dropped {int((~keep_rows).sum())} row(s) with non-finite features")
    if control_col not in df.columns:
        raise KeyError(f"control column {control_col!r} not in profiles")
    is_ctrl = (df[control_col] == control_value).fill_null(False).to_numpy()

    ng = all_keys.height
    n_rows = np.bincount(groups, minlength=ng)
    n_ctrl = np.array(
        [_n_control_wells(df, (groups == g) & is_ctrl) for g in range(ng)], dtype=np.int64
    )
    n_floored = np.zeros(ng, np.int64)
    dropped: list[str] = []
    out_feats = feats

    if method in ("mad", "mad_harmony_fov", "mad_spherize"):
        low = np.flatnonzero(n_ctrl < min_controls)
        if low.size:
            named = [
                ", ".join(f"{c[9:] if c.startswith('Metadata_') else c}={all_keys[c][int(g)]}"
                          for c in group_cols) + f" ({n_ctrl[g]} control wells)"
                for g in low
            ]
            raise ValueError(
                f"MAD normalization needs ≥ {min_controls} {control_value} wells per "
                f"{' × '.join(group_cols)}; too few in: {named}"
            )
        # rows of a group absent after dropping are impossible here (n_ctrl ≥ min_controls)
        Z, keepf, n_floored = mad_robustize(X, groups, is_ctrl, mad_floor=mad_floor)
        dropped = [f for f, k in zip(feats, keepf) if not k]
        if dropped:
            msg = (f"{len(dropped)} feature(s) constant over all {control_value} rows dropped: "
                   f"{dropped[:10]}{' …' if len(dropped) > 10 else ''}")
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
        out_feats = [f for f, k in zip(feats, keepf) if k]
        X = Z

    if method in ("harmony", "mad_harmony_fov"):
        if method == "mad_harmony_fov" and "Metadata_field" not in df.columns:
            raise ValueError(
                "mad_harmony_fov needs FOV-level rows with a Metadata_field column "
                "(use fov_embeddings); average to wells afterwards with to_wells()"
            )
        vars_use = [v for v in harmony_vars if v in df.columns]
        skipped = [v for v in harmony_vars if v not in df.columns]
        if skipped:
            msg = f"Harmony variables {skipped} not in profiles: skipped"
            warnings.warn(msg, stacklevel=2)
            notes.append(msg)
        if not vars_use:
            raise ValueError(f"none of the Harmony variables {list(harmony_vars)} is in profiles")
        meta = {v: df[v].cast(pl.Utf8).fill_null("∅").to_numpy() for v in vars_use}
        X = harmony(X, meta, vars_use, seed=seed, **(harmony_kwargs or {}))

    if method == "mad_spherize":
        X = spherize(X, is_ctrl, epsilon=spherize_epsilon)

    if method == "fastmnn":
        if mnn_batch not in df.columns:
            raise KeyError(f"fastMNN batch column {mnn_batch!r} not in profiles")
        X = fastmnn(X, df[mnn_batch].cast(pl.Utf8).to_numpy(), k=mnn_k, n_pcs=mnn_npcs,
                    sigma=mnn_sigma)
        out_feats = [f"mnn_{i:03d}" for i in range(X.shape[1])]

    if not np.isfinite(X).all():  # defensive: every path above is finite by construction
        raise RuntimeError(f"normalization {method!r} produced non-finite values")

    out = pl.concat(
        [df.select(meta_cols), pl.DataFrame(X, schema=out_feats, orient="row")],
        how="horizontal",
    )
    diag = all_keys.with_columns(
        pl.Series("n_rows", n_rows, dtype=pl.Int64),
        pl.Series("n_controls", n_ctrl, dtype=pl.Int64),
        pl.Series("n_floored", n_floored, dtype=pl.Int64),
        pl.lit(len(dropped), dtype=pl.Int64).alias("n_dropped"),
        pl.Series("n_dropped_rows", dropped_rows, dtype=pl.Int64),
    )
    return NormalizationResult(out, method, out_feats, diag, dropped, notes)


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
