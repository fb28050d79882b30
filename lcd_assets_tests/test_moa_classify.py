"""The whole MoA stage (lcd_core.moa.classify): CV, holdout, aggregation, scores, polypharmacology."""

from __future__ import annotations

import polars as pl
import pytest

from lcd_assets_tests.moa_screen import CLASSES, SCREEN_CLASSES, A, B, classes_of, make_profiles
from lcd_core.moa import MoaClasses, classify_moa, single_highest


@pytest.fixture(scope="module")
def screen():
    return make_profiles()


@pytest.fixture(scope="module")
def result(screen):
    profiles, activity, holdout = screen
    return classify_moa(profiles, activity, classes=classes_of(profiles), holdout_compounds=holdout, seed=0)


def _m(res, set_, mode, step):
    row = res.metrics.filter((pl.col("set") == set_) & (pl.col("mode") == mode) & (pl.col("step") == step))
    assert row.height == 1
    return row.row(0, named=True)


def test_classes_of_the_planted_screen(screen):
    assert classes_of(screen[0]) == SCREEN_CLASSES


def test_cv_accuracy_above_chance_and_rises_with_doses(result):
    first, last = _m(result, "train", "incremental", 1), _m(result, "train", "incremental", 3)
    assert last["accuracy"] >= 0.6  # chance ≈ 0.2 (SOLO, unseen class, cannot be right)
    assert last["top3_accuracy"] >= last["accuracy"]
    assert last["weighted_f1"] > first["weighted_f1"] + 0.2
    # steps follow dose value, not text: step 3 is 10uM
    steps = result.predictions.filter(pl.col("mode") == "incremental").select("step", "dose").unique()
    assert dict(steps.iter_rows()) == {1: "0.1uM", 2: "1uM", 3: "10uM"}
    # the single-highest-dose prediction is kept beside the incremental one
    sh = single_highest(result.predictions)
    assert set(sh["dose"]) == {"10uM"} and sh["compound"].n_unique() == sh.height
    assert _m(result, "train", "single", 3)["accuracy"] >= 0.6


def test_probability_columns_follow_the_classes(result):
    cols = [c for c in result.per_condition.columns if c.startswith("p_") and not c.startswith("p_residual")]
    assert cols == list(SCREEN_CLASSES.columns) and cols[-1] == "p_DMSO"
    assert set(result.confusion["true"]) == set(SCREEN_CLASSES.probe)


def test_holdout_compounds_classified(screen, result):
    _, _, holdout = screen
    pc = result.per_condition.filter(pl.col("compound").is_in(holdout))
    assert set(pc["source"]) == {"holdout"} and pc["fold"].is_null().all()
    assert _m(result, "holdout", "incremental", 3)["accuracy"] >= 0.75
    # never trained on: no holdout compound shows up as a CV compound anywhere
    assert result.per_condition.filter(pl.col("source") == "cv")["compound"].is_in(holdout).sum() == 0


def test_mixed_compound_flagged_as_polypharmacology(result):
    pp = result.polypharmacology
    mix = pp.filter(pl.col("compound") == "MIX")
    assert mix["stable_top2"].all()
    assert mix["stable_pair"][0] == "|".join(sorted((A, B)))
    assert mix.filter(pl.col("high")).select("dose").unique()["dose"].sort().to_list() == ["10uM", "1uM"]
    # potent single-MoA compounds are not flagged (weak ones, potency ≤ 1, are noisy)
    flagged = set(pp.filter(pl.col("stable_top2"))["compound"]) - {"MIX"}
    assert all(c.endswith(("-1", "-2")) or c == "SOLO" for c in flagged), flagged
    # the explain-away reading finds the same pair, and no single-MoA compound at all
    assert mix["stable_residual"].all() and mix["stable_residual_pair"][0] == "|".join(sorted((A, B)))
    assert set(pp.filter(pl.col("stable_residual"))["compound"]) == {"MIX"}
    # the residual is read at every high-dose row that has probabilities, and only there
    ok = result.per_condition.filter(pl.col("status") == "ok")
    high = ok.filter(pl.col("dose").is_in(["10uM", "1uM"]))
    assert high["residual_moa"].null_count() == 0 and high["p_residual_dmso"].is_between(0, 1).all()
    assert ok.filter(~pl.col("dose").is_in(["10uM", "1uM"]))["residual_moa"].null_count() == ok.height - high.height


def test_unlabelled_compound_predicted_not_dropped(result):
    unk = result.predictions.filter(pl.col("compound") == "UNK")
    assert unk.height == 6 and unk["moa"].is_null().all()  # 3 incremental + 3 single
    last = unk.filter((pl.col("mode") == "incremental") & (pl.col("step") == 3))
    assert last["predicted"][0] == CLASSES[2]
    # but not scored
    n_scored = result.predictions.filter(
        (pl.col("set") == "train") & (pl.col("mode") == "incremental") & (pl.col("step") == 3)
    ).height - 1
    assert _m(result, "train", "incremental", 3)["n"] == n_scored


def test_label_outside_classes_raises_naming_compound(screen):
    profiles, activity, _ = screen
    without_solo = MoaClasses(CLASSES)  # a compounds table that does not list SOLO's MoA
    with pytest.raises(ValueError, match=r"SOLO \('PARP'\)"):
        classify_moa(profiles, activity, classes=without_solo)


def test_unknown_holdout_compound_raises(screen):
    profiles, activity, _ = screen
    with pytest.raises(ValueError, match="NOPE"):
        classify_moa(profiles, activity, classes=SCREEN_CLASSES, holdout_compounds=["NOPE"])
