"""Star-convex cell polygons: crops, geometry, the network and its files (lcd_core.cells.raynet)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcd_core.cells.raynet import (
    CROP_PX,
    DOWNSAMPLE,
    N_RAYS,
    RayNet,
    load_raynet,
    nucleus_crops,
    polygon_shape,
    save_raynet,
)
from lcd_core.cells.train import rays_to_ellipse


@pytest.mark.parametrize(("a", "b", "angle", "offset", "tol"), [
    (30, 30, 0.0, (0, 0), 0.01), (40, 20, 0.7, (6, -3), 0.02),
    (60, 15, 2.0, (-15, 4), 0.07),  # 4:1 seen from near one end: the 32-gon cuts the far tip
])
def test_polygon_shape_of_exact_ellipse_rays(a, b, angle, offset, tol):
    centre = np.array([100.0]), np.array([120.0])
    point = np.array([[100.0 + offset[0], 120.0 + offset[1]]])
    rays = rays_to_ellipse(point, *centre, np.array([float(a)]), np.array([float(b)]), np.array([angle]))
    log_area, log_elong, roundness = polygon_shape(rays)[0]
    assert log_area == pytest.approx(np.log(np.pi * a * b), abs=tol)  # a 32-gon inscribed in the ellipse
    assert log_elong == pytest.approx(np.log(a / b), abs=tol)
    assert 0 < roundness <= 1.0001
    if a == b:
        assert roundness == pytest.approx(1.0, abs=0.01)


def test_nucleus_crops_are_centred_and_downsampled():
    img = np.zeros((3, 224, 224), np.float32)
    img[:, 112:114, 112:114] = 1.0  # a 2 × 2 block: one pixel after 2× averaging (its mirror images lie outside)
    crops = nucleus_crops(img, np.array([[112, 112], [0, 0]]))
    side = CROP_PX // DOWNSAMPLE
    assert crops.shape == (2, 3, side, side) and crops.dtype == np.float32
    assert crops[0, :, side // 2, side // 2].tolist() == [1.0, 1.0, 1.0]
    assert crops[0].sum() == pytest.approx(3.0)
    assert np.isfinite(crops[1]).all()  # reflect-padded at the corner


def test_raynet_shapes_and_files_round_trip(tmp_path):
    torch.manual_seed(0)
    net = RayNet(width=8).eval()
    x = torch.rand(4, 3, CROP_PX // DOWNSAMPLE, CROP_PX // DOWNSAMPLE)
    log_cell, log_nucleus, logit = net(x)
    assert log_cell.shape == log_nucleus.shape == (4, N_RAYS) and logit.shape == (4,)
    save_raynet(net, tmp_path / "m", {"note": "test"})
    loaded, meta = load_raynet(tmp_path / "m")
    assert meta["note"] == "test" and meta["width"] == 8
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], net(x)[0])
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_load_raynet_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="segmentation_model"):
        load_raynet(tmp_path / "nothing")
    save_raynet(RayNet(width=8), tmp_path / "m", {})
    meta = json.loads((tmp_path / "m" / "raynet.json").read_text())
    (tmp_path / "m" / "raynet.json").write_text(json.dumps({**meta, "n_rays": 16}))
    with pytest.raises(ValueError, match="raynet.pt.*materialize segmentation_model"):
        load_raynet(tmp_path / "m")
