"""Shared fixtures: one small synthetic screen per test session, copied into a fresh LCD_HOME."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from lcd_assets.definitions import build_definitions
from lcd_assets.partitions import dose_partitions, plate_partitions, timepoint_partitions
from lcd_assets.resources import CELL_SEGMENTATION_MODEL, SegmentationSettings, resources_for_env

#: the tests' cell segmentation network: small, trained once per session (see ``segmentation_dir``)
TEST_SEGMENTATION = SegmentationSettings(n_fovs=100, epochs=6, validation_fovs=8)


@pytest.fixture(scope="session")
def small_screen(tmp_path_factory) -> Path:
    """The ``small`` preset (2 replicas × 2 layouts × 2 timepoints), generated once."""
    from lcd_core.synth import generate_screen

    out = tmp_path_factory.mktemp("small_screen")
    generate_screen(out, preset="small", seed=0, workers=1)
    return out


@pytest.fixture(scope="session")
def segmentation_dir(tmp_path_factory) -> Path:
    """The :data:`TEST_SEGMENTATION` network, trained once for the tests of the optional
    segmentation path; the ``segmentation_model`` asset of a home holding it reuses it."""
    from lcd_core.cells import save_raynet
    from lcd_core.cells.train import fit_segmentation

    net, record = fit_segmentation(**TEST_SEGMENTATION.training())
    return save_raynet(net, tmp_path_factory.mktemp("segmentation") / CELL_SEGMENTATION_MODEL, record).parent


def new_home(home: Path, small_screen: Path, segmentation_dir: Path | None = None) -> Path:
    """``home`` as an LCD_HOME: a private copy of the small screen and, for the tests of the
    optional segmentation path, the session's cell segmentation network."""
    for sub in ("inbox", "metadata", "truth"):
        shutil.copytree(small_screen / sub, home / sub)
    if segmentation_dir is not None:
        shutil.copytree(segmentation_dir, home / "models" / CELL_SEGMENTATION_MODEL)
    return home


def local_resources(home: Path) -> dict:
    """The ``local`` resources of ``home`` with the tests' small segmentation settings."""
    return {**resources_for_env("local", home=home), "segmentation": TEST_SEGMENTATION}


@pytest.fixture
def lcd_home(small_screen, tmp_path) -> Path:
    """A fresh LCD_HOME (tests may damage it)."""
    return new_home(tmp_path / "lcd_home", small_screen)


@pytest.fixture
def segmented_home(small_screen, segmentation_dir, tmp_path) -> Path:
    """A fresh LCD_HOME holding the tests' segmentation network (the optional RayNet path)."""
    return new_home(tmp_path / "lcd_home", small_screen, segmentation_dir)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def defs(lcd_home):
    return build_definitions(local_resources(lcd_home))


def add_partitions(instance, plates, timepoints, doses=()):
    instance.add_dynamic_partitions(plate_partitions.name, list(plates))
    instance.add_dynamic_partitions(timepoint_partitions.name, list(timepoints))
    if doses:
        instance.add_dynamic_partitions(dose_partitions.name, list(doses))


def run_job(defs, name, instance, partition_key=None, tags=None):
    return defs.resolve_job_def(name).execute_in_process(
        instance=instance, partition_key=partition_key, tags=tags, raise_on_error=False
    )


def phenix_fixtures() -> Path:
    """The real Opera Phenix exports of ``shared/fixtures/phenix`` (``LCD_SHARED`` overrides where
    ``shared/`` is; by default it sits beside the repository)."""
    shared = os.environ.get("LCD_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    path = base / "fixtures" / "phenix"
    assert path.is_dir(), f"Phenix fixtures not found at {path} (set LCD_SHARED to the shared/ folder)"
    return path
