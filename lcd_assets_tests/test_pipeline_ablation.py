"""lcd_core.pipeline.ablation: a model's embedding of the screen's tiles through the one chain."""

import numpy as np
import polars as pl
import pytest

from lcd_core.pipeline import ablation
from lcd_core.pipeline.downstream import ChainSettings

FEW_DRAWS = ChainSettings(n_draws=50)


def _screen_tiles(seed=0):
    """Tiles of 2 replicas × 2 layouts × 1 timepoint: 8 DMSO wells and 4 compounds per plate, 2 FOVs
    of 2 tiles a well; compounds C0, C1 act (their own direction), C2, C3 do not."""
    rng = np.random.default_rng(seed)
    rows, X, d = [], [], 16
    direction = {f"C{i}": rng.normal(size=d) for i in range(4)}
    truth = []
    for rep, dose in (("R01", "1uM"), ("R02", "10uM")):
        for lay in ("L01", "L02"):
            plate = f"{rep}-{lay}"
            off = rng.normal(size=d)
            wells = [("DMSO", "negative_control")] * 8 + [(f"C{i}", "treatment") for i in range(4)]
            for wi, (cpd, role) in enumerate(wells):
                effect = 3 * direction[cpd] if cpd in ("C0", "C1") else 0
                for field in (1, 1, 2, 2):
                    rows.append(dict(plate=plate, timepoint="04h", well=f"W{wi:02d}", field=field, replica=rep,
                                     layout=lay, dose=dose, compound=cpd, moa=None, role=role))
                    X.append(off + effect + rng.normal(size=d))
        truth += [dict(compound=f"C{i}", dose=dose, timepoint="04h", truly_active=i < 2) for i in range(4)]
    return np.array(X), pl.DataFrame(rows), pl.DataFrame(truth)


def test_tile_fov_profiles_average_each_fov():
    X, table, _ = _screen_tiles()
    fovs = ablation.tile_fov_profiles(X, table)
    assert fovs.height == table.select("plate", "well", "field").unique().height
    first = fovs.row(0, named=True)
    assert first["Metadata_field"] == 1
    assert first["emb_000"] == pytest.approx(X[:2, 0].mean(), rel=1e-5)  # the first FOV's two tiles
    with pytest.raises(ValueError, match="lacks column"):
        ablation.tile_fov_profiles(X, table.drop("field"))


def test_screen_activity_scores_every_condition_against_the_truth():
    X, table, truth = _screen_tiles()
    good = ablation.screen_activity(X, table, truth, settings=FEW_DRAWS)
    assert good["activity_conditions"] == 8 and good["activity_auroc"] == pytest.approx(1.0)
    noise = ablation.screen_activity(np.random.default_rng(3).normal(size=X.shape), table, truth,
                                     settings=FEW_DRAWS)
    assert noise["activity_map"] < good["activity_map"]
    assert ablation.screen_activity(X, table, None, settings=FEW_DRAWS)["activity_auroc"] is None
    with pytest.raises(ValueError, match="lacks column"):
        ablation.screen_activity(X, table.drop("layout"), truth)


def test_screen_activity_runs_the_platform_chain_and_carries_a_paired_bootstrap():
    X, table, truth = _screen_tiles()
    out = ablation.screen_activity(X, table, truth, settings=FEW_DRAWS)
    assert out["activity_auroc_ci_low"] <= out["activity_auroc"] <= out["activity_auroc_ci_high"]
    assert out["activity_auroc_boot"].shape == (1000,) and len(out["activity_keys"]) == 8  # 8 conditions
    # MAD alone (no Harmony) is another chain: the default is the platform's MAD + Harmony/FOV
    mad = ablation.screen_activity(X, table, truth, settings=FEW_DRAWS.with_method("mad"))
    assert mad["activity_map"] != out["activity_map"]
