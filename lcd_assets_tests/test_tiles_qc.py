"""lcd_core.tiles.qc: the rules (saturated, debris, empty, out of focus), alone and via tile_fov."""

from __future__ import annotations

import numpy as np

from lcd_assets_tests.test_tiles_preprocess import cells_stack, rel_of
from lcd_core.tiles.grid import tile_fov
from lcd_core.tiles.preprocess import TileConfig, relative_contrast
from lcd_core.tiles.qc import qc_tile


def test_qc_blank_tile_is_empty():
    rng = np.random.default_rng(1)
    blank = np.clip(8000 + rng.normal(0, 40, (3, 224, 224)), 0, 65535).astype(np.uint16)
    assert qc_tile(rel_of(blank)) == "empty"
    # the same through tile_fov: the middle of an otherwise populated FOV is blank
    st = cells_stack(672)
    st[:, 224:448, 224:448] = blank
    _, rec = tile_fov(st)
    assert [r["qc_reason"] for r in rec].count("empty") == 1 and rec[4]["qc_reason"] == "empty"


def test_qc_saturated_tile():
    st = cells_stack(672)
    st[:, 224:448, 224:400] = 65535  # a blown-out region
    _, rec = tile_fov(st)
    assert rec[4]["qc_reason"] == "saturated"
    assert sum(r["qc_reason"] is None for r in rec) == 8
    # a dynamic-range ceiling below 65535 (12-bit camera clipping at 4095) counts too
    st12 = (cells_stack(672).astype(np.float32) / 2).astype(np.uint16)
    st12[:, :224, :224] = np.minimum(st12[:, :224, :224] + 600, 4095)
    st12 = np.minimum(st12, 4095)
    _, rec = tile_fov(st12)
    assert rec[0]["qc_reason"] == "saturated"
    assert qc_tile(rel_of(cells_stack(224)), saturated_fraction=0.5) == "saturated"


def test_qc_dark_blob_is_debris():
    st = cells_stack(672)
    yy, xx = np.mgrid[:672, :672]
    blob = (yy - 336) ** 2 + (xx - 336) ** 2 < 45**2
    st[:, blob] = (st[:, blob] * 0.4).astype(np.uint16)  # absorbing debris, dark in every plane
    _, rec = tile_fov(st)
    assert rec[4]["qc_reason"] == "debris"
    assert sum(r["qc_reason"] is None for r in rec) == 8
    tile = cells_stack(224, seed=3)
    b = (yy[:224, :224] - 112) ** 2 + (xx[:224, :224] - 112) ** 2 < 40**2
    tile[:, b] = (tile[:, b] * 0.5).astype(np.uint16)
    assert qc_tile(rel_of(tile)) == "debris"
    assert qc_tile(rel_of(cells_stack(224, seed=3))) is None


def phase_stack(focus_um: float, size: int = 224, seed: int = 0, n_cells: int = 12) -> np.ndarray:
    """3-plane brightfield stack (planes at focus + (−3.6, 0, +3.6) µm) of weak phase objects,
    rendered with the synthetic screen's partially coherent defocus model (lcd_core.synth.optics)."""
    from lcd_core.synth import optics

    rng = np.random.default_rng(seed)
    px = 0.598
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    phi = np.zeros((size, size))
    fine = np.zeros((size, size))
    for _ in range(n_cells):
        cx, cy = rng.uniform(0, size, 2)
        r = rng.uniform(12, 22)  # cell radius, px (7–13 µm)
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
        phi += 0.45 * np.clip(1 - d2, 0, None) + 0.7 * np.clip(1 - 4 * d2, 0, None) ** 1.6  # body + nucleus
        gx, gy = (cx + rng.normal(0, r / 2, 8)).astype(int) % size, (cy + rng.normal(0, r / 2, 8)).astype(int) % size
        fine[gy, gx] += rng.uniform(0.3, 0.9, 8)  # granules / nucleoli
    alpha = 0.003 * phi
    rel = optics.defocus_planes(phi, alpha, fine, np.zeros_like(phi), [focus_um + z for z in (-3.6, 0.0, 3.6)], optics.Optics(px))
    cam = np.random.default_rng(seed + 1)
    return np.stack([optics.camera(8000.0 * np.exp(r), cam, 1.6, 2.0, 100.0) for r in rel])


def test_qc_out_of_focus_stack_is_rejected():
    cfg = TileConfig()
    for focus in (0.0, -1.5, 2.0):  # normal focus scatter (clean screens: sd ≈ 1 µm) is kept
        _, rec = tile_fov(phase_stack(focus), cfg)
        assert rec[0]["qc_reason"] is None, (focus, rec[0])
        assert rec[0]["focus_corr"] < 0  # focus between the outer planes: opposite-signed contrast
    for focus in (-8.0, 6.0, 10.0):  # gross focus failure: all planes on one side of focus
        _, rec = tile_fov(phase_stack(focus), cfg)
        assert rec[0]["qc_reason"] == "out_of_focus", (focus, rec[0])
        assert rec[0]["focus_corr"] > cfg.max_outer_plane_correlation
    # qc_tile on the tile's relative contrast agrees
    assert qc_tile(relative_contrast(phase_stack(8.0))) == "out_of_focus"
    assert qc_tile(relative_contrast(phase_stack(0.0))) is None


def test_qc_out_of_focus_needs_three_planes_and_yields_to_empty():
    # one plane (e.g. the Harmony-5 fixture): the rule cannot apply, the statistic is None
    st = phase_stack(8.0)
    _, rec = tile_fov(st[1])
    assert rec[0]["qc_reason"] is None and rec[0]["focus_corr"] is None
    # a blank 3-plane tile is "empty", never "out_of_focus" (its outer planes are pure noise)
    rng = np.random.default_rng(1)
    blank = np.clip(8000 + rng.normal(0, 40, (3, 224, 224)), 0, 65535).astype(np.uint16)
    assert qc_tile(rel_of(blank)) == "empty"
    assert qc_tile(rel_of(blank), config=TileConfig(min_foreground_fraction=0.0)) is None
    # sparse tile (one small cell): kept when in focus
    _, rec = tile_fov(phase_stack(0.5, n_cells=1, seed=4))
    assert rec[0]["qc_reason"] in (None, "empty"), rec[0]


def test_debris_dark_in_every_plane_not_defocus_shading():
    # absorbing debris is dark in all 3 planes: a small blob (≈ 0.6 % of the tile) is caught
    st = cells_stack(224, seed=5)
    yy, xx = np.mgrid[:224, :224]
    b = (yy - 100) ** 2 + (xx - 120) ** 2 < 10**2
    st[:, b] = (st[:, b] * 0.6).astype(np.uint16)
    assert qc_tile(rel_of(st)) == "debris"
    # the same dark patch in the middle plane only, bright in an outer plane (phase-object
    # defocus shading, not an absorber) is not debris
    st = cells_stack(224, seed=5)
    st[1, b] = (st[1, b] * 0.6).astype(np.uint16)
    st[2, b] = (st[2, b] * 1.3).astype(np.uint16)
    assert qc_tile(rel_of(st)) != "debris"
