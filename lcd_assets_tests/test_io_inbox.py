"""Tests of lcd_core.io.inbox: completeness, stability and timepoint resolution of measurement folders.

(The sensor built on it is tested end to end in test_sensors.py.)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lcd_core.io.inbox import find_measurements, locate, resolve_timepoints, survey
from lcd_core.io.phenix import Channel, read_index
from lcd_core.io.platemap import Screen, ScreenConfig
from lcd_core.io.tables import PlateMapError
from lcd_core.synth.phenix_writer import ImageRecord, write_measurement

DOSED = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)
BF = Channel(1, "Brightfield", "Brightfield")


@pytest.fixture()
def screen() -> Screen:
    config = ScreenConfig("mini", "24-well", 4, 6, (4.0, 8.0), "DMSO", 0, 1.0)
    registry = pl.DataFrame(
        {"barcode": ["P1"], "replica": ["R01"], "layout": ["L01"], "plate": ["R01-L01"], "dose_um": [10.0],
         "dose": ["10uM"], "dosed_at": [DOSED]},
        schema_overrides={"dosed_at": pl.Datetime("us", "UTC")},
    )
    return Screen(config, pl.DataFrame(), pl.DataFrame(), registry)


def _measure(folder: Path, barcode: str, hours: list[float], start_h: float = 4.0) -> Path:
    """A measurement of two wells per timepoint, imaged ``hours`` after dosing (TimepointID 0, 1, ...)."""
    records = [
        ImageRecord(1, col, 1, 1, tid, 1, np.zeros((4, 4), np.uint16), 0.0, 0.0, 0.0,
                    DOSED + timedelta(hours=h, seconds=col))
        for tid, h in enumerate(hours)
        for col in (1, 2)
    ]
    write_measurement(folder, plate_id=barcode, measurement_id=folder.name, start_time=DOSED + timedelta(hours=start_h),
                      channels=[BF], images=records, pixel_size_m=1e-6, plate_rows=4, plate_columns=6)
    return folder


def test_timepoints_snap_to_the_screen(screen: Screen, tmp_path: Path) -> None:
    m = read_index(_measure(tmp_path / "m", "P1", [4.2, 7.5]))
    got = resolve_timepoints(m, screen)
    assert [(t.plate, t.timepoint, t.timepoint_id, t.dose, t.n_images) for t in got] == [
        ("R01-L01", "04h", 0, "10uM", 2),
        ("R01-L01", "08h", 1, "10uM", 2),
    ]


def test_timepoint_out_of_tolerance_or_unregistered(screen: Screen, tmp_path: Path) -> None:
    with pytest.raises(PlateMapError, match="no configured timepoint"):
        resolve_timepoints(read_index(_measure(tmp_path / "a", "P1", [6.0])), screen)
    with pytest.raises(PlateMapError, match="not in the run registry"):
        resolve_timepoints(read_index(_measure(tmp_path / "b", "P9", [4.0])), screen)


def test_survey_ready_only_when_complete_and_settled(screen: Screen, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    m = _measure(inbox / "m1", "P1", [4.0])
    _measure(inbox / "m2", "P9", [4.0])
    (inbox / "junk").mkdir()
    assert [p.name for p in find_measurements(inbox)] == ["m1", "m2"]
    now = datetime.now().timestamp() + 60
    first = survey(inbox, screen, now=now)
    assert set(first.unstable) == {"m1", "m2"} and not first.ready  # no previous look yet
    second = survey(inbox, screen, previous=first.fingerprints, now=now)
    assert [t.barcode for t in second.ready] == ["P1"] and set(second.unregistered) == {"m2"}
    assert survey(inbox, screen, previous=first.fingerprints, now=now, skip={"m1", "m2"}).fingerprints == {}
    next(m.glob("Images/*.tiff")).unlink()
    third = survey(inbox, screen, previous=second.fingerprints, now=now)
    assert "1 of 2 listed files missing" in third.incomplete["m1"] and not third.ready


def test_survey_reports_unreadable_index(screen: Screen, tmp_path: Path) -> None:
    (tmp_path / "bad" / "Images").mkdir(parents=True)
    (tmp_path / "bad" / "Images" / "Index.idx.xml").write_text("<not xml")
    assert "malformed XML" in survey(tmp_path, screen).invalid["bad"]


def test_locate_latest_measurement_wins(screen: Screen, tmp_path: Path) -> None:
    _measure(tmp_path / "early", "P1", [4.0], start_h=4.0)
    _measure(tmp_path / "late", "P1", [4.5], start_h=4.5)
    assert locate(tmp_path, screen, "R01-L01", "04h").path.parent.name == "late"  # path: the index folder
    with pytest.raises(FileNotFoundError, match="plate R01-L01 at timepoint 08h"):
        locate(tmp_path, screen, "R01-L01", "08h")


def test_two_timepoint_ids_snapping_to_one_timepoint_are_reported_not_launched(screen: Screen, tmp_path: Path) -> None:
    folder = _measure(tmp_path / "inbox" / "twice", "P1", [3.8, 4.4, 8.0])  # TimepointIDs 0 and 1 are both 04h
    index = folder / "Images" / "Index.idx.xml"
    with pytest.raises(PlateMapError) as info:
        resolve_timepoints(read_index(folder), screen)
    assert f"{index}: measurement 'twice': TimepointIDs 0, 1 all snap to screen timepoint 04h" in str(info.value)
    now = datetime.now().timestamp() + 60
    first = survey(tmp_path / "inbox", screen, now=now)
    second = survey(tmp_path / "inbox", screen, previous=first.fingerprints, now=now)
    assert not second.ready and "TimepointIDs 0, 1 all snap to screen timepoint 04h" in second.unregistered["twice"]


def test_barcode_found_across_unicode_form_invisible_characters_and_case(tmp_path: Path) -> None:
    nfc = "PLAQUE-\u00c901"  # É composed
    registry = pl.DataFrame(
        {"barcode": [nfc], "replica": ["R01"], "layout": ["L01"], "plate": ["R01-L01"], "dose_um": [10.0],
         "dose": ["10uM"], "dosed_at": [DOSED]},
        schema_overrides={"dosed_at": pl.Datetime("us", "UTC")},
    )
    screen = Screen(ScreenConfig("mini", "24-well", 4, 6, (4.0, 8.0), "DMSO", 0, 1.0), pl.DataFrame(),
                    pl.DataFrame(), registry)
    spellings = ("PLAQUE-E\u030101", "PLAQUE-\u00c9\u200b01", "plaque-\u00e901", "\ufeffＰＬＡＱＵＥ-\u00c901")
    for spelled in spellings:  # NFD, a zero-width space, lower case, a BOM and full-width letters
        (mt,) = resolve_timepoints(read_index(_measure(tmp_path / ascii(spelled).strip("'"), spelled, [4.0])), screen)
        assert (mt.plate, mt.barcode) == ("R01-L01", nfc), ascii(spelled)
    with pytest.raises(PlateMapError, match="not in the run registry"):
        screen.plate_for_barcode("PLAQUE-E01")  # a different letter is a different plate
