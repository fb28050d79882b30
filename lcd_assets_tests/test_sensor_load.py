"""The inbox sensor under load: 200 measurement folders, some bad, ticked by the real sensor."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter

import lcd_core.io.inbox as inbox_module
from lcd_assets_tests.test_sensors import _tick, staged  # noqa: F401  (staged: the fixture)

N_GOOD, N_INCOMPLETE, N_INVALID, N_UNREGISTERED, N_DUPLICATE = 150, 15, 10, 15, 10
TICK_LIMIT_S = 30.0  # Dagster's default sensor evaluation timeout is 60 s


def _register(lcd_home, n: int) -> None:
    """Registry rows for barcodes LOAD-000 … : three layouts per replica R10 …, dosed as LCD-R01-L01."""
    registry = lcd_home / "metadata" / "registry.csv"
    dosed_at = next(line for line in registry.read_text().splitlines() if line.startswith("LCD-R01-L01,"))
    dosed_at = dosed_at.split(",")[-1]
    rows = [f"LOAD-{i:03d},R{10 + i // 3},L{i % 3 + 1:02d},0.625,{dosed_at}" for i in range(n)]
    registry.write_text(registry.read_text().rstrip("\n") + "\n" + "\n".join(rows) + "\n")


def _measurement(src, dst, barcode: str, mid: str, skip_tiff: bool = False, broken: bool = False) -> None:
    """``src`` as ``dst``: the index text with a new barcode and MeasurementID, the TIFFs hard links."""
    images = dst / "Images"
    images.mkdir(parents=True)
    text = (src / "Images" / "Index.idx.xml").read_text(encoding="utf-8-sig")
    text = text.replace("LCD-R01-L01", barcode)
    text = re.sub(r"<MeasurementID>[^<]*</MeasurementID>", f"<MeasurementID>{mid}</MeasurementID>", text)
    (images / "Index.idx.xml").write_text(text[: len(text) // 2] if broken else text, encoding="utf-8")
    tiffs = sorted((src / "Images").glob("*.tiff"))
    for tiff in tiffs[1:] if skip_tiff else tiffs:
        os.link(tiff, images / tiff.name)


def _fill(inbox, src) -> dict[str, list[str]]:
    """200 measurement folders by kind: good, incomplete, invalid, unregistered, duplicate."""
    kinds: dict[str, list[str]] = {k: [] for k in ("good", "incomplete", "invalid", "unregistered", "duplicate")}
    for i in range(N_GOOD + N_INCOMPLETE + N_INVALID + N_UNREGISTERED):
        kind = ("good" if i < N_GOOD else "incomplete" if i < N_GOOD + N_INCOMPLETE
                else "invalid" if i < N_GOOD + N_INCOMPLETE + N_INVALID else "unregistered")
        barcode = f"NOT-REGISTERED-{i:03d}" if kind == "unregistered" else f"LOAD-{i:03d}"
        _measurement(src, inbox / f"load-{i:03d}", barcode, f"load-mid-{i:03d}",
                     skip_tiff=kind == "incomplete", broken=kind == "invalid")
        kinds[kind].append(f"load-{i:03d}")
    for i in range(N_DUPLICATE):  # the same export of a good measurement, under a second folder name
        _measurement(src, inbox / f"zz-copy-{i:03d}", f"LOAD-{i:03d}", f"load-mid-{i:03d}")
        kinds["duplicate"].append(f"zz-copy-{i:03d}")
    return kinds


def test_two_hundred_measurements_launched_once_each_bad_one_reported_once(
    defs, instance, lcd_home, staged, monkeypatch  # noqa: F811
):
    src = next(p for p in sorted(staged.iterdir()) if "LCD-R01-L01" in p.name)  # 04h measurement
    _register(lcd_home, N_GOOD + N_INCOMPLETE)
    kinds = _fill(lcd_home / "inbox", src)
    assert sum(map(len, kinds.values())) == 200
    parsed: list[str] = []
    real_read_index = inbox_module.read_index

    def counting_read_index(path):
        parsed.append(os.path.basename(path))
        return real_read_index(path)

    monkeypatch.setattr(inbox_module, "read_index", counting_read_index)
    ticks, seconds, cursor = [], [], None
    for _ in range(3):  # first look, settled, one more
        parsed.clear()
        start = time.perf_counter()
        ticks.append(_tick(defs, instance, lcd_home, cursor))
        seconds.append(time.perf_counter() - start)
        cursor = ticks[-1].cursor
    print(f"\ninbox sensor, 200 measurements: tick times {', '.join(f'{s:.2f} s' for s in seconds)}")
    assert max(seconds) < TICK_LIMIT_S

    first, second, third = ticks
    assert not first.run_requests  # nothing is known to be stable on a first look
    keys = [r.run_key for t in ticks for r in t.run_requests]
    assert len(keys) == len(set(keys)) == N_GOOD  # every good measurement exactly once, across ticks
    launched = {r.tags["lcd/measurement"].split(os.sep)[-2] for r in second.run_requests}
    assert launched == set(kinds["good"])
    assert {r.partition_key.keys_by_dimension["plate"] for r in second.run_requests} == {
        f"R{10 + i // 3}-L{i % 3 + 1:02d}" for i in range(N_GOOD)}

    logged = [line for t in ticks for line in t.logged]
    by_folder = Counter(re.match(r"\w+ measurement (\S+):", line).group(1) for line in logged)
    bad = {name: kind for kind in ("incomplete", "invalid", "unregistered", "duplicate") for name in kinds[kind]}
    assert by_folder == Counter(list(bad))  # each bad one once, with its reason; no good one
    reasons = {"incomplete": "1 of 120 listed files missing", "invalid": "malformed XML",
               "unregistered": "is not in the run registry", "duplicate": "was already delivered by folder 'load-"}
    for line in logged:
        name = re.match(r"\w+ measurement (\S+):", line).group(1)
        assert reasons[bad[name]] in line, line
    assert not third.run_requests and not third.logged
    assert sorted(parsed) == sorted(kinds["incomplete"])  # launched and bad folders: one stat each, not read
    assert set(json.loads(third.cursor)["done"]) == set(kinds["good"])  # launched folders: one stat a tick
