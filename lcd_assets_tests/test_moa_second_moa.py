"""The top-2 and explain-away readings of a second MoA (lcd_core.moa.second_moa)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lcd_assets_tests.moa_screen import (
    CLASSES, SCREEN_CLASSES, A, B, classes_of, compounds_table, make_profiles, per_condition_rows,
)
from lcd_core.moa import (
    MoaClasses, classify_moa, explain_away, explain_away_readings, fit_condition_probe, high_dose_keys,
    polypharmacology,
)


@pytest.fixture(scope="module")
def screen():
    return make_profiles()


class _Recorder:
    """A stand-in probe: remembers what it was shown and answers DMSO."""

    classes_ = np.array(SCREEN_CLASSES.probe)

    def predict_proba(self, X):
        self.seen = X.copy()
        return np.eye(len(SCREEN_CLASSES.probe))[[-1] * len(X)]


def test_explain_away_hand_values():
    rec = _Recorder()
    centroids = {"DMSO": np.array([1.0, 1.0]), A: np.array([3.0, 1.0])}  # μ_A = (2, 0) from DMSO
    p, a = explain_away(rec, centroids, np.array([4.0, 3.0]), A, classes=SCREEN_CLASSES)
    # a = ⟨(3, 2), (2, 0)⟩ / 4 = 1.5; residual = (1, 1) + (3, 2) − 1.5·(2, 0) = (1, 3)
    assert a == pytest.approx(1.5) and rec.seen[0] == pytest.approx([1.0, 3.0]) and p[-1] == 1.0
    _, a = explain_away(rec, centroids, np.array([0.0, 1.0]), A, classes=SCREEN_CLASSES)  # opposite to A
    assert a == 0.0 and rec.seen[0] == pytest.approx([0.0, 1.0])  # nothing removed


def test_explain_away_measures_the_share_in_the_probes_scaling():
    """A feature on a 100× larger scale does not decide the top MoA's share alone."""
    rec = _Recorder()
    centroids = {"DMSO": np.zeros(2), A: np.array([2.0, 100.0])}
    x = np.array([4.0, 100.0])
    # in units of (1, 100): μ = (2, 1), x − d = (4, 1), a = (8 + 1) / (4 + 1) = 1.8
    _, a = explain_away(rec, centroids, x, A, scale=np.array([1.0, 100.0]), classes=SCREEN_CLASSES)
    assert a == pytest.approx(1.8) and rec.seen[0] == pytest.approx([4.0 - 3.6, 100.0 - 180.0])
    # raw units: the large feature decides, a ≈ 1
    _, raw = explain_away(rec, centroids, x, A, classes=SCREEN_CLASSES)
    assert raw == pytest.approx(10008 / 10004)
    # a probe pipeline's StandardScaler (here per-feature SD 1 and 100) is the default scale
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        np.array([[-1.0, -100.0], [1.0, 100.0]] * 2), ["DMSO", A] * 2)
    _, a = explain_away(pipe, centroids, x, A, classes=SCREEN_CLASSES)
    assert a == pytest.approx(1.8)


def test_readings_pool_the_high_doses(screen):
    """B's compounds are inactive at 1 µM, so 1 µM's own probe has no B class; the reading probe of
    the timepoint, pooled over 1 and 10 µM, still names B in MIX (A + B) there."""
    profiles, activity, holdout = screen
    classes = classes_of(profiles)
    is_b = pl.col("compound").str.starts_with(B[:4].upper()) & (pl.col("dose") == "1uM")
    activity = activity.with_columns(active=pl.when(is_b).then(False).otherwise(pl.col("active")))
    res = classify_moa(profiles, activity, classes=classes, holdout_compounds=holdout, seed=0)
    at_1uM = res.per_condition.filter(pl.col("dose") == "1uM")
    assert (at_1uM[f"p_{B}"].fill_null(0) == 0).all()  # the condition's probe never saw B
    mix = res.polypharmacology.filter((pl.col("compound") == "MIX") & (pl.col("dose") == "1uM"))
    assert mix["residual_moa"].to_list() == [B, B] and mix["p_residual_moa"].max() >= 0.5
    pp = res.polypharmacology.filter(pl.col("stable_residual"))
    assert set(pp["compound"]) == {"MIX"} and pp["stable_residual_pair"][0] == "|".join(sorted((A, B)))
    # readings are a function of the table: re-reading replaces the columns, never duplicates them
    again = explain_away_readings(res.per_condition, profiles, activity, classes=classes, holdout_compounds=holdout)
    assert again.columns == res.per_condition.columns
    cols = ["residual_moa", "p_residual_moa"]
    assert again.select(cols).equals(res.per_condition.select(cols))


