"""The inbox sensor launches a complete, registered measurement exactly once."""

from __future__ import annotations

import json
import logging
import os
import re
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


class _Logged(logging.Handler):
    """The lines a sensor evaluation writes to its tick log."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _tick(defs, instance, lcd_home, cursor=None) -> SimpleNamespace:
    """One sensor evaluation, the way the daemon sees it: requests, partitions, cursor, skip, log lines."""
    sensor = defs.resolve_sensor_def("inbox_sensor")
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lcd": LcdHome(home=str(lcd_home))}, definitions=defs
    )
    logged = _Logged()
    ctx.log.addHandler(logged)
    out = sensor(ctx)
    if isinstance(out, dg.SkipReason):
        return SimpleNamespace(run_requests=[], dynamic_partitions_requests=[], cursor=ctx.cursor,
                               skip_message=out.skip_message, logged=logged.lines)
    return SimpleNamespace(run_requests=out.run_requests, dynamic_partitions_requests=out.dynamic_partitions_requests,
                           cursor=out.cursor, skip_message=None, logged=logged.lines)


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
    """A failed run is retried by hand (README: How to retry a measurement); the sensor launches a
    measurement at most once, also after the retry and after a reset of its cursor."""
    _, folder = _drop(staged, lcd_home, "LCD-R02-L01")
    first = _tick(defs, instance, lcd_home)
    second = _tick(defs, instance, lcd_home, first.cursor)
    (req,) = second.run_requests
    for r in second.dynamic_partitions_requests:
        instance.add_dynamic_partitions(r.partitions_def_name, list(r.partition_keys))
    assert run_job(defs, "setup", instance).success
    victim = sorted((folder / "Images").glob("*.tiff"))[3]
    kept = victim.read_bytes()
    victim.unlink()  # lost after the sensor looked: the launched run fails
    failed = run_job(defs, "acquisition", instance, req.partition_key, {**req.tags, "dagster/run_key": req.run_key})
    assert not failed.success
    assert not _tick(defs, instance, lcd_home, second.cursor).run_requests  # at most once: no relaunch
    victim.write_bytes(kept)
    # the retry: the same partition launched by hand (Launchpad / `dagster job launch`), same tags
    assert run_job(defs, "acquisition", instance, req.partition_key, req.tags).success
    assert not _tick(defs, instance, lcd_home, second.cursor).run_requests
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
    t3 = _tick(defs, instance, lcd_home, t2.cursor)  # the verdict is kept: the index is not read again
    assert "1 unregistered" in t3.skip_message and not t3.logged
    registry = lcd_home / "metadata" / "registry.csv"  # the lab registers the plate: looked at again
    registry.write_text(registry.read_text() + "UNKNOWN-99,R03,L02,10.0,2024-03-11T09:10:00+01:00\n")
    t4 = _tick(defs, instance, lcd_home, t3.cursor)
    t5 = _tick(defs, instance, lcd_home, t4.cursor)
    assert [r.partition_key.keys_by_dimension["plate"] for r in t4.run_requests + t5.run_requests] == ["R03-L02"]


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
    _edit_index(nan, "<BinningX>NaN</BinningX>", "<BinningX>2</BinningX>")  # fixed: its index is read again
    t4 = _tick(defs, instance, lcd_home, t3.cursor)
    t5 = _tick(defs, instance, lcd_home, t4.cursor)
    assert [r.partition_key.keys_by_dimension["plate"] for r in t4.run_requests + t5.run_requests] == ["R01-L02"]


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


def _mid(folder) -> str:
    """The MeasurementID in a measurement folder's index."""
    text = (folder / "Images" / "Index.idx.xml").read_text(encoding="utf-8-sig")
    return re.search(r"<MeasurementID>([^<]*)</MeasurementID>", text).group(1)


def test_one_measurement_under_two_folder_names_is_launched_once(defs, instance, lcd_home, staged):
    _, first = _drop(staged, lcd_home, "LCD-R01-L01")
    copy = first.with_name(first.name + " (copy)")
    shutil.copytree(first, copy, copy_function=os.link)  # the same export copied twice
    t1 = _tick(defs, instance, lcd_home)
    t2 = _tick(defs, instance, lcd_home, t1.cursor)
    (req,) = t2.run_requests
    assert req.tags["lcd/measurement"] == str(first / "Images")
    dup = [line for line in t2.logged if line.startswith(f"duplicate measurement {copy.name}:")]
    assert len(dup) == 1 and f"MeasurementID {_mid(first)!r} was already delivered by folder {first.name!r}" in dup[0]
    assert str(copy / "Images" / "Index.idx.xml") in dup[0]
    t3 = _tick(defs, instance, lcd_home, t2.cursor)
    assert not t3.run_requests and not t3.logged and "1 duplicate" in t3.skip_message  # reported once
    late = first.with_name(first.name + " (again)")  # delivered once more, after the launch
    shutil.copytree(first, late, copy_function=os.link)
    t4 = _tick(defs, instance, lcd_home, t3.cursor)
    assert not t4.run_requests and len(t4.logged) == 1 and f"by folder {first.name!r}" in t4.logged[0]
    assert late.name in t4.logged[0]


