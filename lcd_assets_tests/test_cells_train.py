"""The annotation set, training and validation of the cell polygons (lcd_core.cells.train)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lcd_core.cells.raynet import N_RAYS
from lcd_core.cells.train import (
    annotation_set,
    random_phenotype,
    rays_to_ellipse,
    train_raynet,
    validate_raynet,
)
from lcd_core.synth.cells import MOA_PROGRAMS


def test_rays_to_ellipse_hand_values():
    one = np.array([1.0])
    circle = rays_to_ellipse(np.array([[0.0, 0.0]]), 0 * one, 0 * one, 10 * one, 10 * one, 0 * one)[0]
    assert np.allclose(circle, 10.0)
    off = rays_to_ellipse(np.array([[3.0, 0.0]]), 0 * one, 0 * one, 10 * one, 10 * one, 0 * one)[0]
    assert off[0] == pytest.approx(7.0) and off[N_RAYS // 2] == pytest.approx(13.0)  # along +x, along −x
    # an ellipse along y (angle 90°): 20 px up and down, 5 px sideways
    tall = rays_to_ellipse(np.array([[0.0, 0.0]]), 0 * one, 0 * one, 20 * one, 5 * one, np.pi / 2 * one)[0]
    assert tall[0] == pytest.approx(5.0) and tall[N_RAYS // 4] == pytest.approx(20.0)


def test_random_phenotypes_span_more_than_the_moa_programs():
    rng = np.random.default_rng(0)
    draws = [random_phenotype(rng) for _ in range(400)]
    elong = np.array([p.elongation for p in draws])
    scale = np.array([p.cell_scale for p in draws])
    programs = list(MOA_PROGRAMS.values())
    assert elong.min() < min(p.elongation for p in programs) and elong.max() > max(p.elongation for p in programs)
    assert scale.min() < min(p.cell_scale for p in programs) and scale.max() > max(p.cell_scale for p in programs)
    assert 0.3 < np.mean([p.multinucleated > 0 for p in draws]) < 0.7


def test_the_large_cell_regime_draws_large_multinucleated_cells_of_any_shape():
    rng = np.random.default_rng(1)
    draws = [random_phenotype(rng, large_cells=True) for _ in range(200)]
    assert min(p.cell_scale for p in draws) >= 1.2 and max(p.cell_scale for p in draws) <= 1.6
    assert min(p.multinucleated for p in draws) >= 0.2
    elong = np.array([p.elongation for p in draws])
    assert elong.min() < 1.4 and elong.max() > 3.5  # elongation is not steered


def test_annotation_set_large_share():
    plain, large = annotation_set(6, seed=3, large_share=0.0), annotation_set(6, seed=3, large_share=1.0)
    # a large-cell FOV has larger cells: longer cell rays on average
    assert large.log_rays[large.live == 1, 0].mean() > plain.log_rays[plain.live == 1, 0].mean() + 0.1


def test_annotation_set_is_deterministic_and_labelled():
    a, b = annotation_set(3, seed=4), annotation_set(3, seed=4)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.log_rays, b.log_rays)
    assert a.x.shape[1:] == (3, 128, 128) and a.x.dtype == np.float16
    assert a.log_rays.shape == (len(a.x), 2, N_RAYS)  # cell, nucleus
    live = a.live == 1
    assert 0.5 < live.mean() < 0.9
    assert (a.log_rays[~live] == 0).all() and (a.log_rays[live] >= 0).all()
    # the nucleus ray stays inside the cell ray (a nucleus near the cell edge may poke out of the ellipse)
    assert (a.log_rays[live, 0] >= a.log_rays[live, 1] - 1e-6).mean() > 0.9
    assert not np.array_equal(annotation_set(3, seed=5).log_rays[:5], a.log_rays[:5])


def test_training_lowers_the_loss_and_validation_reports_every_figure():
    data = annotation_set(12, seed=1)
    net, history = train_raynet(data, epochs=3, width=8, batch_size=32, seed=0)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    val = validate_raynet(net, 3, seed=9)
    assert set(val) >= {"recall", "precision", "cell_log_elongation_r", "nucleus_log_area_r", "fov_log_elongation_r",
                        "fov_count_r"}
    assert 0 <= val["recall"] <= 1 and val["true_nuclei"] > 0


def test_nucleus_weight_zero_ignores_the_nucleus_targets():
    data = annotation_set(4, seed=6)
    moved = dataclasses.replace(data, log_rays=data.log_rays.copy())
    moved.log_rays[:, 1] += 0.5
    runs = [train_raynet(d, epochs=1, width=8, batch_size=32, seed=0, nucleus_weight=w)[1][0]["loss"]
            for d in (data, moved) for w in (0.0, 1.0)]
    assert runs[0] == pytest.approx(runs[2], rel=1e-6)  # weight 0: the same fit whatever the nucleus says
    assert runs[1] != pytest.approx(runs[3], rel=1e-3)  # weight 1: the nucleus targets count


def test_annotation_set_fields():
    assert [f.name for f in dataclasses.fields(annotation_set(1, seed=0))] == ["x", "log_rays", "live", "fovs"]


def test_dead_cells_are_negatives_even_beyond_the_negative_quota(monkeypatch):
    import lcd_core.cells.train as train
    from lcd_core.synth.cells import Phenotype

    monkeypatch.setattr(train, "random_phenotype", lambda rng, large_cells=False: Phenotype(growth=1.0, death=0.9))
    data = annotation_set(3, seed=2)
    assert len(data.x) and (data.live == 0).sum() > (data.live == 1).sum()  # mostly dead: all negatives kept
