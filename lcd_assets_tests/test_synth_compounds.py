"""Tests of lcd_core.synth.compounds: the ``small`` design's compounds and their dose-time response."""

from __future__ import annotations

from lcd_core.synth.compounds import make_compounds
from lcd_core.synth.design import MOAS, make_spec

SPEC = make_spec("small")


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