def test_explain_away_finds_the_second_moa_the_softmax_ranks_third():
    """Aurora (x, y) + JAK (z, slightly −x) looks like HDAC (x, z) to a softmax (the demo's case)."""
    aur, hdac, jak = "Aurora kinase", "HDAC", "JAK"
    centres = {"DMSO": (0, 0, 0), aur: (3, 2, 0), jak: (-0.5, 0, 2), hdac: (1.5, 0, 1.5)}
    rng = np.random.default_rng(0)
    rows, X = [], []
    for cls, mu in centres.items():
        for k in range(40 if cls == "DMSO" else 10):
            dmso = cls == "DMSO"
            rows.append(("DMSO" if dmso else f"{cls[:3]}-{k % 2}", None if dmso else cls,
                         "negative_control" if dmso else "treatment"))
            X.append(np.array(mu, float) + rng.normal(scale=0.3, size=3))
    prof = pl.concat([pl.DataFrame(rows, schema=["Metadata_compound", "Metadata_moa", "Metadata_role"], orient="row"),
                      pl.DataFrame(np.array(X), schema=["f0", "f1", "f2"])], how="horizontal")
    classes = MoaClasses.from_compounds(compounds_table(prof))
    assert classes.probe == (aur, jak, hdac, "DMSO")
    probe = fit_condition_probe(prof, {r[0] for r in rows if r[0] != "DMSO"}, classes=classes)
    mix = np.array(centres[aur], float) + np.array(centres[jak], float)
    p = dict(zip(classes.probe, probe.predict_proba(pl.DataFrame(mix[None], schema=["f0", "f1", "f2"]))[0]))
    assert sorted(p, key=p.get)[-2:] == [hdac, aur]  # softmax top-2: Aurora, then HDAC
    pr, a = explain_away(probe.model, probe.centroids, mix, aur, classes=classes)
    r = dict(zip(classes.probe, pr))
    assert max(r, key=r.get) == jak and r[jak] > 0.5 and 0.5 < a < 1.2
    for single in (aur, hdac):  # a single MoA leaves a DMSO-like residual
        pr, _ = explain_away(probe.model, probe.centroids, np.array(centres[single], float), single, classes=classes)
        assert pr[-1] > 0.8


def test_high_dose_keys_order_by_value():
    pc = pl.DataFrame({"dose": ["10uM", "0.1uM", "2.5uM", "1uM", "10uM"]})
    assert high_dose_keys(pc) == ["2.5uM", "10uM"] and high_dose_keys(pc, 3) == ["1uM", "2.5uM", "10uM"]


def test_polypharmacology_min_prob_and_high_doses():
    pc = per_condition_rows([
        ("P", "1uM", "04h", {A: 0.6, B: 0.3, "DMSO": 0.1}),
        ("P", "10uM", "04h", {B: 0.5, A: 0.4}),
        ("P", "0.1uM", "04h", {CLASSES[2]: 0.9}),
        ("Q", "1uM", "04h", {A: 0.95, B: 0.05}),
        ("Q", "10uM", "04h", {A: 0.9, B: 0.08}),
        ("R", "1uM", "04h", {A: 0.3, B: 0.2, "DMSO": 0.5}),  # shares of the MoA mass: .6 / .4
        ("R", "10uM", "04h", {A: 0.5, B: 0.5}),
        ("R", "10uM", "20h", {CLASSES[2]: 0.9, CLASSES[3]: 0.1}, False),  # inactive: ignored
        ("S", "10uM", "04h", {A: 0.5, B: 0.5}),  # a single active high condition is not enough
    ])
    pp = polypharmacology(pc, classes=SCREEN_CLASSES)
    flags = dict(pp.group_by("compound").agg(pl.col("stable_top2").first()).iter_rows())
    # Q's pair is stable but B's mean probability (0.065) is below min_prob (0.1)
    assert flags == {"P": True, "Q": False, "R": True, "S": False}
    r = pp.filter((pl.col("compound") == "R") & (pl.col("dose") == "1uM")).row(0, named=True)
    assert r["q_top1"] == pytest.approx(0.6) and r["p_top1"] == pytest.approx(0.3)
    assert pp.filter(pl.col("compound") == "P")["high"].to_list() == [False, True, True]
    # explicit high doses including the low one break P's pair
    pp2 = polypharmacology(pc, high_doses=["0.1uM", "10uM"], classes=SCREEN_CLASSES)
    assert not pp2.filter(pl.col("compound") == "P")["stable_top2"].any()


