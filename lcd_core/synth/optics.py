"""Brightfield image formation: object (phase + absorption) → defocused planes → illumination → camera.

Model (weak phase / weak amplitude object, partially coherent Köhler illumination):

* the specimen is an optical phase map φ(x, y) (radians; cells are thin transparent phase objects,
  rounded/mitotic cells and dead cells are thick) plus a small absorption map α(x, y);
* the intensity of a plane at defocus ``z`` is, in Fourier space (k in cycles/µm),
  ``Î(k) = 2 Φ̂(k) sin χ(k) E(k) P(k) − 2 Â(k) cos χ(k) E(k) P(k)`` with the defocus phase
  ``χ = π λ z |k|²``, the partial-coherence envelope ``E = exp(−(π NA_c z |k|)²)`` and the
  objective pupil ``P = |k| ≤ NA / λ`` (soft edge).  For small z this is the transport-of-intensity
  result ``I ∝ 1 − z λ/(4π) ∇²φ``: a cell (positive phase bump) is *dark below focus, bright above
  focus and nearly invisible in focus*, and edges show the opposite-signed halo;
* the relative intensity ``i`` becomes ``I = B(x, y) · exp(i)`` (keeps strong, thick objects
  positive, like the fixture's bright rounded cells with dark rims) with the illumination field
  ``B`` (gain, linear gradient, vignetting, meniscus gradient of off-centre fields);
* the camera adds shot noise (Poisson of electrons), read noise and a fixed offset, 16-bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from lcd_core.synth.cells import DEAD, MITOTIC, ROUNDED, Population

# Optical phase amplitudes (radians) of the specimen parts
PHASE_CYTO = 0.45  # cytoplasm at the cell centre (× cell thickness factor)
PHASE_NUCLEUS = 0.7  # extra phase of the nucleus (smooth dome)
PHASE_NUCLEOLUS = 0.45  # per nucleolus (× nucleoli factor)
PHASE_GRANULE = 0.35  # cytoplasmic granules (signed)
PHASE_VACUOLE = -0.6  # vacuoles (lower refractive index than cytoplasm)
PHASE_ROUND = 1.5  # rounded / mitotic cells (× thickness factor / 2.6)
PHASE_DEAD = 1.6
ABS_CYTO = 0.003
ABS_NUCLEUS = 0.004
ABS_DEAD = 0.05


@dataclass(frozen=True)
class Optics:
    pixel_um: float
    wavelength_um: float = 0.74
    objective_na: float = 0.4
    condenser_na: float = 0.12


@dataclass(frozen=True)
class Illumination:
    """Illumination field of one FOV (all relative to ``mean_adu``)."""

    mean_adu: float  # flat-field level incl. replica / plate / FOV gain
    gradient: float  # linear gradient across the FOV (fraction, peak to peak)
    gradient_angle: float  # radians, direction of increasing intensity
    vignette: float  # fall-off at the FOV corner (fraction)
    vignette_cx: float  # centre offset (fraction of the FOV)
    vignette_cy: float
    meniscus: float  # extra gradient of off-centre fields (fraction, peak to peak)
    meniscus_angle: float  # direction of *decreasing* intensity (towards the well wall)

    def field(self, size: int) -> np.ndarray:
        u = (np.arange(size) + 0.5) / size - 0.5
        x = u[None, :]
        y = u[:, None]
        lin = 1.0 + self.gradient * (x * math.cos(self.gradient_angle) + y * math.sin(self.gradient_angle))
        men = 1.0 - self.meniscus * (x * math.cos(self.meniscus_angle) + y * math.sin(self.meniscus_angle))
        rho2 = ((x - self.vignette_cx) ** 2 + (y - self.vignette_cy) ** 2) / 0.5
        vig = 1.0 - self.vignette * rho2
        return (self.mean_adu * lin * men * vig).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Object maps
# --------------------------------------------------------------------------------------------


def _box(cx, cy, ext, n):
    x0, x1 = max(int(cx - ext), 0), min(int(cx + ext) + 2, n)
    y0, y1 = max(int(cy - ext), 0), min(int(cy + ext) + 2, n)
    return x0, x1, y0, y1


def _ellipse_uv(x0, x1, y0, y1, cx, cy, a, b, ang):
    """Normalised ellipse coordinates (u, v) on the box (float32; u along the major axis)."""
    c, s = math.cos(ang), math.sin(ang)
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    u = (dx * np.float32(c / a) + dy * np.float32(s / a)).astype(np.float32)
    v = (dx * np.float32(-s / b) + dy * np.float32(c / b)).astype(np.float32)
    return u, v


def _edge(u, v, r2, amps, phases):
    """1 + Σ a_k cos(kθ + φ_k) (θ = polar angle of (u, v)) without trig on the grid."""
    z = (u + 1j * v) / np.sqrt(np.maximum(r2, 1e-12))
    z = z.astype(np.complex64)
    out = np.ones(u.shape, dtype=np.float32)
    zk = np.ones(u.shape, dtype=np.complex64)
    kmax = max(amps)
    for k in range(1, kmax + 1):
        zk = zk * z
        if k in amps:
            out += np.float32(amps[k]) * (zk * np.complex64(np.exp(1j * phases[k]))).real
    return out


class _Splat:
    """Point sources collected for one Gaussian width, splatted and blurred in Fourier space."""

    def __init__(self, shape):
        self.shape = shape
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.w: list[np.ndarray] = []

    def add(self, x, y, w):
        self.xs.append(np.atleast_1d(np.asarray(x, dtype=np.float64)))
        self.ys.append(np.atleast_1d(np.asarray(y, dtype=np.float64)))
        self.w.append(np.atleast_1d(np.asarray(w, dtype=np.float64)))

    def image(self) -> np.ndarray:
        img = np.zeros(self.shape, dtype=np.float64)
        if not self.xs:
            return img
        x = np.concatenate(self.xs)
        y = np.concatenate(self.ys)
        w = np.concatenate(self.w)
        # bilinear splat
        x0 = np.floor(x).astype(int)
        y0 = np.floor(y).astype(int)
        fx = x - x0
        fy = y - y0
        h, wd = self.shape
        for dx, dy, ww in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi = x0 + dx
            yi = y0 + dy
            ok = (xi >= 0) & (xi < wd) & (yi >= 0) & (yi < h)
            np.add.at(img, (yi[ok], xi[ok]), (w * ww)[ok])
        return img


@dataclass
class _Canvas:
    """The maps one FOV's specimen is drawn into (padded canvas of ``n`` pixels per side)."""

    n: int
    phi: np.ndarray
    alpha: np.ndarray
    fine: _Splat
    coarse: _Splat

    @classmethod
    def empty(cls, n: int) -> "_Canvas":
        zeros = functools.partial(np.zeros, (n, n), dtype=np.float64)
        return cls(n, zeros(), zeros(), _Splat((n, n)), _Splat((n, n)))


