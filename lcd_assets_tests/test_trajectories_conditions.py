"""Trajectory conditions (lcd_core.trajectories.conditions): order, split, checks.

Also home of :func:`planted_screen`, the planted screen the other trajectory tests share: well
profiles (already normalized: DMSO ~ N(0, I)) whose compounds move along orthogonal directions
from a chosen timepoint on, one of them only for a while (a washout).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.trajectories.conditions import (
    dose_sort_key,
    ordered,
    split_conditions,
    timepoint_hours,
)

DOSES = ("2.5uM", "10uM")  # text order is the wrong order
TIMEPOINTS = ("04h", "08h", "12h", "16h", "20h")
AMPLITUDE = 1.5  # MAD units per feature: the planted distance from DMSO

#: compound -> (moa, direction, dose -> the timepoints at which the effect is on)
PLANTED = {
    "EARLY": ("MOA_A", 0, {"2.5uM": TIMEPOINTS, "10uM": TIMEPOINTS}),
    "LATE": ("MOA_B", 1, {"2.5uM": ("16h", "20h"), "10uM": ("12h", "16h", "20h")}),
    "TRANSIENT": ("MOA_C", 2, {"2.5uM": ("08h", "12h"), "10uM": ("08h", "12h")}),
    "INERT": (None, 3, {"2.5uM": (), "10uM": ()}),
}
#: the planted onsets and sustained flags per compound × dose
ONSETS = {
    ("EARLY", "2.5uM"): ("04h", True), ("EARLY", "10uM"): ("04h", True),
    ("LATE", "2.5uM"): ("16h", True), ("LATE", "10uM"): ("12h", True),
    ("TRANSIENT", "2.5uM"): ("08h", False), ("TRANSIENT", "10uM"): ("08h", False),
    ("INERT", "2.5uM"): ("never", None), ("INERT", "10uM"): ("never", None),
}


def directions(d: int, seed: int = 0) -> np.ndarray:
    """``(4, d)`` orthonormal planted directions."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, 4)))
    return q.T


def amplitude(compound: str, dose: str, timepoint: str, amp: float = AMPLITUDE) -> float:
    return amp if timepoint in PLANTED[compound][2][dose] else 0.0


def planted_screen(*, d: int = 16, n_layouts: int = 4, n_replicas: int = 2, n_dmso: int = 12,
                   amp: float = AMPLITUDE, seed: int = 0) -> pl.DataFrame:
    """Profiles of :data:`PLANTED`: per dose ``n_replicas × n_layouts`` plates, each with
    ``n_dmso`` DMSO wells and one well per compound at every timepoint; a compound's shift is
    ``amp · √d`` along its direction, i.e. ``amp`` MAD units per feature."""
    rng = np.random.default_rng(seed)
    U = directions(d)
    meta, X = [], []
    for di, dose in enumerate(DOSES):
        for r in range(n_replicas):
            rep = f"R{di * n_replicas + r + 1:02d}"
            for li in range(1, n_layouts + 1):
                for tp in TIMEPOINTS:
                    wells = [("DMSO", None, "negative_control")] * n_dmso + [
                        (c, PLANTED[c][0], "treatment") for c in PLANTED]
                    for wi, (c, moa, role) in enumerate(wells):
                        x = rng.normal(size=d)
                        if role == "treatment":
                            x += amplitude(c, dose, tp, amp) * np.sqrt(d) * U[PLANTED[c][1]]
                        meta.append(dict(Metadata_plate=f"{rep}-L{li:02d}", Metadata_well=f"W{wi:03d}",
                                         Metadata_replica=rep, Metadata_layout=f"L{li:02d}",
                                         Metadata_dose=dose, Metadata_timepoint=tp,
                                         Metadata_compound=c, Metadata_moa=moa, Metadata_role=role))
                        X.append(x)
    feats = pl.DataFrame(np.array(X), schema=features(d), orient="row")
    return pl.concat([pl.DataFrame(meta), feats], how="horizontal")


