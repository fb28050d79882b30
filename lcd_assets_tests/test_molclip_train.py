"""lcd_core.molclip.train: config, P × K sampler, determinism, and a trained encoder that retrieves
unseen compounds better than an untrained one."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from lcd_core.molclip.evaluate import retrieval_aps
from lcd_core.molclip.planted import planted_screen
from lcd_core.molclip.train import MolClipConfig, PKSampler, compound_means, train
from lcd_core.molclip.videos import build_videos

FAST = MolClipConfig(dim=32, hidden=32, n_heads=2, mol_hidden=64, fp_bits=512, k_wells=3, p_compounds=8,
                     epochs=20)


@pytest.fixture(scope="module")
def planted():
    profiles, compounds = planted_screen(doses=("2.5uM", "10uM", "10uM"), seed=1)
    videos = build_videos(profiles, [c for c in profiles.columns if c.startswith("f_")])
    return videos, compounds


def _held_out(videos, compounds):
    test = compounds["compound"].to_list()[8:]  # one compound per MoA
    return test, videos.subset(~np.isin(videos.meta["compound"].to_numpy(), test))


def _map(model, videos, test):
    """Drug-ID and MoA mAP of the held-out compounds (query replica cycled)."""
    v = videos.subset(videos.is_treatment)
    e, comp = model.embed_videos(v), v.meta["compound"].to_numpy()
    rep, moa = v.meta["replica"].to_numpy(), v.meta["moa"].to_list()
    drug, mo = [], []
    for r in sorted(set(rep)):
        q, g = np.flatnonzero(np.isin(comp, test) & (rep == r)), np.flatnonzero(rep != r)
        d, m = retrieval_aps(e[q], e[g], comp[q], comp[g], [moa[i] for i in q], [moa[i] for i in g])
        drug += list(d)
        mo += list(m)
    return np.nanmean(drug), np.nanmean(mo)


def test_config_is_json_round_trippable_and_validated():
    c = MolClipConfig(epochs=3, fp_radius=3, fp_bits=1024, fp_chirality=True)
    assert MolClipConfig.from_dict(json.loads(c.to_json())) == c
    with pytest.raises(ValueError, match="bogus"):
        MolClipConfig.from_dict({**c.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="divisible"):
        MolClipConfig(hidden=30, n_heads=4)


def test_pk_sampler_draws_p_distinct_compounds_and_k_distinct_wells():
    labels = np.repeat(np.arange(10), [6] * 9 + [2])  # compound 9 has only 2 wells
    s = PKSampler(labels, p=4, k=3)
    rng = np.random.default_rng(0)
    seen = np.zeros(len(labels), int)
    for _ in range(5):
        for b in s.epoch(rng):
            assert b.shape == (4, 3)
            comps = labels[b]
            assert (comps == comps[:, :1]).all() and len(set(comps[:, 0])) == 4
            for row in b:
                if labels[row[0]] != 9:
                    assert len(set(row)) == 3
            seen[b.ravel()] += 1
    assert s.batches_per_epoch == round(len(labels) / 12)
    assert (seen[labels != 9] > 0).all()  # every well of the full compounds was drawn


def test_training_is_deterministic_for_a_seed_and_leaves_threads_and_rng_alone(planted):
    videos, compounds = planted
    torch.manual_seed(123)
    before = torch.get_num_threads(), torch.rand(1)
    torch.manual_seed(123)
    a = train(videos, compounds, FAST, use_molecules=True)
    after_rng = torch.rand(1)
    b = train(videos, compounds, FAST, use_molecules=True)
    assert torch.get_num_threads() == before[0] and after_rng == before[1]
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    assert [h["total"] for h in a.history] == [h["total"] for h in b.history]
    assert len(a.history) == FAST.epochs and a.history[0]["clip"] is not None
    c = train(videos, compounds, MolClipConfig(**{**FAST.to_dict(), "seed": 1}), use_molecules=True)
    assert not torch.equal(a.video_encoder.proj.weight, c.video_encoder.proj.weight)


def test_trained_encoder_beats_untrained_on_unseen_compounds(planted):
    videos, compounds = planted
    test, train_videos = _held_out(videos, compounds)
    cfg = MolClipConfig(**{**FAST.to_dict(), "epochs": 40})
    untrained = train(train_videos, compounds, MolClipConfig(**{**cfg.to_dict(), "epochs": 0}), use_molecules=False)
    trained = train(train_videos, compounds, cfg, use_molecules=False)
    assert trained.trained_compounds == sorted(set(train_videos.meta["compound"].to_list()) - {"DMSO"})
    drug0, moa0 = _map(untrained, videos, test)
    drug1, moa1 = _map(trained, videos, test)
    assert drug1 > drug0 + 0.05, (drug0, drug1)
    assert moa1 > moa0 + 0.1, (moa0, moa1)
    assert trained.history[-1]["metric"] < trained.history[0]["metric"]
    assert trained.history[0]["clip"] is None and trained.molecule_encoder is None


def test_molecule_branch_needs_compounds_and_tolerates_missing_smiles(planted):
    videos, compounds = planted
    with pytest.raises(ValueError, match="compound table"):
        train(videos, None, FAST, use_molecules=True)
    no_structure = compounds.with_columns(
        pl.when(pl.col("compound") == "vorinostat").then(pl.lit("")).otherwise(pl.col("smiles")).alias("smiles"))
    model = train(videos, no_structure, MolClipConfig(**{**FAST.to_dict(), "epochs": 2}), use_molecules=True)
    assert "vorinostat" in model.trained_compounds  # its videos still train the video encoder
    with pytest.raises(ValueError, match="missing from the compound table.*vorinostat"):
        train(videos, compounds.filter(pl.col("compound") != "vorinostat"), FAST, use_molecules=True)


def test_embeddings_are_unit_vectors_and_compound_means_renormalise(planted):
    videos, compounds = planted
    model = train(videos, compounds, MolClipConfig(**{**FAST.to_dict(), "epochs": 1}), use_molecules=True)
    e = model.embed_videos(videos)
    assert e.shape == (len(videos), 32) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    names, means = compound_means(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), ["b", "b", "a"])
    assert names == ["a", "b"] and np.allclose(means, [[1, 0], [np.sqrt(0.5), np.sqrt(0.5)]])
    mol = model.embed_smiles(compounds["smiles"].to_list()[:3])
    assert mol.shape == (3, 32) and np.allclose(np.linalg.norm(mol, axis=1), 1, atol=1e-5)
    # a video set on fewer timepoints is aligned to the model's (absent ones masked)
    fewer = videos.subset(np.arange(4))
    fewer = type(fewer)(fewer.x[:, 1:], fewer.mask[:, 1:], fewer.meta, fewer.timepoints[1:], fewer.features)
    assert model.embed_videos(fewer).shape == (4, 32)
    with pytest.raises(ValueError, match="lack feature"):
        model.embed_videos(type(fewer)(fewer.x[:, :, 1:], fewer.mask, fewer.meta, fewer.timepoints,
                                       fewer.features[1:]))
