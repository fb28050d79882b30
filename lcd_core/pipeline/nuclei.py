"""Nuclei and confluency of one measurement (plate × timepoint), FOV by FOV (SPEC §4.9).

:func:`nuclei_pass` reads each brightfield FOV once at its original size, runs an unsupervised
detector of :mod:`lcd_core.nuclei` with the pixel size of the index, and returns the per-FOV table
(``fov_nuclei``: count, confluency, median nucleus area), the per-nucleus table (``nuclei``:
centre in pixels of the original image, area in µm²) and one overlay for the UI. On a synthetic
screen :func:`agreement_with_truth` scores it against the generator's nuclei (count r, median
mask IoU); :func:`plausibility` bounds the counts by pixel size and FOV area everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from lcd_core.nuclei.evaluate import count_r, score_masks
from lcd_core.nuclei.objects import Nuclei
from lcd_core.tiles.partition import fov_lineage, fov_name, read_fov

__all__ = ["NUCLEUS_SCHEMA", "NucleiPass", "Plausibility", "agreement_with_truth", "nuclei_pass", "pixel_size_um",
           "plausibility"]

Detector = Callable[[np.ndarray, float], Nuclei]
#: schema of the ``nuclei`` dataset: one row per nucleus
NUCLEUS_SCHEMA = {"plate": pl.String, "timepoint": pl.String, "well": pl.String, "field": pl.Int64,
                  "nucleus": pl.Int32, "x": pl.Float32, "y": pl.Float32, "area_um2": pl.Float32}
#: nuclei of 10–15 µm: the densest packing of a 7 µm-diameter nucleus bounds a FOV's count
MIN_NUCLEUS_AREA_UM2 = 38.0


def pixel_size_um(index: pl.DataFrame) -> float:
    """The brightfield pixel size (µm) of a measurement's ``image_index`` rows; one value required."""
    sizes = index["resolution_x_m"].drop_nulls().unique().to_list() if "resolution_x_m" in index.columns else []
    if len(sizes) != 1 or not sizes[0] > 0:
        where = f"{index['plate'][0]} × {index['timepoint'][0]}" if index.height else "an empty index"
        raise ValueError(f"{where}: the index gives {len(sizes)} pixel sizes {sizes}; nuclei need one, in µm")
    return float(sizes[0]) * 1e6


@dataclass
class NucleiPass:
    """The outputs of a measurement: ``fovs`` (lineage + ``n_nuclei``, ``confluency``,
    ``nucleus_area_um2_median``), ``nuclei`` (:data:`NUCLEUS_SCHEMA`), ``labels`` of the FOVs kept
    for scoring (``(well, field)`` → label image), the ``overlay`` FOV (planes, :class:`Nuclei`)
    and ``seconds`` of detection."""

    fovs: pl.DataFrame
    nuclei: pl.DataFrame
    labels: dict[tuple[str, int], np.ndarray]
    overlay: tuple[np.ndarray, Nuclei] | None
    seconds: float


def nuclei_pass(fovs: pl.DataFrame, pixel_um: float, detect: Detector, *, keep_labels: int = 0) -> NucleiPass:
    """Detect the nuclei of every FOV of a measurement.

    Parameters
    ----------
    fovs
        :func:`lcd_core.tiles.partition.fov_paths` of the measurement (lineage + ``paths``).
    pixel_um
        Pixel size in µm (:func:`pixel_size_um`).
    detect
        ``(planes, pixel_um) → Nuclei``, a detector of :mod:`lcd_core.nuclei`.
    keep_labels
        Keep the label images of the first ``keep_labels`` FOVs (for scoring against a truth).
    """
    rows, nuclei, labels, overlay, seconds = [], [], {}, None, 0.0
    for row in fovs.iter_rows(named=True):
        planes = read_fov(row["paths"], row.get("expected_shape"), fov_name(row))
        t0 = time.perf_counter()
        found = detect(planes, pixel_um)
        seconds += time.perf_counter() - t0
        lineage = fov_lineage(row)
        rows.append({**lineage, "n_nuclei": found.n, "confluency": found.confluency,
                     "nucleus_area_um2_median": float(np.median(found.area_um2)) if found.n else None})
        nuclei.append(_nucleus_rows(row, found))
        if len(labels) < keep_labels:
            labels[(row["well"], row["field"])] = found.labels
        if overlay is None or found.n > overlay[1].n:
            overlay = (planes, found)
    table = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    every = pl.concat(nuclei) if nuclei else pl.DataFrame(schema=NUCLEUS_SCHEMA)
    return NucleiPass(table, every, labels, overlay, seconds)


