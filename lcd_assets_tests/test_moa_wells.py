"""The well profiles the MoA stage reads (lcd_core.moa.wells): labels, training wells, conditions."""

from __future__ import annotations

import polars as pl
import pytest

from lcd_core.moa import MoaClasses, validate_labels
from lcd_core.moa.wells import active_at, conditions, float_features, training_wells, well_labels

CLASSES = MoaClasses(("HDAC", "JAK"))


def _wells() -> pl.DataFrame:
    return pl.DataFrame({
        "Metadata_compound": ["DMSO", "H-1", "J-1", "U-1", "H-2"],
        "Metadata_moa": [None, "HDAC", "JAK", None, "HDAC"],
        "Metadata_role": ["negative_control", "treatment", "treatment", "treatment", "treatment"],
        "Metadata_dose": ["10uM", "1uM", "10uM", "2.5uM", "1uM"],
        "Metadata_timepoint": ["20h", "04h", "04h", "04h", "20h"],
        "Metadata_count": [1, 2, 3, 4, 5],
        "f0": [0.0, 1.0, 2.0, 3.0, 4.0],
        "n_cells": [1, 2, 3, 4, 5],  # not a float feature
    })


def test_labels_training_wells_and_features():
    w = _wells()
    assert well_labels(w).tolist() == ["DMSO", "HDAC", "JAK", None, "HDAC"]
    assert training_wells(w, {"H-1", "U-1"})["Metadata_compound"].to_list() == ["DMSO", "H-1"]
    assert float_features(w) == ("f0",)


def test_conditions_order_doses_by_value_and_active_sets():
    assert conditions(_wells()) == [("1uM", "04h"), ("1uM", "20h"), ("2.5uM", "04h"), ("10uM", "04h"),
                                    ("10uM", "20h")]
    act = pl.DataFrame({"compound": ["H-1", "J-1", "H-2"], "dose": ["1uM", "1uM", "10uM"],
                        "timepoint": ["04h", "04h", "04h"], "active": [True, False, True]})
    assert active_at(act, "1uM", "04h") == {"H-1"} and active_at(["H-1", "J-1"], "10uM", "20h") == {"H-1", "J-1"}


def test_label_outside_classes_raises_naming_compound():
    validate_labels(_wells(), classes=CLASSES)  # nulls and the listed classes are fine
    bad = _wells().with_columns(Metadata_moa=pl.when(pl.col("Metadata_compound") == "J-1")
                                .then(pl.lit("Kinase X")).otherwise(pl.col("Metadata_moa")))
    with pytest.raises(ValueError, match=r"outside the 2 classes: J-1 \('Kinase X'\)"):
        validate_labels(bad, classes=CLASSES)
    two = pl.concat([_wells(), _wells().filter(pl.col("Metadata_compound") == "H-1").with_columns(
        Metadata_moa=pl.lit("JAK"))])
    with pytest.raises(ValueError, match="more than one MoA label: H-1"):
        validate_labels(two, classes=CLASSES)
