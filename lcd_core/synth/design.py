"""Screen design of a synthetic screen: knobs (``ScreenSpec``), presets, compounds, layouts, registry.

Everything here is deterministic for a seed and independent of the wall clock: dates are derived
from ``ScreenSpec.reference_date``.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from lcd_core.keys import dose_key, layout_key, plate_key, replica_key, well_name

# --------------------------------------------------------------------------------------------
# Mechanisms of action (SPEC.md §4.8) and their compound-name prefixes
# --------------------------------------------------------------------------------------------

#: The ten MoA labels (exact strings used in compounds.csv / layouts.csv / truth).
MOAS: tuple[str, ...] = (
    "ATPase",
    "Aurora kinase",
    "HDAC",
    "JAK",
    "HSP",
    "PARP",
    "protein synthesis",
    "topoisomerase",
    "tubulin polymerization",
    "retinoid receptor agonist",
)

#: Compound name prefix per MoA (compounds are named ``AURK-1``, ``AURK-2`` …).
MOA_PREFIX: dict[str, str] = {
    "ATPase": "ATPA",
    "Aurora kinase": "AURK",
    "HDAC": "HDAC",
    "JAK": "JAK",
    "HSP": "HSP",
    "PARP": "PARP",
    "protein synthesis": "PSYN",
    "topoisomerase": "TOPO",
    "tubulin polymerization": "TUBB",
    "retinoid receptor agonist": "RXR",
}

#: Onset time constant (hours) of each MoA: the applied effect grows as ``1 - exp(-t / onset_h)``.
MOA_ONSET_H: dict[str, float] = {
    "ATPase": 5.0,
    "Aurora kinase": 8.0,
    "HDAC": 10.0,
    "JAK": 9.0,
    "HSP": 7.0,
    "PARP": 14.0,
    "protein synthesis": 3.0,
    "topoisomerase": 8.0,
    "tubulin polymerization": 4.0,
    "retinoid receptor agonist": 16.0,
}

#: Polypharmacology pairs (primary, secondary, name); the first one is TAK-901-like.
POLY_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("Aurora kinase", "JAK", "POLY-AURK-JAK"),
    ("HSP", "topoisomerase", "POLY-HSP-TOPO"),
    ("HDAC", "tubulin polymerization", "POLY-HDAC-TUBB"),
)

CONTROL = "DMSO"
DMSO_SMILES = "CS(C)=O"

# --------------------------------------------------------------------------------------------
# SMILES grammar: cap + linker + MoA core + linker + tail.  Every fragment is written so that the
# bond to its neighbour lands on an atom with a free valence (aromatic CH, aliphatic C, ring N),
# so every concatenation is a valid, RDKit-parsable SMILES.  Compounds of one MoA share a core
# (a chemotype), which gives the molecule encoder of MolCLIP something real to learn.
# --------------------------------------------------------------------------------------------

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


def stable_hash(*parts: object) -> int:
    """A 32-bit hash of the parts' text that is stable across processes and Python versions."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(stable_hash(*parts),)))


