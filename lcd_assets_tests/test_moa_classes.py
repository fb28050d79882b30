"""The MoA classes of a screen, from its compounds table (lcd_core.moa.classes)."""

from __future__ import annotations

import polars as pl
import pytest

from lcd_core.io.platemap import load_screen
from lcd_core.moa import DMSO_CLASS, MoaClasses
from lcd_core.synth import MOAS


def test_classes_in_order_of_first_appearance():
    compounds = pl.DataFrame({
        "compound": ["DMSO", "B-1", "A-1", "U-1", "B-2", "E-1", "A-2"],
        "moa": [None, "HDAC", "JAK", None, "HDAC", "", "JAK"],
        "smiles": ["CS(C)=O", "C", "C", "C", "C", "C", "C"],
        "set": ["control", "training", "training", "holdout", "holdout", "training", "training"],
    })
    classes = MoaClasses.from_compounds(compounds)
    assert classes.moas == ("HDAC", "JAK")  # null and empty moa: unknown, not a class
    assert classes.probe == ("HDAC", "JAK", DMSO_CLASS)
    assert classes.columns == ("p_HDAC", "p_JAK", "p_DMSO") and classes.moa_columns == ("p_HDAC", "p_JAK")
    assert classes == MoaClasses(("HDAC", "JAK"))


def test_the_control_is_never_a_class_and_set_is_optional():
    with_control_moa = pl.DataFrame({"compound": ["DMSO", "X"], "moa": ["vehicle", "PARP"],
                                     "smiles": ["", ""], "set": ["control", None]})
    assert MoaClasses.from_compounds(with_control_moa).moas == ("PARP",)
    without_set = pl.DataFrame({"compound": ["X", "Y"], "moa": ["PARP", None], "smiles": ["C", "C"]})
    assert MoaClasses.from_compounds(without_set).moas == ("PARP",)
    assert MoaClasses.from_compounds(without_set.with_columns(moa=pl.lit(None))).probe == (DMSO_CLASS,)


def test_invalid_classes_raise():
    with pytest.raises(ValueError, match="control class"):
        MoaClasses(("PARP", DMSO_CLASS))
    with pytest.raises(ValueError, match="twice"):
        MoaClasses(("PARP", "PARP"))


def test_a_synthetic_screen_lists_the_generator_classes_in_order(small_screen):
    """compounds.csv of the generator (a two-MoA compound listed under its primary MoA, a holdout
    MoA hidden) gives the ten MoAs in the generator's order: the columns and tie-breaks of before."""
    table = load_screen(small_screen / "metadata").compounds
    assert table["moa"].null_count() >= 2 and table["compound"].str.starts_with("POLY").any()
    assert MoaClasses.from_compounds(table).moas == MOAS
