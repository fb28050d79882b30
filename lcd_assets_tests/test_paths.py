"""Run tags and config paths must stay inside LCD_HOME (issue 22): ``LcdHome.inside`` and the
assets that use it (``image_index``'s ``lcd/measurement`` tag, the ``embedding.checkpoint``
config of ``model_checkpoint`` and of the embedding pass)."""

from __future__ import annotations

import dagster as dg
import pytest

from lcd_assets.acquisition.assets import _vit, image_index
from lcd_assets.models.assets import model_checkpoint
from lcd_assets.partitions import measurement_key
from lcd_assets.resources import EmbeddingSettings, LcdHome, OutsideHomeError
from lcd_assets_tests.conftest import add_partitions


@pytest.fixture
def home(tmp_path) -> LcdHome:
    (tmp_path / "home" / "inbox" / "M1").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return LcdHome(home=str(tmp_path / "home"))


def test_paths_inside_are_accepted(home):
    inbox = home.inbox
    assert home.inside(inbox / "M1", "run tag lcd/measurement", inbox) == inbox / "M1"
    assert home.inside(inbox / "M1" / ".." / "M1", "tag", inbox) == inbox / "M1" / ".." / "M1"  # resolves inside
    assert home.inside("M1", "tag", inbox) == inbox / "M1"  # relative: under the base
    assert home.model_folder("untrained-vit-s16-seed0") == home.models_dir / "untrained-vit-s16-seed0"


@pytest.mark.parametrize("path", ["{tmp}/elsewhere", "{inbox}/../../elsewhere", "{inbox}/..", "/etc",
                                  "{inbox}/M1/../../metadata"])
def test_a_tag_outside_the_inbox_is_refused_naming_tag_and_path(home, tmp_path, path):
    path = path.format(tmp=tmp_path, inbox=home.inbox)
    with pytest.raises(OutsideHomeError, match=r"run tag lcd/measurement = '.*' lies outside .*inbox") as err:
        home.inside(path, "run tag lcd/measurement", home.inbox)
    assert path in str(err.value)


def test_a_symlinked_inbox_and_a_linked_measurement_folder_are_inside(tmp_path):
    share = tmp_path / "share"
    (share / "M1").mkdir(parents=True)
    (tmp_path / "outside_measurement").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "inbox").symlink_to(share, target_is_directory=True)  # the inbox on a mounted share
    (share / "linked").symlink_to(tmp_path / "outside_measurement", target_is_directory=True)
    home = LcdHome(home=str(tmp_path / "home"))
    assert home.inside(home.inbox / "M1", "tag", home.inbox) == home.inbox / "M1"  # unresolved prefix
    assert home.inside(share / "M1", "tag", home.inbox) == share / "M1"  # the resolved one
    assert home.inside(home.inbox / "linked", "tag", home.inbox) == home.inbox / "linked"  # row 12 of BAD_INPUT
    with pytest.raises(OutsideHomeError, match="outside"):
        home.inside(home.inbox / "linked" / ".." / "..", "tag", home.inbox)  # .. through a link is resolved


@pytest.mark.parametrize("checkpoint", ["../../elsewhere", "/etc", "../metadata/../../x"])
def test_a_checkpoint_outside_lcd_home_is_refused(home, checkpoint):
    with pytest.raises(OutsideHomeError, match=r"config embedding\.checkpoint = .* lies outside"):
        _vit(home, EmbeddingSettings(checkpoint=checkpoint))


def test_the_measurement_tag_is_checked_by_image_index(home, tmp_path):
    with dg.instance_for_test() as instance:
        add_partitions(instance, ["R01-L01"], ["04h"])
        result = dg.materialize([image_index], instance=instance, resources={"lcd": home},
                                partition_key=measurement_key("R01-L01", "04h"),
                                tags={"lcd/measurement": str(tmp_path / "elsewhere")}, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause \
        else failure.step_failure_data.error.message
    assert "OutsideHomeError" in message or "lies outside" in message
    assert "lcd/measurement" in message and str(tmp_path / "elsewhere") in message


def test_model_checkpoint_writes_nothing_outside_lcd_home(home, tmp_path):
    with dg.instance_for_test() as instance:
        result = dg.materialize([model_checkpoint], instance=instance, raise_on_error=False, resources={
            "lcd": home, "embedding": EmbeddingSettings(checkpoint="untrained-x/../../../elsewhere/vit")})
    assert not result.success
    assert not (tmp_path / "elsewhere" / "vit").exists()
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "config embedding.checkpoint" in str(failure.step_failure_data.error.to_string())