# --------------------------------------------------------------------------------------------
# ScreenSpec: every knob of a synthetic screen
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScreenSpec:
    """Size, biology and technical knobs of a synthetic screen (defaults = ``demo`` except the holdout knobs).

    Design
        name: screen name written to ``screen.json``.
        replica_doses_um: dose of every replica, in order R01, R02 …; every plate of a replica gets
            its replica's dose. Default multi-dose design: 0.156, 0.625, 2.5, 10, 10 µM.
        n_layouts: randomisation plates L01..Lnn; every layout holds every compound.
        timepoints_h: imaging times after dosing (whole hours); one measurement per plate per time.
        compounds_per_moa: compounds of each of the ten MoAs (``AURK-1`` …).
        n_polypharmacology: 0..3 two-MoA compounds; the first is ``POLY-AURK-JAK`` (TAK-901-like).
        n_inactive: compounds with no cellular effect at all (``INACT-1`` …), labelled ``inactive_moa``.
        inactive_moa: MoA label carried by the inactive compounds (a labelled library member that
            is phenotypically silent); "" writes an empty MoA (unknown).
        wells_per_compound: wells of each compound per layout.
        control_wells: DMSO wells per layout (role ``negative_control``).
        min_control_wells: written to ``screen.json``; ``None`` = ``control_wells``.
        avoid_edge_wells: keep outer rows/columns empty (edge effects).
    Holdout compound set (SPEC.md §2: other compounds of the same ten MoA classes, on their own
    layouts; the paper's holdout set has 89 compounds on 4 layouts, some with unknown MoA)
        holdout_compounds_per_moa: holdout compounds of each of the ten MoAs (``AURK-H1`` …), with
            the same MoA morphology programs, their own potencies (drawn like the training ones) and
            SMILES of the MoA's chemotype (distinct strings). 0 (the ``ScreenSpec`` default) = no
            holdout set; the ``demo`` and ``small`` presets use 1.
        holdout_layouts: layouts of the holdout set; they continue the layout numbering after the
            ``n_layouts`` training layouts (L05 … for 4 training layouts), each holds every holdout
            compound (``wells_per_compound`` wells) and ``control_wells`` DMSO wells, and they are
            imaged in every replica at every timepoint like training layouts. Ignored (no holdout
            layouts) when ``holdout_compounds_per_moa`` is 0.
        holdout_unknown_moa: how many holdout compounds are listed with an *empty* moa in
            compounds.csv / layouts.csv ("unknown MoA", to be predicted); the truth keeps their
            class (at most one per MoA while possible). Default 0; ``demo`` / ``small`` use 1.
            Ignored without holdout compounds, so ``holdout_compounds_per_moa=0`` alone turns the
            holdout set off in any preset.
    Imaging
        fields: FOVs per well (``FieldID`` 1..n; field positions are fixed per field index).
        image_size: pixels per side of every plane (already binned: the demo's 224 px at
            0.598 µm/px is a 134 µm FOV, i.e. one 224-px tile of a 2×-binned 20× export).
        pixel_size_um: pixel size of the written images (0.598 µm = the fixture's 2×-binned 20×).
        binning: binning written to the index (informational).
        planes_um: z offsets of the brightfield planes relative to the focus reference.
        z_reference_um: absolute ``PositionZ`` of the focus plane (Harmony writes Z relative to the
            autofocus reference; the fixture's brightfield sits at −6 µm).
        wavelength_um, objective_na, condenser_na: brightfield optics used for defocus rendering.
        background_adu: flat-field intensity before gains and vignetting (8400 gives image means
            ≈ 7800 ADU; the fixture brightfield mean is 7911).
        camera_offset_adu, electrons_per_adu, read_noise_adu: sCMOS noise model.
    Biology
        cells_per_mm2: live cell density at dosing time in DMSO (the fixture shows ≈ 500/mm² of
            U2OS; 224² px at 0.598 µm/px then holds ≈ 9 cells at 0 h).
        doubling_time_h: DMSO doubling time (cells per FOV grow as 2^(t/doubling)).
        log10_ec50_range: uniform range of log10(EC50 / µM) of the active compounds.
        hill_range: uniform range of Hill slopes.
        max_effect_range: uniform range of the maximal effect (0..1 fraction of the MoA program).
        effect_scale: multiplies every compound's maximal effect (global assay window).
        active_threshold: a condition is ``truly_active`` when its applied effect ≥ this.
    Technical (batch) effects; SDs are of log-gain (≈ relative) or µm
        replica_gain_sd: per-replica global intensity gain (lognormal SD, 0.08 ≈ ±8 %).
        plate_gain_sd: per-plate gain (0.025) on top; plate_offset_sd_adu: additive offset (30 ADU).
        fov_gain_sd: per-FOV gain jitter (0.01).
        replica_gradient_range: per-replica linear illumination gradient, fraction of mean across
            the FOV (uniform range, direction uniform per replica).
        replica_vignette_range: per-replica radial fall-off at the FOV corner (fraction).
        field_meniscus: illumination gradient per unit distance of the field from the well centre
            (field 1 sits at the centre, higher fields further out: a systematic FOV effect,
            direction pointing out of the well).
        replica_focus_sd_um, plate_focus_sd_um, fov_focus_sd_um: focus offsets (µm) added to every
            plane; plate_tilt_sd_um: focus change from the plate centre to its edge.
        replica_density_sd: per-replica seeding density (lognormal SD).
        well_density_sd: per-well seeding density (lognormal SD).
        debris_specks_mean: mean small debris specks per FOV (Poisson).
        debris_blob_rate: fraction of FOVs with a large out-of-focus debris blob (``has_debris``).
        defocus_artifact_rate: fraction of FOVs with a gross focus failure (±6–10 µm).
    Execution
        workers: processes of the measurement pool; ``None`` = min(2, cpu_count).
        reference_date: dosing time of R01's first plate (ISO 8601 with offset); replicas are a
            week apart, plates of a replica are dosed 10 min apart.
        plate_type, plate_rows, plate_columns: plate format (384 wells).
        barcode_prefix: barcodes are ``{prefix}-R03-L05``.
    """

    name: str = "lcd-synth-demo"
    replica_doses_um: tuple[float, ...] = (0.156, 0.625, 2.5, 10.0, 10.0)
    n_layouts: int = 4
    timepoints_h: tuple[int, ...] = (4, 20)
    compounds_per_moa: int = 2
    n_polypharmacology: int = 1
    n_inactive: int = 1
    inactive_moa: str = "PARP"
    wells_per_compound: int = 1
    control_wells: int = 32
    min_control_wells: int | None = None
    avoid_edge_wells: bool = True
    holdout_compounds_per_moa: int = 0
    holdout_layouts: int = 1
    holdout_unknown_moa: int = 0
    # imaging
    fields: int = 2
    image_size: int = 224
    pixel_size_um: float = 0.598
    binning: int = 2
    planes_um: tuple[float, ...] = (-3.6, 0.0, 3.6)
    z_reference_um: float = -6.0
    wavelength_um: float = 0.74
    objective_na: float = 0.4
    condenser_na: float = 0.12
    background_adu: float = 8400.0
    camera_offset_adu: float = 100.0
    electrons_per_adu: float = 1.6
    read_noise_adu: float = 2.0
    # biology
    cells_per_mm2: float = 520.0
    doubling_time_h: float = 24.0
    log10_ec50_range: tuple[float, float] = (-1.3, 1.2)
    hill_range: tuple[float, float] = (1.0, 2.5)
    max_effect_range: tuple[float, float] = (0.7, 1.0)
    effect_scale: float = 1.0
    active_threshold: float = 0.15
    # technical effects
    replica_gain_sd: float = 0.08
    plate_gain_sd: float = 0.025
    plate_offset_sd_adu: float = 30.0
    fov_gain_sd: float = 0.01
    replica_gradient_range: tuple[float, float] = (0.03, 0.12)
    replica_vignette_range: tuple[float, float] = (0.04, 0.12)
    field_meniscus: float = 0.10
    replica_focus_sd_um: float = 0.8
    plate_focus_sd_um: float = 0.3
    fov_focus_sd_um: float = 0.35
    plate_tilt_sd_um: float = 0.3
    replica_density_sd: float = 0.12
    well_density_sd: float = 0.08
    debris_specks_mean: float = 4.0
    debris_blob_rate: float = 0.03
    defocus_artifact_rate: float = 0.01
    # execution
    workers: int | None = None
    reference_date: str = "2024-03-04T09:00:00+01:00"
    plate_type: str = "384 PerkinElmer CellCarrier Ultra"
    plate_rows: int = 16
    plate_columns: int = 24
    barcode_prefix: str = "LCD"

    def __post_init__(self) -> None:
        if not self.replica_doses_um or any(d <= 0 for d in self.replica_doses_um):
            raise ValueError(f"replica_doses_um must be positive doses, got {self.replica_doses_um}")
        if self.n_layouts < 1 or self.fields < 1 or self.image_size < 32:
            raise ValueError("n_layouts and fields must be ≥ 1, image_size ≥ 32")
        if any(h < 0 or h != int(h) for h in self.timepoints_h) or len(set(self.timepoints_h)) != len(
            self.timepoints_h
        ):
            raise ValueError(f"timepoints_h must be distinct whole hours, got {self.timepoints_h}")
        if not 0 <= self.n_polypharmacology <= len(POLY_PAIRS):
            raise ValueError(f"n_polypharmacology must be 0..{len(POLY_PAIRS)}")
        if self.inactive_moa and self.inactive_moa not in MOAS:
            raise ValueError(f"inactive_moa {self.inactive_moa!r} is not one of {MOAS}")
        n_wells = self.n_compounds * self.wells_per_compound + self.control_wells
        if n_wells > len(usable_wells(self)):
            raise ValueError(f"{n_wells} wells per layout do not fit the {len(usable_wells(self))} usable wells")
        if self.holdout_compounds_per_moa < 0 or self.holdout_layouts < 0 or self.holdout_unknown_moa < 0:
            raise ValueError("holdout_compounds_per_moa, holdout_layouts and holdout_unknown_moa must be >= 0")
        if self.holdout_compounds_per_moa > 0 and self.holdout_layouts < 1:
            raise ValueError("a holdout compound set needs holdout_layouts >= 1")
        if self.holdout_compounds_per_moa > 0 and self.holdout_unknown_moa > self.n_holdout_compounds:
            raise ValueError(
                f"holdout_unknown_moa={self.holdout_unknown_moa} exceeds the {self.n_holdout_compounds} holdout compounds"
            )
        if self.n_holdout_layouts and self.holdout_wells_per_layout > len(usable_wells(self)):
            raise ValueError(
                f"{self.holdout_wells_per_layout} wells per holdout layout do not fit the "
                f"{len(usable_wells(self))} usable wells"
            )

    @property
    def n_compounds(self) -> int:
        """Treatment compounds per layout (DMSO excluded)."""
        return len(MOAS) * self.compounds_per_moa + self.n_polypharmacology + self.n_inactive

    @property
    def n_holdout_compounds(self) -> int:
        """Compounds of the holdout set (each on every holdout layout)."""
        return len(MOAS) * self.holdout_compounds_per_moa

    @property
    def n_holdout_layouts(self) -> int:
        """Holdout layouts actually generated (0 without holdout compounds)."""
        return self.holdout_layouts if self.holdout_compounds_per_moa > 0 else 0

    @property
    def n_all_layouts(self) -> int:
        """Training plus holdout layouts."""
        return self.n_layouts + self.n_holdout_layouts

    @property
    def n_replicas(self) -> int:
        return len(self.replica_doses_um)

    @property
    def wells_per_layout(self) -> int:
        """Wells of a training layout."""
        return self.n_compounds * self.wells_per_compound + self.control_wells

    @property
    def holdout_wells_per_layout(self) -> int:
        """Wells of a holdout layout."""
        return self.n_holdout_compounds * self.wells_per_compound + self.control_wells

    @property
    def n_measurements(self) -> int:
        return self.n_replicas * self.n_all_layouts * len(self.timepoints_h)

    @property
    def n_images(self) -> int:
        wells = self.n_layouts * self.wells_per_layout + self.n_holdout_layouts * self.holdout_wells_per_layout
        return self.n_replicas * len(self.timepoints_h) * wells * self.fields * len(self.planes_um)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


