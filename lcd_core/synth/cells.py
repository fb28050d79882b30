"""Cell populations of one FOV: how many cells, where, what shape and state, per condition.

A condition (compound, dose, time) is summarised by a ``Phenotype``: the DMSO baseline moved
towards each MoA's full *morphology program* by the applied effect magnitude (0..1).  Cells are
drawn from the phenotype with per-cell variability; their geometry is a set of ellipses (cell body,
one or more nuclei) that the truth tables store and the optics module renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

# --------------------------------------------------------------------------------------------
# Phenotype: every morphology knob, DMSO baseline and per-MoA programs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phenotype:
    """Population-level morphology; programs give the change at full effect (effect = 1).

    growth: fraction of the DMSO proliferation rate kept (1 = normal, 0 = arrest).
    death: fraction of the expected cells that die (half of the dead float away, half stay as
        small dense debris-like bodies with state ``dead``).
    rounded / mitotic / multinucleated: fractions of live cells in those states.
    cell_scale / nucleus_scale: linear size factors (1 = DMSO U2OS size).
    elongation: cell aspect ratio (major / minor axis).
    flatness: optical thickness factor of the cytoplasm (<1 = flat, spread cells).
    granularity: density of cytoplasmic granules (1 = DMSO).
    vacuoles: mean vacuoles per cell.
    nucleoli: nucleolar contrast factor.
    """

    growth: float = 1.0
    death: float = 0.01
    rounded: float = 0.02
    mitotic: float = 0.03
    multinucleated: float = 0.02
    cell_scale: float = 1.0
    nucleus_scale: float = 1.0
    elongation: float = 1.6
    flatness: float = 1.0
    granularity: float = 1.0
    vacuoles: float = 0.05
    nucleoli: float = 1.0


DMSO_PHENOTYPE = Phenotype()

#: Full-effect morphology program of each MoA (fields not given stay at the DMSO value).
MOA_PROGRAMS: dict[str, Phenotype] = {
    # V-ATPase / Na-K-ATPase: vacuolisation, shrinkage, some death
    "ATPase": replace(DMSO_PHENOTYPE, growth=0.4, death=0.25, vacuoles=6.0, cell_scale=0.85, granularity=1.6),
    # Aurora: failed cytokinesis -> large multinucleated cells, growth stop
    "Aurora kinase": replace(
        DMSO_PHENOTYPE, growth=0.15, multinucleated=0.7, cell_scale=1.45, nucleus_scale=1.35, mitotic=0.08, flatness=0.8
    ),
    # HDAC: flat, enlarged, spread cells, smoother cytoplasm
    "HDAC": replace(DMSO_PHENOTYPE, growth=0.35, cell_scale=1.35, flatness=0.6, elongation=2.2, granularity=0.4, nucleoli=0.5),
    # JAK: mild; elongated, slightly smaller cells, mild growth slowdown
    "JAK": replace(DMSO_PHENOTYPE, growth=0.75, elongation=3.0, cell_scale=0.9, nucleus_scale=0.92),
    # HSP90: rounding, shrinkage, granular cytoplasm, late death
    "HSP": replace(DMSO_PHENOTYPE, growth=0.3, death=0.3, rounded=0.45, cell_scale=0.8, granularity=2.2),
    # PARP: subtle; larger nuclei, prominent nucleoli, mild growth slowdown
    "PARP": replace(DMSO_PHENOTYPE, growth=0.65, nucleus_scale=1.3, nucleoli=2.0, cell_scale=1.1),
    # protein synthesis: compact cells, small nuclei, smooth cytoplasm, full growth arrest
    "protein synthesis": replace(
        DMSO_PHENOTYPE, growth=0.0, cell_scale=0.72, nucleus_scale=0.85, granularity=0.35, elongation=1.3, flatness=1.3
    ),
    # topoisomerase: enlarged nuclei and cells, death / apoptotic bodies
    "topoisomerase": replace(DMSO_PHENOTYPE, growth=0.2, death=0.35, nucleus_scale=1.35, cell_scale=1.2, nucleoli=1.6),
    # tubulin: mitotic arrest -> many round, bright cells with a halo
    "tubulin polymerization": replace(DMSO_PHENOTYPE, growth=0.1, mitotic=0.6, rounded=0.15, death=0.12),
    # retinoid agonist: slow differentiation-like spreading and elongation, denser texture
    "retinoid receptor agonist": replace(
        DMSO_PHENOTYPE, growth=0.7, elongation=2.8, cell_scale=1.2, granularity=1.7, flatness=0.8
    ),
}

_LOG_FIELDS = {"cell_scale", "nucleus_scale", "elongation", "flatness", "granularity", "nucleoli"}


def phenotype_for(effects: list[tuple[str, float]]) -> Phenotype:
    """Phenotype of a condition from ``[(moa, effect), …]`` (effects add in program space).

    Fractions and rates move linearly, size/shape factors geometrically from the DMSO baseline.
    """
    out = {}
    for f in fields(Phenotype):
        base = getattr(DMSO_PHENOTYPE, f.name)
        if f.name in _LOG_FIELDS:
            v = math.log(base) + sum(e * (math.log(getattr(MOA_PROGRAMS[m], f.name)) - math.log(base)) for m, e in effects)
            out[f.name] = math.exp(v)
        else:
            v = base + sum(e * (getattr(MOA_PROGRAMS[m], f.name) - base) for m, e in effects)
            out[f.name] = v
    out["growth"] = min(max(out["growth"], 0.0), 1.0)
    for k in ("death", "rounded", "mitotic", "multinucleated"):
        out[k] = min(max(out[k], 0.0), 0.95)
    out["vacuoles"] = max(out["vacuoles"], 0.0)
    return Phenotype(**out)


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------

#: state codes
NORMAL, ROUNDED, MITOTIC, DEAD = "normal", "rounded", "mitotic", "dead"

# DMSO U2OS geometry in µm (semi-axes): cell ≈ 48 × 30 µm, nucleus ≈ 18 × 13 µm
CELL_A_UM, CELL_B_UM = 24.0, 15.0
NUC_A_UM, NUC_B_UM = 9.0, 6.5


@dataclass
class Population:
    """Geometry of the cells of one FOV (pixel units, image coordinates x = column, y = row).

    Per cell i: cell ellipse (``cx, cy, ca, cb, cang``), ``state``, ``thick`` (optical thickness
    scale), ``gran`` (granule density), ``nvac`` (vacuoles), ``nucleoli`` (contrast factor), and
    its nuclei ``nuc`` rows ``(cell_index, x, y, a, b, angle)``.  Cells whose centre lies outside
    the image (a margin is simulated so the border is populated) are flagged ``in_fov = False``.
    """

    cx: np.ndarray
    cy: np.ndarray
    ca: np.ndarray
    cb: np.ndarray
    cang: np.ndarray
    state: np.ndarray  # object array of state strings
    thick: np.ndarray
    gran: np.ndarray
    nvac: np.ndarray
    nucleoli: np.ndarray
    in_fov: np.ndarray
    nuc: np.ndarray  # (n_nuclei, 6)

    @property
    def n(self) -> int:
        return len(self.cx)


def expected_cells(pheno: Phenotype, t_h: float, n0: float, doubling_h: float) -> tuple[float, float]:
    """(live, dead-still-attached) expected cell counts at ``t_h`` h after dosing."""
    grown = n0 * 2.0 ** (t_h * pheno.growth / doubling_h)
    return grown * (1 - pheno.death), 0.5 * grown * pheno.death


def _live_states(rng: np.random.Generator, pheno: Phenotype, n_live: int) -> tuple[np.ndarray, np.ndarray]:
    """States of the live cells and their nuclei counts (2–4 for multinucleated cells)."""
    u = rng.random(n_live)
    state = np.full(n_live, NORMAL, dtype=object)
    p_mit, p_round = pheno.mitotic, pheno.rounded
    state[u < p_mit + p_round] = ROUNDED
    state[u < p_mit] = MITOTIC
    multi = (state == NORMAL) & (rng.random(n_live) < pheno.multinucleated / max(1e-9, 1 - p_mit - p_round))
    return state, np.where(multi, rng.integers(2, 5, n_live), 1)


def _live_shapes(
    rng: np.random.Generator, pheno: Phenotype, state: np.ndarray, n_nuc: np.ndarray, scale: float
) -> dict[str, np.ndarray]:
    """Ellipse (px), thickness, granules, vacuoles and nucleoli of the live cells."""
    n_live = len(state)
    var = rng.lognormal(0.0, 0.18, n_live)
    big = np.where(n_nuc > 1, 1.0 + 0.22 * (n_nuc - 1), 1.0)
    area_um = CELL_A_UM * CELL_B_UM * (pheno.cell_scale**2) * var * big
    elong = np.clip(pheno.elongation * rng.lognormal(0.0, 0.2, n_live), 1.0, 6.0)
    round_r = np.sqrt(CELL_A_UM * CELL_B_UM * pheno.cell_scale) * 0.42 * scale * rng.lognormal(0, 0.1, n_live)
    is_round = (state == ROUNDED) | (state == MITOTIC)
    cang = rng.uniform(0, np.pi, n_live)
    thick = pheno.flatness * rng.lognormal(0.0, 0.15, n_live)
    return {
        "ca": np.where(is_round, round_r * 1.05, np.sqrt(area_um * elong) * scale),
        "cb": np.where(is_round, round_r, np.sqrt(area_um / elong) * scale),
        "cang": cang,
        "thick": np.where(is_round, 2.6 * rng.lognormal(0.0, 0.1, n_live), thick),
        "gran": pheno.granularity * rng.lognormal(0.0, 0.25, n_live),
        "nvac": rng.poisson(pheno.vacuoles, n_live),
        "nucleoli": pheno.nucleoli * rng.lognormal(0.0, 0.2, n_live),
    }


def _place(rng: np.random.Generator, ca: np.ndarray, cb: np.ndarray, size_px: int, margin: int) -> tuple:
    """Centres ``(cx, cy)``: sequential placement, largest first, with a soft minimum distance."""
    n = len(ca)
    cx = np.empty(n)
    cy = np.empty(n)
    rad = np.sqrt(ca * cb)
    placed: list[int] = []
    for i in np.argsort(-rad, kind="stable"):
        best = None
        best_d = -1.0
        for _ in range(12):
            x, y = rng.uniform(-margin, size_px + margin, 2)
            if not placed:
                best = (x, y)
                break
            d = np.hypot(cx[placed] - x, cy[placed] - y) / (0.55 * (rad[placed] + rad[i]))
            dmin = float(d.min())
            if dmin >= 1.0:
                best = (x, y)
                break
            if dmin > best_d:
                best_d, best = dmin, (x, y)
        cx[i], cy[i] = best
        placed.append(int(i))
    return cx, cy


def _nucleus_offsets(rng: np.random.Generator, k: int, a: float, b: float, nb: float) -> list[tuple[float, float]]:
    """Offsets (along, across the major axis) of ``k`` nuclei: one off-centre, or a squeezed ring."""
    if k == 1:
        return [(rng.uniform(-0.25, 0.25) * a, rng.normal(0, 0.05 * b))]
    rad = 1.05 * nb / math.sin(math.pi / k) if k > 2 else 1.05 * nb
    rad = min(rad, 0.55 * b + 0.3 * a)
    ph = rng.uniform(0, 2 * np.pi)
    return [
        (rad * math.cos(ph + 2 * np.pi * j / k) * 1.2, rad * math.sin(ph + 2 * np.pi * j / k) * 0.8)
        for j in range(k)
    ]


def _cell_nuclei(rng: np.random.Generator, i: int, cell: tuple, k: int, nsc: float, scale: float) -> list[tuple]:
    """Nucleus rows ``(i, x, y, a, b, angle)`` of cell ``i``; ``cell`` = ``(state, x, y, a, b, angle)``."""
    st, x0, y0, a, b, ang = cell
    if st == DEAD:
        r = b * 0.55
        return [(i, x0, y0, r, r * 0.9, ang)]
    if st in (ROUNDED, MITOTIC):
        r = b * (0.45 if st == MITOTIC else 0.55)
        return [(i, x0, y0, r * 1.1, r, rng.uniform(0, np.pi))]
    na = NUC_A_UM * nsc * scale * rng.lognormal(0, 0.1) / (1 + 0.12 * (k - 1))
    nb = NUC_B_UM * nsc * scale * rng.lognormal(0, 0.1) / (1 + 0.12 * (k - 1))
    na = min(na, 0.6 * a)
    nb = min(nb, 0.7 * b, na)
    cos, sin = math.cos(ang), math.sin(ang)
    return [
        (i, x0 + ou * cos - ov * sin, y0 + ou * sin + ov * cos, na, nb, ang + rng.normal(0, 0.3))
        for ou, ov in _nucleus_offsets(rng, k, a, b, nb)
    ]


def make_population(
    rng: np.random.Generator,
    pheno: Phenotype,
    n_live_mean: float,
    n_dead_mean: float,
    size_px: int,
    pixel_um: float,
) -> Population:
    """Draw a population for a FOV of ``size_px`` with the given expected counts (inside the FOV)."""
    scale = 1.0 / pixel_um
    margin = int(round(CELL_A_UM * 1.3 * scale))
    area_factor = ((size_px + 2 * margin) / size_px) ** 2
    n_live = int(rng.poisson(max(n_live_mean, 0.0) * area_factor))
    n_dead = int(rng.poisson(max(n_dead_mean, 0.0) * area_factor))
    state, n_nuc = _live_states(rng, pheno, n_live)
    live = _live_shapes(rng, pheno, state, n_nuc, scale)
    # dead cells: small, dense, round
    dr = rng.uniform(3.0, 6.0, n_dead) * scale
    ca = np.concatenate([live["ca"], dr])
    cb = np.concatenate([live["cb"], dr * rng.uniform(0.75, 1.0, n_dead)])
    ang = np.concatenate([live["cang"], rng.uniform(0, np.pi, n_dead)])
    cx, cy = _place(rng, ca, cb, size_px, margin)
    all_state = np.concatenate([state, np.full(n_dead, DEAD, dtype=object)])
    all_nnuc = np.concatenate([n_nuc, np.ones(n_dead, dtype=int)])
    nuc_rows = []
    for i in range(n_live + n_dead):
        cell = (all_state[i], cx[i], cy[i], ca[i], cb[i], ang[i])
        nuc_rows += _cell_nuclei(rng, i, cell, int(all_nnuc[i]), pheno.nucleus_scale, scale)
    return Population(
        cx=cx,
        cy=cy,
        ca=ca,
        cb=cb,
        cang=ang,
        state=all_state,
        thick=np.concatenate([live["thick"], np.full(n_dead, 3.0)]),
        gran=np.concatenate([live["gran"], np.zeros(n_dead)]),
        nvac=np.concatenate([live["nvac"], np.zeros(n_dead, dtype=int)]),
        nucleoli=np.concatenate([live["nucleoli"], np.zeros(n_dead)]),
        in_fov=(cx >= 0) & (cx < size_px) & (cy >= 0) & (cy < size_px),
        nuc=np.asarray(nuc_rows, dtype=np.float64).reshape(-1, 6),
    )


__all__ = [
    "DEAD",
    "DMSO_PHENOTYPE",
    "MITOTIC",
    "MOA_PROGRAMS",
    "NORMAL",
    "ROUNDED",
    "Phenotype",
    "Population",
    "expected_cells",
    "make_population",
    "phenotype_for",
]