def test_changed_content_under_a_done_folder_name(defs, instance, lcd_home, staged):
    """Same MeasurementID, other index: reported once, not launched; a new MeasurementID: launched once."""
    _, folder = _drop(staged, lcd_home, "LCD-R01-L01")
    t2 = _tick(defs, instance, lcd_home, _tick(defs, instance, lcd_home).cursor)
    assert len(t2.run_requests) == 1
    old = _mid(folder)
    _edit_index(folder, "<User>lcd-synth</User>", "<User>re-exported</User>")  # re-delivered, changed
    t3 = _tick(defs, instance, lcd_home, t2.cursor)
    assert not t3.run_requests and "1 changed" in t3.skip_message
    (line,) = t3.logged
    assert line.startswith(f"changed measurement {folder.name}: {folder / 'Images' / 'Index.idx.xml'}: "
                           f"changed after ingestion: MeasurementID {old!r}") and "re-run its partition" in line
    t4 = _tick(defs, instance, lcd_home, t3.cursor)
    assert not t4.run_requests and not t4.logged  # once; and not re-read (the index is unchanged since)
    _edit_index(folder, old, "a-new-measurement-id")  # a new measurement under the done folder's name
    t5 = _tick(defs, instance, lcd_home, t4.cursor)
    assert not t5.run_requests and "re-delivered with MeasurementID 'a-new-measurement-id'" in t5.logged[0]
    t6 = _tick(defs, instance, lcd_home, t5.cursor)
    assert [r.run_key for r in t6.run_requests] == ["a-new-measurement-id:0"]
    assert not _tick(defs, instance, lcd_home, t6.cursor).run_requests


def test_a_tiff_still_growing_or_rewritten_with_its_mtime_kept_waits(defs, instance, lcd_home, staged):
    src, dst = _drop(staged, lcd_home, "LCD-R02-L01")
    growing, rewritten = sorted((dst / "Images").glob("*.tiff"))[:2]
    full = growing.read_bytes()
    growing.write_bytes(full[: len(full) // 2])  # the copier is half-way through this one
    real = rewritten.read_bytes()
    before = rewritten.stat()
    rewritten.write_bytes(bytes(len(real)))  # full length, content not written yet, mtime set by the copier
    os.utime(rewritten, ns=(before.st_atime_ns, before.st_mtime_ns))
    t1 = _tick(defs, instance, lcd_home)
    growing.write_bytes(full)
    t2 = _tick(defs, instance, lcd_home, t1.cursor)
    assert not t2.run_requests  # grew since the last look
    at_t2 = rewritten.stat()
    rewritten.write_bytes(real)  # the content arrives; the copier restores the mtime
    os.utime(rewritten, ns=(before.st_atime_ns, before.st_mtime_ns))
    now = rewritten.stat()
    assert (now.st_size, now.st_mtime_ns) == (at_t2.st_size, at_t2.st_mtime_ns) and now.st_ctime_ns != at_t2.st_ctime_ns
    t3 = _tick(defs, instance, lcd_home, t2.cursor)
    assert not t3.run_requests  # size and mtime as before, but its ctime moved
    t4 = _tick(defs, instance, lcd_home, t3.cursor)
    assert len(t4.run_requests) == 1


def test_a_barcode_spelled_another_way_finds_its_plate(defs, instance, lcd_home, staged):
    _, dst = _drop(staged, lcd_home, "LCD-R02-L02")
    _edit_index(dst, "<PlateID>LCD-R02-L02</PlateID>", "<PlateID>lcd-r02-l02\u200b</PlateID>")
    t2 = _tick(defs, instance, lcd_home, _tick(defs, instance, lcd_home).cursor)
    (req,) = t2.run_requests
    assert req.partition_key.keys_by_dimension["plate"] == "R02-L02" and req.tags["lcd/barcode"] == "LCD-R02-L02"


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
