"""The demo's plan of runs and the scheduler that keeps every worker busy (lcd_assets.demo)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lcd_assets.demo import Task, _schedule, demo_tasks
from lcd_core.io.inbox import MeasurementTimepoint


def _measurements() -> list[MeasurementTimepoint]:
    doses = {"R01": "0.625uM", "R02": "10uM", "R03": "10uM"}
    return [MeasurementTimepoint(path=Path(f"/inbox/{r}-L01__{tp}"), barcode=f"LCD-{r}-L01", measurement_id=f"{r}-{tp}",
                                 start_time=None, plate=f"{r}-L01", timepoint=tp, timepoint_id=i, dose=doses[r],
                                 n_images=3)
            for r in doses for i, tp in enumerate(("04h", "08h"), 1)]


def test_analyses_wait_for_the_acquisitions_of_their_timepoint():
    tasks = demo_tasks(_measurements())
    by_name = {t.name: t for t in tasks}
    acquisitions = [t for t in tasks if t.stage == "acquisition"]
    analyses = [t for t in tasks if t.stage == "analysis"]
    assert len(acquisitions) == 6 and len(analyses) == 4
    assert [t.key.keys_by_dimension["timepoint"] for t in acquisitions] == ["04h"] * 3 + ["08h"] * 3
    for a in analyses:
        tp = a.key.keys_by_dimension["timepoint"]
        # every plate of the timepoint, whatever its dose: the plate → dose mapping reads them all
        assert {by_name[n].key.keys_by_dimension["timepoint"] for n in a.after} == {tp}
        assert len(a.after) == 3
    assert len(tasks) == 10


def _run(tasks: list[Task], workers: int, fail: set[str] = frozenset(), slow: str = ""):
    """``_schedule`` on threads: the order tasks started, ``(name, failed runs)`` in the order they
    ended, the most running at once, and the ``(start|end, name)`` events in order."""
    lock, started, ended, running, peak, events = threading.Lock(), [], [], [0], [0], []

    def work(task: Task):
        with lock:
            assert task.after <= set(ended), f"{task.name} started before {sorted(task.after - set(ended))}"
            started.append(task.name)
            events.append(("start", task.name))
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3 if task.name == slow else 0.02)
        with lock:
            running[0] -= 1
            events.append(("end", task.name))
        return 0.02, [f"{task.job}[{task.name}]"] if task.name in fail else []

    done = []
    with ThreadPoolExecutor(workers + 2) as pool:  # more threads than workers: the scheduler must limit
        _schedule(lambda t: pool.submit(work, t), tasks, workers,
                  lambda t, s, f: (ended.append(t.name), done.append((t.name, f))), lambda s: None)
    return started, done, peak[0], events


def test_schedule_runs_every_task_once_after_what_it_waits_for_on_at_most_the_workers():
    tasks = demo_tasks(_measurements())
    started, done, peak, _ = _run(tasks, workers=2)
    assert sorted(started) == sorted(t.name for t in tasks) and len(done) == len(tasks)
    assert peak == 2


def test_a_free_worker_takes_a_ready_task_of_a_later_stage():
    """Acquisitions of the first timepoint done: its analyses start before the next timepoint's
    acquisitions have all ended (no core waits for a stage to end)."""
    tasks = demo_tasks(_measurements())
    started, _, _, events = _run(tasks, workers=2, slow="a5")
    first_analysis = min(i for i, (kind, n) in enumerate(events) if kind == "start" and n.startswith("c"))
    assert events.index(("end", "a5")) > first_analysis


def test_a_failed_task_is_reported_and_what_waits_for_it_still_runs():
    tasks = demo_tasks(_measurements())
    started, done, _, _ = _run(tasks, workers=2, fail={"a0"})
    assert dict(done)["a0"] == ["acquisition[a0]"]
    assert all(n in started for n in ("c0.625uM|04h", "c10uM|04h"))


def test_a_task_waiting_for_an_unknown_task_is_an_error():
    with pytest.raises(RuntimeError, match="not in the plan"):
        _run([Task("x", "analysis", "analysis", after=frozenset({"missing"}))], workers=2)


def test_one_worker_runs_the_tasks_in_list_order():
    tasks = demo_tasks(_measurements())
    started, _, peak, _ = _run(tasks, workers=1)
    assert started == [t.name for t in tasks] and peak == 1