def test_polypharmacology_ties_go_to_the_first_class():
    """Equal probabilities rank in the classes' order (compounds.csv's), so the order is part of the result."""
    pc = per_condition_rows([("T", "1uM", "04h", {B: 0.4, A: 0.4, CLASSES[2]: 0.2})])
    assert polypharmacology(pc, classes=SCREEN_CLASSES)["top1"].to_list() == [A]
    swapped = MoaClasses((B, A, *SCREEN_CLASSES.moas[2:]))
    assert polypharmacology(pc, classes=swapped)["top1"].to_list() == [B]


def test_polypharmacology_residual_flag_counts_calls():
    aur, jak, hdac = "Aurora kinase", "JAK", "HDAC"

    def rows(cpd, calls):
        out = []
        for (dose, tp), (res, p_res) in zip([("1uM", "04h"), ("1uM", "20h"), ("10uM", "04h"), ("10uM", "20h")], calls):
            out.append((cpd, dose, tp, {aur: 0.7, hdac: 0.2, "DMSO": 0.1}, res, p_res))
        return out

    spec = (rows("P", [(jak, 0.1), (jak, 0.8), (hdac, 0.05), (jak, 0.6)])  # 2 calls, both JAK: flagged
            + rows("Q", [(jak, 0.9), (hdac, 0.2), (hdac, 0.3), (hdac, 0.1)])  # one call only
            + rows("R", [(jak, 0.9), (hdac, 0.7), (jak, 0.6), (hdac, 0.8)]))  # calls split 2 / 2
    pc = per_condition_rows([r[:4] for r in spec]).with_columns(
        residual_moa=pl.Series([r[4] for r in spec]), p_residual_moa=pl.Series([r[5] for r in spec]),
        p_residual_dmso=pl.Series([1 - r[5] for r in spec]), residual_scale=pl.lit(1.0))
    pp = polypharmacology(pc, classes=SCREEN_CLASSES)
    per = pp.group_by("compound").agg(pl.col("stable_residual", "stable_residual_pair", "residual_share").first())
    got = {c: (f, pair) for c, f, pair, _ in per.iter_rows()}
    assert got == {"P": (True, f"{aur}|{jak}"), "Q": (False, None), "R": (False, None)}
    share = dict(zip(per["compound"], per["residual_share"]))
    assert share["P"] == pytest.approx((0.1 + 0.8 + 0.6) / 3)  # mean where the pair came out
    # the paper's reading sees Aurora|HDAC everywhere, at a share above min_prob: it flags all three
    assert pp.group_by("compound").agg(pl.col("stable_top2").first())["stable_top2"].all()
    # without residual columns the explain-away flag is never raised
    plain = polypharmacology(per_condition_rows([r[:4] for r in spec]), classes=SCREEN_CLASSES)
    assert not plain["stable_residual"].any()


def test_readings_in_two_processes_equal_those_in_one(screen):
    """The reading probes fitted side by side in worker processes give the same table."""
    profiles, activity, holdout = screen
    classes = classes_of(profiles)
    base = classify_moa(profiles, activity, classes=classes, holdout_compounds=holdout, seed=0).per_condition
    one = explain_away_readings(base, profiles, activity, classes=classes, holdout_compounds=holdout)
    two = explain_away_readings(base, profiles, activity, classes=classes, holdout_compounds=holdout, workers=2)
    cols = ["compound", "dose", "timepoint", "residual_moa", "p_residual_moa", "p_residual_dmso", "residual_scale"]
    assert one.select(cols).sort(cols[:3]).equals(two.select(cols).sort(cols[:3]))
    assert one["residual_moa"].drop_nulls().len() > 0