def features(d: int = 16) -> list[str]:
    return [f"f{i:02d}" for i in range(d)]


def planted_truth() -> pl.DataFrame:
    """The generator-style truth of :data:`PLANTED`."""
    rows = [dict(compound=c, dose=dose, timepoint=tp, timepoint_h=int(tp[:2]),
                 truly_active=amplitude(c, dose, tp) > 0, effect=amplitude(c, dose, tp) / AMPLITUDE)
            for c in PLANTED for dose in DOSES for tp in TIMEPOINTS]
    return pl.DataFrame(rows)


# ---------------------------------------------------------------------------------------------


def test_doses_in_value_order_and_hours_of_timepoints():
    assert ordered(["10uM", "0.156uM", "2.5uM", "0.625uM"], kind="dose") == [
        "0.156uM", "0.625uM", "2.5uM", "10uM"]
    assert dose_sort_key("10uM") > dose_sort_key("2.5uM")
    assert dose_sort_key("high") > dose_sort_key("10uM")  # non-numeric last
    assert ordered(["20h", "04h", "12h", "08h"], kind="timepoint") == ["04h", "08h", "12h", "20h"]
    assert timepoint_hours("04h") == 4 and timepoint_hours("100h") == 100 and timepoint_hours(12) == 12
    with pytest.raises(ValueError, match="'late'"):
        timepoint_hours("late")


def test_split_in_dose_then_time_order_with_every_well():
    df = planted_screen()
    conds = split_conditions(df, features())
    assert [(c.dose, c.timepoint) for c in conds] == [(d, t) for d in DOSES for t in TIMEPOINTS]
    c = conds[0]
    assert c.dmso.shape == (2 * 4 * 12, 16) and c.hours == 4
    assert list(c.compounds) == sorted(PLANTED) and all(w.shape == (8, 16) for w in c.compounds.values())
    assert c.moa == {"EARLY": "MOA_A", "INERT": None, "LATE": "MOA_B", "TRANSIENT": "MOA_C"}
    # the wells are the table's: the EARLY wells of 2.5uM 04h
    sub = df.filter((pl.col("Metadata_dose") == "2.5uM") & (pl.col("Metadata_timepoint") == "04h")
                    & (pl.col("Metadata_compound") == "EARLY")).select(features()).to_numpy()
    np.testing.assert_array_equal(c.compounds["EARLY"], sub)


def test_split_errors_name_the_problem():
    df = planted_screen(n_layouts=2, n_replicas=1)
    with pytest.raises(ValueError, match="Metadata_role"):
        split_conditions(df.drop("Metadata_role"), features())
    with pytest.raises(ValueError, match="f99"):
        split_conditions(df, [*features(), "f99"])
    no_dmso = df.filter(~((pl.col("Metadata_dose") == "10uM") & (pl.col("Metadata_timepoint") == "12h")
                          & (pl.col("Metadata_role") == "negative_control")))
    with pytest.raises(ValueError, match=r"dose 10uM × timepoint 12h has no DMSO"):
        split_conditions(no_dmso, features())
    bad = df.with_columns(pl.when(pl.col("Metadata_compound") == "LATE").then(np.nan)
                          .otherwise(pl.col("f03")).alias("f03"))
    with pytest.raises(ValueError, match="non-finite"):
        split_conditions(bad, features())
    with pytest.raises(ValueError, match="not numeric"):
        split_conditions(df, [*features(), "Metadata_well"])
    unnamed = df.with_columns(pl.when((pl.col("Metadata_compound") == "EARLY") & (pl.col("Metadata_timepoint") == "16h"))
                              .then(None).otherwise(pl.col("Metadata_compound")).alias("Metadata_compound"))
    with pytest.raises(ValueError, match="timepoint 16h: 2 treatment well"):
        split_conditions(unnamed, features())
