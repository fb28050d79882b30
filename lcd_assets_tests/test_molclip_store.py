"""lcd_core.molclip.store: safetensors + JSON, exact round trip, atomic replace, no pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lcd_core.molclip.planted import planted_screen
from lcd_core.molclip.store import CONFIG_FILE, MODEL_FILE, load_molclip, save_molclip
from lcd_core.molclip.train import MolClipConfig, train
from lcd_core.molclip.videos import build_videos

CFG = MolClipConfig(dim=16, hidden=16, n_heads=2, mol_hidden=32, fp_bits=256, fp_radius=3, fp_chirality=True,
                    epochs=2, k_wells=2)


@pytest.fixture(scope="module")
def trained():
    profiles, compounds = planted_screen(n_compounds=6, n_moas=3, n_features=8, seed=2)
    videos = build_videos(profiles, [c for c in profiles.columns if c.startswith("f_")])
    return videos, compounds, train(videos, compounds, CFG, use_molecules=True)


def test_round_trip_is_exact(trained, tmp_path):
    videos, compounds, model = trained
    folder = save_molclip(model, tmp_path / "molclip")
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, MODEL_FILE]
    back = load_molclip(folder)
    assert back.config == model.config and back.features == model.features
    assert back.timepoints == model.timepoints and back.history == model.history
    assert back.trained_compounds == model.trained_compounds and back.use_molecules
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert np.array_equal(model.embed_videos(videos), back.embed_videos(videos))
    smiles = compounds["smiles"].to_list()
    assert np.array_equal(model.embed_smiles(smiles), back.embed_smiles(smiles))
    d = json.loads((folder / CONFIG_FILE).read_text())
    assert d["fingerprint"] == {"kind": "morgan", "radius": 3, "n_bits": 256, "chirality": True}
    assert set(load_file(str(folder / MODEL_FILE))) == set(model.state_dict())


def test_model_without_molecule_branch_round_trips(trained, tmp_path):
    videos, compounds, _ = trained
    model = train(videos, compounds, CFG, use_molecules=False)
    back = load_molclip(save_molclip(model, tmp_path / "m"))
    assert back.molecule_encoder is None and not back.use_molecules
    assert np.array_equal(model.embed_videos(videos), back.embed_videos(videos))


def test_save_replaces_atomically_and_leaves_no_temporaries(trained, tmp_path):
    _, _, model = trained
    target = tmp_path / "molclip"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    save_molclip(model, target)
    assert not (target / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["molclip"]


def test_load_refuses_other_folders(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_molclip(tmp_path)
    folder = save_molclip(trained[2], tmp_path / "m")
    d = json.loads((folder / CONFIG_FILE).read_text())
    d["fingerprint"]["n_bits"] = 2048
    (folder / CONFIG_FILE).write_text(json.dumps(d))
    with pytest.raises(ValueError, match="fingerprint settings"):
        load_molclip(folder)
