"""Orchestration: ``generate_screen(out, preset, seed, **overrides)`` writes a whole synthetic screen.

Output (see docs/ARCHITECTURE.md):

* ``out/inbox/<barcode>__<YYYYMMDDTHHMMSS>-Measurement 1/Images/`` one Opera Phenix (Harmony 5)
  export per plate × timepoint, written with ``lcd_core.synth.phenix_writer.write_measurement``;
* ``out/metadata/`` ``compounds.csv``, ``layouts.csv``, ``registry.csv``, ``screen.json``;
* ``out/truth/`` ``compounds.parquet``, ``conditions.parquet``, ``cells.parquet``,
  ``fovs.parquet``, ``truth.json`` (see ``lcd_core.synth.truth``).

Determinism: every random draw comes from a ``np.random.SeedSequence`` keyed by the screen seed and
the identity of what is drawn (compound, layout, replica, plate, well, field, timepoint), so the
files are bit-identical for a seed regardless of worker count or order.  Dates derive from
``ScreenSpec.reference_date``.  Memory: each worker streams its measurement's images to the
writer and its truth rows to a part file; the parts are concatenated at the end.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lcd_core.keys import dose_key, timepoint_key
from lcd_core.synth import cells as cellmod
from lcd_core.synth import optics
from lcd_core.synth import truth as truthmod
from lcd_core.synth.design import (
    CONTROL,
    DMSO_SMILES,
    Compound,
    Plate,
    PlateBatch,
    ReplicaBatch,
    ScreenSpec,
    WellAssignment,
    field_offset,
    holdout_layout_keys,
    make_compounds,
    make_layouts,
    make_plate_batches,
    make_plates,
    make_replica_batches,
    make_spec,
    stable_hash,
    training_layout_keys,
)

BRIGHTFIELD_CHANNEL_ID = 1
WELL_SCAN_S = 6.0  # seconds of scan time per well (AbsTime advances well by well)
FIELD_SCAN_S = 1.2
PLANE_SCAN_S = 0.3
PAD_PX = 16  # canvas padding for FFT rendering (cells beyond it are still simulated)


@dataclass(frozen=True)
class SynthResult:
    """What ``generate_screen`` wrote.

    out: the root (``LCD_HOME``-like) folder; inbox / metadata_dir / truth_dir: its sub-folders;
    measurement_dirs: every measurement folder, in (replica, layout, timepoint) order;
    spec: the ``ScreenSpec`` used; preset, seed: as given; barcodes: all plate barcodes;
    n_measurements, n_fovs, n_images: counts written; n_cells: live cells (centre in FOV) in truth;
    elapsed_s: wall time of the call.
    """

    out: Path
    inbox: Path
    metadata_dir: Path
    truth_dir: Path
    measurement_dirs: tuple[Path, ...]
    spec: ScreenSpec
    preset: str
    seed: int
    barcodes: tuple[str, ...]
    n_measurements: int
    n_fovs: int
    n_images: int
    n_cells: int
    elapsed_s: float


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(stable_hash(*parts),)))


# --------------------------------------------------------------------------------------------
# Metadata files
# --------------------------------------------------------------------------------------------


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def write_metadata(
    meta_dir: Path,
    spec: ScreenSpec,
    compounds: list[Compound],
    layouts: dict[str, list[WellAssignment]],
    plates: list[Plate],
) -> None:
    """compounds.csv, layouts.csv, registry.csv, screen.json in the ARCHITECTURE.md formats.

    compounds.csv has an extra column ``set`` (``training`` / ``holdout`` / ``control`` for DMSO);
    the moa of a compound is its *listed* moa (empty for unknown-MoA holdout compounds).
    """
    meta_dir.mkdir(parents=True, exist_ok=True)
    by_name = {c.name: c for c in compounds}
    cdf = pl.DataFrame(
        {
            "compound": [c.name for c in compounds] + [CONTROL],
            "moa": [c.moa_listed or None for c in compounds] + [None],
            "smiles": [c.smiles for c in compounds] + [DMSO_SMILES],
            "set": [c.compound_set for c in compounds] + ["control"],
        },
        schema={"compound": pl.String, "moa": pl.String, "smiles": pl.String, "set": pl.String},
    )
    cdf.write_csv(meta_dir / "compounds.csv")
    rows = []
    for lk, wells in layouts.items():
        for w in wells:
            c = by_name.get(w.compound)
            rows.append(
                {
                    "layout": lk,
                    "well": w.well,
                    "compound": w.compound,
                    "moa": (c.moa_listed or None) if c else None,
                    "smiles": c.smiles if c else DMSO_SMILES,
                    "role": w.role,
                }
            )
    pl.DataFrame(
        rows,
        schema={k: pl.String for k in ("layout", "well", "compound", "moa", "smiles", "role")},
    ).write_csv(meta_dir / "layouts.csv")
    pl.DataFrame(
        {
            "barcode": [p.barcode for p in plates],
            "replica": [p.replica for p in plates],
            "layout": [p.layout for p in plates],
            "dose_um": [p.dose_um for p in plates],
            "dosed_at": [_iso(p.dosed_at) for p in plates],
        }
    ).write_csv(meta_dir / "registry.csv")
    screen = {
        "name": spec.name,
        "plate_type": spec.plate_type,
        "plate_rows": spec.plate_rows,
        "plate_columns": spec.plate_columns,
        "timepoints_h": [int(t) for t in spec.timepoints_h],
        "control": CONTROL,
        "min_control_wells": int(spec.min_control_wells if spec.min_control_wells is not None else spec.control_wells),
    }
    (meta_dir / "screen.json").write_text(json.dumps(screen, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# One measurement (runs in a worker)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    spec: ScreenSpec
    seed: int
    plate: Plate
    replica_batch: ReplicaBatch
    plate_batch: PlateBatch
    wells: tuple[WellAssignment, ...]
    phenotypes: dict  # compound -> Phenotype at this dose × timepoint
    timepoint_h: int
    inbox: Path
    parts_dir: Path
    index: int


def measurement_start(spec: ScreenSpec, seed: int, plate: Plate, tp_h: int) -> datetime:
    """Start of a plate's scan: dosed_at + timepoint + 0–5 min (deterministic), whole seconds."""
    delay = int(_rng(seed, "start", plate.barcode, tp_h).integers(0, 300))
    return plate.dosed_at + timedelta(hours=tp_h, seconds=delay)


