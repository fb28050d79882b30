"""Training-free brightfield nuclei (lcd_core.nuclei.brightfield) on rendered synthetic fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lcd_core.nuclei.brightfield import detect_brightfield
from lcd_core.nuclei.evaluate import count_r, score_masks


@pytest.fixture(scope="module")
def synthetic_fovs():
    """Six 256-px FOVs of the ``small`` preset (seed 0) with their live-nucleus truth."""
    from lcd_core.synth import truth as truthmod
    from lcd_core.synth.design import make_spec
    from lcd_core.synth.fov import render_fov
    from lcd_core.synth.screen import _Design

    spec = make_spec("small", image_size=256, workers=1)
    tasks = _Design.draw(spec, 0).tasks(Path("unused"), Path("unused"))
    out = []
    for task in (tasks[0], tasks[-1]):
        for well in task.wells[:3]:
            planes, rows, fov, _ = render_fov(task, well, 1)
            live = {k: v[rows["state"] != "dead"] for k, v in rows.items()}
            out.append((np.stack(planes), truthmod.render_masks(live, (256, 256))[0], fov))
    return spec.pixel_size_um, out


def test_three_planes_count_and_masks(synthetic_fovs):
    px, fovs = synthetic_fovs
    true_n, pred_n, ious = [], [], []
    for planes, truth, fov in fovs:
        nuc = detect_brightfield(planes, px)
        assert nuc.labels.shape == planes.shape[1:] and nuc.labels.dtype == np.int32
        assert nuc.n == nuc.labels.max() and 0 < nuc.confluency < 1
        true_n.append(fov["n_nuclei"])
        pred_n.append(nuc.n)
        ious.append(score_masks(truth, nuc.labels).median_iou)
    assert abs(sum(pred_n) - sum(true_n)) <= 0.25 * sum(true_n)
    assert np.median(ious) >= 0.5
    if np.std(true_n) > 0:
        assert count_r(true_n, pred_n) >= 0.8


def test_one_plane_and_2d_input_run(synthetic_fovs):
    px, fovs = synthetic_fovs
    planes = fovs[0][0]
    a = detect_brightfield(planes[1:2], px)
    b = detect_brightfield(planes[1].astype(np.float32) * 3.0, px)  # 2-D, other scale
    assert a.labels.shape == planes.shape[1:]
    assert a.n == b.n


def test_pixel_size_is_respected(synthetic_fovs):
    """The same field at twice the resolution (pixel size halved) gives about the same nuclei."""
    from scipy import ndimage as ndi

    px, fovs = synthetic_fovs
    planes = fovs[1][0].astype(np.float64)
    big = np.stack([ndi.zoom(p, 2, order=1) for p in planes])
    n1, n2 = detect_brightfield(planes, px), detect_brightfield(big, px / 2)
    assert abs(n1.n - n2.n) <= max(3, 0.2 * n1.n)
    assert np.median(n2.area_um2) == pytest.approx(np.median(n1.area_um2), rel=0.3)


@pytest.mark.parametrize("shape", [(2, 64, 64), (3, 8, 8), (4, 64, 64, 1)])
def test_bad_stacks_raise(shape):
    with pytest.raises(ValueError):
        detect_brightfield(np.ones(shape), 0.6)


def test_bad_pixel_size_and_params_raise():
    planes = np.random.default_rng(0).normal(100, 5, (3, 64, 64))
    with pytest.raises(ValueError, match="pixel size"):
        detect_brightfield(planes, 0.0)
    with pytest.raises(ValueError, match="unknown"):
        detect_brightfield(planes, 0.6, nucleus_size=3)


def test_empty_field_has_no_nuclei():
    planes = np.random.default_rng(1).normal(1000, 3, (3, 128, 128))
    nuc = detect_brightfield(planes, 0.6)
    assert nuc.n == 0 and nuc.confluency == 0.0
