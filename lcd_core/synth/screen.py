"""Orchestration: ``generate_screen(out, preset, seed, **overrides)`` writes a whole synthetic screen.

Output (see docs/ARCHITECTURE.md):

* ``out/inbox/<barcode>__<YYYYMMDDTHHMMSS>-Measurement 1/Images/`` one Opera Phenix (Harmony 5)
  export per plate × timepoint, written with ``lcd_core.synth.phenix_writer.write_measurement``;
* ``out/metadata/`` ``compounds.csv``, ``layouts.csv``, ``registry.csv``, ``screen.json``
  (``lcd_core.synth.metadata``);
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
import multiprocessing as mp
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lcd_core._parallel import local_processes
from lcd_core.io.phenix import Channel
from lcd_core.keys import parse_well, timepoint_key
from lcd_core.synth import cells as cellmod
from lcd_core.synth import truth as truthmod
from lcd_core.synth.compounds import Compound, make_compounds
from lcd_core.synth.design import CONTROL, ScreenSpec, make_spec, rng_for
from lcd_core.synth.fov import MeasurementTask, render_fov
from lcd_core.synth.metadata import write_metadata
from lcd_core.synth.phenix_writer import ImageRecord, write_measurement
from lcd_core.synth.plates import (
    Plate,
    PlateBatch,
    ReplicaBatch,
    WellAssignment,
    field_offset,
    holdout_layout_keys,
    make_layouts,
    make_plate_batches,
    make_plates,
    make_replica_batches,
    training_layout_keys,
)

BRIGHTFIELD_CHANNEL_ID = 1
WELL_SCAN_S = 6.0  # seconds of scan time per well (AbsTime advances well by well)
FIELD_SCAN_S = 1.2
PLANE_SCAN_S = 0.3


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


# --------------------------------------------------------------------------------------------
# One measurement (runs in a worker)
# --------------------------------------------------------------------------------------------


def measurement_start(spec: ScreenSpec, seed: int, plate: Plate, tp_h: int) -> datetime:
    """Start of a plate's scan: dosed_at + timepoint + 0–5 min (deterministic), whole seconds."""
    delay = int(rng_for(seed, "start", plate.barcode, tp_h).integers(0, 300))
    return plate.dosed_at + timedelta(hours=tp_h, seconds=delay)


def measurement_dir_name(barcode: str, start: datetime) -> str:
    return f"{barcode}__{start:%Y%m%dT%H%M%S}-Measurement 1"