def measurement_dir_name(barcode: str, start: datetime) -> str:
    return f"{barcode}__{start:%Y%m%dT%H%M%S}-Measurement 1"


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


def _render_fov(task: _Task, well: WellAssignment, field: int):
    """Render one FOV: returns (planes uint16 list, cell rows dict, fov row dict, pos (x, y) m)."""
    spec = task.spec
    seed = task.seed
    plate = task.plate
    rb, pb = task.replica_batch, task.plate_batch
    tp = task.timepoint_h
    size = spec.image_size
    px = spec.pixel_size_um
    fov_um = size * px

    # static per FOV (persists across timepoints): debris on the plate bottom, seeding density
    srng = _rng(seed, "fov-static", plate.barcode, well.well, field)
    specks = draw_specks(srng, spec)
    n_specks = len(specks)
    has_blob = bool(srng.random() < spec.debris_blob_rate)
    blobs = np.zeros((0, 4))
    if has_blob:
        blobs = np.array([[srng.uniform(0, size), srng.uniform(0, size), srng.uniform(8, 22), srng.uniform(0.4, 0.9)]])
    well_density = float(np.exp(_rng(seed, "well-density", plate.barcode, well.well).normal(0, spec.well_density_sd)))

    # per measurement × FOV
    rng = _rng(seed, "fov", plate.barcode, tp, well.well, field)
    pheno = task.phenotypes[well.compound]
    n0 = spec.cells_per_mm2 * (fov_um * 1e-3) ** 2 * rb.density * well_density
    live_mean, dead_mean = cellmod.expected_cells(pheno, tp, n0, spec.doubling_time_h)
    pop = cellmod.make_population(rng, pheno, live_mean, dead_mean, size, px)

    # focus
    row, col = _rowcol(well.well)
    tilt = pb.tilt_x_um * (col - (spec.plate_columns + 1) / 2) / (spec.plate_columns / 2) + pb.tilt_y_um * (
        row - (spec.plate_rows + 1) / 2
    ) / (spec.plate_rows / 2)
    fov_focus = float(rng.normal(0, spec.fov_focus_sd_um))
    artifact = "debris" if has_blob else "none"
    art_focus = 0.0
    if rng.random() < spec.defocus_artifact_rate:
        art_focus = float(rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 10.0))
        artifact = "defocus"
    focus = rb.focus_um + pb.focus_um + tilt + fov_focus + art_focus

    # illumination
    fx, fy = field_offset(field)
    dist = math.hypot(fx, fy)
    ill = optics.Illumination(
        mean_adu=spec.background_adu * rb.gain * pb.gain * float(np.exp(rng.normal(0, spec.fov_gain_sd))),
        gradient=rb.gradient,
        gradient_angle=rb.gradient_angle,
        vignette=rb.vignette,
        vignette_cx=rb.vignette_cx,
        vignette_cy=rb.vignette_cy,
        meniscus=spec.field_meniscus * dist,
        meniscus_angle=math.atan2(fy, fx) if dist > 0 else 0.0,
    )
    planes = render_planes(spec, pop, rng, focus, ill, specks, blobs, spec.camera_offset_adu + pb.offset_adu)

    # truth rows
    nuc = pop.nuc
    ci = nuc[:, 0].astype(int)
    n_per_cell = np.bincount(ci, minlength=pop.n)
    nidx = np.zeros(len(ci), dtype=np.int32)
    seen = np.zeros(pop.n, dtype=np.int32)
    for k, c in enumerate(ci):
        seen[c] += 1
        nidx[k] = seen[c]
    cell_rows = {
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
    # keep only cells that reach into the image
    reach = _reaches(pop, size)[ci]
    cell_rows = {k: v[reach] for k, v in cell_rows.items()}
    live = pop.state != cellmod.DEAD
    inside = pop.in_fov
    live_rows = {k: v[cell_rows["state"] != cellmod.DEAD] for k, v in cell_rows.items()}
    _, cell_labels = truthmod.render_masks(live_rows, (size, size))
    fov_row = {
        "n_cells": int((live & inside).sum()),
        "n_nuclei": int(n_per_cell[live & inside].sum()),
        "n_dead": int(((~live) & inside).sum()),
        "n_mitotic": int(((pop.state == cellmod.MITOTIC) & inside).sum()),
        "n_rounded": int(((pop.state == cellmod.ROUNDED) & inside).sum()),
        "n_multinucleated": int(((n_per_cell > 1) & live & inside).sum()),
        "confluency": truthmod.confluency(cell_labels),
        "focus_offset_um": focus,
        "focus_replica_um": rb.focus_um,
        "focus_plate_um": pb.focus_um + tilt,
        "focus_fov_um": fov_focus + art_focus,
        "illum_mean_adu": ill.mean_adu,
        "illum_gradient": ill.gradient,
        "illum_gradient_angle": ill.gradient_angle,
        "illum_vignette": ill.vignette,
        "illum_meniscus": ill.meniscus,
        "illum_meniscus_angle": ill.meniscus_angle,
        "camera_offset_adu": spec.camera_offset_adu + pb.offset_adu,
        "has_debris": has_blob,
        "n_specks": n_specks,
        "artifact": artifact,
    }
    pos = (fx * fov_um * 1e-6, fy * fov_um * 1e-6)
    return planes, cell_rows, fov_row, pos


def _reaches(pop: cellmod.Population, size: int) -> np.ndarray:
    r = np.maximum(pop.ca, pop.cb)
    return (pop.cx + r >= 0) & (pop.cx - r < size) & (pop.cy + r >= 0) & (pop.cy - r < size)


def _rowcol(well: str) -> tuple[int, int]:
    from lcd_core.keys import parse_well

    return parse_well(well)


def _run_measurement(task: _Task) -> tuple[str, str, int]:
    """Render and write one measurement; truth parts go to ``parts_dir``. Returns (dir, part, n_images)."""
    from lcd_core.io.phenix import Channel
    from lcd_core.synth.phenix_writer import ImageRecord, write_measurement

    spec = task.spec
    plate = task.plate
    tp = task.timepoint_h
    start = measurement_start(spec, task.seed, plate, tp)
    mdir = task.inbox / measurement_dir_name(plate.barcode, start)
    if mdir.exists():
        shutil.rmtree(mdir)
    channel = Channel(
        id=BRIGHTFIELD_CHANNEL_ID,
        name="Brightfield",
        type="Brightfield",
        excitation_nm=spec.wavelength_um * 1000.0,
        emission_nm=0.0,
        exposure_s=0.2,
        objective_magnification=20.0,
        objective_na=spec.objective_na,
        binning=spec.binning,
        acquisition_type="NonConfocal",
        illumination_type="Transmitted",
    )
    cell_parts: list[dict] = []
    fov_rows: list[dict] = []
    counter = {"n": 0}
    ident = {
        "barcode": plate.barcode,
        "plate": plate.plate,
        "timepoint": timepoint_key(tp),
    }

    def images():
        for wi, well in enumerate(task.wells):
            row, col = _rowcol(well.well)
            for field in range(1, spec.fields + 1):
                planes, crows, frow, (x_m, y_m) = _render_fov(task, well, field)
                n = len(crows["cell_id"])
                crows = {
                    "barcode": np.full(n, plate.barcode, dtype=object),
                    "plate": np.full(n, plate.plate, dtype=object),
                    "timepoint": np.full(n, ident["timepoint"], dtype=object),
                    "well": np.full(n, well.well, dtype=object),
                    "field": np.full(n, field, dtype=np.int32),
                    **crows,
                }
                cell_parts.append(crows)
                fov_rows.append(
                    {
                        **ident,
                        "replica": plate.replica,
                        "layout": plate.layout,
                        "well": well.well,
                        "field": field,
                        "compound": well.compound,
                        "role": well.role,
                        "dose_um": plate.dose_um,
                        "dose": plate.dose,
                        "timepoint_h": tp,
                        **frow,
                    }
                )
                for pi, (img, z) in enumerate(zip(planes, spec.planes_um), start=1):
                    t = start + timedelta(
                        seconds=wi * WELL_SCAN_S + (field - 1) * FIELD_SCAN_S + (pi - 1) * PLANE_SCAN_S
                    )
                    counter["n"] += 1
                    yield ImageRecord(
                        row=row,
                        col=col,
                        field=field,
                        plane=pi,
                        timepoint=0,
                        channel=BRIGHTFIELD_CHANNEL_ID,
                        pixels=img,
                        position_x_m=x_m,
                        position_y_m=y_m,
                        position_z_m=(spec.z_reference_um + z) * 1e-6,
                        abs_time=t,
                    )

    write_measurement(
        mdir,
        plate_id=plate.barcode,
        measurement_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lcd-synth/{task.seed}/{plate.barcode}/{tp}")),
        start_time=start,
        channels=[channel],
        images=images(),
        pixel_size_m=spec.pixel_size_um * 1e-6,
        plate_type=spec.plate_type,
        plate_rows=spec.plate_rows,
        plate_columns=spec.plate_columns,
        user="lcd-synth",
    )
    # truth parts
    cells = {k: np.concatenate([p[k] for p in cell_parts]) for k in truthmod.CELL_COLUMNS}
    cdf = pl.DataFrame({k: (v.tolist() if v.dtype == object else v) for k, v in cells.items()})
    part = task.parts_dir / f"{task.index:05d}"
    cdf.write_parquet(f"{part}-cells.parquet")
    pl.DataFrame(fov_rows).write_parquet(f"{part}-fovs.parquet")
    return str(mdir), str(part), counter["n"]


# --------------------------------------------------------------------------------------------
# Screen
# --------------------------------------------------------------------------------------------


def _condition_tables(spec: ScreenSpec, compounds: list[Compound]) -> tuple[pl.DataFrame, pl.DataFrame]:
    doses = sorted(set(spec.replica_doses_um))
    rows = []
    for c in compounds:
        for d in doses:
            for t in spec.timepoints_h:
                e1, e2 = c.effects(d, t)
                eff = max(e1, e2)
                rows.append(
                    {
                        "compound": c.name,
                        "set": c.compound_set,
                        "moa": c.moa,
                        "moa_secondary": c.moa_secondary,
                        "dose_um": float(d),
                        "dose": dose_key(d),
                        "timepoint": timepoint_key(t),
                        "timepoint_h": int(t),
                        "effect_primary": round(e1, 6),
                        "effect_secondary": round(e2, 6),
                        "effect": round(eff, 6),
                        "truly_active": truthmod.is_truly_active(eff, spec.active_threshold),
                    }
                )
    cond = pl.DataFrame(rows)
    active = cond.group_by("compound").agg(pl.col("truly_active").any().alias("is_active_anywhere"))
    comp = pl.DataFrame(
        {
            "compound": [c.name for c in compounds],
            "set": [c.compound_set for c in compounds],
            "moa": [c.moa for c in compounds],
            "moa_listed": [c.moa_listed or None for c in compounds],
            "moa_secondary": [c.moa_secondary for c in compounds],
            "smiles": [c.smiles for c in compounds],
            "ec50_um": [c.ec50_um if math.isfinite(c.ec50_um) else None for c in compounds],
            "hill": [c.hill for c in compounds],
            "max_effect": [c.max_effect for c in compounds],
            "onset_h": [c.onset_h for c in compounds],
            "ec50_secondary_um": [c.ec50_secondary_um if math.isfinite(c.ec50_secondary_um) else None for c in compounds],
            "max_effect_secondary": [c.max_effect_secondary for c in compounds],
            "onset_secondary_h": [c.onset_secondary_h if c.moa_secondary else None for c in compounds],
        },
        schema_overrides={
            "ec50_um": pl.Float64,
            "ec50_secondary_um": pl.Float64,
            "onset_secondary_h": pl.Float64,
            "moa_listed": pl.String,
        },
    ).join(active, on="compound", how="left", maintain_order="left")
    return comp, cond


def _phenotypes(compounds: list[Compound], dose: float, t: int) -> dict:
    out = {CONTROL: cellmod.DMSO_PHENOTYPE}
    for c in compounds:
        e1, e2 = c.effects(dose, t)
        eff = []
        if e1 > 0:
            eff.append((c.moa, e1))
        if e2 > 0 and c.moa_secondary:
            eff.append((c.moa_secondary, e2))
        out[c.name] = cellmod.phenotype_for(eff) if eff else cellmod.DMSO_PHENOTYPE
    return out


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def generate_screen(out: Path | str, preset: str = "demo", seed: int = 0, **overrides) -> SynthResult:
    """Generate a synthetic Opera Phenix screen with metadata and ground truth under ``out``.

    ``preset``: ``"demo"`` or ``"small"`` (see ``design.PRESETS``); ``overrides``: any
    ``ScreenSpec`` field (e.g. ``n_layouts=8, fields=4, image_size=1080, workers=4``).
    Existing measurement folders of the same screen are replaced; ``out/truth`` and the metadata
    files are rewritten.
    """
    t_start = time.perf_counter()
    out = Path(out)
    spec = make_spec(preset, **overrides)
    compounds = make_compounds(spec, seed)
    layouts = make_layouts(spec, compounds, seed)
    plates = make_plates(spec)
    rbatch = make_replica_batches(spec, seed)
    pbatch = make_plate_batches(spec, plates, seed)

    inbox = out / "inbox"
    meta_dir = out / "metadata"
    truth_dir = out / "truth"
    parts_dir = truth_dir / "_parts"
    inbox.mkdir(parents=True, exist_ok=True)
    if parts_dir.exists():
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True)
    write_metadata(meta_dir, spec, compounds, layouts, plates)

    pheno_cache: dict[tuple[float, int], dict] = {}
    tasks = []
    for p in plates:
        for t in spec.timepoints_h:
            key = (p.dose_um, int(t))
            if key not in pheno_cache:
                pheno_cache[key] = _phenotypes(compounds, p.dose_um, int(t))
            tasks.append(
                _Task(
                    spec=spec,
                    seed=seed,
                    plate=p,
                    replica_batch=rbatch[p.replica],
                    plate_batch=pbatch[p.barcode],
                    wells=tuple(layouts[p.layout]),
                    phenotypes=pheno_cache[key],
                    timepoint_h=int(t),
                    inbox=inbox,
                    parts_dir=parts_dir,
                    index=len(tasks),
                )
            )

    workers = spec.workers if spec.workers is not None else _default_workers()
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        results = [_run_measurement(t) for t in tasks]
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            results = pool.map(_run_measurement, tasks, chunksize=1)

    # truth tables
    comp_df, cond_df = _condition_tables(spec, compounds)
    comp_df.write_parquet(truth_dir / "compounds.parquet")
    cond_df.write_parquet(truth_dir / "conditions.parquet")
    cell_parts = [f"{r[1]}-cells.parquet" for r in results]
    fov_parts = [f"{r[1]}-fovs.parquet" for r in results]
    pl.scan_parquet(cell_parts).sink_parquet(truth_dir / "cells.parquet")
    fovs = pl.concat([pl.read_parquet(f) for f in fov_parts], how="vertical")
    fovs.write_parquet(truth_dir / "fovs.parquet")
    shutil.rmtree(parts_dir)

    n_images = sum(r[2] for r in results)
    summary = {
        "preset": preset,
        "seed": seed,
        "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.to_dict().items() if k != "workers"},
        "active_rule": f"truly_active = effect >= {spec.active_threshold} (effect: applied fraction of the MoA program)",
        "effect_model": "effect = max_effect * d^h/(d^h+ec50^h) * (1 - exp(-t/onset_h)); polypharmacology adds the "
        "secondary MoA's program with its own ec50 / max_effect / onset",
        "n_compounds": len(compounds),
        "n_holdout_compounds": sum(c.compound_set == "holdout" for c in compounds),
        "training_layouts": training_layout_keys(spec),
        "holdout_layouts": holdout_layout_keys(spec),
        "holdout_unknown_moa_compounds": [c.name for c in compounds if c.moa_hidden],
        "n_measurements": len(tasks),
        "n_fovs": fovs.height,
        "n_images": n_images,
        "n_cells_in_fov": int(fovs["n_cells"].sum()),
        "n_active_conditions": int(cond_df["truly_active"].sum()),
        "n_conditions": cond_df.height,
        "measurements": [Path(r[0]).name for r in results],
        "replicas": {
            k: {**{f: getattr(v, f) for f in v.__dataclass_fields__}, "dose_um": spec.replica_doses_um[int(k[1:]) - 1]}
            for k, v in rbatch.items()
        },
        "plates": {k: {f: getattr(v, f) for f in v.__dataclass_fields__} for k, v in pbatch.items()},
        "field_offsets_fov_units": {str(f): list(field_offset(f)) for f in range(1, spec.fields + 1)},
        "moa_programs": {m: cellmod.MOA_PROGRAMS[m].__dict__ for m in cellmod.MOA_PROGRAMS},
        "dmso_phenotype": cellmod.DMSO_PHENOTYPE.__dict__,
    }
    (truth_dir / "truth.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")

    return SynthResult(
        out=out,
        inbox=inbox,
        metadata_dir=meta_dir,
        truth_dir=truth_dir,
        measurement_dirs=tuple(Path(r[0]) for r in results),
        spec=spec,
        preset=preset,
        seed=seed,
        barcodes=tuple(p.barcode for p in plates),
        n_measurements=len(tasks),
        n_fovs=fovs.height,
        n_images=n_images,
        n_cells=int(fovs["n_cells"].sum()),
        elapsed_s=time.perf_counter() - t_start,
    )


__all__ = ["SynthResult", "generate_screen", "measurement_dir_name", "measurement_start", "write_metadata"]
