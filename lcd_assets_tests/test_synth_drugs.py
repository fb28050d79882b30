"""Tests of lcd_core.synth.drugs: the library of real drugs the synthetic screens draw from."""

from __future__ import annotations

import pytest
from rdkit import Chem
from rdkit.Chem import rdCIPLabeler
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

from lcd_core.molecules import canonical_smiles
from lcd_core.synth.design import DMSO_SMILES, MOAS, POLY_PAIRS
from lcd_core.synth.drugs import DRUGS, INACTIVE, POLYPHARMACOLOGY, all_drugs, drugs_of

BY_NAME = {d.name: d for d in all_drugs()}


def _mol(name: str) -> Chem.Mol:
    return Chem.MolFromSmiles(BY_NAME[name].smiles)


def test_every_class_has_enough_drugs_for_a_paper_scale_screen():
    assert set(DRUGS) == set(MOAS)
    counts = {moa: len(drugs_of(moa)) for moa in MOAS}
    assert min(counts.values()) >= 17, counts  # 8 training + 9 holdout per class
    for moa, drugs in DRUGS.items():
        assert all(d.moa == moa and not d.moa_secondary for d in drugs)
    with pytest.raises(ValueError, match="no drugs for MoA"):
        drugs_of("kinase")


def test_every_structure_parses():
    for drug in all_drugs():
        mol = Chem.MolFromSmiles(drug.smiles)
        assert mol is not None and mol.GetNumAtoms() > 1, drug.name
        assert len(Chem.GetMolFrags(mol)) == 1, f"{drug.name}: salt or solvent in {drug.smiles}"
        assert canonical_smiles(canonical_smiles(drug.smiles)) == canonical_smiles(drug.smiles)


def test_no_two_drugs_share_a_structure_or_a_name():
    drugs = all_drugs()
    canon = [canonical_smiles(d.smiles) for d in drugs]
    dupes = {s for s in canon if canon.count(s) > 1}
    assert not dupes, [d.name for d, s in zip(drugs, canon) if s in dupes]
    assert canonical_smiles(DMSO_SMILES) not in canon
    names = [d.name.lower() for d in drugs]
    assert len(set(names)) == len(names)


def test_polypharmacology_and_inactive_drugs():
    assert set(POLYPHARMACOLOGY) == {(p, s) for p, s, _ in POLY_PAIRS}
    for (primary, secondary), drug in POLYPHARMACOLOGY.items():
        assert (drug.moa, drug.moa_secondary) == (primary, secondary)
    assert POLYPHARMACOLOGY[("Aurora kinase", "JAK")].name == "TAK-901"
    assert INACTIVE[0].name == "iniparib" and all(d.moa == "PARP" for d in INACTIVE)
    assert not {d.name for d in INACTIVE} & {d.name for d in DRUGS["PARP"]}


@pytest.mark.parametrize(
    ("name", "formula"),
    [
        ("alisertib", "C27H20ClFN4O4"),
        ("vorinostat", "C14H20N2O3"),
        ("ruxolitinib", "C17H18N6"),
        ("geldanamycin", "C29H40N2O9"),
        ("olaparib", "C24H23FN4O3"),
        ("cycloheximide", "C15H23NO4"),
        ("camptothecin", "C20H16N2O4"),
        ("doxorubicin", "C27H29NO11"),
        ("colchicine", "C22H25NO6"),
        ("ouabain", "C29H44O12"),
        ("digoxin", "C41H64O14"),
        ("tretinoin", "C20H28O2"),
        ("TAK-901", "C28H32N4O3S"),
        ("iniparib", "C7H5IN2O3"),
    ],
)
def test_molecular_formulas(name, formula):
    assert CalcMolFormula(_mol(name)) == formula


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("ruxolitinib", ["R"]),
        ("tofacitinib", ["R", "R"]),
        ("camptothecin", ["S"]),
        ("colchicine", ["S"]),
        ("veliparib", ["R"]),
        ("niraparib", ["S"]),
        ("dexrazoxane", ["S"]),
        ("podophyllotoxin", ["R", "R", "R", "R"]),
        ("anisomycin", ["R", "S", "S"]),
    ],
)
def test_stereo_centres_follow_the_iupac_names(name, labels):
    mol = _mol(name)
    rdCIPLabeler.AssignCIPLabels(mol)
    found = sorted(a.GetProp("_CIPCode") for a in mol.GetAtoms() if a.HasProp("_CIPCode"))
    assert found == sorted(labels)


def test_double_bond_geometry():
    def geometry(name: str) -> list[str]:
        mol = _mol(name)
        rdCIPLabeler.AssignCIPLabels(mol)
        return [b.GetProp("_CIPCode") for b in mol.GetBonds() if b.HasProp("_CIPCode")]

    assert geometry("tretinoin") == ["E"] * 4
    assert sorted(geometry("isotretinoin")) == ["E", "E", "E", "Z"]
    assert sorted(geometry("alitretinoin")) == ["E", "E", "E", "Z"]
    assert geometry("combretastatin A-4") == ["Z"]
    assert sorted(geometry("geldanamycin")) == ["E", "E", "Z"]
