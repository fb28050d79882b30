"""lcd_core.ssl.ablation (retrieval mAP, replica predictability, held-out split, collapse) and
lcd_core.ssl.source.TileBank."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lcd_core.profiling.average_precision import average_precision
from lcd_core.ssl import ablation
from lcd_core.ssl.config import CPU_PRETRAINING, cpu_default, fit_to_steps, preset_config
from lcd_core.ssl.schedules import schedules_for
from lcd_core.ssl.source import TileBank


def _tiles(n_compounds=4, replicas=("R01", "R02", "R03"), per=4, ctrl_per=6) -> pl.DataFrame:
    rows = []
    for r in replicas:
        for c in range(n_compounds):
            for k in range(per):
                rows.append({"compound": f"C{c}", "replica": r, "timepoint": "04h", "role": "treatment",
                             "dose": "1uM", "plate": f"{r}-L05", "well": f"B{c:02d}", "k": k})
        for k in range(ctrl_per):
            rows.append({"compound": "DMSO", "replica": r, "timepoint": "04h", "role": "negative_control",
                         "dose": "1uM", "plate": f"{r}-L05", "well": f"D{k:02d}", "k": k})
    return pl.DataFrame(rows)


def _embed(t: pl.DataFrame, compound_w: float, replica_w: float, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dim = 32
    comp_axes = {c: rng.normal(size=dim) for c in t["compound"].unique()}
    rep_axes = {r: rng.normal(size=dim) for r in t["replica"].unique()}
    return np.stack([compound_w * comp_axes[c] + replica_w * rep_axes[r] + rng.normal(size=dim)
                     for c, r in t.select("compound", "replica").iter_rows()])


def test_retrieval_map_is_one_for_a_perfect_embedding_and_low_for_a_replica_embedding():
    t = _tiles()
    perfect, nq, nc = ablation.compound_retrieval_map(_embed(t, 20.0, 0.0), t)
    assert perfect == pytest.approx(1.0) and nq == 3 * 4 * 4 and nc == 4
    batchy = ablation.compound_retrieval_map(_embed(t, 0.0, 20.0), t)[0]
    assert batchy < 0.3  # same-replica tiles of other compounds outrank the positives


def test_retrieval_map_matches_a_hand_count():
    """Two compounds, two replicas, one tile each: every query has one positive (the other
    replica) and the other compound's tiles as negatives; AP is 1 / rank of that positive."""
    t = pl.DataFrame({"compound": ["A", "A", "B", "B"], "replica": ["R1", "R2", "R1", "R2"],
                      "timepoint": ["04h"] * 4, "role": ["treatment"] * 4})
    e = np.array([[1.0, 0.0], [0.8, 0.6], [0.9, 0.1], [0.0, 1.0]])
    sim = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = sim @ sim.T
    expected = []
    for q, pos in ((0, 1), (1, 0), (2, 3), (3, 2)):
        others = [j for j in range(4) if j != q]
        rank = 1 + sum(sim[q, j] > sim[q, pos] for j in others if j != pos)
        expected.append(1.0 / rank)
    m, nq, _ = ablation.compound_retrieval_map(e, t)
    assert nq == 4 and m == pytest.approx(np.mean([np.mean(expected[:2]), np.mean(expected[2:])]))
    kernel = average_precision(sim[[0]][:, [1, 2, 3]], np.array([[True, False, False]]))
    assert kernel[0] == pytest.approx(expected[0])


def test_replica_predictability_sees_batch_effects_on_controls_only():
    t = _tiles(ctrl_per=12)
    high, chance, n, reps = ablation.replica_predictability(_embed(t, 0.0, 3.0), t)
    low = ablation.replica_predictability(_embed(t, 3.0, 0.0), t)[0]
    assert chance == pytest.approx(1 / 3) and n == 36 and reps == 3
    assert high > 0.9 and low < 0.6


def test_evaluate_embedding_checks_its_input():
    t = _tiles()
    with pytest.raises(ValueError, match="embeddings for"):
        ablation.evaluate_embedding(np.zeros((3, 4)), t)
    bad = _embed(t, 1.0, 1.0)
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        ablation.evaluate_embedding(bad, t)
    with pytest.raises(ValueError, match="≥ 2 replicas"):
        ablation.replica_predictability(_embed(t, 1, 1), t.with_columns(pl.lit("R01").alias("replica")))


