"""Tests of lcd_core.synth.compounds: the ``small`` design's compounds (real drugs) and their dose-time response."""

from __future__ import annotations

import pytest

from lcd_core.molecules import canonical_smiles
from lcd_core.synth.compounds import drugs_for, make_compounds, make_holdout_compounds
from lcd_core.synth.design import MOAS, make_spec
from lcd_core.synth.drugs import DRUGS, INACTIVE, POLYPHARMACOLOGY

SPEC = make_spec("small")
PAPER = make_spec("small", compounds_per_moa=8, holdout_compounds_per_moa=9, holdout_layouts=1, holdout_unknown_moa=8)


def test_compounds_and_their_response() -> None:
    compounds = make_compounds(SPEC, 0)
    assert [c.name for c in compounds] == [c.name for c in make_compounds(SPEC, 0)]
    assert len({c.smiles for c in compounds}) == len(compounds)
    training = [c for c in compounds if c.compound_set == "training"]
    assert len(training) == SPEC.n_compounds and {c.moa for c in training} <= set(MOAS)
    inactive = next(c for c in compounds if c.is_inactive)
    assert inactive.effects(10.0, 20) == (0.0, 0.0)
    active = next(c for c in compounds if c.name == "AURK-1")
    low, high = active.effects(0.01, 20)[0], active.effects(100.0, 20)[0]
    assert 0 <= low < high <= active.max_effect and active.effects(100.0, 0)[0] == 0.0


def test_every_compound_is_a_real_drug_of_its_class() -> None:
    compounds = make_compounds(PAPER, 3)
    assert len(compounds) == PAPER.n_compounds + PAPER.n_holdout_compounds
    for c in compounds:
        if c.is_inactive or c.moa_secondary:
            continue
        drug = {d.name: d for d in DRUGS[c.moa]}[c.drug]
        assert c.smiles == canonical_smiles(drug.smiles)
    by_name = {c.name: c for c in compounds}
    assert by_name["POLY-AURK-JAK"].drug == "TAK-901" and by_name["POLY-AURK-JAK"].moa_secondary == "JAK"
    assert by_name["POLY-AURK-JAK"].smiles == canonical_smiles(POLYPHARMACOLOGY[("Aurora kinase", "JAK")].smiles)
    assert by_name["INACT-1"].drug == "iniparib" and by_name["INACT-1"].moa == "PARP"
    assert {"AURK-1", "AURK-8", "AURK-H1", "AURK-H9"} <= set(by_name)
    assert len({c.drug for c in compounds}) == len(compounds)  # no drug twice
    assert len({c.smiles for c in compounds}) == len(compounds)


def test_drugs_are_drawn_per_seed_and_training_and_holdout_never_share_one() -> None:
    for moa in MOAS:
        training, holdout = drugs_for(PAPER, 0, moa)
        assert len(training) == 8 and len(holdout) == 9 and not set(training) & set(holdout)
        assert drugs_for(PAPER, 0, moa) == (training, holdout)
        # the training set does not depend on how many holdout drugs are drawn
        assert drugs_for(SPEC, 0, moa)[0] == training[:1]
    first = [c.drug for c in make_compounds(PAPER, 0)]
    assert first == [c.drug for c in make_compounds(PAPER, 0)]
    assert first != [c.drug for c in make_compounds(PAPER, 1)]
    holdout = make_holdout_compounds(PAPER, 0)
    assert [c.drug for c in holdout] == [c.drug for c in make_compounds(PAPER, 0) if c.compound_set == "holdout"]
    assert sum(c.moa_hidden for c in holdout) == 8


def test_asking_for_more_drugs_than_the_table_holds_is_a_clear_error() -> None:
    n = len(DRUGS["JAK"])
    spec = make_spec("small", compounds_per_moa=n - 3, holdout_compounds_per_moa=4, holdout_layouts=1)
    with pytest.raises(ValueError, match=rf"holds {n} 'JAK' drugs.*= {n + 1} are asked"):
        drugs_for(spec, 0, "JAK")
    with pytest.raises(ValueError, match=r"the drug table \(lcd_core.synth.drugs\) holds"):
        make_compounds(spec, 0)
    with pytest.raises(ValueError, match=f"holds {len(INACTIVE)} inactive drugs"):
        make_compounds(make_spec("small", n_inactive=len(INACTIVE) + 1), 0)