#: Presets. ``demo`` runs the whole platform on 2 cores; ``small`` is for tests (seconds).
#: Paper scale is e.g. ``generate_screen(out, "demo", n_layouts=8, timepoints_h=(4, 8, 12, 16, 20),
#: fields=4, image_size=1080, control_wells=32, compounds_per_moa=8, holdout_compounds_per_moa=9,
#: holdout_layouts=4, holdout_unknown_moa=8)`` (1080 px = 2×-binned 2160).
PRESETS: dict[str, dict] = {
    "demo": dict(holdout_compounds_per_moa=1, holdout_layouts=1, holdout_unknown_moa=1),
    "small": dict(
        name="lcd-synth-small",
        replica_doses_um=(0.625, 10.0),
        n_layouts=2,
        timepoints_h=(4, 20),
        compounds_per_moa=1,
        n_polypharmacology=1,
        n_inactive=1,
        control_wells=8,
        holdout_compounds_per_moa=1,
        holdout_layouts=1,
        holdout_unknown_moa=1,
        fields=2,
        image_size=224,
    ),
}


def make_spec(preset: str = "demo", **overrides) -> ScreenSpec:
    """The preset's ``ScreenSpec`` with ``overrides`` (any ScreenSpec field) applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ScreenSpec)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown ScreenSpec knobs {bad}; known: {sorted(names)}")
    kw = {**PRESETS[preset], **overrides}
    for k in ("replica_doses_um", "timepoints_h", "planes_um"):
        if k in kw:
            kw[k] = tuple(kw[k])
    return ScreenSpec(**kw)


# --------------------------------------------------------------------------------------------
# Compounds
# --------------------------------------------------------------------------------------------


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
        rng = _rng(seed, "holdout-compounds", moa)
        out += _moa_compounds(
            spec, rng, mi, moa, spec.holdout_compounds_per_moa, used, "{prefix}-H{k}", compound_set="holdout"
        )
    k = spec.holdout_unknown_moa
    if k:
        rng = _rng(seed, "holdout-unknown")
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
        rng = _rng(seed, "compounds", moa)
        out += _moa_compounds(spec, rng, mi, moa, spec.compounds_per_moa, used, "{prefix}-{k}")
    for primary, secondary, name in POLY_PAIRS[: spec.n_polypharmacology]:
        rng = _rng(seed, "poly", name)
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
        rng = _rng(seed, "inactive", k)
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


# --------------------------------------------------------------------------------------------
# Layouts, replicas, plates
# --------------------------------------------------------------------------------------------


def usable_wells(spec: ScreenSpec) -> list[tuple[int, int]]:
    """(row, col) of the wells a layout may use (outer ring excluded if ``avoid_edge_wells``)."""
    e = 1 if spec.avoid_edge_wells else 0
    return [
        (r, c)
        for r in range(1 + e, spec.plate_rows + 1 - e)
        for c in range(1 + e, spec.plate_columns + 1 - e)
    ]


@dataclass(frozen=True)
class WellAssignment:
    layout: str
    row: int
    col: int
    compound: str  # "DMSO" for controls

    @property
    def well(self) -> str:
        return well_name(self.row, self.col)

    @property
    def role(self) -> str:
        return "negative_control" if self.compound == CONTROL else "treatment"


def make_layouts(spec: ScreenSpec, compounds: list[Compound], seed: int) -> dict[str, list[WellAssignment]]:
    """``{"L01": [WellAssignment …], …}`` sorted by (row, col); random well positions per layout.

    Training layouts L01..L{n_layouts} hold every training compound; the holdout layouts that follow
    (``holdout_layout_keys``) hold every holdout compound.  Both get ``wells_per_compound`` wells per
    compound and ``control_wells`` DMSO wells.
    """
    wells = usable_wells(spec)
    out: dict[str, list[WellAssignment]] = {}
    sets = (
        ("layout", training_layout_keys(spec), [c for c in compounds if c.compound_set != "holdout"]),
        ("holdout-layout", holdout_layout_keys(spec), [c for c in compounds if c.compound_set == "holdout"]),
    )
    for stream, keys, members in sets:
        names = [c.name for c in members for _ in range(spec.wells_per_compound)]
        names += [CONTROL] * spec.control_wells
        for lk in keys:
            rng = _rng(seed, stream, lk)
            pick = rng.choice(len(wells), size=len(names), replace=False)
            assigned = [WellAssignment(lk, *wells[p], name) for p, name in zip(pick, rng.permutation(names))]
            out[lk] = sorted(assigned, key=lambda w: (w.row, w.col))
    return out


def training_layout_keys(spec: ScreenSpec) -> list[str]:
    """``L01`` … ``L{n_layouts}``."""
    return [layout_key(li) for li in range(1, spec.n_layouts + 1)]


def holdout_layout_keys(spec: ScreenSpec) -> list[str]:
    """The holdout layouts, numbered after the training layouts (``[]`` without a holdout set)."""
    return [layout_key(li) for li in range(spec.n_layouts + 1, spec.n_all_layouts + 1)]


@dataclass(frozen=True)
class Plate:
    barcode: str
    replica: str
    layout: str
    dose_um: float
    dosed_at: datetime

    @property
    def plate(self) -> str:
        return plate_key(self.replica, self.layout)

    @property
    def dose(self) -> str:
        return dose_key(self.dose_um)


def make_plates(spec: ScreenSpec) -> list[Plate]:
    """One plate per replica × layout (training and holdout layouts); replica r dosed (r−1) weeks
    after ``reference_date``, its plates 10 min apart in layout order."""
    t0 = datetime.fromisoformat(spec.reference_date)
    plates = []
    for ri, dose in enumerate(spec.replica_doses_um, start=1):
        for li in range(1, spec.n_all_layouts + 1):
            rk, lk = replica_key(ri), layout_key(li)
            plates.append(
                Plate(
                    barcode=f"{spec.barcode_prefix}-{rk}-{lk}",
                    replica=rk,
                    layout=lk,
                    dose_um=float(dose),
                    dosed_at=t0 + timedelta(days=7 * (ri - 1), minutes=10 * (li - 1)),
                )
            )
    return plates


# --------------------------------------------------------------------------------------------
# Technical (batch) effects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaBatch:
    replica: str
    gain: float  # multiplicative intensity gain
    gradient: float  # linear illumination gradient, fraction of mean across the FOV
    gradient_angle: float  # radians
    vignette: float  # radial fall-off at the FOV corner, fraction
    vignette_cx: float  # vignetting centre, fraction of the FOV from its centre
    vignette_cy: float
    focus_um: float  # focus offset added to every plane
    density: float  # seeding density factor


@dataclass(frozen=True)
class PlateBatch:
    barcode: str
    gain: float
    offset_adu: float
    focus_um: float
    tilt_x_um: float  # focus change from the plate's centre column to its edge
    tilt_y_um: float


def make_replica_batches(spec: ScreenSpec, seed: int) -> dict[str, ReplicaBatch]:
    out = {}
    for ri in range(1, spec.n_replicas + 1):
        rk = replica_key(ri)
        rng = _rng(seed, "replica-batch", rk)
        out[rk] = ReplicaBatch(
            replica=rk,
            gain=float(np.exp(rng.normal(0, spec.replica_gain_sd))),
            gradient=float(rng.uniform(*spec.replica_gradient_range)),
            gradient_angle=float(rng.uniform(0, 2 * np.pi)),
            vignette=float(rng.uniform(*spec.replica_vignette_range)),
            vignette_cx=float(rng.uniform(-0.15, 0.15)),
            vignette_cy=float(rng.uniform(-0.15, 0.15)),
            focus_um=float(rng.normal(0, spec.replica_focus_sd_um)),
            density=float(np.exp(rng.normal(0, spec.replica_density_sd))),
        )
    return out


def make_plate_batches(spec: ScreenSpec, plates: list[Plate], seed: int) -> dict[str, PlateBatch]:
    out = {}
    for p in plates:
        rng = _rng(seed, "plate-batch", p.barcode)
        out[p.barcode] = PlateBatch(
            barcode=p.barcode,
            gain=float(np.exp(rng.normal(0, spec.plate_gain_sd))),
            offset_adu=float(rng.normal(0, spec.plate_offset_sd_adu)),
            focus_um=float(rng.normal(0, spec.plate_focus_sd_um)),
            tilt_x_um=float(rng.normal(0, spec.plate_tilt_sd_um)),
            tilt_y_um=float(rng.normal(0, spec.plate_tilt_sd_um)),
        )
    return out


#: Field positions in units of the FOV size, relative to the well centre.  Harmony field numbers
#: are not a raster order: field 1 sits at the centre, the next ones around it.
FIELD_OFFSETS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (1.1, 0.0),
    (-1.1, 0.0),
    (0.0, 1.1),
    (0.0, -1.1),
    (1.1, 1.1),
    (-1.1, -1.1),
    (1.1, -1.1),
    (-1.1, 1.1),
)


def field_offset(f: int) -> tuple[float, float]:
    """(x, y) of field ``f`` (1-based) in FOV units from the well centre (spiral beyond 9)."""
    if f <= len(FIELD_OFFSETS):
        return FIELD_OFFSETS[f - 1]
    k = f - len(FIELD_OFFSETS)
    ang = k * 2.399963  # golden angle
    rad = 2.2 + 0.15 * k
    return (rad * math.cos(ang), rad * math.sin(ang))


__all__ = [
    "CONTROL",
    "DMSO_SMILES",
    "MOAS",
    "MOA_PREFIX",
    "MOA_ONSET_H",
    "PRESETS",
    "Compound",
    "Plate",
    "PlateBatch",
    "ReplicaBatch",
    "ScreenSpec",
    "WellAssignment",
    "field_offset",
    "holdout_layout_keys",
    "make_compounds",
    "make_holdout_compounds",
    "make_layouts",
    "make_plate_batches",
    "make_plates",
    "make_replica_batches",
    "make_spec",
    "stable_hash",
    "training_layout_keys",
    "usable_wells",
]

_ = field  # dataclasses.field kept importable for subclasses
