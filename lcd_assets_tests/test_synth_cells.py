"""Tests of lcd_core.synth.cells: phenotypes of conditions and the drawn populations."""

from __future__ import annotations

import numpy as np

from lcd_core.synth.cells import DEAD, DMSO_PHENOTYPE, MITOTIC, NORMAL, expected_cells, make_population, phenotype_for


def _pop(seed: int, pheno=DMSO_PHENOTYPE, live: float = 20.0, dead: float = 0.0):
    return make_population(np.random.default_rng(seed), pheno, live, dead, 224, 0.598)


def test_same_stream_same_population() -> None:
    a, b = _pop(3, live=15.0, dead=4.0), _pop(3, live=15.0, dead=4.0)
    for f in ("cx", "cy", "ca", "cb", "cang", "thick", "nuc"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.cx, _pop(4, live=15.0, dead=4.0).cx)


def test_nuclei_belong_to_their_cells() -> None:
    pop = _pop(1, phenotype_for([("Aurora kinase", 1.0)]), live=30.0)
    cell = pop.nuc[:, 0].astype(int)
    assert set(cell) == set(range(pop.n))  # every cell has a nucleus
    counts = np.bincount(cell, minlength=pop.n)
    assert counts.max() > 1 and (counts[pop.state != NORMAL] == 1).all()  # only normal cells are multinucleated
    inside = np.hypot(pop.nuc[:, 1] - pop.cx[cell], pop.nuc[:, 2] - pop.cy[cell]) <= np.maximum(pop.ca, pop.cb)[cell]
    assert inside.all()


def test_phenotype_moves_towards_the_program() -> None:
    half = phenotype_for([("tubulin polymerization", 0.5)])
    assert DMSO_PHENOTYPE.mitotic < half.mitotic < phenotype_for([("tubulin polymerization", 1.0)]).mitotic
    assert phenotype_for([]) == DMSO_PHENOTYPE
    pop = _pop(2, phenotype_for([("tubulin polymerization", 1.0)]), live=40.0, dead=5.0)
    assert (pop.state == MITOTIC).mean() > 0.3 and (pop.state == DEAD).sum() > 0


def test_expected_cells_grow_with_time_and_growth() -> None:
    live0, dead0 = expected_cells(DMSO_PHENOTYPE, 0.0, 10.0, 24.0)
    live24, _ = expected_cells(DMSO_PHENOTYPE, 24.0, 10.0, 24.0)
    assert live24 == 2 * live0 and dead0 == 0.5 * 10.0 * DMSO_PHENOTYPE.death
    arrested, _ = expected_cells(phenotype_for([("protein synthesis", 1.0)]), 24.0, 10.0, 24.0)
    assert arrested == live0 * (1 - phenotype_for([("protein synthesis", 1.0)]).death) / (1 - DMSO_PHENOTYPE.death)
