"""Ground truth of a synthetic screen: table schemas, the activity rule and mask rasterisation.

Files written to ``out/truth/`` (Parquet):

* ``compounds.parquet``: one row per compound (DMSO excluded), training and holdout set:
  ``compound, set, moa, moa_listed, moa_secondary, smiles, ec50_um, hill, max_effect, onset_h,
  ec50_secondary_um, max_effect_secondary, onset_secondary_h, is_active_anywhere`` (truly active
  in at least one dose × timepoint of the screen).  ``set`` is ``training`` or ``holdout`` (the
  holdout compounds sit only on the holdout layouts, see ``truth.json`` ``holdout_layouts``);
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


__all__ = ["CELL_COLUMNS", "confluency", "is_truly_active", "render_masks"]
