"""Trajectories of a screen (lcd_core.pipeline.trajectories) on a planted screen with planted calls."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_assets_tests.test_trajectories_conditions import (
    DOSES,
    ONSETS,
    PLANTED,
    TIMEPOINTS,
    features,
    planted_screen,
    planted_truth,
)
from lcd_core.pipeline.trajectories import TABLE_COLUMNS, trajectories
from lcd_core.trajectories.agreement import SUMMARY_SCHEMA

#: the mAP-ES calls: the truth, except LATE at 2.5uM seen one timepoint late (20h, not 16h),
#: INERT at 10uM called at 20h (spurious) and TRANSIENT at 10uM still at 16h (still transient)
LATE_CALL = {("LATE", "2.5uM", "16h"): False, ("INERT", "10uM", "20h"): True,
             ("TRANSIENT", "10uM", "16h"): True}


@pytest.fixture(scope="module")
def screen() -> pl.DataFrame:
    return planted_screen()


def planted_activity() -> pl.DataFrame:
    truth = planted_truth()
    calls = [LATE_CALL.get((c, d, t), a) for c, d, t, a in
             truth.select("compound", "dose", "timepoint", "truly_active").iter_rows()]
    return truth.select("compound", "dose", "timepoint").with_columns(
        pl.Series("active", calls), pl.Series("map_es", [2.0 if c else 0.1 for c in calls]))


@pytest.fixture(scope="module")
def result(screen):
    return trajectories(screen, features(), planted_activity(), planted_truth(), n_boot=1000, seed=0)


def test_table_one_row_per_condition_in_order(result):
    t = result.table
    assert t.columns == TABLE_COLUMNS
    assert t.height == len(PLANTED) * len(DOSES) * len(TIMEPOINTS)
    early = t.filter(pl.col("compound") == "EARLY")
    assert early.select("dose", "timepoint").rows() == [(d, tp) for d in DOSES for tp in TIMEPOINTS]
    assert early["timepoint_h"].to_list() == [4.0, 8.0, 12.0, 16.0, 20.0] * 2
    assert t["compound"].to_list() == sorted(t["compound"].to_list())
    assert dict(t.select("compound", "moa").unique().iter_rows()) == {
        "EARLY": "MOA_A", "LATE": "MOA_B", "TRANSIENT": "MOA_C", "INERT": None}
    assert t.filter(pl.col("compound") == "LATE", pl.col("dose") == "2.5uM", pl.col("timepoint") == "16h").row(
        0, named=True)["active"] is False
    assert set(t["n_wells"]) == {8} and t.drop("moa").null_count().sum_horizontal().item() == 0


def test_onsets_recovered_by_both_readings(result):
    o = result.onsets
    got = {(c, d): (m, dist, sd) for c, d, m, dist, sd in
           o.select("compound", "dose", "onset_map_es", "onset_distance", "sustained_distance").iter_rows()}
    for (c, d), (onset, sustained) in ONSETS.items():
        assert got[(c, d)][1:] == (onset, sustained), (c, d)
        assert o.filter(pl.col("compound") == c, pl.col("dose") == d)["onset_truth"].item() == onset
    # the mAP-ES reading sees the planted calls, deviations included
    assert got[("LATE", "2.5uM")][0] == "20h" and got[("INERT", "10uM")][0] == "20h"
    row = o.filter(pl.col("compound") == "TRANSIENT", pl.col("dose") == "10uM").row(0, named=True)
    assert (row["onset_map_es"], row["sustained_map_es"]) == ("08h", False)
    assert row["onset_distance_h"] == 8.0 and row["onset_truth_h"] == 8.0
    outcomes = dict(((c, d), (m, dist)) for c, d, m, dist in
                    o.select("compound", "dose", "outcome_map_es", "outcome_distance").iter_rows())
    assert outcomes[("LATE", "2.5uM")] == ("late", "exact")
    assert outcomes[("INERT", "10uM")] == ("spurious", "exact")
    assert sum(m == "exact" for m, _ in outcomes.values()) == 6


def test_agreement_against_truth_by_hand(result):
    a = result.agreement
    assert a.schema == pl.Schema(SUMMARY_SCHEMA)
    rows = {(r["reading"], r["dose"]): r for r in a.iter_rows(named=True)}
    m = rows[("map_es", "all")]
    assert (m["n"], m["n_exact"], m["n_within_one"], m["n_late"], m["n_spurious"]) == (8, 6, 7, 1, 1)
    assert (m["exact_ci_low"], m["exact_ci_high"]) == pytest.approx((0.409275, 0.928521), abs=1e-6)
    assert (m["within_one_ci_low"], m["within_one_ci_high"]) == pytest.approx((0.529112, 0.977583), abs=1e-6)
    assert m["mean_lag_h"] == pytest.approx(4 / 6)
    assert (rows[("map_es", "2.5uM")]["n_exact"], rows[("map_es", "2.5uM")]["n_within_one"]) == (3, 4)
    assert (rows[("map_es", "10uM")]["n_exact"], rows[("map_es", "10uM")]["n_within_one"]) == (3, 3)
    d = rows[("distance", "all")]
    assert (d["n"], d["n_exact"], d["exact"], d["exact_ci_low"]) == (8, 8, 1.0, pytest.approx(0.675592, abs=1e-6))
    assert list(rows)[:3] == [("map_es", "all"), ("map_es", "2.5uM"), ("map_es", "10uM")]
    conf = result.confusion
    assert conf.filter(pl.col("reading") == "map_es", pl.col("onset_truth") == "16h")["onset"].to_list() == ["20h"]
    assert conf.group_by("reading").agg(pl.col("n").sum()).sort("reading").rows() == [("distance", 8), ("map_es", 8)]


def test_map_and_params(result, screen):
    t = result.table
    early = t.filter(pl.col("compound") == "EARLY", pl.col("timepoint") == "20h").select("pc1", "pc2").to_numpy()
    assert np.all(np.hypot(*early.T) > 1.0)
    assert result.map.features == tuple(features())
    assert result.params["n_boot"] == 1000 and result.params["n_without_call"] == 0
    assert result.params["explained"] == pytest.approx(list(result.map.explained))


def test_without_truth_and_with_missing_or_categorical_calls(screen):
    act = planted_activity()
    act = act.filter(~((pl.col("compound") == "EARLY") & (pl.col("timepoint") == "04h")))
    act = act.with_columns(pl.col("dose").cast(pl.Categorical), pl.col("timepoint").cast(pl.Categorical))
    res = trajectories(screen, features(), act, n_boot=200)
    assert res.agreement.height == 0 and res.agreement.schema == pl.Schema(SUMMARY_SCHEMA)
    assert res.confusion.height == 0
    assert "onset_truth" not in res.onsets.columns
    assert res.params["n_without_call"] == 2
    early = res.table.filter(pl.col("compound") == "EARLY", pl.col("timepoint") == "04h")
    assert early["active"].null_count() == 2 and early["map_es"].null_count() == 2
    onsets = dict(((c, d), o) for c, d, o in res.onsets.select("compound", "dose", "onset_map_es").iter_rows())
    assert onsets[("EARLY", "10uM")] == "08h"  # no call at 04h: not active there


def test_errors_name_the_problem(screen):
    act, truth = planted_activity(), planted_truth()
    with pytest.raises(ValueError, match="map_es"):
        trajectories(screen, features(), act.drop("map_es"))
    with pytest.raises(ValueError, match="Metadata_timepoint"):
        trajectories(screen.drop("Metadata_timepoint"), features(), act)
    with pytest.raises(ValueError, match="truly_active"):
        trajectories(screen, features(), act, truth.drop("truly_active"))
    no_dmso = screen.filter(~((pl.col("Metadata_dose") == "2.5uM") & (pl.col("Metadata_timepoint") == "08h")
                              & (pl.col("Metadata_role") == "negative_control")))
    with pytest.raises(ValueError, match="dose 2.5uM × timepoint 08h has no DMSO"):
        trajectories(no_dmso, features(), act)
    with pytest.raises(ValueError, match="activity repeats"):
        trajectories(screen, features(), pl.concat([act, act.head(1)]))
