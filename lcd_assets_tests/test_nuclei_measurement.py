"""Nuclei over a whole measurement folder (lcd_core.nuclei.measurement) on the real fixtures."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile

from lcd_assets_tests.conftest import phenix_fixtures
from lcd_core.io.phenix import PhenixError
from lcd_core.nuclei.evaluate import score_masks
from lcd_core.nuclei.measurement import detect_measurement, get_method


def _real_nuclei():
    return phenix_fixtures().parent / "real-nuclei" / "aiseg-suppl3"


def test_real_nuclei_counts_and_iou():
    root = _real_nuclei()
    fovs = list(detect_measurement(root / "Images"))
    assert [(f.well, f.field) for f in fovs] == [("A01", 1), ("A01", 2), ("A01", 3)]
    for f in fovs:
        truth = tifffile.imread(root / "truth" / f"f{f.field:02d}_nuclei.tiff")
        n_true = len(np.unique(truth)) - 1
        assert 0.5 * n_true <= f.nuclei.n <= 1.6 * n_true
        assert f.nuclei.pixel_um == pytest.approx(0.38)
        assert score_masks(truth, f.nuclei.labels).median_iou > 0.3
        d = json.loads(json.dumps(f.to_json()))
        assert d["n_nuclei"] == len(d["nuclei"]) == f.nuclei.n and 0 < d["confluency"] < 1


def test_no_brightfield_channel_names_the_measurement(tmp_path):
    src = phenix_fixtures() / "harmony-v5"
    dst = tmp_path / "no-bf"
    shutil.copytree(src, dst)
    idx = dst / "Index.idx.xml"
    idx.write_text(idx.read_text().replace(">Brightfield<", ">Fluorescence<"))
    with pytest.raises(PhenixError, match="no-bf.*Brightfield"):
        list(detect_measurement(dst))


def test_missing_pixel_size_names_the_measurement(tmp_path):
    dst = tmp_path / "no-px"
    shutil.copytree(_real_nuclei() / "Images", dst)
    idx = dst / "Index.idx.xml"
    idx.write_text(idx.read_text().replace('Unit="m">3.800000E-07<', 'Unit="m">0<'))
    with pytest.raises(PhenixError, match="no-px.*pixel size"):
        list(detect_measurement(dst))


def test_planes_of_different_sizes_name_the_measurement(tmp_path):
    dst = tmp_path / "odd"
    shutil.copytree(_real_nuclei() / "Images", dst)
    f = dst / "r01c01f02p01-ch1sk1fk1fl1.tiff"
    tifffile.imwrite(f, tifffile.imread(f)[:-8])
    with pytest.raises(PhenixError, match="odd"):
        list(detect_measurement(dst))


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown nucleus method"):
        get_method("nope")
    with pytest.raises(ValueError, match="unknown nucleus method"):
        list(detect_measurement(_real_nuclei() / "Images", method="nope"))
