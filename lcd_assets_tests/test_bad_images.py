"""Bad image files (issue 22) through the paths that read pixels: the tile stage
(``fov_paths`` → ``tile_measurement``, what the ``tiles`` asset runs) and ``read_stack``; each error
names the file, the well, the field and the plane. Exports are written small with the Harmony-5
writer, then one file is damaged; the index kinds are in test_io_phenix.py."""

from __future__ import annotations

import math
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile

from lcd_core.io.phenix import Channel, Measurement, PhenixError, read_index
from lcd_core.io.planes import read_plane, read_stack
from lcd_core.pipeline import acquisition as pipeline
from lcd_core.synth.phenix_writer import ImageRecord, image_file_name, write_measurement
from lcd_core.tiles import partition as acq
from lcd_core.tiles.preprocess import TileConfig

BF = Channel(id=1, name="Brightfield", type="Brightfield")
START = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
SIZE = 256
CONFIG = TileConfig(tile_size=224, binning=1)
WELLS = [(1, 1), (1, 2)]  # A01, A02


def _export(out: Path, planes: int = 3, fill: int | None = None) -> Measurement:
    """A 2-well, 1-field export of ``planes`` 256² brightfield planes (noise, or constant ``fill``)."""
    rng = np.random.default_rng(0)
    records = [
        ImageRecord(row=r, col=c, field=1, plane=p, timepoint=0, channel=BF.id,
                    pixels=(np.full((SIZE, SIZE), fill, np.uint16) if fill is not None
                            else rng.normal(1000, 30, (SIZE, SIZE)).astype(np.uint16)),
                    position_x_m=0.0, position_y_m=0.0, position_z_m=(p - 2) * 3.6e-6,
                    abs_time=START + timedelta(seconds=len(WELLS) * r + c + p))
        for r, c in WELLS for p in range(1, planes + 1)
    ]
    write_measurement(out, plate_id="BAD1", measurement_id="m-bad-1", start_time=START, channels=[BF],
                      images=records, pixel_size_m=6e-7, plate_rows=16, plate_columns=24)
    return read_index(out)


def _index(meas: Measurement) -> pl.DataFrame:
    """The measurement's images with the lineage columns ``image_index`` adds."""
    return meas.images.rename({"timepoint": "timepoint_id"}).with_columns(
        pl.lit("BAD1").alias("plate"), pl.lit("04h").alias("timepoint"), pl.lit("DMSO").alias("compound"))


def _fovs(meas: Measurement) -> pl.DataFrame:
    return acq.fov_paths(_index(meas), BF.id)


def _bomb(path: Path, side: int = 100_000) -> None:
    """A 1 kB TIFF whose header declares ``side`` × ``side`` 16-bit pixels in one deflate strip."""
    data = zlib.compress(b"\0" * (1 << 20), 9)
    tags = [(256, 4, side), (257, 4, side), (258, 3, 16), (259, 3, 8), (262, 3, 1), (273, 4, 0),
            (277, 3, 1), (278, 4, side), (279, 4, len(data))]
    data_at = 8 + 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\0" + struct.pack("<IH", 8, len(tags)))
    for tag, typ, value in tags:
        value = data_at if tag == 273 else value
        out += struct.pack("<HHI", tag, typ, 1) + (struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value))
    path.write_bytes(bytes(out + struct.pack("<I", 0) + data))


_KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "zero bytes": (lambda p: p.write_bytes(b""), "TIFF is empty"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(3).bytes(4096)), "cannot read TIFF"),
    "float32": (lambda p: tifffile.imwrite(p, np.ones((SIZE, SIZE), np.float32)), "dtype float32, expected integer"),
    "RGB": (lambda p: tifffile.imwrite(p, np.zeros((SIZE, SIZE, 3), np.uint8), photometric="rgb"), "RGB"),
    "multi-page": (lambda p: tifffile.imwrite(p, np.zeros((2, SIZE, SIZE), np.uint16)), "TIFF has 2 pages"),
    "other size than the index": (lambda p: tifffile.imwrite(p, np.zeros((224, SIZE), np.uint16)),
                                  f"image is {SIZE} × 224 px but the index says {SIZE} × {SIZE}"),
    "decompression bomb": (_bomb, "declares 100000 × 100000 px"),
}


