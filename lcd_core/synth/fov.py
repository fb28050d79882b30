"""One field of view of a synthetic measurement: debris, cells, focus, illumination, planes and truth.

Every draw comes from a stream keyed by what is drawn (:func:`lcd_core.synth.design.rng_for`):
debris and seeding density persist across timepoints (keyed by plate, well and field), the cells,
focus and illumination are drawn per measurement (keyed by timepoint too), in that order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lcd_core.keys import parse_well
from lcd_core.synth import cells as cellmod
from lcd_core.synth import optics
from lcd_core.synth import truth as truthmod
from lcd_core.synth.design import ScreenSpec, rng_for
from lcd_core.synth.plates import Plate, PlateBatch, ReplicaBatch, WellAssignment, field_offset

PAD_PX = 16  # canvas padding for FFT rendering (cells beyond it are still simulated)


@dataclass(frozen=True)
class MeasurementTask:
    """One plate x timepoint to render and write (runs in a worker); ``phenotypes``: compound ->
    Phenotype at this dose x timepoint; ``index`` numbers the truth part files."""

    spec: ScreenSpec
    seed: int
    plate: Plate
    replica_batch: ReplicaBatch
    plate_batch: PlateBatch
    wells: tuple[WellAssignment, ...]
    phenotypes: dict
    timepoint_h: int
    inbox: Path
    parts_dir: Path
    index: int


@dataclass(frozen=True)
class _Focus:
    """True focus error of a FOV (µm) and its parts."""

    replica_um: float
    plate_um: float  # plate offset + tilt at the well
    fov_um: float  # FOV jitter + gross focus failure
    total_um: float
    artifact: str  # "none", "debris" or "defocus"


def draw_specks(rng: np.random.Generator, spec: ScreenSpec) -> np.ndarray:
    """Small debris on the plate bottom: rows ``(x, y, phase, absorption)`` in image pixels."""
    size = spec.image_size
    n_specks = int(rng.poisson(spec.debris_specks_mean))
    return np.column_stack(
        [
            rng.uniform(0, size, n_specks),
            rng.uniform(0, size, n_specks),
            rng.normal(0.0, 0.6, n_specks) * rng.uniform(0.3, 1.5, n_specks),  # phase (signed)
            rng.uniform(0.0, 1.2, n_specks),  # integrated absorption
        ]
    ).reshape(-1, 4)


def render_planes(
    spec: ScreenSpec,
    pop: cellmod.Population,
    rng: np.random.Generator,
    focus_um: float,
    ill: optics.Illumination,
    specks: np.ndarray,
    blobs: np.ndarray,
    camera_offset_adu: float,
) -> list[np.ndarray]:
    """Image formation of one FOV: the population's phase / absorption maps, defocused to each of
    ``spec.planes_um`` (shifted by ``focus_um``), illuminated by ``ill`` and debris ``blobs``, then
    the camera. Returns one uint16 ``(image_size, image_size)`` array per plane."""
    size, px = spec.image_size, spec.pixel_size_um
    op = optics.Optics(px, spec.wavelength_um, spec.objective_na, spec.condenser_na)
    phi, alpha, fine, coarse = optics.object_maps(pop, size, PAD_PX, rng, px, specks)
    rel = optics.defocus_planes(phi, alpha, fine, coarse, [z + focus_um for z in spec.planes_um], op)
    bfield = ill.field(size) * optics.blob_attenuation(size, blobs, px)
    crop = (slice(PAD_PX, PAD_PX + size), slice(PAD_PX, PAD_PX + size))
    return [
        optics.camera(bfield * np.exp(np.clip(r[crop], -4.0, 2.5)), rng, spec.electrons_per_adu, spec.read_noise_adu,
                      camera_offset_adu)
        for r in rel
    ]


def render_random_field(spec: ScreenSpec, pop: cellmod.Population, rng: np.random.Generator) -> list[np.ndarray]:
    """The planes of ``pop`` under an illumination, focus and specks drawn at random from the
    spec's ranges (no plate, no debris blobs): annotation sets and benchmarks."""
    ill = optics.Illumination(
        mean_adu=spec.background_adu * float(np.exp(rng.normal(0, 0.08))), gradient=float(rng.uniform(0, 0.1)),
        gradient_angle=float(rng.uniform(0, 2 * np.pi)), vignette=float(rng.uniform(0, 0.1)), vignette_cx=0.0,
        vignette_cy=0.0, meniscus=float(rng.uniform(0, 0.05)), meniscus_angle=float(rng.uniform(0, 2 * np.pi)))
    focus = float(rng.normal(0, math.hypot(spec.replica_focus_sd_um, spec.plate_focus_sd_um, spec.fov_focus_sd_um)))
    return render_planes(spec, pop, rng, focus, ill, draw_specks(rng, spec), np.zeros((0, 4)), spec.camera_offset_adu)


