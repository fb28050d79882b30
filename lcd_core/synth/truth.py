"""Ground truth of a synthetic screen: table schemas, the activity rule and mask rasterisation.

Files written to ``out/truth/`` (Parquet):

* ``compounds.parquet``: one row per compound (DMSO excluded), training and holdout set:
  ``compound, set, moa, moa_listed, moa_secondary, smiles, ec50_um, hill, max_effect, onset_h,
  ec50_secondary_um, max_effect_secondary, onset_secondary_h, is_active_anywhere`` (truly active
  in at least one dose × timepoint of the screen).  ``set`` is ``training`` or ``holdout`` (the
  holdout compounds sit on the holdout layouts, ``truth.json`` ``holdout_layouts``, or on the
  training layouts when there are none);
  ``moa`` is the true class, ``moa_listed`` what compounds.csv / layouts.csv say (null for the
  unknown-MoA holdout compounds and for an unlabelled inactive compound).
* ``conditions.parquet``: one row per compound (training and holdout) × dose × timepoint of the
  screen: ``compound, set, moa, moa_secondary, dose_um, dose, timepoint, timepoint_h,
  effect_primary, effect_secondary, effect, truly_active``.  ``effect = max(effect_primary, effect_secondary)`` is the magnitude (0..1, a
  fraction of the MoA's full morphology program) actually applied; **rule**: a condition is
  ``truly_active`` iff ``effect >= ScreenSpec.active_threshold`` (0.15 by default: below that the
  population shift is smaller than the well-to-well variation of DMSO).
* ``cells.parquet``: **one row per nucleus** (a multinucleated cell has ``n_nuclei`` rows sharing
  its ``cell_id`` and cell ellipse; ``nucleus_index`` is 1..n_nuclei): ``barcode, plate, timepoint,
  well, field, cell_id, nucleus_index, nucleus_x, nucleus_y, nucleus_a, nucleus_b, nucleus_angle,
  cell_x, cell_y, cell_a, cell_b, cell_angle, n_nuclei, state, in_fov``.  Coordinates are pixels of
  the written image (x = column, y = row, origin at the centre of the top-left pixel … i.e. pixel
  (r, c) has centre (x=c, y=r)); ``a``/``b`` are semi-axes in pixels, angles in radians
  (counter-clockwise from +x in (x, y) coordinates).  Cells whose centre is outside the image but
  which reach into it are included with ``in_fov = False``.  ``state`` is one of ``normal,
  rounded, mitotic, dead``.
* ``fovs.parquet``: one row per FOV: identity (``barcode, plate, replica, layout, timepoint, well,
  field, compound, dose``), ``n_cells`` (live cells with centre in the FOV), ``n_nuclei`` (their
  nuclei), ``n_dead``, ``n_mitotic``, ``n_rounded``, ``n_multinucleated``, ``confluency`` (fraction
  of pixels covered by a live cell), ``focus_offset_um`` (total true focus error of the middle
  plane) and its parts, illumination parameters, ``has_debris`` (large out-of-focus blob),
  ``n_specks``, ``artifact`` (``none``, ``debris``, ``defocus``).

``truth.json`` summarises the run: spec, counts, per-replica and per-plate batch parameters.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from lcd_core.keys import dose_key, timepoint_key
from lcd_core.synth.compounds import Compound
from lcd_core.synth.design import ScreenSpec

CELL_COLUMNS = [
    "barcode",
    "plate",
    "timepoint",
    "well",
    "field",
    "cell_id",
    "nucleus_index",
    "nucleus_x",
    "nucleus_y",
    "nucleus_a",
    "nucleus_b",
    "nucleus_angle",
    "cell_x",
    "cell_y",
    "cell_a",
    "cell_b",
    "cell_angle",
    "n_nuclei",
    "state",
    "in_fov",
]


def is_truly_active(effect: float, threshold: float = 0.15) -> bool:
    """The activity rule of the ground truth: applied effect magnitude ≥ threshold."""
    return bool(effect >= threshold)


def _ellipse_r2_box(shape, x, y, a, b, ang):
    h, w = shape
    ext = max(a, b) + 1.5
    x0, x1 = max(int(math.floor(x - ext)), 0), min(int(math.ceil(x + ext)) + 1, w)
    y0, y1 = max(int(math.floor(y - ext)), 0), min(int(math.ceil(y + ext)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    c, s = math.cos(ang), math.sin(ang)
    dx = xx - x
    dy = yy - y
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    return (slice(y0, y1), slice(x0, x1)), u * u + v * v


def render_masks(cells, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise the ellipses of one FOV's rows of ``cells.parquet`` into label images.

    ``cells``: a polars / pandas DataFrame (or a dict of columns) holding the rows of *one* FOV.
    Returns ``(nucleus_labels, cell_labels)``, ``int32`` arrays of ``shape``:

    * ``nucleus_labels``: 0 = background, k = the k-th row (1-based, in the given order); where two
      nuclei overlap, the pixel goes to the nucleus whose normalised ellipse radius is smaller;
    * ``cell_labels``: 0 = background, else the row's ``cell_id``; overlapping cell bodies are split
      by the smaller normalised ellipse radius (a Voronoi-like tessellation, as in a confluent
      monolayer), and a cell's own nuclei always belong to it.

    Filter rows first to choose which cells count (e.g. ``state != "dead"``).
    """
    cols = _columns(cells)
    h, w = shape
    nuc = np.zeros((h, w), dtype=np.int32)
    cel = np.zeros((h, w), dtype=np.int32)
    best_n = np.full((h, w), np.inf)
    best_c = np.full((h, w), np.inf)
    n = len(cols["cell_id"])
    seen: set[int] = set()
    for k in range(n):
        cid = int(cols["cell_id"][k])
        if cid not in seen:
            seen.add(cid)
            r = _ellipse_r2_box(
                shape,
                float(cols["cell_x"][k]),
                float(cols["cell_y"][k]),
                float(cols["cell_a"][k]),
                float(cols["cell_b"][k]),
                float(cols["cell_angle"][k]),
            )
            if r is not None:
                sl, r2 = r
                take = (r2 <= 1.0) & (r2 < best_c[sl])
                best_c[sl][take] = r2[take]
                cel[sl][take] = cid
    for k in range(n):
        r = _ellipse_r2_box(
            shape,
            float(cols["nucleus_x"][k]),
            float(cols["nucleus_y"][k]),
            float(cols["nucleus_a"][k]),
            float(cols["nucleus_b"][k]),
            float(cols["nucleus_angle"][k]),
        )
        if r is None:
            continue
        sl, r2 = r
        take = (r2 <= 1.0) & (r2 < best_n[sl])
        best_n[sl][take] = r2[take]
        nuc[sl][take] = k + 1
        cel[sl][r2 <= 1.0] = int(cols["cell_id"][k])
    return nuc, cel


