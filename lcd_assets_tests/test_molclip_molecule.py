"""lcd_core.molclip.molecule: compound table, Morgan fingerprints (RDKit), molecule encoder."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from lcd_core.molclip.molecule import MoleculeEncoder, compound_table, molecule_library, morgan_fingerprints
from lcd_core.molclip.planted import DRUGS

ASPIRIN, CAFFEINE = "CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"


def test_fingerprints_are_morgan_bits_with_the_given_radius_and_length():
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    fp = morgan_fingerprints([ASPIRIN, CAFFEINE], radius=2, n_bits=1024)
    assert fp.shape == (2, 1024) and fp.dtype == np.uint8 and set(np.unique(fp)) <= {0, 1}
    ref = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024).GetFingerprintAsNumPy(
        Chem.MolFromSmiles(ASPIRIN))
    assert np.array_equal(fp[0], ref)
    # a larger radius sets more bits; the same molecule written differently gives the same bits
    assert morgan_fingerprints([ASPIRIN], radius=3).sum() > morgan_fingerprints([ASPIRIN], radius=1).sum()
    assert np.array_equal(morgan_fingerprints(["OC(=O)c1ccccc1OC(C)=O"]), morgan_fingerprints([ASPIRIN]))


def test_chirality_option_separates_enantiomers():
    r, s = "C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O"
    assert np.array_equal(*morgan_fingerprints([r, s]))
    assert not np.array_equal(*morgan_fingerprints([r, s], chirality=True))


def test_bad_or_empty_smiles_raise_naming_it():
    with pytest.raises(ValueError, match=r"'C1CC\(' \(position 1\)"):
        morgan_fingerprints([ASPIRIN, "C1CC("])
    with pytest.raises(ValueError, match="empty SMILES at position 0"):
        morgan_fingerprints([""])


def test_planted_drugs_are_morgan_distinct():
    fp = morgan_fingerprints([s for *_, s in DRUGS])
    assert len({row.tobytes() for row in fp}) == len(DRUGS)


def test_compound_table_normalises_and_validates():
    t = compound_table(pl.DataFrame({"compound": ["a", "b", "c"], "moa": ["HDAC", "", None],
                                     "smiles": [ASPIRIN, None, " "], "set": ["training", "holdout", "training"]}))
    assert t["moa"].to_list() == ["HDAC", None, None] and t["smiles"].to_list() == [ASPIRIN, "", ""]
    assert molecule_library(t)["compound"].to_list() == ["a"]
    assert molecule_library(t, exclude=["a"]).height == 0
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['smiles'\]"):
        compound_table(t.drop("smiles"))
    with pytest.raises(ValueError, match=r"more than once: \['a'\]"):
        compound_table(pl.concat([t, t.head(1)]))
    with pytest.raises(ValueError, match="set must be one of"):
        compound_table(t.with_columns(pl.lit("test").alias("set")))


def test_molecule_encoder_gives_unit_vectors():
    torch.manual_seed(0)
    enc = MoleculeEncoder(n_bits=256, dim=16, hidden=32, n_layers=3).eval()
    z = enc(torch.from_numpy(morgan_fingerprints([ASPIRIN, CAFFEINE], n_bits=256)))
    assert z.shape == (2, 16) and torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-6)
    assert sum(isinstance(m, torch.nn.Linear) for m in enc.modules()) == 4
    with pytest.raises(ValueError, match="256"):
        enc(torch.zeros(2, 100))
