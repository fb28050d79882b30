"""lcd_core.pipeline.downstream: one chain for every feature set, per partition or per screen."""

import numpy as np
import polars as pl
import pytest

from lcd_core.pipeline import downstream
from lcd_core.pipeline.downstream import ChainSettings
from lcd_core.profiling.normalize import normalize_to_wells

FEW = ChainSettings(n_draws=40)


def _fovs(seed=0, timepoints=("04h", "20h")):
    """FOV profiles of 2 replicas (one dose each) × 2 layouts: 8 DMSO wells and 4 compounds per
    plate, 2 FOVs a well; A0, A1 act from 20 h on."""
    rng = np.random.default_rng(seed)
    d, rows = 12, []
    direction = {f"A{i}": rng.normal(size=d) for i in range(4)}
    for tp in timepoints:
        for rep, dose in (("R01", "1uM"), ("R02", "10uM")):
            for lay in ("L01", "L02"):
                off = rng.normal(size=d)
                wells = [("DMSO", None, "negative_control")] * 8 + [(f"A{i}", f"M{i % 2}", "treatment")
                                                                   for i in range(4)]
                for wi, (cpd, moa, role) in enumerate(wells):
                    act = 3.0 if cpd in ("A0", "A1") and tp == "20h" else 0.0
                    for field in (1, 2):
                        x = off + act * direction.get(cpd, 0) + rng.normal(size=d)
                        rows.append({"Metadata_plate": f"{rep}-{lay}", "Metadata_timepoint": tp,
                                     "Metadata_well": f"W{wi:02d}", "Metadata_field": field,
                                     "Metadata_replica": rep, "Metadata_layout": lay, "Metadata_dose": dose,
                                     "Metadata_compound": cpd, "Metadata_moa": moa, "Metadata_role": role,
                                     **{f"emb_{j:03d}": float(v) for j, v in enumerate(x)}})
    return pl.DataFrame(rows)


def test_settings_default_to_the_papers_chain_and_validate():
    s = ChainSettings()
    assert (s.method, s.n_draws, s.threshold) == ("mad_harmony_fov", 1000, 0.8)
    assert s.with_method("mad").method == "mad" and s.method == "mad_harmony_fov"
    with pytest.raises(ValueError, match="normalization method 'zscore'"):
        ChainSettings(method="zscore")
    with pytest.raises(ValueError, match="n_draws"):
        ChainSettings(n_draws=0)


def test_condition_wells_normalize_the_whole_timepoint_then_keep_one_dose():
    fovs = _fovs().filter(pl.col("Metadata_timepoint") == "20h")
    wells, result = downstream.condition_wells(fovs, "1uM", FEW)
    assert set(wells["Metadata_dose"]) == {"1uM"} and set(wells["Metadata_normalization"]) == {FEW.method}
    assert wells.height == 2 * 12  # two plates of 12 wells at 1 µM
    alone, _ = normalize_to_wells(fovs.filter(pl.col("Metadata_dose") == "1uM"), FEW.method)
    feats = list(result.features)
    assert not np.allclose(wells.select(feats).to_numpy(), alone.select(feats).to_numpy())


def test_one_call_over_the_screen_equals_the_per_partition_path():
    fovs = _fovs()
    screen = downstream.run_chain(fovs, FEW)
    assert screen.moa is None and screen.activity["dose"].dtype == pl.String
    parts = []
    for tp in ("04h", "20h"):
        for dose in ("1uM", "10uM"):
            wells, _ = downstream.condition_wells(fovs.filter(pl.col("Metadata_timepoint") == tp), dose, FEW)
            parts.append(downstream.condition_activity(wells, FEW).activity)
    keys = ["compound", "dose", "timepoint"]
    per_partition = pl.concat(parts).sort(keys)
    assert screen.activity.sort(keys).select(*keys, "map_mean", "map_es", "active").equals(
        per_partition.select(*keys, "map_mean", "map_es", "active"))
    called = screen.activity.filter(pl.col("active"))
    assert {("A0", "20h"), ("A1", "20h")} <= set(called.select("compound", "timepoint").iter_rows())