def test_heldout_layouts_from_the_holdout_set_or_the_last_layout():
    layouts = pl.DataFrame({"layout": ["L01", "L01", "L02", "L02", "L03"],
                            "compound": ["A", "DMSO", "H1", "DMSO", "B"],
                            "role": ["treatment", "negative_control", "treatment", "negative_control", "treatment"]})
    compounds = pl.DataFrame({"compound": ["A", "B", "H1", "DMSO"],
                              "set": ["training", "training", "holdout", "control"]})
    assert ablation.heldout_layouts(layouts, compounds)[0] == ["L02"]
    names, why = ablation.heldout_layouts(layouts, compounds.drop("set"))
    assert names == ["L03"] and "no holdout" in why


def test_collapse_stats_detect_collapse():
    rng = np.random.default_rng(0)
    healthy = ablation.collapse_stats(rng.normal(size=(200, 64)))
    collapsed = ablation.collapse_stats(np.ones((200, 64)) + 1e-6 * rng.normal(size=(200, 64)))
    assert healthy["effective_rank"] > 40 and collapsed["effective_rank"] < 1.5
    assert collapsed["embed_std"] < 1e-4 < healthy["embed_std"]


def test_fit_to_steps_keeps_the_paper_proportions():
    c = fit_to_steps(cpu_default(batch_size=8), n_tiles=400, steps=120)
    s = schedules_for(c, 400 // 8)
    assert len(s.lr) == 120
    assert int(np.argmax(s.lr)) == 20  # warm-up 1/6 of the run
    assert s.teacher_temp[59] == pytest.approx(0.07) and s.teacher_temp[0] == pytest.approx(0.04)
    with pytest.raises(ValueError):
        fit_to_steps(c, 0, 10)


def test_presets():
    cfg, steps = preset_config("cpu", "dino_xb", 1000)
    assert steps == CPU_PRETRAINING["steps"] and cfg.cross_batch and not cfg.barlow and not cfg.plane_agnostic
    assert cfg.global_crop_size == CPU_PRETRAINING["global_crop_size"]
    gpu, gsteps = preset_config("gpu", "pa_dino_barlow_xb", 256 * 100)
    assert gsteps == 60 * 100 and gpu.out_dim == 65536 and gpu.plane_agnostic
    with pytest.raises(ValueError, match="unknown variant"):
        preset_config("cpu", "simclr", 10)
    with pytest.raises(ValueError, match="preset"):
        preset_config("tpu", "dino", 10)


def test_tile_bank_round_trip_and_failed_write_keeps_the_old_bank(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 16, 16)).astype(np.float16)
    rows = [{"tile_id": f"t{i}", "split": "train" if i < 3 else "heldout"} for i in range(5)]
    bank = TileBank.write(tmp_path / "bank", [(rows[:2], x[:2]), (rows[2:], x[2:])], 5, 16)
    assert np.array_equal(bank.load(4), x[4].astype(np.float32))
    view = bank.subset((bank.table["split"] == "heldout").to_numpy())
    assert len(view) == 2 and view.table["tile_id"].to_list() == ["t3", "t4"]
    assert np.array_equal(view.array(), x[3:])

    def broken():
        yield rows[:2], x[:2]
        raise OSError("disk gone")

    with pytest.raises(OSError):
        TileBank.write(tmp_path / "bank", broken(), 5, 16)
    assert TileBank(tmp_path / "bank").table.height == 5
    with pytest.raises(ValueError, match="announced"):
        TileBank.write(tmp_path / "bank", [(rows, x)], 4, 16)
    assert TileBank(tmp_path / "bank").table.height == 5


def test_evaluate_embedding_reports_a_bootstrap_interval_around_the_map():
    t = _tiles()
    s = ablation.evaluate_embedding(_embed(t, 1.0, 1.0), t)
    assert s.retrieval_map_ci_low <= s.retrieval_map <= s.retrieval_map_ci_high
    assert s.retrieval_map_ci_high - s.retrieval_map_ci_low > 0
    assert ablation.bootstrap_ci(np.full(5, 0.3)) == pytest.approx((0.3, 0.3))


def test_bootstrap_auroc_resamples_the_same_rows_for_every_score_vector():
    y = np.array([True, False] * 20)
    perfect = y.astype(float)
    noisy = perfect + np.random.default_rng(0).normal(scale=0.8, size=y.size)
    a, b = ablation.bootstrap_auroc(perfect, y, n=200), ablation.bootstrap_auroc(noisy, y, n=200)
    assert a.shape == b.shape == (200,) and np.all(a == 1.0)
    assert np.all(a - b >= 0)  # paired: the same resample, so the perfect scores never lose
    assert ablation.bootstrap_auroc(perfect, np.ones(5, bool)).size == 0