def _rotate(cx, cy, ux, vy, c, s):
    """Image coordinates of points ``(ux, vy)`` of a frame centred at ``(cx, cy)`` with axes ``(c, s)``."""
    return cx + ux * c - vy * s, cy + ux * s + vy * c


def _round_body(cv: _Canvas, pop: Population, i: int, centre: tuple, box: tuple, uv: tuple, rng) -> None:
    """A thick, round body (rounded, mitotic or dead): dome profile with a slightly irregular edge."""
    (cx, cy), (x0, x1, y0, y1), (u, v, r2) = centre, box, uv
    a, st = pop.ca[i], pop.state[i]
    ph = rng.uniform(0, 2 * np.pi, 2)
    edge = _edge(u, v, r2, {3: 0.05, 5: 0.03}, {3: ph[0], 5: ph[1]})
    dome = np.sqrt(np.clip(1.0 - r2 * edge, 0.0, 1.0))
    if st == DEAD:
        cv.phi[y0:y1, x0:x1] += PHASE_DEAD * dome
        cv.alpha[y0:y1, x0:x1] += ABS_DEAD * dome**0.5
        k = rng.poisson(3)
        if k:  # blebs / fragments
            ang_b = rng.uniform(0, 2 * np.pi, k)
            rad_b = a * rng.uniform(0.6, 1.2, k)
            cv.fine.add(cx + rad_b * np.cos(ang_b), cy + rad_b * np.sin(ang_b), rng.uniform(1.0, 2.5, k))
        return
    cv.phi[y0:y1, x0:x1] += PHASE_ROUND * (pop.thick[i] / 2.6) * dome
    cv.alpha[y0:y1, x0:x1] += 0.03 * dome
    # granular / chromosomal texture in mitotic cells
    k = rng.poisson(10 if st == MITOTIC else 5)
    rr_ = a * np.sqrt(rng.uniform(0, 0.6, k))
    aa_ = rng.uniform(0, 2 * np.pi, k)
    cv.fine.add(cx + rr_ * np.cos(aa_), cy + rr_ * np.sin(aa_), rng.normal(0, 0.8, k))


