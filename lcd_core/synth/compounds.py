"""Compounds of a synthetic screen: real drugs of each MoA and their true dose-time response.

Every compound is a known drug of its class (:mod:`lcd_core.synth.drugs`): per MoA the drug table
is shuffled once per seed, the training set (``AURK-1`` …) takes the first ``compounds_per_moa``
drugs and the holdout set (``AURK-H1`` …) the next ``holdout_compounds_per_moa``, so the two sets
never share a drug and the training set does not depend on the holdout knobs.  The
polypharmacology compounds (``POLY-AURK-JAK`` = TAK-901 …) and the inactive ones (``INACT-1`` =
iniparib …) are fixed drugs.  ``Compound.drug`` is the drug's name, ``Compound.smiles`` its RDKit
canonical SMILES (:func:`lcd_core.molecules.canonical_smiles`).  Potencies and the response model
are drawn, not the drugs' own: the screens are synthetic.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from lcd_core.molecules import canonical_smiles
from lcd_core.synth.design import MOA_ONSET_H, MOA_PREFIX, MOAS, POLY_PAIRS, ScreenSpec, rng_for
from lcd_core.synth.drugs import DRUGS, INACTIVE, POLYPHARMACOLOGY, Drug


@dataclass(frozen=True)
class Compound:
    """A compound and its true dose-time response.

    The applied effect (0..1, fraction of the MoA's full morphology program) at dose ``d`` µM and
    ``t`` h after dosing is ``max_effect · d^h / (d^h + ec50^h) · (1 − exp(−t / onset_h))``; a
    polypharmacology compound applies its secondary MoA's program with its own EC50 and weight.
    ``drug`` names the real drug whose structure ``smiles`` is (canonical SMILES).
    """

    name: str
    moa: str  # "" = unknown
    smiles: str
    ec50_um: float
    hill: float
    max_effect: float
    onset_h: float
    moa_secondary: str = ""
    ec50_secondary_um: float = math.inf
    max_effect_secondary: float = 0.0
    onset_secondary_h: float = 1.0
    is_inactive: bool = False
    compound_set: str = "training"  # "training" or "holdout"
    moa_hidden: bool = False  # listed with an empty moa in the metadata although ``moa`` is known
    drug: str = ""  # the real drug this compound is (lcd_core.synth.drugs), e.g. "alisertib"

    @property
    def moa_listed(self) -> str:
        """The MoA written to compounds.csv / layouts.csv ("" = unknown)."""
        return "" if self.moa_hidden else self.moa

    def effects(self, dose_um: float, t_h: float) -> tuple[float, float]:
        """(primary, secondary) applied effect magnitudes at a dose and time."""
        return (
            _effect(dose_um, t_h, self.ec50_um, self.hill, self.max_effect, self.onset_h),
            _effect(dose_um, t_h, self.ec50_secondary_um, self.hill, self.max_effect_secondary, self.onset_secondary_h),
        )


def _effect(dose: float, t: float, ec50: float, hill: float, emax: float, onset: float) -> float:
    if emax <= 0 or not math.isfinite(ec50) or dose <= 0:
        return 0.0
    occ = dose**hill / (dose**hill + ec50**hill)
    return float(emax * occ * (1.0 - math.exp(-max(t, 0.0) / onset)))


@functools.lru_cache(maxsize=None)
def _structure(smiles: str) -> str:
    """Canonical SMILES of a drug of the table (cached: the table is fixed)."""
    return canonical_smiles(smiles)


def drugs_for(spec: ScreenSpec, seed: int, moa: str) -> tuple[tuple[Drug, ...], tuple[Drug, ...]]:
    """The drugs of one MoA for a screen: ``(training, holdout)``, never sharing a drug.

    The MoA's drug table is shuffled by its own random stream of the seed; the training set takes
    the first ``compounds_per_moa`` drugs, the holdout set the next ``holdout_compounds_per_moa``.

    Raises
    ------
    ValueError
        When the two sets ask for more drugs than the table holds for this MoA.
    """
    table = DRUGS[moa]
    n_train, n_hold = spec.compounds_per_moa, max(spec.holdout_compounds_per_moa, 0)
    if n_train + n_hold > len(table):
        smallest = min(len(v) for v in DRUGS.values())
        raise ValueError(
            f"the drug table (lcd_core.synth.drugs) holds {len(table)} {moa!r} drugs, but "
            f"compounds_per_moa={n_train} + holdout_compounds_per_moa={n_hold} = {n_train + n_hold} "
            f"are asked; every class holds at least {smallest}, so keep the sum at most {smallest}"
        )
    order = rng_for(seed, "drugs", moa).permutation(len(table))
    picked = [table[i] for i in order[: n_train + n_hold]]
    return tuple(picked[:n_train]), tuple(picked[n_train:])


def make_compounds(spec: ScreenSpec, seed: int) -> list[Compound]:
    """All compounds (no DMSO): the training set, then the holdout set (``make_holdout_compounds``).

    Training set: ``compounds_per_moa`` drugs per MoA, polypharmacology, inactive.  Potencies are
    spread evenly (with jitter) over ``log10_ec50_range`` within each MoA, so every MoA has potent
    and weak members and the low doses find only some compounds active.  The holdout set draws
    from its own random streams, so the training set is the same with or without it.

    Raises
    ------
    ValueError
        When the screen asks for more drugs of a class than the drug table holds.
    """
    return _training_compounds(spec, seed) + make_holdout_compounds(spec, seed)


def _moa_compounds(
    spec: ScreenSpec, rng: np.random.Generator, mi: int, moa: str, drugs: tuple[Drug, ...], name_fmt: str, **extra
) -> list[Compound]:
    """One compound per drug of one MoA, with stratified potencies (offset per MoA) drawn from ``rng``."""
    n = len(drugs)
    lo, hi = spec.log10_ec50_range
    # stratified potencies, offset per MoA so the classes are not all identical
    u = (np.arange(n) + rng.uniform(0.15, 0.85, n)) / n
    u = (u + (mi * 0.37) % 1.0 / max(n, 1)) % 1.0
    log_ec50 = lo + (hi - lo) * rng.permutation(u)
    return [
        Compound(
            name=name_fmt.format(prefix=MOA_PREFIX[moa], k=k + 1),
            moa=moa,
            smiles=_structure(drug.smiles),
            ec50_um=round(float(10 ** log_ec50[k]), 4),
            hill=round(float(rng.uniform(*spec.hill_range)), 3),
            max_effect=round(float(rng.uniform(*spec.max_effect_range) * spec.effect_scale), 3),
            onset_h=round(MOA_ONSET_H[moa] * float(rng.uniform(0.8, 1.25)), 2),
            drug=drug.name,
            **extra,
        )
        for k, drug in enumerate(drugs)
    ]


def make_holdout_compounds(spec: ScreenSpec, seed: int) -> list[Compound]:
    """The holdout set: ``holdout_compounds_per_moa`` per MoA (``AURK-H1`` …), ``compound_set="holdout"``.

    Drugs of the same MoA classes other than the training set's (:func:`drugs_for`), with the same
    MoA programs and their own potencies; ``holdout_unknown_moa`` of them, chosen at random (at
    most one per MoA while possible), get ``moa_hidden=True``.
    """
    if spec.holdout_compounds_per_moa <= 0:
        return []
    out: list[Compound] = []
    for mi, moa in enumerate(MOAS):
        rng = rng_for(seed, "holdout-compounds", moa)
        out += _moa_compounds(
            spec, rng, mi, moa, drugs_for(spec, seed, moa)[1], "{prefix}-H{k}", compound_set="holdout"
        )
    k = spec.holdout_unknown_moa
    if k:
        rng = rng_for(seed, "holdout-unknown")
        # round-robin over MoAs in a random order, so hidden labels spread over the classes
        n = spec.holdout_compounds_per_moa
        order = [m * n + j for j in rng.permutation(n) for m in rng.permutation(len(MOAS))]
        hidden = set(order[:k])
        out = [dataclasses.replace(c, moa_hidden=True) if i in hidden else c for i, c in enumerate(out)]
    return out


def _training_compounds(spec: ScreenSpec, seed: int) -> list[Compound]:
    """The training set: per-MoA compounds, polypharmacology, inactive."""
    out: list[Compound] = []
    for mi, moa in enumerate(MOAS):
        rng = rng_for(seed, "compounds", moa)
        out += _moa_compounds(spec, rng, mi, moa, drugs_for(spec, seed, moa)[0], "{prefix}-{k}")
    out += [_poly_compound(spec, seed, *pair) for pair in POLY_PAIRS[: spec.n_polypharmacology]]
    return out + [_inactive_compound(spec, seed, k) for k in range(spec.n_inactive)]


def _poly_compound(spec: ScreenSpec, seed: int, primary: str, secondary: str, name: str) -> Compound:
    """The two-MoA compound of one pair of ``POLY_PAIRS`` (its drug from ``POLYPHARMACOLOGY``)."""
    drug = POLYPHARMACOLOGY.get((primary, secondary))
    if drug is None:
        raise ValueError(f"no polypharmacology drug for {primary!r} + {secondary!r} in lcd_core.synth.drugs")
    rng = rng_for(seed, "poly", name)
    return Compound(
        name=name,
        moa=primary,
        smiles=_structure(drug.smiles),
        ec50_um=round(float(10 ** rng.uniform(-1.0, -0.3)), 4),
        hill=round(float(rng.uniform(*spec.hill_range)), 3),
        max_effect=round(0.9 * spec.effect_scale, 3),
        onset_h=MOA_ONSET_H[primary],
        moa_secondary=secondary,
        ec50_secondary_um=round(float(10 ** rng.uniform(-0.2, 0.4)), 4),
        max_effect_secondary=round(0.75 * spec.effect_scale, 3),
        onset_secondary_h=MOA_ONSET_H[secondary],
        drug=drug.name,
    )


def _inactive_compound(spec: ScreenSpec, seed: int, k: int) -> Compound:
    """``INACT-{k+1}``: the k-th drug of ``INACTIVE``, labelled ``spec.inactive_moa``, no effect."""
    if k >= len(INACTIVE):
        raise ValueError(
            f"n_inactive={spec.n_inactive} but the drug table (lcd_core.synth.drugs.INACTIVE) holds "
            f"{len(INACTIVE)} inactive drugs"
        )
    return Compound(
        name=f"INACT-{k + 1}",
        moa=spec.inactive_moa,
        smiles=_structure(INACTIVE[k].smiles),
        ec50_um=math.inf,
        hill=1.0,
        max_effect=0.0,
        onset_h=MOA_ONSET_H.get(spec.inactive_moa, 8.0),
        is_inactive=True,
        drug=INACTIVE[k].name,
    )


__all__ = ["Compound", "drugs_for", "make_compounds", "make_holdout_compounds"]
