"""Tests of lcd_core.io.phenix against the real Harmony exports in shared/fixtures/phenix."""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile

from lcd_core.io.phenix import (
    IMAGES_SCHEMA,
    Channel,
    ImageRecord,
    Measurement,
    PhenixError,
    find_index,
    read_index,
    read_plane,
    read_stack,
    write_measurement,
)


def _fixtures() -> Path:
    shared = os.environ.get("LCD_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    path = base / "fixtures" / "phenix"
    assert path.is_dir(), f"Phenix fixtures not found at {path} (set LCD_SHARED to the shared/ folder)"
    return path


FIXTURES = _fixtures()
V5 = FIXTURES / "harmony-v5"
V7 = FIXTURES / "harmony-v7"
V5_BF = V5 / "r01c01f01p01-ch2sk1fk1fl1.tiff"
TZ = timezone(timedelta(hours=-4))


def _copy_index(tmp_path: Path, text: str | None = None, name: str = "Index.idx.xml") -> Path:
    """Copy (or rewrite) the v5 index into tmp_path; return the new index path."""
    src = (V5 / "Index.idx.xml").read_text(encoding="utf-8-sig")
    dst = tmp_path / name
    dst.write_text(src if text is None else text, encoding="utf-8")
    return dst


def _v5_text() -> str:
    return (V5 / "Index.idx.xml").read_text(encoding="utf-8-sig")


# --------------------------------------------------------------------------- real fixtures


def test_v5_index_metadata() -> None:
    m = read_index(V5)
    assert m.index_path == (V5 / "Index.idx.xml").resolve()
    assert m.root == V5.resolve()
    assert m.harmony_version == "5"
    assert m.plate_id == "BR00122249"
    assert m.measurement_id == "87abafd9-b3ba-44d1-96af-7ae5a38babfa"
    assert m.plate_type == "384 PerkinElmer CellCarrier Ultra"
    assert (m.plate_rows, m.plate_columns) == (16, 24)
    assert m.start_time == datetime(2023, 3, 23, 14, 50, 32, 625217, tzinfo=TZ)
    assert m.user == "Patrick"
    assert sorted(m.channels) == [1, 2, 3, 4, 5, 6]
    assert m.channels[2].name == "Brightfield high"
    assert m.channels[2].type == "Brightfield"
    assert m.channels[1].type == "Phase"
    assert m.channels[3].excitation_nm == 488 and m.channels[3].emission_nm == 706
    assert m.channels[2].binning == 2 and m.channels[2].objective_magnification == 20
    assert m.wells == ["A01"] and m.fields == [1] and m.planes == [1]
    assert m.timepoints == [0]  # Harmony 5 TimepointID is 0-based although the file says sk1


def test_v5_images_frame() -> None:
    m = read_index(V5 / "Index.idx.xml")
    df = m.images
    assert df.schema == pl.Schema(IMAGES_SCHEMA)
    assert df.height == 6
    row = df.filter(pl.col("channel") == 2).row(0, named=True)
    assert row["image_id"] == "0101K1F1P1R2"
    assert (row["row"], row["col"], row["well"], row["field"], row["plane"]) == (1, 1, "A01", 1, 1)
    assert row["channel_name"] == "Brightfield high" and row["channel_type"] == "Brightfield"
    assert row["url"] == V5_BF.name
    assert Path(row["path"]) == V5_BF.resolve()
    assert row["position_x_m"] == pytest.approx(-0.000322907)
    assert row["position_z_m"] == pytest.approx(-6e-6)
    assert row["resolution_x_m"] == pytest.approx(5.979760809567617e-07)
    assert (row["size_x"], row["size_y"]) == (1080, 1080)
    assert row["abs_time"] == datetime(2023, 3, 23, 14, 52, 40, 887000, tzinfo=TZ)
    assert row["abs_time"].tzinfo is not None
    assert df["exists"].all()
    assert m.missing_files() == []


def test_v5_brightfield_by_type() -> None:
    m = read_index(V5)
    assert m.brightfield_channel() == 2
    assert m.brightfield_channels() == [2]


def test_v5_read_plane_and_stack() -> None:
    m = read_index(V5)
    plane = read_plane(V5_BF)
    assert plane.shape == (1080, 1080) and plane.dtype == np.uint16
    assert 0 < plane.mean() < 65535
    stack = read_stack(m, "A01", 1, 0)
    assert stack.shape == (1, 1080, 1080) and stack.dtype == np.uint16
    np.testing.assert_array_equal(stack[0], plane)
    phase = read_stack(m, "a1", field=1, timepoint=0, channel=1)
    assert not np.array_equal(phase[0], plane)


def test_v7_index_metadata_and_missing_files() -> None:
    m = read_index(V7)
    assert m.index_path.name == "Index.xml"
    assert m.harmony_version == "7"
    assert m.plate_id == "240624_WES_Perturbs_n_densities_1.1"
    assert (m.plate_rows, m.plate_columns) == (8, 12)
    assert m.plate_type == "96 PerkinElmer CellCarrier Ultra"
    assert len(m.channels) == 7
    types = {c.id: c.type for c in m.channels.values()}
    expected = [cid for cid, t in types.items() if t.lower() == "brightfield"]
    assert len(expected) == 1
    assert m.brightfield_channel() == expected[0]
    # Harmony 7 keeps ChannelName/Type/size out of <Image>: they come from the channel map.
    assert m.images["channel_type"].null_count() == 0
    assert set(m.images["size_x"].to_list()) == {2160}
    assert m.images["resolution_x_m"][0] == pytest.approx(2.96688132474701e-07)
    assert m.timepoints == [1]  # Harmony 7 TimepointID is 1-based
    assert m.images.height == 7
    assert not m.images["exists"].any()
    missing = m.missing_files()
    assert len(missing) == 7
    assert all(p.parent == V7.resolve() for p in missing)


def test_v7_read_stack_names_missing_file() -> None:
    m = read_index(V7)
    bf = m.brightfield_channel()
    with pytest.raises(PhenixError) as exc:
        read_stack(m, "A01", 1, 1)
    msg = str(exc.value)
    assert f"r01c01f01p01-ch{bf}sk1fk1fl1.tiff" in msg
    assert "well A01" in msg and "field 1" in msg


def test_namespace_agnostic_and_index_locations(tmp_path: Path) -> None:
    text = _v5_text().replace("http://www.perkinelmer.com/PEHH/HarmonyV5", "urn:example:HarmonyV6")
    images = tmp_path / "meas" / "Images"
    images.mkdir(parents=True)
    _copy_index(images, text)
    m = read_index(tmp_path / "meas")
    assert m.harmony_version == "6"
    assert m.index_path == (images / "Index.idx.xml").resolve()
    assert read_index(images).index_path == m.index_path
    assert m.brightfield_channel() == 2 and m.images.height == 6

    no_ns = re.sub(r'\sxmlns="[^"]+"', "", _v5_text())
    ref = _copy_index(tmp_path, no_ns, name="Index.ref.xml")
    assert find_index(tmp_path) == ref
    assert read_index(tmp_path).harmony_version == "unknown"


def test_find_index_errors(tmp_path: Path) -> None:
    with pytest.raises(PhenixError, match="no such file"):
        find_index(tmp_path / "nowhere")
    with pytest.raises(PhenixError) as exc:
        read_index(tmp_path)
    assert str(tmp_path) in str(exc.value) and "Index.idx.xml" in str(exc.value)


# --------------------------------------------------------------------------- bad input


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    text = _v5_text()
    idx = _copy_index(tmp_path, text[: len(text) // 2])
    with pytest.raises(PhenixError) as exc:
        read_index(tmp_path)
    msg = str(exc.value)
    assert str(idx) in msg and "line" in msg


def test_not_a_harmony_index(tmp_path: Path) -> None:
    idx = _copy_index(tmp_path, "<?xml version='1.0'?><Something/>")
    with pytest.raises(PhenixError, match="not a Harmony index") as exc:
        read_index(idx)
    assert str(idx) in str(exc.value)


def test_image_missing_required_element_names_image(tmp_path: Path) -> None:
    text = _v5_text()
    start = text.index("<id>0101K1F1P1R3</id>")
    end = text.index("</Image>", start)
    block = text[start:end]
    text = text[:start] + re.sub(r"\s*<PositionY[^>]*>[^<]*</PositionY>", "", block) + text[end:]
    idx = _copy_index(tmp_path, text)
    with pytest.raises(PhenixError) as exc:
        read_index(tmp_path)
    msg = str(exc.value)
    assert "0101K1F1P1R3" in msg and "PositionY" in msg and str(idx) in msg


def test_image_without_channel_description(tmp_path: Path) -> None:
    text = re.sub(r"\s*<ChannelType>Phase</ChannelType>", "", _v5_text())
    _copy_index(tmp_path, text)
    with pytest.raises(PhenixError) as exc:
        read_index(tmp_path)
    assert "0101K1F1P1R1" in str(exc.value) and "ChannelType" in str(exc.value)


def test_naive_abstime_rejected(tmp_path: Path) -> None:
    text = _v5_text().replace("2023-03-23T14:52:40.887-04:00", "2023-03-23T14:52:40.887")
    _copy_index(tmp_path, text)
    with pytest.raises(PhenixError, match="0101K1F1P1R2.*no UTC offset"):
        read_index(tmp_path)


def test_duplicate_image_slot(tmp_path: Path) -> None:
    text = _v5_text().replace("<ChannelID>3</ChannelID>", "<ChannelID>2</ChannelID>")
    _copy_index(tmp_path, text)
    with pytest.raises(PhenixError, match="more than once") as exc:
        read_index(tmp_path)
    assert "0101K1F1P1R2" in str(exc.value) and "0101K1F1P1R3" in str(exc.value)


def test_index_referring_to_absent_files(tmp_path: Path) -> None:
    shutil.copy(V5 / "Index.idx.xml", tmp_path / "Index.idx.xml")
    shutil.copy(V5 / "r01c01f01p01-ch1sk1fk1fl1.tiff", tmp_path)
    m = read_index(tmp_path)
    missing = m.missing_files()
    assert len(missing) == 5
    assert tmp_path.resolve() / V5_BF.name in missing
    with pytest.raises(PhenixError) as exc:
        read_stack(m, "A01", 1, 0)
    msg = str(exc.value)
    assert "missing" in msg and V5_BF.name in msg and "well A01" in msg and "field 1" in msg
    assert read_stack(m, "A01", 1, 0, channel=1).shape == (1, 1080, 1080)


def test_truncated_tiff(tmp_path: Path) -> None:
    shutil.copy(V5 / "Index.idx.xml", tmp_path / "Index.idx.xml")
    data = V5_BF.read_bytes()
    cut = tmp_path / V5_BF.name
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PhenixError) as exc:
        read_plane(cut)
    assert str(cut) in str(exc.value)
    m = read_index(tmp_path)
    with pytest.raises(PhenixError) as exc:
        read_stack(m, "A01", 1, 0)
    msg = str(exc.value)
    assert V5_BF.name in msg and "well A01" in msg and "field 1" in msg and "plane 1" in msg


def test_truncated_tiff_with_leading_ifd(tmp_path: Path) -> None:
    # tifffile writes the IFD before the pixel data: cutting the end leaves a valid header.
    path = tmp_path / "plane.tiff"
    tifffile.imwrite(path, np.arange(256 * 256, dtype=np.uint16).reshape(256, 256), compression="lzw")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(PhenixError, match="truncated") as exc:
        read_plane(path)
    assert str(path) in str(exc.value)


def test_corrupt_tiff(tmp_path: Path) -> None:
    bad = tmp_path / "r01c01f01p01-ch2sk1fk1fl1.tiff"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(PhenixError) as exc:
        read_plane(bad)
    assert str(bad) in str(exc.value)


def test_missing_plane_file(tmp_path: Path) -> None:
    with pytest.raises(PhenixError, match="missing") as exc:
        read_plane(tmp_path / "absent.tiff")
    assert "absent.tiff" in str(exc.value)


def test_non_2d_or_non_integer_tiff(tmp_path: Path) -> None:
    floats = tmp_path / "float.tiff"
    tifffile.imwrite(floats, np.zeros((8, 8), np.float32))
    with pytest.raises(PhenixError, match="integer") as exc:
        read_plane(floats)
    assert str(floats) in str(exc.value)
    rgb = tmp_path / "rgb.tiff"
    tifffile.imwrite(rgb, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(PhenixError, match="2-D") as exc:
        read_plane(rgb)
    assert str(rgb) in str(exc.value)
    small = tmp_path / "u8.tiff"
    tifffile.imwrite(small, np.full((4, 5), 7, np.uint8))
    out = read_plane(small)
    assert out.dtype == np.uint16 and out.shape == (4, 5) and int(out[0, 0]) == 7


def test_no_brightfield_channel(tmp_path: Path) -> None:
    text = _v5_text().replace("<ChannelType>Brightfield</ChannelType>", "<ChannelType>Phase</ChannelType>")
    idx = _copy_index(tmp_path, text)
    m = read_index(tmp_path)
    assert m.brightfield_channels() == []
    with pytest.raises(PhenixError) as exc:
        m.brightfield_channel()
    msg = str(exc.value)
    assert str(idx) in msg and "'Brightfield high' (Phase)" in msg and "Alexa 488" in msg
    with pytest.raises(PhenixError, match="Brightfield"):
        read_stack(m, "A01", 1, 0)


# --------------------------------------------------------------------------- writer


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


def test_many_images_parse(tmp_path: Path) -> None:
    """A few thousand images (text-generated from the v5 fixture) parse into matching columns."""
    text = _v5_text()
    head, rest = text.split("<Images>")
    block = re.search(r"    <Image Version=\"1\">.*?</Image>\n", rest, re.S)
    assert block is not None
    parts = []
    for row in range(1, 17):
        for col in range(1, 25):
            for plane in range(1, 4):
                parts.append(
                    block.group(0)
                    .replace("<id>0101K1F1P1R1</id>", f"<id>{row:02d}{col:02d}K1F1P{plane}R1</id>")
                    .replace("<Row>1</Row>", f"<Row>{row}</Row>")
                    .replace("<Col>1</Col>", f"<Col>{col}</Col>")
                    .replace("<PlaneID>1</PlaneID>", f"<PlaneID>{plane}</PlaneID>")
                    .replace("r01c01f01p01-ch1", f"r{row:02d}c{col:02d}f01p{plane:02d}-ch1")
                )
    _copy_index(tmp_path, head + "<Images>\n" + "".join(parts) + "  </Images>\n</EvaluationInputData>\n")
    m = read_index(tmp_path)
    assert m.images.height == 16 * 24 * 3
    assert len(m.wells) == 384 and m.wells[0] == "A01" and m.wells[-1] == "P24"
    assert m.planes == [1, 2, 3]
    assert len(m.missing_files()) == m.images.height
    b07 = m.images.filter((pl.col("well") == "B07") & (pl.col("plane") == 3)).row(0, named=True)
    assert b07["url"] == "r02c07f01p03-ch1sk1fk1fl1.tiff" and b07["image_id"] == "0207K1F1P3R1"
