"""How good and how batch-invariant an embedding of held-out tiles is (the pre-training ablation).

Two measures, computed on the same held-out tiles for every model:

* :func:`compound_retrieval_map`: for each treated tile (query), rank the other held-out tiles of
  the same timepoint by cosine similarity; positives are tiles of the *same compound from a
  different replica*, negatives tiles of other compounds (DMSO included). Average precision per
  query (copairs' definition, :func:`lcd_core.profiling.average_precision.average_precision`), mean per compound,
  then mean over compounds (mAP). Higher is better; a replica-specific embedding scores low
  because the positives sit in other replicas.
* :func:`replica_predictability`: a multinomial logistic regression predicts the replica from the
  embedding of negative-control (DMSO) tiles, cross-validated with folds grouped by well (tiles of
  one well never straddle train and test). Balanced accuracy; chance is 1 / replicas. DMSO is the
  same treatment in every replica, so whatever predicts the replica there is batch effect: lower
  is more batch-invariant. (Treated tiles would confound replica with dose in a screen where each
  replica carries one dose.)
* the paper's own ablation measure, phenotypic activity over the whole screen, is
  :func:`lcd_core.pipeline.ablation.screen_activity`: it runs the platform's downstream chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lcd_core.profiling.average_precision import average_precision, cosine_similarity_matrix
from lcd_core.ssl.sampler import CONTROL_ROLE

__all__ = ["bootstrap_auroc", "compound_retrieval_map", "compound_retrieval_aps", "bootstrap_ci",
           "replica_predictability", "evaluate_embedding", "AblationScores", "heldout_layouts", "collapse_stats"]


@dataclass(frozen=True)
class AblationScores:
    retrieval_map: float  # mean over compounds of the mean AP of their queries
    retrieval_map_ci_low: float  # 95 % bootstrap interval over compounds (resampled with replacement)
    retrieval_map_ci_high: float
    retrieval_map_same_dose: float | None  # positives restricted to the query's dose (None: no such pairs)
    n_queries: int
    n_compounds: int
    replica_balanced_accuracy: float
    replica_chance: float
    n_control_tiles: int
    n_replicas: int

    def as_row(self) -> dict[str, float | int | None]:
        return dict(self.__dict__)


def _check(embeddings: np.ndarray, table: pl.DataFrame, need: list[str]) -> None:
    if embeddings.ndim != 2 or embeddings.shape[0] != table.height:
        raise ValueError(f"{embeddings.shape} embeddings for {table.height} table rows")
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"tile table lacks column(s) {missing}")
    if not np.isfinite(embeddings).all():
        bad = int((~np.isfinite(embeddings).all(1)).sum())
        raise ValueError(f"{bad} embedding rows are not finite")


def _per_compound_ap(ap: np.ndarray, compounds: np.ndarray) -> np.ndarray:
    ok = np.isfinite(ap)
    df = pl.DataFrame({"compound": compounds[ok], "ap": ap[ok]})
    return df.group_by("compound").agg(pl.col("ap").mean()).sort("compound")["ap"].to_numpy()


def bootstrap_ci(values: np.ndarray, n: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` resampled with replacement ``n`` times."""
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (n, values.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def compound_retrieval_map(embeddings: np.ndarray, table: pl.DataFrame, *, same_dose: bool = False,
                           ) -> tuple[float, int, int]:
    """Compound retrieval mAP across replicas (module docstring). Returns ``(mAP, queries,
    compounds)``; queries without a positive or a negative are skipped. ``same_dose``: positives
    must also share the query's dose (replicas of one condition)."""
    per, nq = compound_retrieval_aps(embeddings, table, same_dose=same_dose)
    return (float(per.mean()) if per.size else float("nan")), nq, int(per.size)


def compound_retrieval_aps(embeddings: np.ndarray, table: pl.DataFrame, *, same_dose: bool = False,
                           ) -> tuple[np.ndarray, int]:
    """Per-compound mean AP of :func:`compound_retrieval_map` (sorted by compound) and the number
    of queries."""
    _check(embeddings, table, ["compound", "replica", "timepoint", "role"] + (["dose"] if same_dose else []))
    comp = table["compound"].to_numpy().astype(str)
    rep = table["replica"].to_numpy().astype(str)
    tp = table["timepoint"].to_numpy().astype(str)
    dose = table["dose"].to_numpy().astype(str) if same_dose else None
    treated = (table["role"] != CONTROL_ROLE).to_numpy()
    aps, comps = [], []
    for t in np.unique(tp):
        rows = np.flatnonzero(tp == t)
        q = rows[treated[rows]]
        if q.size == 0:
            continue
        sim = cosine_similarity_matrix(embeddings[q], embeddings[rows])
        same_c = comp[q][:, None] == comp[rows][None, :]
        pos = same_c & (rep[q][:, None] != rep[rows][None, :])
        if same_dose:
            pos &= dose[q][:, None] == dose[rows][None, :]
        neg = ~same_c
        valid = pos | neg
        has = pos.any(1) & neg.any(1)
        if not has.any():
            continue
        aps.append(average_precision(sim[has], pos[has], valid[has]))
        comps.append(comp[q][has])
    if not aps:
        return np.zeros(0), 0
    ap, cs = np.concatenate(aps), np.concatenate(comps)
    return _per_compound_ap(ap, cs), int(ap.size)


def replica_predictability(embeddings: np.ndarray, table: pl.DataFrame, *, folds: int = 5,
                           seed: int = 0) -> tuple[float, float, int, int]:
    """Balanced accuracy of a linear probe predicting the replica from control-tile embeddings
    (module docstring). Returns ``(balanced accuracy, chance, control tiles, replicas)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check(embeddings, table, ["replica", "role", "plate", "well", "timepoint"])
    ctrl = (table["role"] == CONTROL_ROLE).to_numpy()
    X, t = embeddings[ctrl], table.filter(pl.Series(ctrl))
    y = t["replica"].to_numpy().astype(str)
    reps = np.unique(y)
    if reps.size < 2:
        raise ValueError(f"replica predictability needs control tiles of ≥ 2 replicas, got {reps.tolist()}")
    groups = (t["plate"] + "/" + t["timepoint"] + "/" + t["well"]).to_numpy()
    k = int(min(folds, np.bincount(np.unique(y, return_inverse=True)[1]).min(), np.unique(groups).size))
    if k < 2:
        raise ValueError("too few control tiles per replica for a cross-validated probe")
    pred = np.empty_like(y)
    for tr, te in StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y, groups):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(X[tr], y[tr])
        pred[te] = probe.predict(X[te])
    return float(balanced_accuracy_score(y, pred)), 1.0 / reps.size, int(ctrl.sum()), int(reps.size)


def evaluate_embedding(embeddings: np.ndarray, table: pl.DataFrame, *, seed: int = 0) -> AblationScores:
    """Both measures of the module docstring on one embedding of the held-out tiles."""
    per, nq = compound_retrieval_aps(embeddings, table)
    m = float(per.mean()) if per.size else float("nan")
    lo, hi = bootstrap_ci(per, seed=seed)
    m_dose = compound_retrieval_map(embeddings, table, same_dose=True)[0] if "dose" in table.columns else None
    acc, chance, nctrl, nrep = replica_predictability(embeddings, table, seed=seed)
    return AblationScores(m, lo, hi, None if m_dose is None or not np.isfinite(m_dose) else m_dose, nq,
                          int(per.size), acc, chance, nctrl, nrep)


def heldout_layouts(layouts: pl.DataFrame, compounds: pl.DataFrame) -> tuple[list[str], str]:
    """Layouts whose tiles are held out of pre-training for the ablation, and why.

    A layout is held out when every treated compound on it is in the holdout set (``set`` column
    of the compound table): those compounds are never seen in training, by the SSL model or the
    MoA probes. Without a holdout set, the last layout (by name) is held out.
    """
    treated = layouts.filter(pl.col("role") != CONTROL_ROLE)
    if "set" in compounds.columns:
        hold = set(compounds.filter(pl.col("set") == "holdout")["compound"].to_list())
        per = treated.group_by("layout").agg(pl.col("compound").is_in(list(hold)).all().alias("all_hold"))
        names = sorted(per.filter(pl.col("all_hold"))["layout"].to_list())
        if names:
            return names, "layouts of holdout-set compounds only"
    names = sorted(layouts["layout"].unique().to_list())
    if len(names) < 2:
        raise ValueError("the ablation needs ≥ 2 layouts (one to hold out) or a holdout compound set")
    return names[-1:], "no holdout compound set: the last layout is held out"


def collapse_stats(embeddings: np.ndarray) -> dict[str, float]:
    """Collapse indicators of an embedding set: mean per-dimension std of the L2-normalised rows
    (→ 0 on collapse; isotropic = 1/√D) and the effective rank (RankMe, → 1 on collapse)."""
    z = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    s = np.linalg.svd(z, compute_uv=False)
    q = s / max(s.sum(), 1e-12)
    erank = float(np.exp(-(q * np.log(np.clip(q, 1e-12, None))).sum()))
    return {"embed_std": float(z.std(0).mean()), "embed_std_iso": 1.0 / float(np.sqrt(z.shape[1])),
            "effective_rank": erank}


def bootstrap_auroc(scores: np.ndarray, labels: np.ndarray, n: int = 1000, seed: int = 0) -> np.ndarray:
    """AUROC of ``scores`` for ``labels`` on ``n`` resamples of the rows (with replacement).

    The resampling depends only on ``seed`` and the number of rows, so two score vectors over the
    same rows (same order) get the same resamples: their difference is a paired bootstrap.
    A resample with one class only is NaN (at the same positions for every score vector).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=bool)
    if y.size == 0 or y.all() or not y.any():
        return np.zeros(0)
    idx = np.random.default_rng(seed).integers(0, y.size, (n, y.size))
    return np.array([roc_auc_score(y[i], scores[i]) if 0 < y[i].sum() < y.size else np.nan for i in idx])
