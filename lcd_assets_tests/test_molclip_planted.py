"""lcd_core.molclip.planted: the planted screen has the promised design and signal."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.molclip.planted import planted_screen


def test_design_and_tables():
    profiles, compounds = planted_screen(n_compounds=8, n_moas=4, n_replicas=3, n_layouts=2, wells_per_plate=1,
                                         n_dmso=2, n_features=16, holdout=2, seed=0)
    assert compounds.columns == ["compound", "moa", "smiles", "set"]
    assert compounds["set"].to_list() == ["training"] * 6 + ["holdout"] * 2
    assert compounds.group_by("moa").len()["len"].to_list() == [2, 2, 2, 2]
    wells = profiles.select("Metadata_plate", "Metadata_well").unique()
    assert wells.height == 3 * 2 * (8 + 2) and profiles.height == wells.height * 5
    assert sorted(profiles["Metadata_timepoint"].unique()) == ["04h", "08h", "12h", "16h", "20h"]
    assert profiles.filter(pl.col("Metadata_role") == "negative_control")["Metadata_moa"].null_count() == 60
    assert profiles.select("Metadata_replica", "Metadata_dose").unique().sort("Metadata_replica").rows() == [
        ("R01", "0.156uM"), ("R02", "0.625uM"), ("R03", "2.5uM")]
    again, _ = planted_screen(n_compounds=8, n_moas=4, n_replicas=3, n_layouts=2, n_features=16, holdout=2, seed=0)
    assert again.equals(profiles)


def test_signal_grows_over_time_and_with_dose():
    profiles, _ = planted_screen(n_compounds=4, n_moas=4, n_replicas=4, n_features=16, noise=0.1, seed=1)
    feats = [c for c in profiles.columns if c.startswith("f_")]
    dmso = profiles.filter(pl.col("Metadata_role") == "negative_control").group_by(
        "Metadata_replica", "Metadata_timepoint").agg(pl.col(feats).mean())
    x = profiles.filter(pl.col("Metadata_role") == "treatment").join(
        dmso, on=["Metadata_replica", "Metadata_timepoint"], suffix="_dmso")
    shift = np.linalg.norm(x.select(feats).to_numpy() - x.select([f + "_dmso" for f in feats]).to_numpy(), axis=1)
    x = x.with_columns(pl.Series("shift", shift))
    by_t = x.group_by("Metadata_timepoint").agg(pl.col("shift").mean()).sort("Metadata_timepoint")["shift"]
    by_r = x.group_by("Metadata_replica").agg(pl.col("shift").mean()).sort("Metadata_replica")["shift"]
    assert by_t.is_sorted() and by_r.is_sorted()


def test_missing_rows_and_bad_arguments():
    profiles, _ = planted_screen(n_compounds=4, n_moas=2, missing=0.3, seed=2)
    full = 3 * 2 * (4 + 2)
    assert profiles.height < full * 5
    assert profiles.filter(pl.col("Metadata_timepoint") == "20h").height == full  # the last row is kept
    with pytest.raises(ValueError, match="n_moas"):
        planted_screen(n_moas=11)
    with pytest.raises(ValueError, match="n_compounds"):
        planted_screen(n_compounds=9, n_moas=2)