def _nucleus_rows(row: dict, found: Nuclei) -> pl.DataFrame:
    n = found.n
    return pl.DataFrame({
        "plate": [row["plate"]] * n, "timepoint": [row["timepoint"]] * n, "well": [row["well"]] * n,
        "field": [int(row["field"])] * n, "nucleus": np.arange(1, n + 1, dtype=np.int32),
        "x": found.centres[:, 0].astype(np.float32), "y": found.centres[:, 1].astype(np.float32),
        "area_um2": found.area_um2.astype(np.float32)}, schema=NUCLEUS_SCHEMA)


def agreement_with_truth(done: NucleiPass, truth_fovs: pl.DataFrame, truth_cells: pl.DataFrame,
                         shape: tuple[int, int]) -> dict[str, float | int | None]:
    """Per-FOV count against the generator's live nuclei (Pearson r) and the median IoU of its
    nuclei's masks over the FOVs whose labels were kept (synthetic screens; reads the truth).

    ``truth_fovs`` / ``truth_cells``: the measurement's rows of ``truth/fovs.parquet`` and
    ``truth/cells.parquet``; ``shape``: the FOV size in pixels.
    """
    from lcd_core.synth.truth import render_masks

    both = done.fovs.select("well", "field", "n_nuclei").join(
        truth_fovs.select("well", pl.col("field").cast(pl.Int64), pl.col("n_nuclei").alias("true_n")),
        on=["well", "field"], how="inner")
    ious = []
    for (well, field), labels in done.labels.items():
        cells = truth_cells.filter((pl.col("well") == well) & (pl.col("field") == field) & (pl.col("state") != "dead"))
        ious.append(score_masks(render_masks(cells, shape)[0], labels).ious)
    ious = np.concatenate(ious) if ious else np.zeros(0)
    return {"fovs": both.height, "count_r": _finite_or_none(count_r(both["true_n"], both["n_nuclei"])),
            "true_nuclei": int(both["true_n"].sum()), "found_nuclei": int(both["n_nuclei"].sum()),
            "scored_nuclei": int(ious.size), "median_iou": float(np.median(ious)) if ious.size else None}


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


@dataclass(frozen=True)
class Plausibility:
    """``max_count``: the most nuclei a FOV can hold at this pixel size; ``over``: FOVs above it;
    ``empty_kept``: FOVs with no nucleus although QC kept tiles of them (``well fN`` names)."""

    max_count: int
    over: list[str]
    empty_kept: list[str]

    @property
    def passed(self) -> bool:
        return not self.over and not self.empty_kept


def plausibility(fovs: pl.DataFrame, shape: tuple[int, int], pixel_um: float, kept: pl.DataFrame) -> Plausibility:
    """Counts within the range a FOV's area allows, and no empty FOV among those QC kept.

    ``kept``: the measurement's kept tiles (``well``, ``field``)."""
    area_um2 = shape[0] * shape[1] * pixel_um**2
    max_count = int(np.ceil(area_um2 / MIN_NUCLEUS_AREA_UM2))
    name = pl.concat_str([pl.col("well"), pl.lit(" f"), pl.col("field").cast(pl.String)])
    over = fovs.filter(pl.col("n_nuclei") > max_count).select(name.alias("fov"))["fov"].to_list()
    kept_fovs = kept.select("well", pl.col("field").cast(pl.Int64)).unique()
    empty = fovs.filter(pl.col("n_nuclei") == 0).with_columns(pl.col("field").cast(pl.Int64)).join(
        kept_fovs, on=["well", "field"], how="semi").select(name.alias("fov"))["fov"].to_list()
    return Plausibility(max_count, sorted(over), sorted(empty))
