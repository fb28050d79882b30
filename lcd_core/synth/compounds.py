"""Compounds of a synthetic screen: names, SMILES of each MoA's chemotype and the true dose-time response.

SMILES grammar: cap + linker + MoA core + linker + tail.  Every fragment is written so that the
bond to its neighbour lands on an atom with a free valence (aromatic CH, aliphatic C, ring N),
so every concatenation is a valid, RDKit-parsable SMILES.  Compounds of one MoA share a core
(a chemotype), which gives the molecule encoder of MolCLIP something real to learn.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from lcd_core.synth.design import DMSO_SMILES, MOA_ONSET_H, MOA_PREFIX, MOAS, POLY_PAIRS, ScreenSpec, rng_for


_MOA_CORE: dict[str, str] = {
    "ATPase": "c1ccc2[nH]c(cc2c1)",  # indole (C5 / C2)
    "Aurora kinase": "c1cnc(nc1)",  # 2,5-pyrimidine
    "HDAC": "c1ccc(cc1)C=CC(=O)N",  # cinnamamide (hydroxamate-like)
    "JAK": "c1ccc2ncnc(c2c1)",  # quinazoline
    "HSP": "c1ccc(s1)",  # 2,5-thiophene
    "PARP": "c1ccc2cc(ccc2c1)",  # 2,6-naphthalene
    "protein synthesis": "C1CCN(CC1)",  # piperidine
    "topoisomerase": "c1ccc(nc1)",  # 2,5-pyridine
    "tubulin polymerization": "c1cc(OC)c(OC)c(c1)",  # dimethoxyphenyl (combretastatin-like)
    "retinoid receptor agonist": "C(C)=CC=CC(C)=C",  # polyene chain (retinoid-like)
}
_CAPS: tuple[str, ...] = (
    "c1ccccc1",
    "Cc1ccc(cc1)",
    "Fc1ccc(cc1)",
    "Clc1ccc(cc1)",
    "COc1ccc(cc1)",
    "FC(F)(F)c1ccc(cc1)",
    "c1ccncc1",
    "C1CCOCC1",
    "CN1CCN(CC1)",
    "CC(C)",
    "C1CC1",
    "CN(C)C",
)
_LINKS: tuple[str, ...] = ("", "C(=O)N", "NC(=O)", "C", "O", "N", "S(=O)(=O)N", "CC", "C(=O)", "NC(=O)N")
_TAILS: tuple[str, ...] = (
    "C",
    "CC",
    "N1CCOCC1",
    "N1CCN(C)CC1",
    "c1ccccc1",
    "C(F)(F)F",
    "C(=O)O",
    "C(=O)N",
    "c1ccncc1",
    "Cl",
    "F",
    "C#N",
    "OC",
    "C1CC1",
)


# junctions we refuse (valid SMILES, but peroxides / hydrazines / N-halogens look un-drug-like)
_HETERO_JUNCTIONS: tuple[str, ...] = ("OO", "OF", "OCl", "NCl", "NF", "ON", "NO", "NN", "SN1", "ON1", "NN1")


@dataclass(frozen=True)
class Compound:
    """A compound and its true dose-time response.

    The applied effect (0..1, fraction of the MoA's full morphology program) at dose ``d`` µM and
    ``t`` h after dosing is ``max_effect · d^h / (d^h + ec50^h) · (1 − exp(−t / onset_h))``; a
    polypharmacology compound applies its secondary MoA's program with its own EC50 and weight.
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


def _smiles_for(core: str, rng: np.random.Generator, used: set[str]) -> str:
    for _ in range(1000):
        cap = _CAPS[rng.integers(len(_CAPS))]
        l1 = _LINKS[rng.integers(len(_LINKS))]
        l2 = _LINKS[rng.integers(len(_LINKS))]
        tail = _TAILS[rng.integers(len(_TAILS))]
        smi = f"{cap}{l1}{core}{l2}{tail}"
        if any(bad in smi for bad in _HETERO_JUNCTIONS):
            continue
        if smi not in used:
            used.add(smi)
            return smi
    raise RuntimeError("could not draw a distinct SMILES")  # pragma: no cover


def make_compounds(spec: ScreenSpec, seed: int) -> list[Compound]:
    """All compounds (no DMSO): the training set, then the holdout set (``make_holdout_compounds``).

    Training set: ``compounds_per_moa`` per MoA, polypharmacology, inactive.  Potencies are spread
    evenly (with jitter) over ``log10_ec50_range`` within each MoA, so every MoA has potent and weak
    members and the low doses find only some compounds active.  The holdout set draws from its own
    random streams after the training set, so the training set is the same with or without it.
    """
    used: set[str] = {DMSO_SMILES}
    out = _training_compounds(spec, seed, used)
    return out + make_holdout_compounds(spec, seed, used)


def _moa_compounds(
    spec: ScreenSpec, rng: np.random.Generator, mi: int, moa: str, n: int, used: set[str], name_fmt: str, **extra
) -> list[Compound]:
    """``n`` compounds of one MoA with stratified potencies (offset per MoA) drawn from ``rng``."""
    lo, hi = spec.log10_ec50_range
    # stratified potencies, offset per MoA so the classes are not all identical
    u = (np.arange(n) + rng.uniform(0.15, 0.85, n)) / n
    u = (u + (mi * 0.37) % 1.0 / max(n, 1)) % 1.0
    log_ec50 = lo + (hi - lo) * rng.permutation(u)
    return [
        Compound(
            name=name_fmt.format(prefix=MOA_PREFIX[moa], k=k + 1),
            moa=moa,
            smiles=_smiles_for(_MOA_CORE[moa], rng, used),
            ec50_um=round(float(10 ** log_ec50[k]), 4),
            hill=round(float(rng.uniform(*spec.hill_range)), 3),
            max_effect=round(float(rng.uniform(*spec.max_effect_range) * spec.effect_scale), 3),
            onset_h=round(MOA_ONSET_H[moa] * float(rng.uniform(0.8, 1.25)), 2),
            **extra,
        )
        for k in range(n)
    ]


def make_holdout_compounds(spec: ScreenSpec, seed: int, used: set[str] | None = None) -> list[Compound]:
    """The holdout set: ``holdout_compounds_per_moa`` per MoA (``AURK-H1`` …), ``compound_set="holdout"``.

    Same MoA programs and chemotypes as the training set, own potencies and SMILES (distinct from
    every SMILES in ``used``, which defaults to the training set's); ``holdout_unknown_moa`` of them,
    chosen at random (at most one per MoA while possible), get ``moa_hidden=True``.
    """
    if spec.holdout_compounds_per_moa <= 0:
        return []
    if used is None:
        used = {DMSO_SMILES}
        _training_compounds(spec, seed, used)
    out: list[Compound] = []
    for mi, moa in enumerate(MOAS):
        rng = rng_for(seed, "holdout-compounds", moa)
        out += _moa_compounds(
            spec, rng, mi, moa, spec.holdout_compounds_per_moa, used, "{prefix}-H{k}", compound_set="holdout"
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


def _training_compounds(spec: ScreenSpec, seed: int, used: set[str]) -> list[Compound]:
    """The training set (per-MoA compounds, polypharmacology, inactive); adds its SMILES to ``used``."""
    out: list[Compound] = []
    for mi, moa in enumerate(MOAS):
        rng = rng_for(seed, "compounds", moa)
        out += _moa_compounds(spec, rng, mi, moa, spec.compounds_per_moa, used, "{prefix}-{k}")
    for primary, secondary, name in POLY_PAIRS[: spec.n_polypharmacology]:
        rng = rng_for(seed, "poly", name)
        core = _MOA_CORE[primary] + _LINKS[1] + _MOA_CORE[secondary]
        out.append(
            Compound(
                name=name,
                moa=primary,
                smiles=_smiles_for(core, rng, used),
                ec50_um=round(float(10 ** rng.uniform(-1.0, -0.3)), 4),
                hill=round(float(rng.uniform(*spec.hill_range)), 3),
                max_effect=round(0.9 * spec.effect_scale, 3),
                onset_h=MOA_ONSET_H[primary],
                moa_secondary=secondary,
                ec50_secondary_um=round(float(10 ** rng.uniform(-0.2, 0.4)), 4),
                max_effect_secondary=round(0.75 * spec.effect_scale, 3),
                onset_secondary_h=MOA_ONSET_H[secondary],
            )
        )
    for k in range(spec.n_inactive):
        rng = rng_for(seed, "inactive", k)
        core = _MOA_CORE[spec.inactive_moa] if spec.inactive_moa else "c1ccc(cc1)"
        out.append(
            Compound(
                name=f"INACT-{k + 1}",
                moa=spec.inactive_moa,
                smiles=_smiles_for(core, rng, used),
                ec50_um=math.inf,
                hill=1.0,
                max_effect=0.0,
                onset_h=MOA_ONSET_H.get(spec.inactive_moa, 8.0),
                is_inactive=True,
            )
        )
    return out


__all__ = ["Compound", "make_compounds", "make_holdout_compounds"]
