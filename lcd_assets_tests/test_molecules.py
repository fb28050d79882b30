"""Tests of lcd_core.molecules: canonical SMILES and the structure check of a compound table."""

from __future__ import annotations

import polars as pl
import pytest

from lcd_core.molecules import InvalidStructure, canonical_smiles, structure_problem, validate_structures


def test_canonical_smiles_is_one_text_per_molecule():
    assert canonical_smiles("OCC") == canonical_smiles("C(O)C") == canonical_smiles("  CCO ") == "CCO"
    assert canonical_smiles(canonical_smiles("c1ccccc1O")) == canonical_smiles("Oc1ccccc1")
    assert canonical_smiles("CCO |$;;$|") == "CCO"  # CXSMILES extensions are read and dropped


def test_canonical_smiles_keeps_stereo():
    r, s = canonical_smiles("N[C@@H](C)C(=O)O"), canonical_smiles("N[C@H](C)C(=O)O")
    assert r != s and "@" in r and canonical_smiles("NC(C)C(=O)O") not in (r, s)
    assert canonical_smiles("C/C=C/C") != canonical_smiles("C/C=C\\C")


@pytest.mark.parametrize(
    ("smiles", "reason"),
    [
        ("", "empty smiles"),
        ("   ", "empty smiles"),
        ("C1CC", "syntax error"),
        ("not a molecule", "syntax error"),
        ("C(C)(C)(C)(C)C", "valence"),
        ("c1cccc1", "kekulize"),
    ],
)
def test_invalid_structures_are_named(smiles, reason):
    with pytest.raises(InvalidStructure) as info:
        canonical_smiles(smiles)
    assert isinstance(info.value, ValueError)
    assert repr(smiles) in str(info.value) and reason in str(info.value).lower()
    assert reason in (structure_problem(smiles) or "").lower()
    assert structure_problem("CCO") is None


def test_validate_structures_canonicalises_and_flags_missing_ones():
    table = pl.DataFrame({"compound": ["a", "b", "c", "d"], "smiles": ["OCC", None, "", "c1ccccc1"], "x": [1, 2, 3, 4]})
    out = validate_structures(table)
    assert out["smiles"].to_list() == ["CCO", None, None, "c1ccccc1"]
    assert out["has_structure"].to_list() == [True, False, False, True]
    assert out.columns == ["compound", "smiles", "x", "has_structure"] and out.height == 4  # nothing dropped
    renamed = validate_structures(table.rename({"compound": "name", "smiles": "smi"}), "name", "smi")
    assert renamed["smi"].to_list() == out["smiles"].to_list()
    with pytest.raises(KeyError):
        validate_structures(table, smiles_col="structure")


def test_validate_structures_names_every_bad_row_at_once():
    table = pl.DataFrame({"compound": ["good", "bad1", "empty", "bad2"], "smiles": ["CCO", "C1CC", "", "CX"]})
    with pytest.raises(InvalidStructure) as info:
        validate_structures(table, row_numbers=[2, 3, 4, 5], source="compounds.csv")
    msg = str(info.value)
    assert msg.startswith("compounds.csv: 2 invalid structure(s)")
    assert "row 3: compound 'bad1', smiles 'C1CC'" in msg and "row 5: compound 'bad2', smiles 'CX'" in msg
    assert "good" not in msg and "empty" not in msg
    assert len(info.value.problems) == 2
    with pytest.raises(InvalidStructure, match="row 1: compound 'bad1'"):
        validate_structures(table.slice(1, 1))


def test_validate_structures_caps_a_long_list():
    table = pl.DataFrame({"compound": [f"c{i}" for i in range(30)], "smiles": ["C1CC"] * 30})
    with pytest.raises(InvalidStructure) as info:
        validate_structures(table)
    assert "30 invalid structure(s)" in str(info.value) and "... and 10 more" in str(info.value)
    assert len(info.value.problems) == 30