def _debris(task: MeasurementTask, well: WellAssignment, field: int) -> tuple[np.ndarray, np.ndarray]:
    """Specks and (rarely) one large blob ``(x, y, radius_um, depth)`` on the plate bottom: static per FOV."""
    spec, size = task.spec, task.spec.image_size
    srng = rng_for(task.seed, "fov-static", task.plate.barcode, well.well, field)
    specks = draw_specks(srng, spec)
    blobs = np.zeros((0, 4))
    if srng.random() < spec.debris_blob_rate:
        blobs = np.array([[srng.uniform(0, size), srng.uniform(0, size), srng.uniform(8, 22), srng.uniform(0.4, 0.9)]])
    return specks, blobs


def _population(task: MeasurementTask, well: WellAssignment, rng: np.random.Generator) -> cellmod.Population:
    """The cells of the FOV at this timepoint: seeding density (replica, well) grown by the phenotype."""
    spec = task.spec
    density_rng = rng_for(task.seed, "well-density", task.plate.barcode, well.well)
    well_density = float(np.exp(density_rng.normal(0, spec.well_density_sd)))
    fov_um = spec.image_size * spec.pixel_size_um
    pheno = task.phenotypes[well.compound]
    n0 = spec.cells_per_mm2 * (fov_um * 1e-3) ** 2 * task.replica_batch.density * well_density
    live_mean, dead_mean = cellmod.expected_cells(pheno, task.timepoint_h, n0, spec.doubling_time_h)
    return cellmod.make_population(rng, pheno, live_mean, dead_mean, spec.image_size, spec.pixel_size_um)


def _focus(task: MeasurementTask, well: WellAssignment, rng: np.random.Generator, has_debris: bool) -> _Focus:
    """Replica and plate focus, the plate's tilt at the well, FOV jitter and rare gross failures."""
    spec, rb, pb = task.spec, task.replica_batch, task.plate_batch
    row, col = parse_well(well.well)
    tilt = pb.tilt_x_um * (col - (spec.plate_columns + 1) / 2) / (spec.plate_columns / 2) + pb.tilt_y_um * (
        row - (spec.plate_rows + 1) / 2
    ) / (spec.plate_rows / 2)
    fov_focus = float(rng.normal(0, spec.fov_focus_sd_um))
    artifact = "debris" if has_debris else "none"
    art_focus = 0.0
    if rng.random() < spec.defocus_artifact_rate:
        art_focus = float(rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 10.0))
        artifact = "defocus"
    total = rb.focus_um + pb.focus_um + tilt + fov_focus + art_focus
    return _Focus(rb.focus_um, pb.focus_um + tilt, fov_focus + art_focus, total, artifact)


def _illumination(task: MeasurementTask, field: int, rng: np.random.Generator) -> optics.Illumination:
    """Replica gradient and vignetting, plate and FOV gain, meniscus gradient of off-centre fields."""
    spec, rb, pb = task.spec, task.replica_batch, task.plate_batch
    fx, fy = field_offset(field)
    dist = math.hypot(fx, fy)
    return optics.Illumination(
        mean_adu=spec.background_adu * rb.gain * pb.gain * float(np.exp(rng.normal(0, spec.fov_gain_sd))),
        gradient=rb.gradient,
        gradient_angle=rb.gradient_angle,
        vignette=rb.vignette,
        vignette_cx=rb.vignette_cx,
        vignette_cy=rb.vignette_cy,
        meniscus=spec.field_meniscus * dist,
        meniscus_angle=math.atan2(fy, fx) if dist > 0 else 0.0,
    )


def _reaches(pop: cellmod.Population, size: int) -> np.ndarray:
    r = np.maximum(pop.ca, pop.cb)
    return (pop.cx + r >= 0) & (pop.cx - r < size) & (pop.cy + r >= 0) & (pop.cy - r < size)


