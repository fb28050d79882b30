"""lcd_core.molclip.videos: well profiles → videos [N, T, D] with a mask, loud errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.molclip.planted import planted_screen
from lcd_core.molclip.videos import build_videos, timepoint_hours


@pytest.fixture(scope="module")
def screen():
    profiles, _ = planted_screen(n_compounds=6, n_moas=3, n_replicas=2, n_features=8, missing=0.2, seed=3)
    return profiles, [c for c in profiles.columns if c.startswith("f_")]


def test_videos_stack_each_well_over_sorted_timepoints_and_mask_the_missing(screen):
    profiles, feats = screen
    shuffled = profiles.sample(fraction=1.0, shuffle=True, seed=1)
    v = build_videos(shuffled, feats)
    n_wells = profiles.select("Metadata_plate", "Metadata_well").unique().height
    assert v.x.shape == (n_wells, 5, 8) and v.x.dtype == np.float32
    assert v.timepoints == ["04h", "08h", "12h", "16h", "20h"]
    assert v.mask.sum() == profiles.height and not v.mask.all()
    assert (v.x[~v.mask] == 0).all()
    # one value traced back to its row
    row = profiles.filter(pl.col("Metadata_timepoint") == "12h").row(0, named=True)
    i = v.meta.with_row_index().filter((pl.col("plate") == row["Metadata_plate"])
                                        & (pl.col("well") == row["Metadata_well"]))["index"][0]
    assert v.x[i, 2, 3] == pytest.approx(row["f_003"], rel=1e-6)
    assert v.meta.columns == ["plate", "well", "replica", "layout", "dose", "compound", "moa", "role"]
    assert v.meta.filter(pl.col("role") == "negative_control")["moa"].null_count() == \
        v.meta.filter(pl.col("role") == "negative_control").height
    assert v.is_treatment.sum() == v.meta.filter(pl.col("role") == "treatment").height


def test_timepoints_sort_by_hour_not_text():
    assert sorted(["12h", "4h", "08h", "100h"], key=timepoint_hours) == ["4h", "08h", "12h", "100h"]
    with pytest.raises(ValueError, match="'late'"):
        timepoint_hours("late")


def test_empty_moa_becomes_null_and_subset_keeps_order(screen):
    profiles, feats = screen
    v = build_videos(profiles.with_columns(pl.lit("").alias("Metadata_moa")), feats)
    assert v.meta["moa"].null_count() == len(v)
    sub = v.subset(np.array([3, 1]))
    assert sub.meta["well"].to_list() == [v.meta["well"][3], v.meta["well"][1]]
    assert np.array_equal(sub.x[0], v.x[3])


def test_missing_column_is_named(screen):
    profiles, feats = screen
    with pytest.raises(ValueError, match="Metadata_layout"):
        build_videos(profiles.drop("Metadata_layout"), feats)
    with pytest.raises(ValueError, match="f_999"):
        build_videos(profiles, [*feats, "f_999"])


def test_nan_feature_names_column_and_well(screen):
    profiles, feats = screen
    bad = profiles.with_columns(pl.when(pl.int_range(pl.len()) == 7).then(float("nan"))
                                .otherwise(pl.col("f_002")).alias("f_002"))
    plate, well = profiles.row(7, named=True)["Metadata_plate"], profiles.row(7, named=True)["Metadata_well"]
    with pytest.raises(ValueError, match=rf"'f_002'.*row 7.*{plate}.*{well}"):
        build_videos(bad, feats)


def test_duplicate_plate_well_timepoint_is_named(screen):
    profiles, feats = screen
    row = profiles.row(0, named=True)
    with pytest.raises(ValueError, match=rf"duplicate.*{row['Metadata_plate']}.*{row['Metadata_well']}"):
        build_videos(pl.concat([profiles, profiles.head(1)]), feats)


def test_metadata_changing_within_a_well_is_refused(screen):
    profiles, feats = screen
    bad = profiles.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("other"))
                                .otherwise(pl.col("Metadata_compound")).alias("Metadata_compound"))
    with pytest.raises(ValueError, match="Metadata_compound changes"):
        build_videos(bad, feats)


def test_null_key_is_named(screen):
    profiles, feats = screen
    bad = profiles.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(None)
                                .otherwise(pl.col("Metadata_well")).alias("Metadata_well"))
    with pytest.raises(ValueError, match="Metadata_well is null.*row 4"):
        build_videos(bad, feats)
