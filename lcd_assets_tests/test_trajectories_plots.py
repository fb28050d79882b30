"""Trajectory figures (lcd_core.plots.trajectory_map / trajectory_distance): PNGs, one panel per dose."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest

from lcd_assets_tests.test_trajectories_conditions import features, planted_screen, planted_truth
from lcd_core.pipeline.trajectories import trajectories
from lcd_core.plots import trajectory_distance, trajectory_map


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    act = planted_truth().select("compound", "dose", "timepoint", pl.col("effect").alias("map_es"),
                                 pl.col("truly_active").alias("active"))
    return trajectories(planted_screen(n_layouts=2, n_replicas=1), features(), act, n_boot=100).table


def _image(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return plt.imread(io.BytesIO(png))


@pytest.mark.parametrize("plot", [trajectory_map, trajectory_distance])
def test_one_panel_per_dose(plot, table):
    two = _image(plot(table))
    one = _image(plot(table.filter(pl.col("dose") == "10uM")))
    assert two.shape[1] > 1.4 * one.shape[1]  # a second panel, same legend
    assert abs(two.shape[0] - one.shape[0]) < 0.2 * one.shape[0]
    assert two[..., :3].std() > 0.05  # something drawn


def test_map_labels_and_distance_subset(table):
    assert _image(trajectory_map(table, explained=(0.5, 0.25))).size
    only = _image(trajectory_distance(table, compounds=["EARLY", "LATE"]))
    every = _image(trajectory_distance(table))
    assert only.shape[1] <= every.shape[1]  # fewer MoAs in the legend
    # a single timepoint, a missing MoA and a missing interval still draw
    odd = table.filter(pl.col("timepoint") == "04h").with_columns(pl.lit(None, pl.String).alias("moa"),
                                                                  pl.lit(None, pl.Float64).alias("ci_low"))
    assert _image(trajectory_map(odd)).size and _image(trajectory_distance(odd)).size
