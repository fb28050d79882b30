"""The JUMP recipe's reading (lcd_core.profiling.copairs_reading): copairs' mAP with its permutation
null and FDR flags a strongly separated condition and not a null one; negatives are the query
plate × timepoint's DMSO wells; unscorable conditions stay rows; errors name the measurement."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.profiling.copairs_reading import copairs_activity, copairs_average_precision

D = 16
META = {"Metadata_plate": pl.String, "Metadata_timepoint": pl.String, "Metadata_dose": pl.String,
        "Metadata_compound": pl.String, "Metadata_role": pl.String, "Metadata_moa": pl.String,
        "Metadata_well": pl.String}


def _wells(seed: int = 1, n_dmso: int = 8) -> pl.DataFrame:
    """4 plates × 2 timepoints at one dose: DMSO noise, a strong compound (one direction + small
    noise), a DMSO-like compound, and a compound with one well only (no positive)."""
    rng = np.random.default_rng(seed)
    mu = 3 * rng.normal(size=D)
    rows, X = [], []

    def add(plate, tp, comp, role, moa, x):
        rows.append(dict(Metadata_plate=plate, Metadata_timepoint=tp, Metadata_dose="10uM", Metadata_compound=comp,
                         Metadata_role=role, Metadata_moa=moa, Metadata_well=f"W{len(rows):03d}"))
        X.append(x)

    for plate in ("R01-L01", "R01-L02", "R02-L01", "R02-L02"):
        for tp in ("04h", "08h"):
            for _ in range(n_dmso):
                add(plate, tp, "DMSO", "negative_control", None, rng.normal(size=D))
            add(plate, tp, "STRONG", "treatment", "HDAC", mu + 0.3 * rng.normal(size=D))
            add(plate, tp, "NULL", "treatment", None, rng.normal(size=D))
            if plate == "R01-L01":
                add(plate, tp, "SINGLE", "treatment", None, rng.normal(size=D))
    feats = pl.DataFrame(np.array(X), schema=[f"emb_{i:03d}" for i in range(D)], orient="row")
    return pl.concat([pl.DataFrame(rows, schema=META), feats], how="horizontal")


def test_a_separated_condition_is_active_and_a_null_one_is_not():
    res = copairs_activity(_wells(), null_size=20_000)
    assert set(res.columns) >= {"compound", "dose", "timepoint", "map", "p_value", "corrected_p_value",
                                "active", "score"}
    strong, null = res.filter(pl.col("compound") == "STRONG"), res.filter(pl.col("compound") == "NULL")
    assert strong.height == 2 and strong["active"].all() and (strong["map"] > 0.99).all()
    assert (strong["corrected_p_value"] < 0.001).all() and strong["moa"].to_list() == ["HDAC", "HDAC"]
    assert not null["active"].any() and (null["corrected_p_value"] > 0.05).all()
    assert (res["score"].fill_null(-1) == res["map"].fill_null(-1)).all()
    assert (res["corrected_p_value"] >= res["p_value"]).fill_null(True).all()  # BH never lowers p
    assert (strong["n_wells"] == 4).all() and (strong["n_queries"] == 4).all()


def test_a_condition_without_replicates_is_an_unscorable_row():
    single = copairs_activity(_wells(), null_size=1000).filter(pl.col("compound") == "SINGLE")
    assert single.height == 2 and single["map"].is_null().all() and not single["active"].any()
    assert (single["n_queries"] == 0).all() and (single["n_wells"] == 1).all()


def test_positives_are_replicates_and_negatives_the_plate_timepoint_dmso():
    first3 = pl.int_range(pl.len()).over("Metadata_plate", "Metadata_timepoint", "Metadata_role") < 3
    w = _wells(n_dmso=8).filter(~((pl.col("Metadata_plate") == "R02-L02") & (pl.col("Metadata_timepoint") == "08h")
                                  & (pl.col("Metadata_role") == "negative_control") & first3))  # 5 DMSO wells there
    n_dmso = {(p, t): v for p, t, v in w.filter(pl.col("Metadata_role") == "negative_control")
              .group_by("Metadata_plate", "Metadata_timepoint").len().rows()}
    ap = copairs_average_precision(w)
    assert set(ap["Metadata_role"]) == {"treatment"}
    for plate, tp, comp, npos, ntot in ap[["Metadata_plate", "Metadata_timepoint", "Metadata_compound",
                                           "n_pos_pairs", "n_total_pairs"]].itertuples(index=False):
        assert npos == (0 if comp == "SINGLE" else 3)  # the other 3 plates' replicate, same timepoint
        if npos:
            assert ntot - npos == n_dmso[(plate, tp)]
    assert len(set(n_dmso.values())) > 1  # the check above could tell plates apart


def test_fdr_scope_is_the_table_given_and_runs_are_seeded():
    w = _wells()
    both = copairs_activity(w, null_size=2000, seed=3)
    assert both.equals(copairs_activity(w, null_size=2000, seed=3))
    one = copairs_activity(w.filter(pl.col("Metadata_timepoint") == "04h"), null_size=2000, seed=3)
    assert one.height == 3 and set(one["timepoint"]) == {"04h"}
    assert one["map"].drop_nulls().to_list() == pytest.approx(
        both.filter(pl.col("timepoint") == "04h")["map"].drop_nulls().to_list())


def test_errors_name_the_measurement_or_the_wells():
    w = _wells().filter(~((pl.col("Metadata_plate") == "R01-L02") & (pl.col("Metadata_timepoint") == "08h")
                          & (pl.col("Metadata_role") == "negative_control")))
    with pytest.raises(ValueError, match=r"R01-L02 × 08h"):
        copairs_activity(w)
    bad = _wells().with_columns(pl.when(pl.col("Metadata_well") == "W010").then(float("nan"))
                                .otherwise(pl.col("emb_000")).alias("emb_000"))
    with pytest.raises(ValueError, match="non-finite"):
        copairs_activity(bad)
    with pytest.raises(ValueError, match="Metadata_role"):
        copairs_activity(_wells().drop("Metadata_role"))