@pytest.mark.parametrize("kind", list(_KINDS))
def test_a_bad_plane_is_named_by_the_tile_stage_and_read_stack(tmp_path: Path, kind: str) -> None:
    meas = _export(tmp_path / "m")
    bad = meas.root / image_file_name(1, 2, 1, 2, BF.id, 1)  # A02, field 1, plane 2
    damage, phrase = _KINDS[kind]
    damage(bad)
    with pytest.raises(PhenixError) as exc:
        pipeline.tile_measurement(_fovs(meas), CONFIG)
    msg = str(exc.value)
    assert phrase in msg and str(bad) in msg and "BAD1 × 04h, well A02, field 1" in msg
    with pytest.raises(PhenixError) as exc:
        read_stack(meas, "A02", 1, 0)
    msg = str(exc.value)
    assert phrase in msg and str(bad) in msg and "well A02, field 1" in msg and "plane 2" in msg
    assert read_stack(meas, "A01", 1, 0).shape == (3, SIZE, SIZE)  # the other well reads


def test_a_decompression_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.tiff"
    _bomb(bomb)
    assert bomb.stat().st_size < 2000
    tracemalloc.start()
    try:
        with pytest.raises(PhenixError, match="refused before reading") as exc:
            read_plane(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(bomb) in str(exc.value) and peak < 16 << 20  # 20 GB declared, < 16 MB touched


@pytest.mark.parametrize("planes", [2, 4])
def test_fovs_with_two_or_four_planes(tmp_path: Path, planes: int) -> None:
    """The blocking index check fails before any pixel is read, and the tile stage names the FOV."""
    meas = _export(tmp_path / "m", planes=planes)
    index = _index(meas)
    done = acq.index_completeness(index, pl.DataFrame({"well": ["A01", "A02"]}), BF.id)
    assert not done.passed and f"brightfield FOVs have {planes} planes" in done.summary()
    with pytest.raises(PhenixError, match=f"well A01, field 1: {planes} brightfield planes, the tiles need 3 or 1"):
        pipeline.tile_measurement(_fovs(meas), CONFIG)


def test_one_fov_lacking_a_plane(tmp_path: Path) -> None:
    meas = _export(tmp_path / "m")
    meas.images = meas.images.filter(~((pl.col("well") == "A02") & (pl.col("plane") == 3)))
    done = acq.index_completeness(_index(meas), pl.DataFrame({"well": ["A01", "A02"]}), BF.id)
    assert not done.passed and done.incomplete_fovs == ["A02/f1"]
    with pytest.raises(PhenixError, match="well A02, field 1: 2 brightfield planes"):
        pipeline.tile_measurement(_fovs(meas), CONFIG)
    with pytest.raises(PhenixError, match="well A02, field 1, .*plane.s. 3 missing"):
        read_stack(meas, "A02", 1, 0)


@pytest.mark.parametrize("fill,reason", [(0, "debris"), (65535, "saturated")])
def test_an_all_black_or_saturated_plate_fails_tile_qc(tmp_path: Path, fill: int, reason: str) -> None:
    """Every tile is rejected with a reason, the numbers stay finite and the partition's QC fails."""
    tiling = pipeline.tile_measurement(_fovs(_export(tmp_path / "m", fill=fill)), CONFIG)
    table = tiling.table
    assert table.height == 2 and not table["kept"].any() and set(table["qc_reason"]) == {reason}
    assert "expected_shape" not in table.columns and "paths" not in table.columns  # not lineage
    numbers = table.select(pl.col(pl.Float64, pl.Float32)).to_numpy()
    assert np.isfinite(numbers.astype(float)).all()
    qc = pipeline.tile_qc(table, (SIZE, SIZE), CONFIG, max_empty_fraction=0.25)
    assert not qc.passed and qc.empty_fovs == 2 and qc.rejected_by_reason == {reason: 2}
    assert not math.isnan(float(qc.per_fov["kept"].sum()))
