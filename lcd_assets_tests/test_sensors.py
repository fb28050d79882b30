"""The inbox sensor launches a complete, registered measurement exactly once."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import dagster as dg
import pytest

from lcd_assets.resources import LcdHome
from lcd_assets_tests.conftest import run_job


@pytest.fixture
def staged(lcd_home, monkeypatch):
    """The inbox emptied into a staging folder, from which tests drop measurements."""
    monkeypatch.setenv("LCD_INBOX_SETTLE_S", "0")
    staging = lcd_home / "staging"
    shutil.move(str(lcd_home / "inbox"), staging)
    (lcd_home / "inbox").mkdir()
    return staging


def _tick(defs, instance, lcd_home, cursor=None) -> SimpleNamespace:
    """One sensor evaluation, the way the daemon sees it: requests, partitions, cursor, skip."""
    sensor = defs.resolve_sensor_def("inbox_sensor")
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lcd": LcdHome(home=str(lcd_home))}, definitions=defs
    )
    out = sensor(ctx)
    if isinstance(out, dg.SkipReason):
        return SimpleNamespace(run_requests=[], dynamic_partitions_requests=[], cursor=ctx.cursor,
                               skip_message=out.skip_message)
    return SimpleNamespace(run_requests=out.run_requests, dynamic_partitions_requests=out.dynamic_partitions_requests,
                           cursor=out.cursor, skip_message=None)


def _drop(staging, lcd_home, name_part: str, skip_file: str | None = None):
    src = next(p for p in sorted(staging.iterdir()) if name_part in p.name)
    dst = lcd_home / "inbox" / src.name
    shutil.copytree(src, dst, ignore=(lambda d, names: [n for n in names if n == skip_file]) if skip_file else None)
    return src, dst


def test_complete_measurement_launched_once(defs, instance, lcd_home, staged):
    _drop(staged, lcd_home, "LCD-R01-L01")
    first = _tick(defs, instance, lcd_home)
    assert not first.run_requests  # first look: not yet known to be stable
    second = _tick(defs, instance, lcd_home, first.cursor)
    assert len(second.run_requests) == 1
    req = second.run_requests[0]
    assert req.partition_key.keys_by_dimension["plate"] == "R01-L01"
    assert req.run_key and "LCD-R01-L01" in req.tags["lcd/measurement"]
    added = {r.partitions_def_name: set(r.partition_keys) for r in second.dynamic_partitions_requests}
    assert added["plates"] == {"R01-L01"} and added["doses"] == {"0.625uM"}
    third = _tick(defs, instance, lcd_home, second.cursor)
    assert not third.run_requests


def test_ingested_measurement_not_relaunched_after_cursor_reset(defs, instance, lcd_home, staged):
    _drop(staged, lcd_home, "LCD-R02-L01")
    first = _tick(defs, instance, lcd_home)
    second = _tick(defs, instance, lcd_home, first.cursor)
    (req,) = second.run_requests
    for r in second.dynamic_partitions_requests:
        instance.add_dynamic_partitions(r.partitions_def_name, list(r.partition_keys))
    assert run_job(defs, "setup", instance).success
    assert run_job(defs, "acquisition", instance, req.partition_key, req.tags).success
    # a reset sensor (no cursor) sees the measurement again but knows it was ingested
    again = _tick(defs, instance, lcd_home, _tick(defs, instance, lcd_home).cursor)
    assert not again.run_requests


def test_incomplete_measurement_waits_then_launches(defs, instance, lcd_home, staged):
    src, dst = _drop(staged, lcd_home, "LCD-R01-L02")
    # remove one TIFF: the index lists a file that is not there yet
    victim = sorted((dst / "Images").glob("*.tiff"))[5]
    victim.unlink()
    t1 = _tick(defs, instance, lcd_home)
    t2 = _tick(defs, instance, lcd_home, t1.cursor)
    assert not t2.run_requests
    assert "waiting" in (t2.skip_message or "")
    shutil.copy2(src / "Images" / victim.name, victim)  # the microscope finishes writing
    t3 = _tick(defs, instance, lcd_home, t2.cursor)
    assert not t3.run_requests  # changed since the last look
    t4 = _tick(defs, instance, lcd_home, t3.cursor)
    assert len(t4.run_requests) == 1


def test_unregistered_barcode_reported_not_launched(defs, instance, lcd_home, staged):
    _, dst = _drop(staged, lcd_home, "LCD-R02-L02")
    index = dst / "Images" / "Index.idx.xml"
    index.write_text(index.read_text(encoding="utf-8-sig").replace("LCD-R02-L02", "UNKNOWN-99"), encoding="utf-8")
    t1 = _tick(defs, instance, lcd_home)
    t2 = _tick(defs, instance, lcd_home, t1.cursor)
    assert not t2.run_requests
    assert "1 unregistered" in (t2.skip_message or "")


def _edit_index(folder, old: str, new: str, count: int = 1) -> None:
    index = folder / "Images" / "Index.idx.xml"
    index.write_text(index.read_text(encoding="utf-8-sig").replace(old, new, count), encoding="utf-8")


def test_symlinked_inbox_and_measurement_folders_launch(defs, instance, lcd_home, staged, tmp_path):
    real_inbox = tmp_path / "microscope-share"
    (lcd_home / "inbox").rmdir()
    real_inbox.mkdir()
    (lcd_home / "inbox").symlink_to(real_inbox)  # LCD_HOME/inbox → a mounted share
    src = next(p for p in sorted(staged.iterdir()) if "LCD-R01-L01" in p.name)
    shutil.copytree(src, real_inbox / src.name)
    other = next(p for p in sorted(staged.iterdir()) if "LCD-R02-L01" in p.name)
    (real_inbox / other.name).symlink_to(other)  # a measurement folder that is itself a link
    t1 = _tick(defs, instance, lcd_home)
    t2 = _tick(defs, instance, lcd_home, t1.cursor)
    assert sorted(r.partition_key.keys_by_dimension["plate"] for r in t2.run_requests) == ["R01-L01", "R02-L01"]
    assert not _tick(defs, instance, lcd_home, t2.cursor).run_requests  # done, by folder name


def test_unreadable_measurements_are_named_and_the_rest_launch(defs, instance, lcd_home, staged):
    _drop(staged, lcd_home, "LCD-R01-L01")
    _, nan = _drop(staged, lcd_home, "LCD-R01-L02")
    _edit_index(nan, "<BinningX>2</BinningX>", "<BinningX>NaN</BinningX>")
    _, empty = _drop(staged, lcd_home, "LCD-R02-L01")
    index = empty / "Images" / "Index.idx.xml"
    text = index.read_text(encoding="utf-8-sig")
    index.write_text(text[: text.index("<Images>") + 8] + text[text.index("</Images>"):], encoding="utf-8")
    t1 = _tick(defs, instance, lcd_home)
    t2 = _tick(defs, instance, lcd_home, t1.cursor)
    assert [r.partition_key.keys_by_dimension["plate"] for r in t2.run_requests] == ["R01-L01"]
    reported = json.loads(t2.cursor)["reported"]
    assert f"{nan / 'Images' / 'Index.idx.xml'}: BinningX is 'NaN', not a finite number" in reported[nan.name]
    assert "the index lists no images" in reported[empty.name]
    t3 = _tick(defs, instance, lcd_home, t2.cursor)
    assert not t3.run_requests and "2 unreadable" in t3.skip_message


def test_a_problem_is_logged_once_until_its_reason_changes():
    from lcd_assets.acquisition.sensors import _log_problems
    from lcd_core.io.inbox import InboxReport

    logged: list[str] = []
    ctx = SimpleNamespace(log=SimpleNamespace(warning=logged.append))
    report = InboxReport(incomplete={"M1": "3 of 9 files missing"}, invalid={"M2": "bad XML"})
    seen = _log_problems(ctx, report, {})
    assert len(logged) == 2
    assert _log_problems(ctx, report, seen) == seen and len(logged) == 2  # the next tick: nothing new
    _log_problems(ctx, InboxReport(incomplete={"M1": "1 of 9 files missing"}, invalid={"M2": "bad XML"}), seen)
    assert logged[-1] == "incomplete measurement M1: 1 of 9 files missing" and len(logged) == 3


def test_metadata_in_another_encoding_is_named(defs, instance, lcd_home, staged):
    csv = lcd_home / "metadata" / "compounds.csv"
    csv.write_bytes(csv.read_text(encoding="utf-8").replace("DMSO", "DMSO é", 1).encode("latin-1"))
    tick = _tick(defs, instance, lcd_home)
    assert f"{csv} is not UTF-8 text" in tick.skip_message and not tick.run_requests


CHAIN = ("condition_profiles", "normalized_profiles", "activity", "moa_probes")


def test_new_plates_reach_activity_and_moa_through_automation(defs, instance, lcd_home):
    """Dagster's own automation evaluation (what the `automation` sensor runs) requests the whole
    condition chain once a dose's plates are acquired, and nothing again once it ran."""
    from lcd_assets.partitions import condition_key, measurement_key
    from lcd_assets_tests.conftest import add_partitions

    plates, tp = ["R02-L01", "R02-L02"], "04h"  # the 10 µM plates
    add_partitions(instance, plates, [tp], ["10uM"])
    assert run_job(defs, "setup", instance).success
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance)  # the sensor's earlier tick
    for plate in plates:
        assert run_job(defs, "acquisition", instance, measurement_key(plate, tp)).success
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
    wanted = condition_key("10uM", tp)
    for name in CHAIN:
        assert first.get_requested_partitions(dg.AssetKey(name)) == {wanted}, name
    assert run_job(defs, "analysis", instance, wanted).success  # what the requested run does
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert all(second.get_num_requested(dg.AssetKey(name)) == 0 for name in CHAIN)
    assert second.get_num_requested(dg.AssetKey("moa_predictions")) == 1  # the screen's MoA tables follow
