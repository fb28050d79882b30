"""Tests of lcd_core.io.phenix (the index reader) against the real Harmony exports in shared/fixtures/phenix
(pixels: test_io_planes.py; written exports: test_synth_phenix_writer.py)."""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from lcd_core.io.phenix import IMAGES_SCHEMA, PhenixError, find_index, read_index
from lcd_assets_tests.conftest import phenix_fixtures


FIXTURES = phenix_fixtures()
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

    ref = _copy_index(tmp_path, name="Index.ref.xml")
    assert find_index(tmp_path) == ref
    assert read_index(tmp_path).harmony_version == "5"


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


def test_no_brightfield_channel(tmp_path: Path) -> None:
    text = _v5_text().replace("<ChannelType>Brightfield</ChannelType>", "<ChannelType>Phase</ChannelType>")
    idx = _copy_index(tmp_path, text)
    m = read_index(tmp_path)
    assert m.brightfield_channels() == []
    with pytest.raises(PhenixError) as exc:
        m.brightfield_channel()
    msg = str(exc.value)
    assert str(idx) in msg and "'Brightfield high' (Phase)" in msg and "Alexa 488" in msg


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


@pytest.mark.parametrize("url", ["/etc/passwd", "../other/r01c01f01p01-ch1sk1fk1fl1.tiff", "C:\\\\data\\\\x.tiff",
                                 "sub/../../x.tiff"])
def test_an_image_url_outside_the_measurement_folder_is_refused(tmp_path: Path, url: str) -> None:
    src = FIXTURES / "harmony-v5"
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    index = dst / "Index.idx.xml"
    text = index.read_text(encoding="utf-8-sig")
    first = re.search(r"<URL>([^<]+)</URL>", text).group(1)
    index.write_text(text.replace(f"<URL>{first}</URL>", f"<URL>{url}</URL>", 1), encoding="utf-8")
    with pytest.raises(PhenixError, match=r"image .*: URL .* points outside the measurement folder"):
        read_index(dst)


def test_backslashes_in_a_url_are_separators(tmp_path: Path) -> None:
    dst = tmp_path / "m"
    shutil.copytree(FIXTURES / "harmony-v5", dst)
    index = dst / "Index.idx.xml"
    text = index.read_text(encoding="utf-8-sig")
    first = re.search(r"<URL>([^<]+)</URL>", text).group(1)
    (dst / "sub").mkdir()
    shutil.move(dst / first, dst / "sub" / first)
    index.write_text(text.replace(f"<URL>{first}</URL>", f"<URL>sub\\{first}</URL>", 1), encoding="utf-8")
    images = read_index(dst).images
    row = images.filter(images["url"] == f"sub\\{first}")
    assert row["exists"].to_list() == [True] and row["path"][0] == str((dst / "sub" / first).resolve())


# --------------------------------------------------------------------------- issue 22: index kinds


def test_two_plates_are_refused_naming_both(tmp_path: Path) -> None:
    text = _v5_text()
    start, end = text.index("<Plate>"), text.index("</Plate>") + len("</Plate>")
    second = text[start:end].replace("BR00122249", "BR00999999")
    idx = _copy_index(tmp_path, text[:end] + second + text[end:])
    with pytest.raises(PhenixError, match="more than one <Plate>") as exc:
        read_index(tmp_path)
    msg = str(exc.value)
    assert str(idx) in msg and "BR00122249" in msg and "BR00999999" in msg


@pytest.mark.parametrize("replacement", ["<MeasurementID> </MeasurementID>", "<MeasurementID />", ""])
def test_empty_or_missing_measurement_id_is_refused(tmp_path: Path, replacement: str) -> None:
    text = re.sub(r"<MeasurementID>[^<]*</MeasurementID>", replacement, _v5_text())
    idx = _copy_index(tmp_path, text)
    with pytest.raises(PhenixError, match="empty or missing MeasurementID") as exc:
        read_index(tmp_path)
    assert str(idx) in str(exc.value) and "BR00122249" in str(exc.value)


@pytest.mark.parametrize("namespace", ["http://www.perkinelmer.com/PEHH/HarmonyV9", "urn:example:index", None])
def test_unknown_harmony_version_is_refused(tmp_path: Path, namespace: str | None) -> None:
    v5 = "http://www.perkinelmer.com/PEHH/HarmonyV5"
    text = _v5_text()
    text = re.sub(r'\sxmlns="[^"]+"', "", text) if namespace is None else text.replace(v5, namespace)
    idx = _copy_index(tmp_path, text)
    with pytest.raises(PhenixError, match=r"supports Harmony 5, 6, 7") as exc:
        read_index(tmp_path)
    msg = str(exc.value)
    assert str(idx) in msg and (namespace or "(none)") in msg
    assert ("Harmony version 9" in msg) == (namespace is not None and namespace.endswith("V9"))


_ENTITIES = {
    "external entity": '<!DOCTYPE EvaluationInputData [<!ENTITY secret SYSTEM "file://{secret}">]>',
    "external DTD": '<!DOCTYPE EvaluationInputData SYSTEM "file://{secret}">',
    "billion laughs": "<!DOCTYPE EvaluationInputData [<!ENTITY a 'lol'>"
    + "".join(f"<!ENTITY {b} '{('&' + a + ';') * 10}'>" for a, b in zip("abcdefghi", "bcdefghij")) + "]>",
}


@pytest.mark.parametrize("kind,encoding", [("external entity", "utf-8"), ("external DTD", "utf-8"),
                                           ("billion laughs", "utf-8"), ("external entity", "utf-16")])
def test_entities_are_refused_before_parsing(tmp_path: Path, kind: str, encoding: str) -> None:
    """A DOCTYPE is refused at the prolog, in any encoding: no entity is declared, so no file
    outside is read and nothing expands."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT", encoding="utf-8")
    doctype = _ENTITIES[kind].format(secret=secret)
    ref = "&j;" if "laughs" in kind else "&secret;" if "entity" in kind else "Patrick"
    text = _v5_text().replace("?>", "?>\n" + doctype, 1).replace("<User>Patrick</User>", f"<User>{ref}</User>")
    (tmp_path / "m").mkdir()
    idx = tmp_path / "m" / "Index.idx.xml"
    idx.write_text(text.replace('encoding="utf-8"', f'encoding="{encoding}"'), encoding=encoding)
    with pytest.raises(PhenixError, match="DOCTYPE.*DTDs and entities are refused") as exc:
        read_index(tmp_path / "m")
    msg = str(exc.value)
    assert str(idx.resolve()) in msg and "SECRET-CONTENT" not in msg
    assert ("SYSTEM" in msg) == (kind == "external DTD")
