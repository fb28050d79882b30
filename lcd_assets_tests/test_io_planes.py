"""Tests of lcd_core.io.planes: reading planes and z-stacks of the real Harmony exports, and bad TIFFs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from lcd_core.io.phenix import PhenixError, read_index
from lcd_core.io.planes import read_plane, read_stack
from lcd_assets_tests.conftest import phenix_fixtures


V5 = phenix_fixtures() / "harmony-v5"
V7 = phenix_fixtures() / "harmony-v7"
V5_BF = V5 / "r01c01f01p01-ch2sk1fk1fl1.tiff"


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


def test_v7_read_stack_names_missing_file() -> None:
    m = read_index(V7)
    bf = m.brightfield_channel()
    with pytest.raises(PhenixError) as exc:
        read_stack(m, "A01", 1, 1)
    msg = str(exc.value)
    assert f"r01c01f01p01-ch{bf}sk1fk1fl1.tiff" in msg
    assert "well A01" in msg and "field 1" in msg


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


def test_no_brightfield_channel_in_stack(tmp_path: Path) -> None:
    text = (V5 / "Index.idx.xml").read_text(encoding="utf-8-sig")
    (tmp_path / "Index.idx.xml").write_text(
        text.replace("<ChannelType>Brightfield</ChannelType>", "<ChannelType>Phase</ChannelType>"), encoding="utf-8"
    )
    with pytest.raises(PhenixError, match="no channel has ChannelType 'Brightfield'"):
        read_stack(read_index(tmp_path), "A01", 1, 0)


def test_a_real_plane_of_another_size_than_the_index_is_refused(tmp_path: Path) -> None:
    text = (V5 / "Index.idx.xml").read_text(encoding="utf-8-sig")
    (tmp_path / "Index.idx.xml").write_text(text.replace("<ImageSizeX>1080</ImageSizeX>", "<ImageSizeX>2160</ImageSizeX>"),
                                            encoding="utf-8")
    shutil.copy(V5_BF, tmp_path)
    m = read_index(tmp_path)
    with pytest.raises(PhenixError, match="image is 1080 × 1080 px but the index says 2160 × 1080") as exc:
        read_stack(m, "A01", 1, 0)
    msg = str(exc.value)
    assert V5_BF.name in msg and "well A01" in msg and "plane 1" in msg
    assert read_plane(V5_BF, (1080, 1080)).shape == (1080, 1080)  # the real size, as the real index says