def _cell_rows(pop: cellmod.Population, size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Truth rows (one per nucleus) of the cells that reach into the image, and nuclei per cell."""
    nuc = pop.nuc
    ci = nuc[:, 0].astype(int)
    n_per_cell = np.bincount(ci, minlength=pop.n)
    nidx = np.zeros(len(ci), dtype=np.int32)
    seen = np.zeros(pop.n, dtype=np.int32)
    for k, c in enumerate(ci):
        seen[c] += 1
        nidx[k] = seen[c]
    rows = {
        "cell_id": (ci + 1).astype(np.int32),
        "nucleus_index": nidx,
        "nucleus_x": nuc[:, 1].astype(np.float32),
        "nucleus_y": nuc[:, 2].astype(np.float32),
        "nucleus_a": nuc[:, 3].astype(np.float32),
        "nucleus_b": nuc[:, 4].astype(np.float32),
        "nucleus_angle": nuc[:, 5].astype(np.float32),
        "cell_x": pop.cx[ci].astype(np.float32),
        "cell_y": pop.cy[ci].astype(np.float32),
        "cell_a": pop.ca[ci].astype(np.float32),
        "cell_b": pop.cb[ci].astype(np.float32),
        "cell_angle": pop.cang[ci].astype(np.float32),
        "n_nuclei": n_per_cell[ci].astype(np.int32),
        "state": pop.state[ci].astype(str),
        "in_fov": pop.in_fov[ci],
    }
    reach = _reaches(pop, size)[ci]
    return {k: v[reach] for k, v in rows.items()}, n_per_cell


def _counts(pop: cellmod.Population, cell_rows: dict[str, np.ndarray], n_per_cell: np.ndarray, size: int) -> dict:
    """Cell counts of the FOV (centre inside) and the confluency of its live cells."""
    live = pop.state != cellmod.DEAD
    inside = pop.in_fov
    live_rows = {k: v[cell_rows["state"] != cellmod.DEAD] for k, v in cell_rows.items()}
    _, cell_labels = truthmod.render_masks(live_rows, (size, size))
    return {
        "n_cells": int((live & inside).sum()),
        "n_nuclei": int(n_per_cell[live & inside].sum()),
        "n_dead": int(((~live) & inside).sum()),
        "n_mitotic": int(((pop.state == cellmod.MITOTIC) & inside).sum()),
        "n_rounded": int(((pop.state == cellmod.ROUNDED) & inside).sum()),
        "n_multinucleated": int(((n_per_cell > 1) & live & inside).sum()),
        "confluency": truthmod.confluency(cell_labels),
    }


def render_fov(task: MeasurementTask, well: WellAssignment, field: int):
    """Render one FOV: returns (planes uint16 list, cell rows dict, fov row dict, pos (x, y) m)."""
    spec = task.spec
    specks, blobs = _debris(task, well, field)
    rng = rng_for(task.seed, "fov", task.plate.barcode, task.timepoint_h, well.well, field)
    pop = _population(task, well, rng)
    focus = _focus(task, well, rng, has_debris=len(blobs) > 0)
    ill = _illumination(task, field, rng)
    offset = spec.camera_offset_adu + task.plate_batch.offset_adu
    planes = render_planes(spec, pop, rng, focus.total_um, ill, specks, blobs, offset)
    cell_rows, n_per_cell = _cell_rows(pop, spec.image_size)
    fov_row = {
        **_counts(pop, cell_rows, n_per_cell, spec.image_size),
        "focus_offset_um": focus.total_um,
        "focus_replica_um": focus.replica_um,
        "focus_plate_um": focus.plate_um,
        "focus_fov_um": focus.fov_um,
        "illum_mean_adu": ill.mean_adu,
        "illum_gradient": ill.gradient,
        "illum_gradient_angle": ill.gradient_angle,
        "illum_vignette": ill.vignette,
        "illum_meniscus": ill.meniscus,
        "illum_meniscus_angle": ill.meniscus_angle,
        "camera_offset_adu": offset,
        "has_debris": len(blobs) > 0,
        "n_specks": len(specks),
        "artifact": focus.artifact,
    }
    fx, fy = field_offset(field)
    fov_um = spec.image_size * spec.pixel_size_um
    return planes, cell_rows, fov_row, (fx * fov_um * 1e-6, fy * fov_um * 1e-6)


__all__ = ["PAD_PX", "MeasurementTask", "draw_specks", "render_fov", "render_planes"]
