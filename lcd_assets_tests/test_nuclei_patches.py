"""lcd_core.nuclei.patches: nuclei discovered in the untrained ViT's patch features on a synthetic FOV."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from lcd_core.nuclei.patches import detect_patches, nuclei_from_score, patch_score, token_stride
from lcd_core.synth import cells as cellmod
from lcd_core.synth import optics
from lcd_core.synth.design import make_spec
from lcd_core.synth.fov import render_planes

#: Measured on this FOV (untrained ViT-S/16 seed 0, defaults): recall 0.73, precision 0.53 (30 found,
#: 22 true); randomly placed centres would reach ≈ 0.13. Floors leave a margin for BLAS differences.
RECALL_FLOOR = 0.6
PRECISION_FLOOR = 0.4
ONE_PLANE_RECALL_FLOOR = 0.35
MATCH_UM = 6.0


@pytest.fixture(scope="module")
def vit():
    from lcd_core.nuclei.patches import default_model

    torch.set_num_threads(1)
    return default_model()


@pytest.fixture(scope="module")
def fov():
    """A 256² px synthetic DMSO FOV (3 planes, 0.598 µm) and its live nucleus centres (x, y)."""
    rng = np.random.default_rng(7)
    spec = make_spec("demo", image_size=256)
    px = spec.pixel_size_um
    n0 = spec.cells_per_mm2 * 2.0 * (256 * px * 1e-3) ** 2
    pop = cellmod.make_population(rng, cellmod.DMSO_PHENOTYPE, n0, 0.0, 256, px)
    ill = optics.Illumination(mean_adu=spec.background_adu, gradient=0.05, gradient_angle=0.3, vignette=0.05,
                              vignette_cx=0.0, vignette_cy=0.0, meniscus=0.0, meniscus_angle=0.0)
    planes = np.stack(render_planes(spec, pop, rng, 0.0, ill, np.zeros((0, 4)), np.zeros((0, 4)),
                                    spec.camera_offset_adu))
    live = pop.state[pop.nuc[:, 0].astype(int)] != cellmod.DEAD
    xy = pop.nuc[live][:, 1:3]
    inside = (xy >= 0).all(1) & (xy < 256).all(1)
    return planes, xy[inside], px


def _match(truth: np.ndarray, found: np.ndarray, tol_px: float) -> tuple[float, float]:
    """(recall, precision) of centres matched within ``tol_px`` (nearest neighbour, both ways)."""
    if len(found) == 0:
        return 0.0, float("nan")
    recall = float((cKDTree(found).query(truth)[0] <= tol_px).mean())
    precision = float((cKDTree(truth).query(found)[0] <= tol_px).mean())
    return recall, precision


def test_finds_nuclei_near_truth(vit, fov):
    planes, xy, px = fov
    nuc = detect_patches(planes, px, model=vit)
    assert nuc.labels.shape == planes.shape[1:] and nuc.foreground.shape == planes.shape[1:]
    assert nuc.pixel_um == px and nuc.n == len(nuc.area_um2) == int(nuc.labels.max())
    recall, precision = _match(xy, nuc.centres, MATCH_UM / px)
    assert recall >= RECALL_FLOOR, (recall, precision, nuc.n, len(xy))
    assert precision >= PRECISION_FLOOR, (recall, precision, nuc.n, len(xy))
    # areas within the size filter (7–25 µm equivalent diameter)
    d = np.sqrt(4 * nuc.area_um2 / np.pi)
    assert d.min() >= 7.0 - 1.0 and d.max() <= 25.0 + 1.0
    assert 0.05 < nuc.confluency < 1.0


def test_one_plane_and_pixel_size_scaling(vit, fov):
    planes, xy, px = fov
    one = detect_patches(planes[1], px, model=vit)  # (H, W) → one plane replicated
    recall, _ = _match(xy, one.centres, MATCH_UM / px)
    assert one.labels.shape == planes.shape[1:] and recall >= ONE_PLANE_RECALL_FLOOR
    # sizes come from pixel_um: a stride is chosen in µm
    assert token_stride(16, 0.6) == 8 and token_stride(16, 0.3) == 16 and token_stride(16, 1.2) == 4


def test_score_is_higher_on_nuclei(vit, fov):
    planes, xy, px = fov
    ps = patch_score(planes, px, model=vit)
    assert ps.score.shape == ps.guide.shape == ps.attention.shape
    ij = np.round(xy[:, ::-1] * px / ps.work_um).astype(int).clip(0, ps.score.shape[0] - 1)
    on = ps.score[ij[:, 0], ij[:, 1]]
    assert np.median(on) > np.percentile(ps.score, 60)
    # a stricter nucleus threshold never finds more nuclei
    assert nuclei_from_score(ps, nuc_level=1.6).n <= nuclei_from_score(ps, nuc_level=1.0).n


def test_bad_inputs(vit):
    with pytest.raises(ValueError, match="planes"):
        detect_patches(np.zeros((2, 64, 64), np.uint16), 0.6, model=vit)
    with pytest.raises(ValueError, match="pixel_um"):
        detect_patches(np.zeros((1, 128, 128), np.uint16), 0.0, model=vit)
    with pytest.raises(ValueError, match="pixel_um"):
        detect_patches(np.zeros((1, 128, 128), np.uint16), float("nan"), model=vit)
    with pytest.raises(ValueError, match="too small"):
        detect_patches(np.zeros((1, 20, 20), np.uint16), 0.6, model=vit)
    with pytest.raises(ValueError, match="NaN"):
        detect_patches(np.full((1, 128, 128), np.nan, np.float32), 0.6, model=vit)
    with pytest.raises(ValueError, match="seed"):
        patch_score(np.ones((1, 128, 128), np.uint16), 0.6, model=vit, seed="brightest")
