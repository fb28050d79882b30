"""Evaluation of MolCLIP: the MitoReID retrieval protocol (with vs without the molecule branch)
and zero-shot molecule retrieval for compounds never trained on.

**Retrieval (MitoReID).** Compounds are split into K folds grouped by compound and stratified by
MoA (:func:`compound_folds`; unknown MoA is its own stratum). For each fold and seed, a model is
trained on the other folds' compounds and embeds every video. Queries are the held-out compounds'
treatment wells of one replica; the gallery is every treatment well of the other replicas (the
whole library, trained compounds included as distractors); the query replica cycles over all
replicas. Ranking is by cosine similarity.

* drug-identification AP: positives are the gallery wells of the query's compound;
* MoA AP: the gallery wells of the query's own compound are removed, positives are wells of the
  same MoA; queries with unknown MoA are skipped and gallery wells of unknown MoA are left out of
  the ranking (their relevance is unknown).

AP is the step-wise area of the precision–recall curve, ``Σ_n (R_n − R_{n−1}) P_n`` over distinct
score thresholds (scikit-learn's ``average_precision_score``, ties included); mAP is the mean AP
over queries. Both arms (``without`` / ``with`` the molecule branch) use the same folds and seeds;
the summary gives a percentile-bootstrap interval over query compounds (resampled with
replacement, their queries kept together, paired between arms) and the relative gain
``(with − without) / without``. DMSO wells are never queries nor gallery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from lcd_core._parallel import map_in_processes
from lcd_core.molclip.molecule import compound_table, molecule_library
from lcd_core.molclip.train import MolClip, MolClipConfig, train
from lcd_core.molclip.videos import CONTROL_ROLE, Videos

__all__ = [
    "average_precision", "average_precisions", "retrieval_aps", "compound_folds", "evaluate", "summarize",
    "MolClipEvaluation", "molecule_ranks", "hit_rates", "moa_vote", "zero_shot", "ZeroShotResult",
]

ARMS = {False: "without", True: "with"}


def average_precisions(scores: np.ndarray, positives: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """AP of many rank lists at once (scikit-learn's definition, ties handled as sklearn does).

    Parameters
    ----------
    scores
        (Q, G) similarity of each query to each gallery item (higher = closer).
    positives
        (Q, G) or (G,) bool relevance.
    valid
        Optional (Q, G) or (G,) bool: gallery items that take part in the query's ranking.

    Returns
    -------
    numpy.ndarray
        (Q,) AP; NaN for a query without a valid positive.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or not np.isfinite(s).all():
        raise ValueError("scores must be a finite 2-D (queries × gallery) array")
    pos = np.broadcast_to(np.asarray(positives, bool), s.shape)
    if valid is not None:
        v = np.broadcast_to(np.asarray(valid, bool), s.shape)
        s, pos = np.where(v, s, -np.inf), pos & v
    order = np.argsort(-s, axis=1, kind="stable")
    ss, tp = np.take_along_axis(s, order, 1), np.take_along_axis(pos, order, 1)
    ctp = np.cumsum(tp, axis=1)
    n = s.shape[1]
    is_end = np.ones_like(tp)
    is_end[:, :-1] = ss[:, 1:] != ss[:, :-1]
    end = np.where(is_end, np.arange(n), n)  # index of the last member of each tie group
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    prec_at_group_end = np.take_along_axis(ctp, end, 1) / (end + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (tp * prec_at_group_end).sum(1) / tp.sum(1)


def average_precision(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """AP of one rank list (see :func:`average_precisions`)."""
    return float(average_precisions(np.asarray(scores, float)[None], np.asarray(positives, bool)[None])[0])


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def retrieval_aps(query_emb: np.ndarray, gallery_emb: np.ndarray, query_compound: Sequence[str],
                  gallery_compound: Sequence[str], query_moa: Sequence[str | None],
                  gallery_moa: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Drug-identification and MoA AP per query (cosine ranking; MitoReID's definitions).

    Returns
    -------
    tuple of numpy.ndarray
        ``(drug_ap, moa_ap)``, each (Q,); NaN where undefined (no positive; unknown query MoA).
    """
    sim = _unit(query_emb) @ _unit(gallery_emb).T
    qc, gc = np.asarray(query_compound, dtype=object), np.asarray(gallery_compound, dtype=object)
    qm = np.array([m or "" for m in query_moa], dtype=object)
    gm = np.array([m or "" for m in gallery_moa], dtype=object)
    same = qc[:, None] == gc[None, :]
    drug = average_precisions(sim, same)
    valid = ~same & (gm != "")[None, :]
    moa = average_precisions(sim, (qm[:, None] == gm[None, :]) & valid, valid)
    moa[qm == ""] = np.nan
    return drug, moa


def compound_folds(compounds: Sequence[str], moas: Sequence[str | None], n_folds: int, seed: int) -> dict[str, int]:
    """Compound → fold (0..n_folds−1), stratified by MoA where possible.

    Each MoA stratum (unknown MoA = one stratum) is shuffled and dealt one by one to the currently
    smallest fold (ties broken at random), so folds are balanced in size and in MoA.
    """
    names = list(dict.fromkeys(compounds))
    if len(names) != len(compounds):
        raise ValueError("compound names must be unique")
    if not 2 <= n_folds <= len(names):
        raise ValueError(f"n_folds must be between 2 and the number of compounds ({len(names)})")
    rng = np.random.default_rng(seed)
    moa_of = {c: (m or "") for c, m in zip(compounds, moas)}
    sizes = np.zeros(n_folds, int)
    out: dict[str, int] = {}
    for stratum in sorted(set(moa_of.values())):
        for c in rng.permutation(sorted(c for c in names if moa_of[c] == stratum)):
            smallest = np.flatnonzero(sizes == sizes.min())
            f = int(rng.choice(smallest))
            out[str(c)], sizes[f] = f, sizes[f] + 1
    return out


@dataclass(frozen=True)
class MolClipEvaluation:
    """Result of :func:`evaluate`.

    ``per_query``: seed, fold, arm, query_replica, plate, well, compound, moa, drug_ap, moa_ap;
    ``per_fold``: seed, fold, arm, drug_map, moa_map, n_drug, n_moa; ``summary``: see
    :func:`summarize`; ``folds``: seed, compound, moa, fold.
    """

    per_query: pl.DataFrame
    per_fold: pl.DataFrame
    summary: pl.DataFrame
    folds: pl.DataFrame
    config: dict


def _fold_queries(emb: np.ndarray, meta: pl.DataFrame, test: set[str], moa_of: dict) -> pl.DataFrame:
    """Per-query APs of one trained model, cycling the query replica."""
    comp, rep = meta["compound"].to_numpy().astype(str), meta["replica"].to_numpy().astype(str)
    moa = [moa_of.get(c) for c in comp]
    parts = []
    for r in sorted(set(rep)):
        q, g = np.flatnonzero(np.isin(comp, list(test)) & (rep == r)), np.flatnonzero(rep != r)
        if len(q) == 0 or len(g) == 0:
            continue
        drug, mo = retrieval_aps(emb[q], emb[g], comp[q], comp[g], [moa[i] for i in q], [moa[i] for i in g])
        parts.append(meta[q].select("plate", "well", "compound").with_columns(
            pl.lit(r).alias("query_replica"), pl.Series("moa", [moa[i] for i in q], pl.String),
            pl.Series("drug_ap", drug), pl.Series("moa_ap", mo)))
    return pl.concat(parts) if parts else pl.DataFrame()


def evaluate(videos: Videos, compounds: pl.DataFrame, config: MolClipConfig = MolClipConfig(), n_folds: int = 5,
             seeds: Sequence[int] = (0,), n_boot: int = 1000, ci: float = 0.95,
             exclude_sets: Collection[str] = ("holdout",), arms: Sequence[bool] = (False, True),
             workers: int = 1) -> MolClipEvaluation:
    """Cross-validated retrieval with and without the molecule branch (module docstring).

    Parameters
    ----------
    videos, compounds
        All videos and the compound table; DMSO wells and compounds of ``exclude_sets`` are dropped.
    config
        Training settings; its ``seed`` is replaced by each of ``seeds``.
    n_folds, seeds
        Compound-grouped folds, re-drawn per seed; every (fold, seed) trains each arm once.
    n_boot, ci
        Bootstrap resamples and interval level of the summary.
    arms
        Which arms to run (``False`` = without molecules, ``True`` = with).
    workers
        Processes that train the (seed, fold, arm) models side by side (each with
        ``config.threads``); the results do not depend on it.
    """
    table = compound_table(compounds)
    moa_of = dict(table.select("compound", "moa").iter_rows())
    comp = videos.meta["compound"].to_numpy().astype(str)
    excluded = set(table.filter(pl.col("set").is_in(list(exclude_sets)))["compound"].to_list())
    vids = videos.subset(videos.is_treatment & ~np.isin(comp, list(excluded)))
    names = sorted(set(vids.meta["compound"].to_list()))
    unknown = [c for c in names if c not in moa_of]
    if unknown:
        raise ValueError(f"compound(s) missing from the compound table: {unknown[:10]}")
    tasks, fold_rows = [], []
    for seed in seeds:
        folds = compound_folds(names, [moa_of[c] for c in names], n_folds, seed)
        fold_rows += [{"seed": seed, "compound": c, "moa": moa_of[c], "fold": f} for c, f in folds.items()]
        tasks += [(vids, table, moa_of, dataclasses.replace(config, seed=int(seed)), {c for c, k in folds.items()
                   if k == f}, int(seed), f, bool(arm)) for f in range(n_folds) for arm in arms]
    per_query = map_in_processes(_fold_arm, tasks, workers)
    pq = pl.concat(per_query).select("seed", "fold", "arm", "query_replica", "plate", "well", "compound", "moa",
                                     "drug_ap", "moa_ap")
    return MolClipEvaluation(pq, _per_fold(pq), summarize(pq, n_boot, ci, seed=int(seeds[0])),
                             pl.DataFrame(fold_rows), config.to_dict())


def _fold_arm(task: tuple) -> pl.DataFrame:
    """The per-query rows of one (seed, fold, arm): train without the fold's compounds, query them."""
    vids, table, moa_of, config, test, seed, fold, arm = task
    vcomp = vids.meta["compound"].to_numpy().astype(str)
    model = train(vids.subset(~np.isin(vcomp, list(test))), table, config, use_molecules=arm)
    rows = _fold_queries(model.embed_videos(vids), vids.meta, test, moa_of)
    return rows.with_columns(pl.lit(seed).alias("seed"), pl.lit(fold).alias("fold"), pl.lit(ARMS[arm]).alias("arm"))


def _per_fold(pq: pl.DataFrame) -> pl.DataFrame:
    return pq.group_by("seed", "fold", "arm").agg(
        pl.col("drug_ap").drop_nans().mean().alias("drug_map"), pl.col("moa_ap").drop_nans().mean().alias("moa_map"),
        pl.col("drug_ap").is_not_nan().sum().alias("n_drug"), pl.col("moa_ap").is_not_nan().sum().alias("n_moa"),
    ).sort("seed", "fold", "arm")


def _compound_sums(pq: pl.DataFrame, metric: str, arm: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-compound sum and count of the non-NaN APs of one arm, in ``names`` order."""
    g = pq.filter((pl.col("arm") == arm) & pl.col(metric).is_not_nan()).group_by("compound").agg(
        pl.col(metric).sum().alias("s"), pl.len().alias("n"))
    d = {c: (s, n) for c, s, n in g.iter_rows()}
    return np.array([d.get(c, (0.0, 0))[0] for c in names]), np.array([d.get(c, (0.0, 0))[1] for c in names], float)


def summarize(per_query: pl.DataFrame, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """mAP per arm and relative gain, with percentile-bootstrap intervals over query compounds.

    Returns
    -------
    polars.DataFrame
        One row per metric (``drug_ap``, ``moa_ap``): ``map_without, map_without_lo, map_without_hi,
        map_with, …, gain, gain_lo, gain_hi, n_queries, n_compounds`` (absent arms → null).
    """
    rng = np.random.default_rng(seed)
    names = sorted(set(per_query["compound"].to_list()))
    idx = rng.integers(0, len(names), size=(n_boot, len(names)))
    q = [(1 - ci) / 2 * 100, (1 + ci) / 2 * 100]
    arms = set(per_query["arm"].to_list())
    rows = []
    for metric in ("drug_ap", "moa_ap"):
        row: dict = {"metric": metric}
        boot = {}
        for arm in ("without", "with"):
            s, n = _compound_sums(per_query, metric, arm, names) if arm in arms else (None, None)
            ok = n is not None and n.sum() > 0
            with np.errstate(invalid="ignore", divide="ignore"):
                boot[arm] = s[idx].sum(1) / n[idx].sum(1) if ok else None
            lo, hi = np.nanpercentile(boot[arm], q) if ok else (None, None)
            row |= {f"map_{arm}": float(s.sum() / n.sum()) if ok else None, f"map_{arm}_lo": lo, f"map_{arm}_hi": hi}
        both = row["map_with"] is not None and row["map_without"] is not None and row["map_without"] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            gb = (boot["with"] - boot["without"]) / boot["without"] if both else None
        row["gain"] = (row["map_with"] - row["map_without"]) / row["map_without"] if both else None
        row["gain_lo"], row["gain_hi"] = (np.nanpercentile(gb, q) if both else (None, None))
        row["n_queries"] = per_query[metric].is_not_nan().sum() // max(1, len(arms))  # arms share queries
        row["n_compounds"] = len(names)
        rows.append({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
    return pl.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# zero-shot molecule retrieval


def molecule_ranks(query_emb: np.ndarray, molecule_emb: np.ndarray, true_index: Sequence[int]) -> np.ndarray:
    """1-based rank of each query's true molecule by cosine (ties count against it:
    rank = number of molecules scoring ≥ the true one)."""
    sim = _unit(query_emb) @ _unit(molecule_emb).T
    t = np.asarray(true_index, dtype=np.int64)
    return (sim >= sim[np.arange(len(t)), t][:, None]).sum(1)


def hit_rates(ranks: Sequence[int], n_molecules: int, ks: Sequence[int] = (1, 5, 10)) -> pl.DataFrame:
    """Top-k hit rate (fraction of queries whose true molecule ranks ≤ k) against random
    (``min(k, n) / n``)."""
    r = np.asarray(ranks)
    return pl.DataFrame({
        "k": list(ks), "hit_rate": [float((r <= k).mean()) if len(r) else float("nan") for k in ks],
        "random": [min(k, n_molecules) / n_molecules for k in ks], "n_queries": [len(r)] * len(ks)})


def moa_vote(similarities: Sequence[float], moas: Sequence[str], k: int = 5) -> tuple[str, str]:
    """MoA read from the ``k`` most similar labelled molecules.

    Returns ``(majority, weighted)``: the most frequent MoA among them (ties → larger summed
    similarity), and the MoA with the largest sum of weights ``(1 + cos) / 2`` (a non-negative,
    monotone weight).
    """
    s = np.asarray(similarities, dtype=np.float64)
    top = np.argsort(-s, kind="stable")[: max(1, k)]
    labels = sorted({moas[i] for i in top})
    count = {m: sum(moas[i] == m for i in top) for m in labels}
    weight = {m: sum((1 + s[i]) / 2 for i in top if moas[i] == m) for m in labels}
    return max(labels, key=lambda m: (count[m], weight[m])), max(labels, key=lambda m: weight[m])


@dataclass(frozen=True)
class ZeroShotResult:
    """Result of :func:`zero_shot`.

    ``per_compound``: compound, moa, rank, top{k}…, moa_majority, moa_weighted, majority_correct,
    weighted_correct; ``hit_rates``: k, hit_rate, random, n_queries; ``moa_accuracy``: majority,
    weighted, chance (1 / number of training MoAs), n; ``skipped``: compound → reason.
    """

    per_compound: pl.DataFrame
    hit_rates: pl.DataFrame
    moa_accuracy: dict
    n_molecules: int
    skipped: dict


def _zero_shot_inputs(model: MolClip, videos: Videos, compounds: pl.DataFrame, holdout):
    table = compound_table(compounds)
    controls = set(videos.meta.filter(pl.col("role") == CONTROL_ROLE)["compound"].to_list())
    library = molecule_library(table, exclude=sorted(controls))
    if holdout is None:
        holdout = table.filter(pl.col("set") == "holdout")["compound"].to_list()
    leaked = sorted(set(holdout) & set(model.trained_compounds))
    if leaked:
        raise ValueError(f"holdout compound(s) {leaked} were in the model's training set: not zero-shot")
    names, cemb = model.embed_compounds(videos)
    lib = library["compound"].to_list()
    in_table = set(table["compound"].to_list())
    skipped = {h: ("not in the compound table" if h not in in_table else "no SMILES" if h not in lib
                   else "no treatment video") for h in holdout if h not in lib or h not in names}
    return table, library, [h for h in holdout if h not in skipped], names, cemb, skipped


def zero_shot(model: MolClip, videos: Videos, compounds: pl.DataFrame, holdout: Collection[str] | None = None,
              ks: Sequence[int] = (1, 5, 10), k_moa: int = 5) -> ZeroShotResult:
    """Zero-shot molecule retrieval for compounds never trained on.

    For each holdout compound (default: ``set == "holdout"``), its mean video embedding ranks every
    library molecule (compound-table rows with a SMILES, the negative control excluded) by cosine:
    the rank of its own molecule, top-k hits against random, and the MoA read from its ``k_moa``
    nearest *training* molecules (``set == "training"``, MoA known) against its true MoA.
    """
    table, library, scored, names, cemb, skipped = _zero_shot_inputs(model, videos, compounds, holdout)
    lib = library["compound"].to_list()
    mol = model.embed_smiles(library["smiles"].to_list())
    q = cemb[[names.index(h) for h in scored]] if scored else np.zeros((0, mol.shape[1]))
    ranks = molecule_ranks(q, mol, [lib.index(h) for h in scored])
    ref = library.filter((pl.col("set") == "training") & pl.col("moa").is_not_null()
                         & ~pl.col("compound").is_in(scored))
    ref_idx = [lib.index(c) for c in ref["compound"].to_list()]
    sim = _unit(q) @ _unit(mol[ref_idx]).T if ref_idx else np.zeros((len(scored), 0))
    moa_of = dict(table.select("compound", "moa").iter_rows())
    rows = []
    for i, h in enumerate(scored):
        maj, wtd = moa_vote(sim[i], ref["moa"].to_list(), k_moa) if ref_idx else (None, None)
        true = moa_of.get(h)
        rows.append({"compound": h, "moa": true, "rank": int(ranks[i]),
                     **{f"top{k}": bool(ranks[i] <= k) for k in ks}, "moa_majority": maj, "moa_weighted": wtd,
                     "majority_correct": None if true is None or maj is None else maj == true,
                     "weighted_correct": None if true is None or wtd is None else wtd == true})
    pc = pl.DataFrame(rows) if rows else pl.DataFrame()
    known = pc.filter(pl.col("majority_correct").is_not_null()) if rows else pc
    n_ref_moas = len(set(ref["moa"].to_list()))
    acc = {"majority": float(known["majority_correct"].mean()) if known.height else None,
           "weighted": float(known["weighted_correct"].mean()) if known.height else None,
           "chance": 1 / n_ref_moas if n_ref_moas else None, "n": known.height}
    return ZeroShotResult(pc, hit_rates(ranks, len(lib), ks), acc, len(lib), skipped)