def _nucleus(cv: _Canvas, nrow: np.ndarray, pad: int, nucleoli: float, rng: np.random.Generator) -> None:
    """One nucleus (smooth plateau of phase and absorption) with 2 + Poisson(3) nucleoli."""
    nx, ny, na, nb, nang = nrow[1] + pad, nrow[2] + pad, nrow[3], nrow[4], nrow[5]
    bx0, bx1, by0, by1 = _box(nx, ny, max(na, nb) + 1, cv.n)
    if bx0 < bx1 and by0 < by1:
        nu, nv = _ellipse_uv(bx0, bx1, by0, by1, nx, ny, na, nb, nang)
        plateau = np.clip(1.0 - (nu * nu + nv * nv), 0.0, 1.0) ** 1.6
        cv.phi[by0:by1, bx0:bx1] += PHASE_NUCLEUS * plateau
        cv.alpha[by0:by1, bx0:bx1] += ABS_NUCLEUS * plateau
    k = 2 + rng.poisson(3)
    rr_ = np.sqrt(rng.uniform(0, 0.55, k))
    aa_ = rng.uniform(0, 2 * np.pi, k)
    x, y = _rotate(nx, ny, rr_ * np.cos(aa_) * na, rr_ * np.sin(aa_) * nb, math.cos(nang), math.sin(nang))
    cv.fine.add(x, y, PHASE_NUCLEOLUS * 2.5 * nucleoli * rng.uniform(0.6, 1.4, k))


def _cytoplasm_texture(cv: _Canvas, pop: Population, i: int, centre: tuple, rng, pixel_um: float) -> None:
    """Granules (denser around the nucleus), stress-fibre-like streaks and vacuoles of a spread cell."""
    (cx, cy), a, b, ang = centre, pop.ca[i], pop.cb[i], pop.cang[i]
    area_um2 = math.pi * a * b * pixel_um**2
    k = rng.poisson(pop.gran[i] * area_um2 / 12.0)
    if k:
        rr_ = np.clip(np.abs(rng.normal(0.35, 0.25, k)), 0.0, 0.92)
        aa_ = rng.uniform(0, 2 * np.pi, k)
        x, y = _rotate(cx, cy, rr_ * np.cos(aa_) * a, rr_ * np.sin(aa_) * b, math.cos(ang), math.sin(ang))
        cv.fine.add(x, y, PHASE_GRANULE * 2.0 * np.where(rng.random(k) < 0.8, 1.0, -1.0) * rng.uniform(0.5, 1.3, k))
    for _ in range(rng.poisson(2)):  # a few short lines of granules along the major axis
        s0 = rng.uniform(-0.6, 0.6)
        o0 = rng.uniform(-0.6, 0.6)
        tt = np.linspace(-0.25, 0.25, 9)
        c_, s_ = math.cos(ang + rng.normal(0, 0.2)), math.sin(ang + rng.normal(0, 0.2))
        cv.fine.add(*_rotate(cx, cy, (s0 + tt) * a, np.full_like(tt, o0 * b), c_, s_), np.full(9, 0.25))
    k = int(pop.nvac[i])
    if k:
        rr_ = np.sqrt(rng.uniform(0.05, 0.6, k))
        aa_ = rng.uniform(0, 2 * np.pi, k)
        x, y = _rotate(cx, cy, rr_ * np.cos(aa_) * a, rr_ * np.sin(aa_) * b, math.cos(ang), math.sin(ang))
        cv.coarse.add(x, y, PHASE_VACUOLE * rng.uniform(4.0, 9.0, k))


