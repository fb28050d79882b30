"""Onsets (lcd_core.trajectories.onset): first active timepoint, sustained vs transient."""

from __future__ import annotations

import polars as pl
import pytest

from lcd_core.trajectories.onset import NEVER, Onset, first_onset, onset_table

TPS = ["04h", "08h", "12h", "16h", "20h"]


def test_first_onset_and_whether_it_stays():
    assert first_onset(TPS, [True] * 5) == Onset("04h", 4.0, True, 5)
    assert first_onset(TPS, [False, False, True, True, True]) == Onset("12h", 12.0, True, 5)
    # a washout: active for a while, back to DMSO afterwards
    assert first_onset(TPS, [False, True, True, False, False]) == Onset("08h", 8.0, False, 5)
    # a gap after the onset is not sustained either
    assert first_onset(TPS, [True, False, True, True, True]).sustained is False
    assert first_onset(TPS, [False] * 4 + [True]) == Onset("20h", 20.0, True, 5)
    assert first_onset(TPS, [False] * 5) == Onset(NEVER, None, None, 5)
    assert first_onset(TPS, [None, None, True, None, True]) == Onset("12h", 12.0, False, 5)


def test_time_order_is_by_hour_not_by_row_or_text():
    # rows in any order
    assert first_onset(["20h", "04h", "12h"], [True, False, True]) == Onset("12h", 12.0, True, 3)
    # "100h" sorts before "20h" as text, after it in time
    assert first_onset(["04h", "100h", "20h"], [False, False, True]) == Onset("20h", 20.0, False, 3)


def test_first_onset_rejects_bad_input():
    with pytest.raises(ValueError, match="3 timepoints but 2 calls"):
        first_onset(TPS[:3], [True, False])
    with pytest.raises(ValueError, match="repeats"):
        first_onset(["04h", "04h"], [True, False])


def _table(calls: dict[tuple[str, str], list]) -> pl.DataFrame:
    rows = [dict(compound=c, dose=d, timepoint=t, active=a)
            for (c, d), seq in calls.items() for t, a in zip(TPS, seq)]
    return pl.DataFrame(rows).sample(fraction=1.0, shuffle=True, seed=0)  # row order must not matter


def test_onset_table_per_compound_and_dose():
    calls = {("A", "1uM"): [0, 0, 1, 1, 1], ("A", "10uM"): [1, 1, 1, 1, 1],
             ("B", "1uM"): [0, 1, 1, 0, 0], ("C", "1uM"): [0, 0, 0, 0, 0]}
    out = onset_table(_table({k: [bool(v) for v in s] for k, s in calls.items()}), "active", "map_es")
    assert out.columns == ["compound", "dose", "onset_map_es", "onset_map_es_h", "sustained_map_es"]
    got = {(c, d): (o, h, s) for c, d, o, h, s in out.iter_rows()}
    assert got == {("A", "1uM"): ("12h", 12.0, True), ("A", "10uM"): ("04h", 4.0, True),
                   ("B", "1uM"): ("08h", 8.0, False), ("C", "1uM"): (NEVER, None, None)}


def test_onset_table_errors_name_the_problem():
    t = _table({("A", "1uM"): [True] * 5})
    with pytest.raises(ValueError, match="active_distance"):
        onset_table(t, "active_distance", "distance")
    dup = pl.concat([t, t.head(1)])
    with pytest.raises(ValueError, match="'compound': 'A'.*repeats"):
        onset_table(dup, "active", "map_es")
    empty = onset_table(t.head(0), "active", "map_es")
    assert empty.height == 0 and empty.columns[-1] == "sustained_map_es"
