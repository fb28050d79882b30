"""lcd_core.molclip.evaluate: AP against scikit-learn, the MitoReID protocol, zero-shot retrieval."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from lcd_core.molclip.evaluate import (
    average_precision,
    average_precisions,
    compound_folds,
    evaluate,
    hit_rates,
    moa_vote,
    molecule_ranks,
    retrieval_aps,
    summarize,
    zero_shot,
)
from lcd_core.molclip.planted import planted_screen
from lcd_core.molclip.train import MolClipConfig, compound_means, train
from lcd_core.molclip.videos import build_videos

FAST = MolClipConfig(dim=32, hidden=32, n_heads=2, mol_hidden=64, fp_bits=512, k_wells=3, epochs=8)


@pytest.fixture(scope="module")
def planted():
    profiles, compounds = planted_screen(doses=("2.5uM", "10uM", "10uM"), holdout=4, seed=1)
    return build_videos(profiles, [c for c in profiles.columns if c.startswith("f_")]), compounds


@pytest.mark.parametrize("ties", [False, True])
def test_ap_agrees_with_sklearn(ties):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 30))
    if ties:
        scores = np.round(scores, 0)  # many tied scores
    pos = rng.uniform(size=(20, 30)) < 0.3
    pos[:, 0] = True
    ours = average_precisions(scores, pos)
    ref = [average_precision_score(pos[i], scores[i]) for i in range(20)]
    assert np.allclose(ours, ref, atol=1e-12)
    assert average_precision(scores[0], pos[0]) == pytest.approx(ref[0], abs=1e-12)


def test_ap_hand_case_valid_mask_and_no_positive():
    # ranking: P N P N -> AP = (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [True, False, True, False]) == pytest.approx(5 / 6)
    valid = np.array([True, False, True, True])  # dropping the negative ranked 2nd
    assert average_precisions(np.array([[0.9, 0.8, 0.7, 0.1]]), np.array([True, False, True, False]),
                              valid)[0] == pytest.approx(1.0)
    assert np.isnan(average_precisions(np.zeros((1, 3)), np.zeros(3, bool))[0])


def test_retrieval_ap_moa_removes_the_query_compound_and_skips_unknown():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]])
    drug, moa = retrieval_aps(q, g, ["a", "x"], ["a", "b", "c", "d"], ["M1", None], ["M1", "M2", "M1", None])
    assert drug[0] == 1.0 and np.isnan(drug[1])  # compound x has no gallery well
    # query a, own well removed, unknown-MoA well d left out: ranking b (M2), c (M1) -> AP 1/2
    assert moa[0] == pytest.approx(0.5) and np.isnan(moa[1])


def test_folds_group_compounds_and_stratify_moa():
    names = [f"c{i}" for i in range(12)]
    moas = ["A", "B", "C", "D"] * 3
    folds = compound_folds(names, moas, 3, seed=0)
    assert set(folds) == set(names) and set(folds.values()) == {0, 1, 2}
    for f in range(3):
        assert sorted(m for n, m in zip(names, moas) if folds[n] == f) == ["A", "B", "C", "D"]
    assert folds == compound_folds(names, moas, 3, seed=0) and folds != compound_folds(names, moas, 3, seed=5)
    with pytest.raises(ValueError, match="n_folds"):
        compound_folds(names, moas, 13, seed=0)


def test_summarize_gain_and_interval():
    rows = []
    for c, (w, wo) in {"a": (0.6, 0.3), "b": (0.4, 0.2), "c": (0.5, 0.5)}.items():
        for arm, ap in (("with", w), ("without", wo)):
            rows += [{"arm": arm, "compound": c, "drug_ap": ap, "moa_ap": float("nan")}] * 2
    s = summarize(pl.DataFrame(rows), n_boot=500).row(0, named=True)
    assert s["map_with"] == pytest.approx(0.5) and s["map_without"] == pytest.approx(1 / 3)
    assert s["gain"] == pytest.approx(0.5)
    assert s["map_with_lo"] <= 0.5 <= s["map_with_hi"] and s["gain_lo"] <= 0.5 <= s["gain_hi"]
    assert s["n_queries"] == 6 and s["n_compounds"] == 3


def test_evaluate_runs_both_arms_on_identical_folds(planted):
    videos, compounds = planted
    ev = evaluate(videos, compounds, FAST, n_folds=2, seeds=(0,), n_boot=200)
    pq = ev.per_query
    training = set(compounds.filter(pl.col("set") == "training")["compound"].to_list())
    assert set(pq["compound"].to_list()) == training and "DMSO" not in pq["compound"].to_list()
    keys = ["seed", "fold", "query_replica", "plate", "well"]
    assert pq.filter(pl.col("arm") == "with").select(keys).sort(keys).equals(
        pq.filter(pl.col("arm") == "without").select(keys).sort(keys))
    # every training compound is queried in exactly one fold, from every replica
    per = pq.filter(pl.col("arm") == "with").group_by("compound").agg(pl.col("fold").n_unique(),
                                                                      pl.col("query_replica").n_unique())
    assert (per["fold"] == 1).all() and (per["query_replica"] == 3).all()
    assert ev.per_fold.height == 4 and ev.folds.height == len(training)
    s = ev.summary.filter(pl.col("metric") == "drug_ap").row(0, named=True)
    assert s["gain"] == pytest.approx((s["map_with"] - s["map_without"]) / s["map_without"])
    assert 0 < s["map_without"] <= 1 and s["n_queries"] == pq.height // 2


class _Fixed:
    """A stand-in model with hand-set embeddings (compound videos and molecules)."""

    def __init__(self, video, molecule, trained=()):
        self.video, self.molecule, self.trained_compounds = video, molecule, list(trained)

    def embed_compounds(self, videos):
        sub = videos.subset(videos.is_treatment)
        names = sub.meta["compound"].to_list()
        return compound_means(np.array([self.video[n] for n in names]), names)

    def embed_smiles(self, smiles):
        return np.array([self.molecule[s] for s in smiles], dtype=np.float64)


def test_molecule_ranks_and_hit_rates_hand_case():
    mols = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    q = np.array([[1.0, 0.1], [0.5, 0.5], [-1.0, 0.0]])
    ranks = molecule_ranks(q, mols, [0, 1, 3])
    assert ranks.tolist() == [1, 3, 3]  # query 1 ties m0 and m1: the tie counts against it
    h = hit_rates(ranks, 4, ks=(1, 2, 3, 5))
    assert h["hit_rate"].to_list() == pytest.approx([1 / 3, 1 / 3, 1.0, 1.0])
    assert h["random"].to_list() == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_moa_vote_majority_and_weighted():
    sims = [0.9, 0.3, 0.2, 0.15, -1.0]
    moas = ["A", "B", "B", "C", "A"]
    assert moa_vote(sims, moas, k=3) == ("B", "B")  # B twice among the top 3
    assert moa_vote([0.99, 0.1, 0.2, 0.15], ["A", "B", "C", "D"], k=4) == ("A", "A")
    maj, wtd = moa_vote([0.95, -0.5, -0.5], ["A", "B", "B"], k=3)
    assert (maj, wtd) == ("B", "A")  # weights (1 + cos) / 2: A 0.975 > B 0.5


def test_zero_shot_hand_case(planted):
    videos, compounds = planted
    lib = compounds["compound"].to_list()
    holdout = compounds.filter(pl.col("set") == "holdout")["compound"].to_list()
    step = 2 * np.pi / len(lib)
    mol_angle = {c: i * step for i, c in enumerate(lib)}
    # a holdout compound's videos point 2.4 steps past its molecule: molecules at +2, +3, +1, +4 steps
    # are nearer (0.4, 0.6, 1.4, 1.6 steps away), its own comes 5th (2.4), no ties
    vid_angle = {c: mol_angle[c] + (2.4 * step if c in holdout else 0.0) for c in lib}
    unit = lambda a: np.array([np.cos(a), np.sin(a)])  # noqa: E731
    smiles = dict(compounds.select("smiles", "compound").iter_rows())
    model = _Fixed({c: unit(a) for c, a in vid_angle.items()}, {s: unit(mol_angle[c]) for s, c in smiles.items()})
    z = zero_shot(model, videos, compounds, ks=(1, 3, 5), k_moa=1)
    assert z.n_molecules == 12 and z.per_compound["compound"].to_list() == holdout
    assert z.per_compound["rank"].to_list() == [5] * len(holdout)
    assert z.hit_rates["hit_rate"].to_list() == [0.0, 0.0, 1.0]
    assert z.hit_rates["random"].to_list() == pytest.approx([1 / 12, 3 / 12, 5 / 12])
    # the MoA read from the single nearest training molecule
    moa_of = dict(compounds.select("compound", "moa").iter_rows())
    training = [c for c in lib if c not in holdout]
    for c, maj in z.per_compound.select("compound", "moa_majority").iter_rows():
        gap = {t: abs(np.angle(np.exp(1j * (vid_angle[c] - mol_angle[t])))) for t in training}
        assert maj == moa_of[min(gap, key=gap.get)]
    assert z.moa_accuracy["chance"] == pytest.approx(1 / 4) and z.moa_accuracy["n"] == 4


def test_zero_shot_refuses_trained_holdouts_and_skips_unstructured(planted):
    videos, compounds = planted
    holdout = compounds.filter(pl.col("set") == "holdout")["compound"].to_list()
    with pytest.raises(ValueError, match="not zero-shot"):
        zero_shot(_Fixed({}, {}, trained=[holdout[0]]), videos, compounds)
    no_smiles = compounds.with_columns(pl.when(pl.col("compound") == holdout[0]).then(pl.lit(""))
                                       .otherwise(pl.col("smiles")).alias("smiles"))
    vids = videos.subset(videos.is_treatment)
    train_part = vids.subset(~np.isin(vids.meta["compound"].to_numpy(), holdout))
    model = train(train_part, no_smiles, FAST, use_molecules=True)
    z = zero_shot(model, videos, no_smiles)
    assert z.skipped == {holdout[0]: "no SMILES"} and z.n_molecules == 11
    assert z.per_compound.height == 3 and ((z.per_compound["rank"] >= 1) & (z.per_compound["rank"] <= 11)).all()


def test_evaluate_in_worker_processes_gives_the_same_queries(planted):
    videos, compounds = planted
    here = evaluate(videos, compounds, FAST, n_folds=2, seeds=(0,), n_boot=50)
    pooled = evaluate(videos, compounds, FAST, n_folds=2, seeds=(0,), n_boot=50, workers=2)
    assert here.per_query.equals(pooled.per_query)
    assert here.summary.equals(pooled.summary)