def _spread_cell(cv: _Canvas, pop: Population, i: int, box: tuple, uv: tuple, rng: np.random.Generator) -> None:
    """A spread cell's body: irregular lamella (angular harmonics of the boundary), thicker centre, dark rim."""
    (x0, x1, y0, y1), (u, v, r2) = box, uv
    ph = rng.uniform(0, 2 * np.pi, 4)
    edge = _edge(u, v, r2, {2: 0.10, 3: 0.07, 5: 0.05, 8: 0.03}, {2: ph[0], 3: ph[1], 5: ph[2], 8: ph[3]})
    rr = r2 * edge
    prof = np.clip(1.0 - rr, 0.0, 1.0)
    t = pop.thick[i]
    cv.phi[y0:y1, x0:x1] += PHASE_CYTO * t * prof
    cv.alpha[y0:y1, x0:x1] += ABS_CYTO * t * prof
    # edge ridge (the fixture shows thin dark cell outlines)
    ridge = np.exp(-((np.sqrt(rr) - 0.97) ** 2) * np.float32(1 / (2 * 0.035**2))) * (rr < 1.05)
    cv.phi[y0:y1, x0:x1] += 0.04 * t * ridge


def _add_specks(cv: _Canvas, specks: np.ndarray | None, pad: int) -> None:
    """Small debris: a phase point and an absorbing point each."""
    if specks is not None and len(specks):
        cv.fine.add(specks[:, 0] + pad, specks[:, 1] + pad, specks[:, 2] * 6.0)
        sp = _Splat((cv.n, cv.n))
        sp.add(specks[:, 0] + pad, specks[:, 1] + pad, specks[:, 3])
        cv.alpha += sp.image()


