"""``lcd nuclei PATH``: table, --json and --masks on the real fixtures."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from lcd_assets.cli import main
from lcd_assets_tests.conftest import phenix_fixtures


def test_cli_nuclei_json_and_masks(tmp_path, capsys):
    path = phenix_fixtures() / "harmony-v5"
    assert main(["nuclei", str(path), "--json", "--masks", str(tmp_path / "masks")]) == 0
    out = json.loads(capsys.readouterr().out)
    (fov,) = out["fovs"]
    assert fov["well"] == "A01" and fov["field"] == 1
    assert 20 <= fov["n_nuclei"] <= 600 and 0.3 < fov["confluency"] <= 1.0
    assert all(0 <= n["x"] < 1080 and 0 <= n["y"] < 1080 for n in fov["nuclei"])
    labels = tifffile.imread(tmp_path / "masks" / "A01_f1.tiff")
    assert labels.shape == (1080, 1080) and labels.max() == fov["n_nuclei"]
    assert len(np.unique(labels)) - 1 == fov["n_nuclei"]
    assert not list((tmp_path / "masks").glob(".*"))  # no temporary file left


def test_cli_nuclei_table_and_errors(tmp_path, capsys):
    real = phenix_fixtures().parent / "real-nuclei" / "aiseg-suppl3" / "Images"
    assert main(["nuclei", str(real)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["well", "field", "timepoint", "n_nuclei", "confluency"]
    assert len(lines) == 4 and lines[1].startswith("A01")
    assert main(["nuclei", str(phenix_fixtures() / "harmony-v7")]) == 2  # TIFFs absent
    assert "harmony-v7" in capsys.readouterr().err
    assert main(["nuclei", str(tmp_path)]) == 2
