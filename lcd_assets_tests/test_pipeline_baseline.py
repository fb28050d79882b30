"""lcd_core.pipeline.baseline: which feature sets run, the cell-feature join, the comparison."""

import polars as pl
import pytest

from lcd_assets_tests.test_pipeline_downstream import _fovs
from lcd_core import moa
from lcd_core.pipeline import baseline
from lcd_core.pipeline.downstream import ChainSettings

FEW = ChainSettings(n_draws=30)
CLASSES = moa.MoaClasses(("M0", "M1"))


def _lineage(fovs: pl.DataFrame) -> pl.DataFrame:
    """Warehouse-style FOV rows: plain lineage columns, two features."""
    meta = {c: c.removeprefix("Metadata_") for c in fovs.columns if c.startswith("Metadata_")}
    return fovs.rename(meta).select(*meta.values(), pl.col("plate").alias("barcode"), "emb_000", "emb_001")


def test_feature_sets_add_the_spherized_row_and_the_cells_only_when_segmented():
    fovs = _fovs(timepoints=("20h",)).with_columns(pl.lit(3.0).alias("cs_nuclei"), pl.lit(0.4).alias("cs_area"))
    sets, notes = baseline.feature_set_inputs(fovs, ["cs_nuclei", "cs_area"], None, FEW)
    assert list(sets) == [baseline.HANDCRAFTED, baseline.HANDCRAFTED_SPHERIZED, baseline.HANDCRAFTED_WITH_CELLS,
                          baseline.CELL_SEGMENTATION]
    assert sets[baseline.HANDCRAFTED][1] == FEW and sets[baseline.HANDCRAFTED_SPHERIZED][1].method == "mad_spherize"
    # the network's features (trained on generator renders) enter only the rows labelled so
    assert "cs_nuclei" not in sets[baseline.HANDCRAFTED][0].columns
    assert "cs_area" not in sets[baseline.HANDCRAFTED_SPHERIZED][0].columns
    assert {"cs_nuclei", "cs_area"} <= set(sets[baseline.HANDCRAFTED_WITH_CELLS][0].columns)
    assert "trained on synthetic annotations" in baseline.CELL_SEGMENTATION
    assert set(sets[baseline.CELL_SEGMENTATION][0].columns) == {
        *[c for c in fovs.columns if c.startswith("Metadata_")], "cs_nuclei", "cs_area"}
    assert notes == []
    unsegmented = fovs.with_columns(pl.lit(0.0).alias("cs_nuclei"))
    sets, notes = baseline.feature_set_inputs(unsegmented, ["cs_nuclei", "cs_area"], fovs.head(3), FEW)
    assert baseline.CELL_SEGMENTATION not in sets and baseline.HANDCRAFTED_WITH_CELLS not in sets
    assert baseline.TRUTH_MORPHOLOGY in sets
    assert "0% of the FOVs" in notes[0]
    sets, notes = baseline.feature_set_inputs(_fovs(timepoints=("20h",)), [], None, FEW)
    assert set(sets) == {baseline.HANDCRAFTED, baseline.HANDCRAFTED_SPHERIZED} and "no cell_features" in notes[0]


def test_cell_features_join_only_when_every_fov_has_them():
    fovs = _lineage(_fovs(timepoints=("20h",)))
    cells = fovs.select(*baseline.LINEAGE_KEYS).with_columns(pl.lit(2.0).alias("cs_nuclei"))
    joined, missing = baseline.join_cell_features(fovs, cells, ["cs_nuclei"])
    assert joined.height == fovs.height and "cs_nuclei" in joined.columns and missing.height == 0
    partial, missing = baseline.join_cell_features(fovs, cells.filter(pl.col("plate") != "R01-L01"), ["cs_nuclei"])
    assert partial.equals(fovs) and missing.rows() == [("R01-L01", "20h")]
    assert baseline.join_cell_features(fovs, None, ["cs_nuclei"])[0].equals(fovs)


def test_every_feature_set_goes_through_the_chain_and_is_compared():
    fovs = _fovs()
    sets = {"a": (fovs, FEW), "b": (fovs, FEW.with_method("mad"))}
    results = baseline.run_feature_sets(sets, classes=CLASSES, holdout_compounds=["A3"])
    assert set(results) == {"a", "b"}
    assert set(results["a"].moa.predictions["set"]) == {"train", "holdout"}
    assert not results["a"].activity.equals(results["b"].activity)  # the normalization differs
    readouts = {n: baseline.readout(r) for n, r in results.items()}
    truth = pl.DataFrame({"compound": ["A0", "A1", "A2", "A3"], "dose": ["1uM"] * 4, "timepoint": ["20h"] * 4,
                          "truly_active": [True, True, False, False]})
    planted = pl.DataFrame({"compound": ["A0", "A1", "A2", "A3"], "moa": ["M0", "M1", "M0", "M1"],
                            "moa_secondary": ["M1", "", "", ""]})
    cmp = baseline.compare_readouts(readouts, classes=CLASSES, truth_conditions=truth, truth_compounds=planted)
    assert set(cmp.scores["features"]) == {"a", "b"} and cmp.tests.height
    assert set(cmp.poly_truth["features"]) == {"a", "b"} and set(cmp.poly_truth["planted"]) == {1}
    assert cmp.summary["a"]["activity_auroc_vs_truth"] == pytest.approx(1.0)
    no_truth = baseline.compare_readouts(readouts, classes=CLASSES).poly_truth  # a real screen
    assert no_truth.height == 0 and {"features", "flag", "planted", "recall"} <= set(no_truth.columns)