def _columns(cells) -> dict[str, np.ndarray]:
    need = ["cell_id", "nucleus_x", "nucleus_y", "nucleus_a", "nucleus_b", "nucleus_angle"]
    need += ["cell_x", "cell_y", "cell_a", "cell_b", "cell_angle"]
    if isinstance(cells, dict):
        return {k: np.asarray(cells[k]) for k in need}
    if hasattr(cells, "get_column"):  # polars
        return {k: cells.get_column(k).to_numpy() for k in need}
    return {k: np.asarray(cells[k]) for k in need}  # pandas


def confluency(cell_labels: np.ndarray) -> float:
    """Fraction of pixels covered by a cell."""
    return float((cell_labels > 0).mean())


def _conditions(spec: ScreenSpec, compounds: list[Compound]) -> pl.DataFrame:
    """conditions.parquet: every compound x dose x timepoint of the screen, its effect and activity."""
    rows = []
    for c in compounds:
        for d in sorted(set(spec.replica_doses_um)):
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
                        "truly_active": is_truly_active(eff, spec.active_threshold),
                    }
                )
    return pl.DataFrame(rows)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _compounds(compounds: list[Compound]) -> pl.DataFrame:
    """compounds.parquet without ``is_active_anywhere``: the true class and response of each compound."""
    return pl.DataFrame(
        {
            "compound": [c.name for c in compounds],
            "set": [c.compound_set for c in compounds],
            "moa": [c.moa for c in compounds],
            "moa_listed": [c.moa_listed or None for c in compounds],
            "moa_secondary": [c.moa_secondary for c in compounds],
            "smiles": [c.smiles for c in compounds],
            "drug": [c.drug for c in compounds],
            "ec50_um": [_finite(c.ec50_um) for c in compounds],
            "hill": [c.hill for c in compounds],
            "max_effect": [c.max_effect for c in compounds],
            "onset_h": [c.onset_h for c in compounds],
            "ec50_secondary_um": [_finite(c.ec50_secondary_um) for c in compounds],
            "max_effect_secondary": [c.max_effect_secondary for c in compounds],
            "onset_secondary_h": [c.onset_secondary_h if c.moa_secondary else None for c in compounds],
        },
        schema_overrides={
            "ec50_um": pl.Float64,
            "ec50_secondary_um": pl.Float64,
            "onset_secondary_h": pl.Float64,
            "moa_listed": pl.String,
        },
    )


def condition_tables(spec: ScreenSpec, compounds: list[Compound]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(compounds.parquet, conditions.parquet) of the screen (see the module docstring)."""
    cond = _conditions(spec, compounds)
    active = cond.group_by("compound").agg(pl.col("truly_active").any().alias("is_active_anywhere"))
    return _compounds(compounds).join(active, on="compound", how="left", maintain_order="left"), cond


__all__ = ["CELL_COLUMNS", "condition_tables", "confluency", "is_truly_active", "render_masks"]