def object_maps(
    pop: Population,
    size: int,
    pad: int,
    rng: np.random.Generator,
    pixel_um: float,
    specks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phase and absorption maps on a padded canvas of ``size + 2·pad``.

    Returns ``(phi, alpha, fine, coarse)`` where ``fine`` / ``coarse`` are point-source images to be
    blurred with σ ≈ 0.7 px and σ ≈ 0.9 µm-vacuole kernels (phase), added in Fourier space.
    ``specks``: rows ``(x, y, phase, absorption)`` of small debris in image pixel coordinates.
    """
    cv = _Canvas.empty(size + 2 * pad)
    nuc_by_cell: dict[int, list[np.ndarray]] = {}
    for row in pop.nuc:
        nuc_by_cell.setdefault(int(row[0]), []).append(row)
    for i in range(pop.n):
        cx, cy = pop.cx[i] + pad, pop.cy[i] + pad
        box = _box(cx, cy, pop.ca[i] * 1.16 + 2, cv.n)
        if box[0] >= box[1] or box[2] >= box[3]:
            continue
        u, v = _ellipse_uv(*box, cx, cy, pop.ca[i], pop.cb[i], pop.cang[i])
        uv = (u, v, u * u + v * v)
        if pop.state[i] in (ROUNDED, MITOTIC, DEAD):
            _round_body(cv, pop, i, (cx, cy), box, uv, rng)
            continue
        _spread_cell(cv, pop, i, box, uv, rng)
        for nrow in nuc_by_cell.get(i, []):
            _nucleus(cv, nrow, pad, pop.nucleoli[i], rng)
        _cytoplasm_texture(cv, pop, i, (cx, cy), rng, pixel_um)
    _add_specks(cv, specks, pad)
    return cv.phi, cv.alpha, cv.fine.image(), cv.coarse.image()


# --------------------------------------------------------------------------------------------
# Defocus
# --------------------------------------------------------------------------------------------


def _freq(n: int, pixel_um: float) -> np.ndarray:
    f = np.fft.fftfreq(n, d=pixel_um)
    fr = np.fft.rfftfreq(n, d=pixel_um)
    return np.sqrt(f[:, None] ** 2 + fr[None, :] ** 2)


@functools.lru_cache(maxsize=8)
def _kernels(n: int, optics: Optics):
    """Frequency grid, point-source blur kernels and the soft objective pupil (cached per size)."""
    k = _freq(n, optics.pixel_um)
    k2 = k * k
    sig_fine = 0.7 * optics.pixel_um  # µm
    sig_coarse = 1.0  # µm (vacuole ~ 2 µm across)
    # point sources carry unit *integrated* phase per pixel²: normalise the Gaussians to a peak of 1
    g_fine = np.exp(-2 * (np.pi * sig_fine) ** 2 * k2) / (2 * np.pi * (sig_fine / optics.pixel_um) ** 2)
    g_coarse = np.exp(-2 * (np.pi * sig_coarse) ** 2 * k2) / (2 * np.pi * (sig_coarse / optics.pixel_um) ** 2)
    kc = optics.objective_na / optics.wavelength_um
    pupil = 1.0 / (1.0 + np.exp((k - kc) / (0.03 * kc)))
    for arr in (k, k2, g_fine, g_coarse, pupil):
        arr.setflags(write=False)
    return k, k2, g_fine, g_coarse, pupil


def defocus_planes(
    phi: np.ndarray,
    alpha: np.ndarray,
    fine: np.ndarray,
    coarse: np.ndarray,
    z_um: list[float],
    optics: Optics,
) -> list[np.ndarray]:
    """Relative log-intensity ``i(x, y)`` of each plane (same shape as the inputs)."""
    k, k2, g_fine, g_coarse, pupil = _kernels(phi.shape[0], optics)
    phi_hat = np.fft.rfft2(phi) + np.fft.rfft2(fine) * g_fine + np.fft.rfft2(coarse) * g_coarse
    a_hat = np.fft.rfft2(alpha) * (g_fine * (2 * np.pi * 0.7**2))
    out = []
    for z in z_um:
        chi = np.pi * optics.wavelength_um * z * k2
        env = np.exp(-((np.pi * optics.condenser_na * z * k) ** 2)) * pupil
        i_hat = 2.0 * phi_hat * np.sin(chi) * env - 2.0 * a_hat * np.cos(chi) * env
        i_hat[0, 0] = -2.0 * a_hat[0, 0]  # mean absorption
        out.append(np.fft.irfft2(i_hat, s=phi.shape))
    return out


def blob_attenuation(size: int, blobs: np.ndarray, pixel_um: float) -> np.ndarray:
    """Multiplicative transmission of large out-of-focus debris blobs ``(x, y, radius_um, depth)``."""
    t = np.ones((size, size), dtype=np.float64)
    if blobs is None or not len(blobs):
        return t
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)  # only FOVs with a blob get here
    for x, y, r_um, depth in blobs:
        r = r_um / pixel_um
        d2 = ((xx - x) ** 2 + (yy - y) ** 2) / (r * r)
        core = np.exp(-(d2**1.5))
        halo = np.exp(-d2 / 6.0)
        t *= 1.0 - depth * core + 0.04 * depth * (halo - core)
    return np.clip(t, 0.02, None)


def camera(
    signal_adu: np.ndarray,
    rng: np.random.Generator,
    electrons_per_adu: float,
    read_noise_adu: float,
    offset_adu: float,
) -> np.ndarray:
    """Shot noise + read noise + offset → uint16."""
    # shot noise: Gaussian approximation of Poisson (thousands of electrons per pixel)
    sig = np.clip(signal_adu, 0, None)
    noise_sd = np.sqrt(sig / electrons_per_adu + read_noise_adu**2)
    img = sig + offset_adu + noise_sd * rng.standard_normal(signal_adu.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16)


__all__ = ["Illumination", "Optics", "blob_attenuation", "camera", "defocus_planes", "object_maps"]