def _brightfield_channel(spec: ScreenSpec) -> Channel:
    return Channel(
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


@dataclass
class _TruthParts:
    """Truth rows of one measurement, collected FOV by FOV while its images are written."""

    cells: list[dict] = field(default_factory=list)
    fovs: list[dict] = field(default_factory=list)
    n_images: int = 0

    def add(self, task: MeasurementTask, well: WellAssignment, fld: int, cell_rows: dict, fov_row: dict) -> None:
        plate = task.plate
        n = len(cell_rows["cell_id"])
        ident = {"barcode": plate.barcode, "plate": plate.plate, "timepoint": timepoint_key(task.timepoint_h)}
        self.cells.append(
            {
                **{k: np.full(n, v, dtype=object) for k, v in ident.items()},
                "well": np.full(n, well.well, dtype=object),
                "field": np.full(n, fld, dtype=np.int32),
                **cell_rows,
            }
        )
        self.fovs.append(
            {
                **ident,
                "replica": plate.replica,
                "layout": plate.layout,
                "well": well.well,
                "field": fld,
                "compound": well.compound,
                "role": well.role,
                "dose_um": plate.dose_um,
                "dose": plate.dose,
                "timepoint_h": task.timepoint_h,
                **fov_row,
            }
        )

    def write(self, part: Path) -> None:
        """``<part>-cells.parquet`` and ``<part>-fovs.parquet``."""
        cells = {k: np.concatenate([p[k] for p in self.cells]) for k in truthmod.CELL_COLUMNS}
        cdf = pl.DataFrame({k: (v.tolist() if v.dtype == object else v) for k, v in cells.items()})
        cdf.write_parquet(f"{part}-cells.parquet")
        pl.DataFrame(self.fovs).write_parquet(f"{part}-fovs.parquet")


def _images(task: MeasurementTask, start: datetime, truth: _TruthParts) -> Iterator[ImageRecord]:
    """Render the measurement FOV by FOV; yield its planes and collect its truth rows."""
    spec = task.spec
    for wi, well in enumerate(task.wells):
        row, col = parse_well(well.well)
        for fld in range(1, spec.fields + 1):
            planes, cell_rows, fov_row, (x_m, y_m) = render_fov(task, well, fld)
            truth.add(task, well, fld, cell_rows, fov_row)
            for pi, (img, z) in enumerate(zip(planes, spec.planes_um), start=1):
                t = start + timedelta(seconds=wi * WELL_SCAN_S + (fld - 1) * FIELD_SCAN_S + (pi - 1) * PLANE_SCAN_S)
                truth.n_images += 1
                yield ImageRecord(
                    row=row,
                    col=col,
                    field=fld,
                    plane=pi,
                    timepoint=0,
                    channel=BRIGHTFIELD_CHANNEL_ID,
                    pixels=img,
                    position_x_m=x_m,
                    position_y_m=y_m,
                    position_z_m=(spec.z_reference_um + z) * 1e-6,
                    abs_time=t,
                )


def _run_measurement(task: MeasurementTask) -> tuple[str, str, int]:
    """Render and write one measurement; truth parts go to ``parts_dir``. Returns (dir, part, n_images)."""
    spec, plate, tp = task.spec, task.plate, task.timepoint_h
    start = measurement_start(spec, task.seed, plate, tp)
    mdir = task.inbox / measurement_dir_name(plate.barcode, start)
    if mdir.exists():
        shutil.rmtree(mdir)
    truth = _TruthParts()
    write_measurement(
        mdir,
        plate_id=plate.barcode,
        measurement_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lcd-synth/{task.seed}/{plate.barcode}/{tp}")),
        start_time=start,
        channels=[_brightfield_channel(spec)],
        images=_images(task, start, truth),
        pixel_size_m=spec.pixel_size_um * 1e-6,
        plate_type=spec.plate_type,
        plate_rows=spec.plate_rows,
        plate_columns=spec.plate_columns,
        user="lcd-synth",
    )
    part = task.parts_dir / f"{task.index:05d}"
    truth.write(part)
    return str(mdir), str(part), truth.n_images


# --------------------------------------------------------------------------------------------
# Screen
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Design:
    """Everything drawn before rendering: compounds, layouts, plates and their batch effects."""

    spec: ScreenSpec
    seed: int
    compounds: list[Compound]
    layouts: dict[str, list[WellAssignment]]
    plates: list[Plate]
    replica_batches: dict[str, ReplicaBatch]
    plate_batches: dict[str, PlateBatch]

    @classmethod
    def draw(cls, spec: ScreenSpec, seed: int) -> "_Design":
        compounds = make_compounds(spec, seed)
        plates = make_plates(spec)
        return cls(
            spec, seed, compounds, make_layouts(spec, compounds, seed), plates,
            make_replica_batches(spec, seed), make_plate_batches(spec, plates, seed),
        )

    def tasks(self, inbox: Path, parts_dir: Path) -> list[MeasurementTask]:
        """One task per plate × timepoint, in (replica, layout, timepoint) order."""
        pheno_cache: dict[tuple[float, int], dict] = {}
        tasks = []
        for p in self.plates:
            for t in self.spec.timepoints_h:
                key = (p.dose_um, int(t))
                if key not in pheno_cache:
                    pheno_cache[key] = _phenotypes(self.compounds, p.dose_um, int(t))
                tasks.append(
                    MeasurementTask(
                        self.spec, self.seed, p, self.replica_batches[p.replica], self.plate_batches[p.barcode],
                        tuple(self.layouts[p.layout]), pheno_cache[key], int(t), inbox, parts_dir, len(tasks),
                    )
                )
        return tasks


def _run_all(spec: ScreenSpec, tasks: list[MeasurementTask]) -> list[tuple[str, str, int]]:
    """Run every measurement, in a spawn pool of ``spec.workers`` processes when more than one."""
    workers = spec.workers if spec.workers is not None else local_processes()
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        return [_run_measurement(t) for t in tasks]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        return pool.map(_run_measurement, tasks, chunksize=1)


def _summary(design: _Design, preset: str, results: list, fovs: pl.DataFrame, cond: pl.DataFrame) -> dict:
    """truth.json: spec, counts, per-replica and per-plate batch parameters, MoA programs."""
    spec, compounds = design.spec, design.compounds
    return {
        "preset": preset,
        "seed": design.seed,
        "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.to_dict().items() if k != "workers"},
        "active_rule": f"truly_active = effect >= {spec.active_threshold} (effect: applied fraction of the MoA program)",
        "effect_model": "effect = max_effect * d^h/(d^h+ec50^h) * (1 - exp(-t/onset_h)); polypharmacology adds the "
        "secondary MoA's program with its own ec50 / max_effect / onset",
        "n_compounds": len(compounds),
        "n_holdout_compounds": sum(c.compound_set == "holdout" for c in compounds),
        "training_layouts": training_layout_keys(spec),
        "holdout_layouts": holdout_layout_keys(spec),
        "holdout_unknown_moa_compounds": [c.name for c in compounds if c.moa_hidden],
        "n_measurements": len(results),
        "n_fovs": fovs.height,
        "n_images": sum(r[2] for r in results),
        "n_cells_in_fov": int(fovs["n_cells"].sum()),
        "n_active_conditions": int(cond["truly_active"].sum()),
        "n_conditions": cond.height,
        "measurements": [Path(r[0]).name for r in results],
        "replicas": {
            k: {**{f: getattr(v, f) for f in v.__dataclass_fields__}, "dose_um": spec.replica_doses_um[int(k[1:]) - 1]}
            for k, v in design.replica_batches.items()
        },
        "plates": {k: {f: getattr(v, f) for f in v.__dataclass_fields__} for k, v in design.plate_batches.items()},
        "field_offsets_fov_units": {str(f): list(field_offset(f)) for f in range(1, spec.fields + 1)},
        "moa_programs": {m: cellmod.MOA_PROGRAMS[m].__dict__ for m in cellmod.MOA_PROGRAMS},
        "dmso_phenotype": cellmod.DMSO_PHENOTYPE.__dict__,
    }


def _write_truth(truth_dir: Path, design: _Design, preset: str, results: list) -> pl.DataFrame:
    """The truth tables and truth.json (the workers' part files are merged, then removed); returns fovs."""
    comp_df, cond_df = truthmod.condition_tables(design.spec, design.compounds)
    comp_df.write_parquet(truth_dir / "compounds.parquet")
    cond_df.write_parquet(truth_dir / "conditions.parquet")
    pl.scan_parquet([f"{r[1]}-cells.parquet" for r in results]).sink_parquet(truth_dir / "cells.parquet")
    fovs = pl.concat([pl.read_parquet(f"{r[1]}-fovs.parquet") for r in results], how="vertical")
    fovs.write_parquet(truth_dir / "fovs.parquet")
    shutil.rmtree(truth_dir / "_parts")
    summary = _summary(design, preset, results, fovs, cond_df)
    (truth_dir / "truth.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return fovs


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
    design = _Design.draw(spec, seed)
    inbox, meta_dir, truth_dir = out / "inbox", out / "metadata", out / "truth"
    parts_dir = truth_dir / "_parts"
    inbox.mkdir(parents=True, exist_ok=True)
    if parts_dir.exists():
        shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True)
    write_metadata(meta_dir, spec, design.compounds, design.layouts, design.plates)
    results = _run_all(spec, design.tasks(inbox, parts_dir))
    fovs = _write_truth(truth_dir, design, preset, results)
    return SynthResult(
        out=out,
        inbox=inbox,
        metadata_dir=meta_dir,
        truth_dir=truth_dir,
        measurement_dirs=tuple(Path(r[0]) for r in results),
        spec=spec,
        preset=preset,
        seed=seed,
        barcodes=tuple(p.barcode for p in design.plates),
        n_measurements=len(results),
        n_fovs=fovs.height,
        n_images=sum(r[2] for r in results),
        n_cells=int(fovs["n_cells"].sum()),
        elapsed_s=time.perf_counter() - t_start,
    )


__all__ = ["SynthResult", "generate_screen", "measurement_dir_name", "measurement_start"]
