"""lcd_core.molclip.search: by compound name and by structure, with clear errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.molclip.planted import planted_screen
from lcd_core.molclip.search import search_by_compound, search_by_smiles
from lcd_core.molclip.train import MolClipConfig, train
from lcd_core.molclip.videos import build_videos

CFG = MolClipConfig(dim=32, hidden=32, n_heads=2, mol_hidden=64, fp_bits=512, k_wells=3, epochs=25)
IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"


@pytest.fixture(scope="module")
def trained():
    profiles, compounds = planted_screen(doses=("2.5uM", "10uM", "10uM"), seed=1)
    videos = build_videos(profiles, [c for c in profiles.columns if c.startswith("f_")])
    return videos, compounds, train(videos, compounds, CFG, use_molecules=True)


def test_search_by_compound_finds_its_own_molecule_and_moa_neighbours(trained):
    videos, compounds, model = trained
    res = search_by_compound(model, videos, compounds, "vorinostat", k=5)
    assert res.molecules.columns == ["rank", "compound", "moa", "set", "score"]
    assert res.molecules["rank"].to_list() == [1, 2, 3, 4, 5]
    assert res.molecules["compound"][0] == "vorinostat"  # trained on it: its own molecule is nearest
    assert (np.diff(res.molecules["score"].to_numpy()) <= 0).all()
    assert "vorinostat" not in res.phenotypes["compound"].to_list() and "DMSO" not in res.phenotypes["compound"]
    assert res.phenotypes["moa"][0] == "HDAC"  # nearest phenotype: another HDAC inhibitor


def test_search_by_smiles_ranks_compounds_and_wells(trained):
    videos, compounds, model = trained
    smiles = compounds.filter(pl.col("compound") == "olaparib")["smiles"][0]
    res = search_by_smiles(model, videos, compounds, smiles, k=4)
    assert res.compounds["compound"][0] == "olaparib"
    assert res.wells.columns == ["rank", "plate", "well", "replica", "dose", "compound", "moa", "score"]
    assert res.wells.height == 4 and set(res.wells["compound"]) <= set(compounds["compound"])
    novel = search_by_smiles(model, videos, compounds, IMATINIB, k=3)  # not in the library
    assert novel.compounds.height == 3 and (np.abs(novel.compounds["score"].to_numpy()) <= 1 + 1e-6).all()


def test_errors_name_the_problem(trained):
    videos, compounds, model = trained
    with pytest.raises(ValueError, match=r"'C1CC\('"):
        search_by_smiles(model, videos, compounds, "C1CC(")
    with pytest.raises(ValueError, match=r"unknown compound 'vorinostatt'.*vorinostat"):
        search_by_compound(model, videos, compounds, "vorinostatt")
    without = train(videos, compounds, MolClipConfig(**{**CFG.to_dict(), "epochs": 1}), use_molecules=False)
    with pytest.raises(ValueError, match="without the molecule branch"):
        search_by_smiles(without, videos, compounds, IMATINIB)
    res = search_by_compound(without, videos, compounds, "olaparib", k=3)
    assert res.molecules.height == 0 and res.phenotypes.height == 3
