"""Shared fixtures: one small synthetic screen per test session, copied into a fresh LCD_HOME."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from lcd_assets.definitions import build_definitions
from lcd_assets.partitions import dose_partitions, plate_partitions, timepoint_partitions
from lcd_assets.resources import resources_for_env


@pytest.fixture(scope="session")
def small_screen(tmp_path_factory) -> Path:
    """The ``small`` preset (2 replicas × 2 layouts × 2 timepoints), generated once."""
    from lcd_core.synth import generate_screen

    out = tmp_path_factory.mktemp("small_screen")
    generate_screen(out, preset="small", seed=0, workers=1)
    return out


@pytest.fixture
def lcd_home(small_screen, tmp_path) -> Path:
    """A fresh LCD_HOME holding a private copy of the small screen (tests may damage it)."""
    home = tmp_path / "lcd_home"
    for sub in ("inbox", "metadata", "truth"):
        shutil.copytree(small_screen / sub, home / sub)
    return home


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def defs(lcd_home):
    return build_definitions(resources_for_env("local", home=lcd_home))


def add_partitions(instance, plates, timepoints, doses=()):
    instance.add_dynamic_partitions(plate_partitions.name, list(plates))
    instance.add_dynamic_partitions(timepoint_partitions.name, list(timepoints))
    if doses:
        instance.add_dynamic_partitions(dose_partitions.name, list(doses))


def run_job(defs, name, instance, partition_key=None, tags=None):
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance, partition_key=partition_key, tags=tags, raise_on_error=False
    )
