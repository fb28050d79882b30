"""Tests of lcd_core.io.describe on the real Harmony exports and on a written one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from lcd_core.io.describe import MAX_LISTED, _ints, describe, format_text
from lcd_core.io.phenix import Channel, read_index
from lcd_core.synth.phenix_writer import ImageRecord, write_measurement
from lcd_assets_tests.conftest import phenix_fixtures


FIXTURES = phenix_fixtures()


def test_describe_v5() -> None:
    d = describe(read_index(FIXTURES / "harmony-v5"))
    json.dumps(d)  # JSON-serialisable
    assert d["plate_id"] == "BR00122249"
    assert d["measurement_id"] == "87abafd9-b3ba-44d1-96af-7ae5a38babfa"
    assert d["harmony_version"] == "5"
    assert d["plate_type"] == "384 PerkinElmer CellCarrier Ultra"
    assert (d["plate_rows"], d["plate_columns"]) == (16, 24)
    assert d["wells"] == ["A01"] and d["n_wells"] == 1
    assert (d["fields"], d["planes"], d["timepoints"]) == ([1], [1], [0])
    assert d["brightfield_channel"] == 2 and d["brightfield_channels"] == [2]
    assert d["image_size"] == [1080, 1080]
    assert d["pixel_size_um"] == pytest.approx(0.598, abs=1e-3)
    assert d["n_images"] == 6 and d["n_missing"] == 0 and d["missing_files"] == []
    assert [(c["id"], c["type"]) for c in d["channels"]][:2] == [(1, "Phase"), (2, "Brightfield")]
    assert d["channels"][1]["name"] == "Brightfield high"
    assert d["start_time"].startswith("2023-03-23T14:50:32")


def test_describe_v7() -> None:
    m = read_index(FIXTURES / "harmony-v7")
    d = describe(m)
    json.dumps(d)
    assert d["harmony_version"] == "7"
    assert d["brightfield_channel"] == m.brightfield_channel()
    assert d["image_size"] == [2160, 2160]
    assert d["pixel_size_um"] == pytest.approx(0.2967, abs=1e-4)
    assert d["n_images"] == 7 and d["n_missing"] == 7 and len(d["missing_files"]) == 7
    assert len(d["channels"]) == 7
    text = format_text(d)
    assert "240624_WES_Perturbs_n_densities_1.1" in text
    assert "7 listed, 7 missing" in text
    assert f"channel {m.brightfield_channel()}" in text
    assert "r01c01f01p01-ch1sk1fk1fl1.tiff" in text


def test_format_text_v5() -> None:
    text = format_text(describe(read_index(FIXTURES / "harmony-v5")))
    assert "BR00122249" in text and "version 5" in text
    assert "1080 x 1080 px" in text and "0.5980 µm/px" in text
    assert "brightfield  channel 2" in text and "Brightfield high" in text
    assert "missing files" not in text


def test_no_brightfield_and_many_missing(tmp_path: Path) -> None:
    start = datetime(2024, 1, 1, 9, 0, tzinfo=timezone.utc)
    records = [
        ImageRecord(
            row=1, col=c, field=f, plane=1, timepoint=0, channel=1,
            pixels=np.zeros((8, 8), np.uint16), position_x_m=0.0, position_y_m=0.0, position_z_m=0.0,
            abs_time=start + timedelta(seconds=c),
        )
        for c in range(1, 5)
        for f in (1, 2, 3, 5)
    ]
    write_measurement(
        tmp_path, plate_id="P1", measurement_id="M1", start_time=start,
        channels=[Channel(1, "Alexa 488", "Fluorescence")], images=records, pixel_size_m=1.2e-6,
    )
    for tiff in (tmp_path / "Images").glob("*.tiff"):
        tiff.unlink()
    d = describe(read_index(tmp_path))
    json.dumps(d)
    assert d["brightfield_channel"] is None and d["brightfield_channels"] == []
    assert d["n_missing"] == 16 and d["pixel_size_um"] == pytest.approx(1.2)
    assert d["wells"] == ["A01", "A02", "A03", "A04"] and d["fields"] == [1, 2, 3, 5]
    text = format_text(d)
    assert "NONE" in text
    assert "fields       1-3, 5" in text
    assert f"... and {16 - MAX_LISTED} more" in text


def test_ints_ranges() -> None:
    assert _ints([]) == "none"
    assert _ints([4]) == "4"
    assert _ints([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"
