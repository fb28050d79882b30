"""Screen design of a synthetic screen: the MoA classes, every knob (``ScreenSpec``) and the presets.

The designed things are drawn by :mod:`lcd_core.synth.compounds` (compounds, SMILES, dose-time
response) and :mod:`lcd_core.synth.plates` (layouts, plates, batch effects, field positions), each
from its own random stream (:func:`rng_for`). Everything is deterministic for a seed and independent
of the wall clock: dates are derived from ``ScreenSpec.reference_date``.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np


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

def stable_hash(*parts: object) -> int:
    """A 32-bit hash of the parts' text that is stable across processes and Python versions."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode("utf-8"))


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """The random stream of one drawn thing (``parts``) of a screen with this seed."""
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
            imaged in every replica at every timepoint like training layouts. 0 puts the holdout
            compounds on every training layout instead (no extra plates; every dose then has
            positives from other plates, like the training compounds'). Ignored when
            ``holdout_compounds_per_moa`` is 0.
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
        n_wells = self.wells_per_layout
        if n_wells > len(usable_wells(self)):
            raise ValueError(f"{n_wells} wells per layout do not fit the {len(usable_wells(self))} usable wells")
        if self.holdout_compounds_per_moa < 0 or self.holdout_layouts < 0 or self.holdout_unknown_moa < 0:
            raise ValueError("holdout_compounds_per_moa, holdout_layouts and holdout_unknown_moa must be >= 0")
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
    def holdout_on_training_layouts(self) -> bool:
        """The holdout compounds share the training layouts (``holdout_layouts=0``)."""
        return self.holdout_compounds_per_moa > 0 and self.holdout_layouts == 0

    @property
    def wells_per_layout(self) -> int:
        """Wells of a training layout (holdout compounds included when they share it)."""
        shared = self.n_holdout_compounds if self.holdout_on_training_layouts else 0
        return (self.n_compounds + shared) * self.wells_per_compound + self.control_wells

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


#: Presets. ``demo`` runs the whole platform on 2 cores: the paper's five timepoints, one field per
#: well (the time-lapse costs 2.5× the measurements of two timepoints; a second field would double
#: the tiles again), the holdout compounds on the training layouts (positives from other plates at
#: every dose). ``timelapse`` images every 2 h to 24 h for the MolCLIP experiment; ``small`` is for
#: tests (seconds).
#: Paper scale is e.g. ``generate_screen(out, "demo", n_layouts=8, timepoints_h=(4, 8, 12, 16, 20),
#: fields=4, image_size=1080, control_wells=32, compounds_per_moa=8, holdout_compounds_per_moa=9,
#: holdout_layouts=4, holdout_unknown_moa=8)`` (1080 px = 2×-binned 2160).
PRESETS: dict[str, dict] = {
    "demo": dict(timepoints_h=(4, 8, 12, 16, 20), fields=1, holdout_compounds_per_moa=1, holdout_layouts=0,
                 holdout_unknown_moa=1),
    "timelapse": dict(name="lcd-synth-timelapse", timepoints_h=tuple(range(2, 25, 2)), fields=1,
                      holdout_compounds_per_moa=1, holdout_layouts=0, holdout_unknown_moa=1),
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


def usable_wells(spec: ScreenSpec) -> list[tuple[int, int]]:
    """(row, col) of the wells a layout may use (outer ring excluded if ``avoid_edge_wells``)."""
    e = 1 if spec.avoid_edge_wells else 0
    return [
        (r, c)
        for r in range(1 + e, spec.plate_rows + 1 - e)
        for c in range(1 + e, spec.plate_columns + 1 - e)
    ]


__all__ = [
    "CONTROL",
    "DMSO_SMILES",
    "MOAS",
    "MOA_ONSET_H",
    "MOA_PREFIX",
    "POLY_PAIRS",
    "PRESETS",
    "ScreenSpec",
    "make_spec",
    "rng_for",
    "stable_hash",
    "usable_wells",
]
