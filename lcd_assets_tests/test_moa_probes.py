"""Per-condition probes (lcd_core.moa.probes): fit, grouped CV, holdout prediction, skipped conditions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_assets_tests.moa_screen import SCREEN_CLASSES, SOLO_CLASS, make_profiles
from lcd_core.moa import (
    SkippedCondition, aggregate_incremental, compound_folds, cv_condition, fit_condition_probe, holdout_predict,
)


@pytest.fixture(scope="module")
def screen():
    return make_profiles()


def _condition(profiles: pl.DataFrame, dose: str = "10uM", tp: str = "20h") -> pl.DataFrame:
    return profiles.filter((pl.col("Metadata_dose") == dose) & (pl.col("Metadata_timepoint") == tp))


def test_grouped_cv_keeps_each_compound_in_one_fold(screen):
    profiles, activity, _ = screen
    pc = cv_condition(profiles, activity, n_splits=5, seed=0, classes=SCREEN_CLASSES)
    cv = pc.filter(pl.col("source") == "cv")
    assert cv.height and cv["fold"].is_not_null().all()
    # one row (one fold) per compound × condition, ≤ 5 folds, all wells averaged into it
    assert cv.group_by("compound", "dose", "timepoint").len()["len"].max() == 1
    assert cv.group_by("dose", "timepoint").agg(pl.col("fold").n_unique())["fold"].max() == 5
    assert set(cv["n_wells"]) == {3}
    # the only compound of its class: trained without its own wells, the class gets p = 0
    solo = cv.filter(pl.col("compound") == "SOLO")
    assert solo.height and (solo[f"p_{SOLO_CLASS}"] == 0.0).all()
    # fold assignment: every compound once, sizes differ by ≤ 1, MoAs spread over folds
    cpds = profiles.filter(pl.col("Metadata_role") == "treatment").drop_nulls("Metadata_moa")
    folds = compound_folds(cpds.select("Metadata_compound", "Metadata_moa").unique(), 5, seed=0)
    sizes = np.bincount(list(folds.values()))
    assert len(folds) == cpds["Metadata_compound"].n_unique() and sizes.max() - sizes.min() <= 1
    moa_of = dict(cpds.select("Metadata_compound", "Metadata_moa").unique().iter_rows())
    for moa in set(moa_of.values()):
        members = [c for c, m in moa_of.items() if m == moa]
        assert len({folds[c] for c in members}) == min(5, len(members))


def test_compounds_outside_the_training_set_are_read_by_the_full_probe(screen):
    profiles, activity, _ = screen
    pc = cv_condition(_condition(profiles), activity, classes=SCREEN_CLASSES)
    unk = pc.filter(pl.col("compound") == "UNK").row(0, named=True)  # unlabelled: never trained on
    assert unk["source"] == "probe" and unk["fold"] is None and unk["status"] == "ok"
    P = pc.select(SCREEN_CLASSES.columns).to_numpy()
    assert np.allclose(P.sum(axis=1), 1.0)
    assert pc["predicted"].to_list() == [SCREEN_CLASSES.probe[i] for i in P.argmax(axis=1)]


def test_probe_answers_over_every_class(screen):
    profiles, activity, _ = screen
    wells = _condition(profiles)
    active = set(activity.filter(pl.col("active"))["compound"]) - {"SOLO"}
    probe = fit_condition_probe(wells, active, classes=SCREEN_CLASSES)
    assert "SOLO" not in probe.compounds and "UNK" not in probe.compounds and "MIX" in probe.compounds
    P = probe.predict_proba(wells.head(10))
    assert P.shape == (10, len(SCREEN_CLASSES.probe)) and np.allclose(P.sum(axis=1), 1.0)
    assert (P[:, SCREEN_CLASSES.probe.index(SOLO_CLASS)] == 0).all()  # a class it never saw
    assert set(probe.centroids) == set(SCREEN_CLASSES.probe) - {SOLO_CLASS}


def test_skip_reasons(screen):
    profiles, _, _ = screen
    wells = _condition(profiles)
    with pytest.raises(SkippedCondition, match="no DMSO wells"):
        fit_condition_probe(wells.filter(pl.col("Metadata_role") != "negative_control"), {"ATPA-1", "AURO-1"},
                            classes=SCREEN_CLASSES)
    with pytest.raises(SkippedCondition, match="1 MoA class"):
        fit_condition_probe(wells, {"ATPA-1", "ATPA-2"}, classes=SCREEN_CLASSES)


def test_skipped_condition_has_reason_and_no_weight(screen):
    profiles, activity, _ = screen
    one = profiles.filter(pl.col("Metadata_dose") == "10uM")
    pc = cv_condition(one, ["MIX"], seed=0, classes=SCREEN_CLASSES)  # one active compound: no probe
    assert set(pc["status"]) == {"skipped"} and pc["reason"][0].startswith("1 active labelled")
    cols = SCREEN_CLASSES.columns
    assert pc.select(cols).null_count().sum_horizontal()[0] == pc.height * len(cols)
    assert aggregate_incremental(pc, activity, classes=SCREEN_CLASSES).height == 0


def test_holdout_predicted_by_the_training_probe(screen):
    profiles, activity, holdout = screen
    is_hold = pl.col("Metadata_compound").is_in(holdout) & (pl.col("Metadata_role") != "negative_control")
    train, hold = _condition(profiles).filter(~is_hold), _condition(profiles).filter(is_hold)
    pc = holdout_predict(train, activity, hold, classes=SCREEN_CLASSES, holdout_active=activity)
    assert sorted(pc["compound"]) == sorted(holdout) and set(pc["source"]) == {"holdout"}
    assert (pc["moa"] == pc["predicted"]).all()  # strong planted directions at 10 µM, 20 h
    assert pc["active"].all() and pc["fold"].is_null().all()
    # no active training compound: every holdout compound still gets a row, skipped
    skipped = holdout_predict(train, [], hold, classes=SCREEN_CLASSES)
    assert set(skipped["status"]) == {"skipped"} and skipped["predicted"].is_null().all()
    assert not skipped["active"].any()
    # the same columns as cv_condition's
    assert pc.columns == cv_condition(train, activity, classes=SCREEN_CLASSES).columns
