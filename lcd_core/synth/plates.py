"""Plates of a synthetic screen: layouts (which compound in which well), replicas x layouts with their
dose and dosing time, technical batch effects per replica and plate, and FOV positions in a well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from lcd_core.keys import dose_key, layout_key, plate_key, replica_key, well_name
from lcd_core.synth.compounds import Compound
from lcd_core.synth.design import CONTROL, ScreenSpec, rng_for, usable_wells


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
    (``holdout_layout_keys``) hold every holdout compound; without holdout layouts the training
    layouts hold the holdout compounds too.  All get ``wells_per_compound`` wells per compound and
    ``control_wells`` DMSO wells.
    """
    wells = usable_wells(spec)
    out: dict[str, list[WellAssignment]] = {}
    shared = spec.holdout_on_training_layouts
    sets = (
        ("layout", training_layout_keys(spec), [c for c in compounds if shared or c.compound_set != "holdout"]),
        ("holdout-layout", holdout_layout_keys(spec), [c for c in compounds if c.compound_set == "holdout"]),
    )
    for stream, keys, members in sets:
        names = [c.name for c in members for _ in range(spec.wells_per_compound)]
        names += [CONTROL] * spec.control_wells
        for lk in keys:
            rng = rng_for(seed, stream, lk)
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
        rng = rng_for(seed, "replica-batch", rk)
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
        rng = rng_for(seed, "plate-batch", p.barcode)
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
    "FIELD_OFFSETS",
    "Plate",
    "PlateBatch",
    "ReplicaBatch",
    "WellAssignment",
    "field_offset",
    "holdout_layout_keys",
    "make_layouts",
    "make_plate_batches",
    "make_plates",
    "make_replica_batches",
    "training_layout_keys",
]
