"""Tests of lcd_core.synth.phenix_writer: written exports read back with lcd_core.io.phenix / io.planes."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile

from lcd_core.io.phenix import Channel, Measurement, PhenixError, read_index
from lcd_core.io.planes import read_stack
from lcd_core.synth.phenix_writer import ImageRecord, write_measurement
from lcd_assets_tests.conftest import phenix_fixtures


V5 = phenix_fixtures() / "harmony-v5"
TZ = timezone(timedelta(hours=-4))


def _v5_text() -> str:
    return (V5 / "Index.idx.xml").read_text(encoding="utf-8-sig")


BF = Channel(id=3, name="Brightfield low", type="Brightfield", exposure_s=0.05)
DPC = Channel(id=1, name="Digital Phase Contrast", type="Phase")
START = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=TZ)


def _records(
    wells: list[tuple[int, int]],
    fields: int,
    planes: int,
    channels: list[int],
    seed: int = 0,
    shape: tuple[int, int] = (48, 64),
) -> list[ImageRecord]:
    rng = np.random.default_rng(seed)
    out: list[ImageRecord] = []
    for row, col in wells:
        for fld in range(1, fields + 1):
            for plane in range(1, planes + 1):
                for ch in channels:
                    out.append(
                        ImageRecord(
                            row=row, col=col, field=fld, plane=plane, timepoint=0, channel=ch,
                            pixels=rng.integers(0, 65536, shape, dtype=np.uint16),
                            position_x_m=1.25e-4 * fld, position_y_m=-3.3e-4 * col,
                            position_z_m=(plane - 2) * 3.6e-6,
                            abs_time=START + timedelta(seconds=len(out) * 0.137),
                        )
                    )
    return out


def _write(out: Path, records: list[ImageRecord], channels: list[Channel] | None = None) -> Path:
    return write_measurement(
        out,
        plate_id="LCD-R01-L02",
        measurement_id="meas-0001",
        start_time=START,
        channels=channels or [DPC, BF],
        images=(r for r in records),  # a generator: the writer must stream
        pixel_size_m=5.98e-7,
    )


def test_write_read_round_trip(tmp_path: Path) -> None:
    records = _records([(2, 7), (16, 24)], fields=2, planes=3, channels=[1, 3])
    idx = _write(tmp_path / "m", records)
    assert idx == tmp_path / "m" / "Images" / "Index.idx.xml"
    assert not list(idx.parent.glob("*.tmp"))
    m = read_index(tmp_path / "m")
    assert m.harmony_version == "5"
    assert (m.plate_id, m.measurement_id, m.start_time) == ("LCD-R01-L02", "meas-0001", START)
    assert (m.plate_type, m.plate_rows, m.plate_columns) == ("384 PerkinElmer CellCarrier Ultra", 16, 24)
    assert m.user == "lcd-synth"
    assert {c.id: (c.name, c.type) for c in m.channels.values()} == {
        1: ("Digital Phase Contrast", "Phase"),
        3: ("Brightfield low", "Brightfield"),
    }
    assert m.channels[3].exposure_s == pytest.approx(0.05)
    assert m.brightfield_channel() == 3
    assert m.wells == ["B07", "P24"] and m.fields == [1, 2] and m.planes == [1, 2, 3] and m.timepoints == [0]
    assert m.images.height == len(records) and m.images["exists"].all()
    assert set(m.images["size_x"].to_list()) == {64} and set(m.images["size_y"].to_list()) == {48}
    assert set(m.images["resolution_x_m"].to_list()) == {5.98e-7}

    for rec in records:
        row = m.images.filter(
            (pl.col("row") == rec.row) & (pl.col("col") == rec.col) & (pl.col("field") == rec.field)
            & (pl.col("plane") == rec.plane) & (pl.col("channel") == rec.channel)
        ).row(0, named=True)
        assert row["url"] == f"r{rec.row:02d}c{rec.col:02d}f{rec.field:02d}p{rec.plane:02d}-ch{rec.channel}sk1fk1fl1.tiff"
        assert row["image_id"] == f"{rec.row:02d}{rec.col:02d}K1F{rec.field}P{rec.plane}R{rec.channel}"
        assert (row["position_x_m"], row["position_y_m"], row["position_z_m"]) == (
            rec.position_x_m, rec.position_y_m, rec.position_z_m,
        )
        assert row["abs_time"] == rec.abs_time

    stack = read_stack(m, "P24", 2, 0)
    expected = [r.pixels for r in records if (r.row, r.col, r.field, r.channel) == (16, 24, 2, 3)]
    assert stack.shape == (3, 48, 64) and stack.dtype == np.uint16
    np.testing.assert_array_equal(stack, np.stack(expected))


def test_written_tiffs_are_lzw_with_predictor(tmp_path: Path) -> None:
    _write(tmp_path, _records([(1, 1)], fields=1, planes=1, channels=[3]))
    path = tmp_path / "Images" / "r01c01f01p01-ch3sk1fk1fl1.tiff"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.compression == tifffile.COMPRESSION.LZW
        assert page.predictor == tifffile.PREDICTOR.HORIZONTAL
        assert page.dtype == np.uint16 and page.shape == (48, 64)


def test_writer_index_element_set_matches_fixture(tmp_path: Path) -> None:
    idx = _write(tmp_path, _records([(1, 1)], fields=1, planes=1, channels=[3]))

    def image_tags(text: str) -> list[str]:
        block = re.search(r"<Image Version=\"1\">(.*?)</Image>", text, re.S)
        assert block is not None
        return re.findall(r"<(\w+)[ >]", block.group(1))

    assert image_tags(idx.read_text()) == image_tags(_v5_text())
    assert 'xmlns="http://www.perkinelmer.com/PEHH/HarmonyV5"' in idx.read_text()


def test_writer_failure_leaves_no_index(tmp_path: Path) -> None:
    records = _records([(1, 1)], fields=1, planes=2, channels=[3])
    _write(tmp_path, records)
    assert (tmp_path / "Images" / "Index.idx.xml").exists()

    def broken() -> object:
        yield records[0]
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_measurement(
            tmp_path, plate_id="p", measurement_id="m", start_time=START, channels=[BF],
            images=broken(), pixel_size_m=1e-6,
        )
    assert not (tmp_path / "Images" / "Index.idx.xml").exists()


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"pixels": np.zeros((4, 4), np.float32)}, "2-D uint16"),
        ({"pixels": np.zeros((2, 4, 4), np.uint16)}, "2-D uint16"),
        ({"channel": 9}, "channel 9 not in channels"),
        ({"row": 17}, "outside a 16x24 plate"),
        ({"abs_time": datetime(2024, 1, 1)}, "timezone-aware"),
    ],
)
def test_writer_rejects_bad_records(tmp_path: Path, change: dict[str, object], pattern: str) -> None:
    rec = _records([(1, 1)], fields=1, planes=1, channels=[3])[0]
    for key, value in change.items():
        setattr(rec, key, value)
    with pytest.raises(PhenixError, match=pattern):
        _write(tmp_path, [rec])


def test_writer_rejects_duplicates(tmp_path: Path) -> None:
    rec = _records([(1, 1)], fields=1, planes=1, channels=[3])[0]
    with pytest.raises(PhenixError, match="0101K1F1P1R3: written twice"):
        _write(tmp_path, [rec, rec])


def test_missing_plane_in_stack(tmp_path: Path) -> None:
    records = [
        r for r in _records([(2, 3)], fields=2, planes=3, channels=[3])
        if not (r.field == 2 and r.plane == 2)
    ]
    _write(tmp_path, records)
    m = read_index(tmp_path)
    assert read_stack(m, "B03", 1, 0).shape == (3, 48, 64)
    with pytest.raises(PhenixError) as exc:
        read_stack(m, "B03", 2, 0)
    msg = str(exc.value)
    assert "well B03" in msg and "field 2" in msg and "plane(s) 2 missing" in msg and "Index.idx.xml" in msg
    with pytest.raises(PhenixError, match="no images for well B03, field 5"):
        read_stack(m, "B03", 5, 0)
    with pytest.raises(PhenixError, match="no images for well C03"):
        read_stack(m, "C03", 1, 0)


def test_several_brightfield_channels_pick_lowest(tmp_path: Path) -> None:
    bf_a = Channel(id=4, name="BF A", type="Brightfield")
    bf_b = Channel(id=2, name="BF B", type="brightfield")
    _write(tmp_path, _records([(1, 1)], fields=1, planes=1, channels=[4, 2]), channels=[bf_a, bf_b])
    m: Measurement = read_index(tmp_path)
    assert m.brightfield_channels() == [2, 4]
    assert m.brightfield_channel() == 2
