"""Resources of the code location (lcd_assets.resources): the screen that every asset reads."""

from __future__ import annotations

import dagster as dg
import polars as pl

from lcd_assets.registry.assets import plate_registry
from lcd_assets_tests.conftest import local_resources
from lcd_core.io.warehouse import Warehouse


def test_the_screen_is_read_once_across_warehouse_writes_and_again_after_plate_registry(lcd_home):
    """Every asset asks ``LcdHome.screen()``: the registry tables are read once, not again after
    each write of another table (two acquisition workers write all the time), and read again
    when ``plate_registry`` rewrites them."""
    resources = local_resources(lcd_home)
    lcd = resources["lcd"]
    with dg.instance_for_test() as instance:
        assert dg.materialize([plate_registry], instance=instance, resources=resources).success
        first = lcd.screen()
        Warehouse(lcd_home).replace_table("unrelated", pl.DataFrame({"x": [1]}))
        assert lcd.screen() is first
        assert dg.materialize([plate_registry], instance=instance, resources=resources).success
    again = lcd.screen()
    assert again is not first and again.compounds.equals(first.compounds)


def test_a_home_without_the_version_file_keys_the_screen_on_the_warehouse(lcd_home):
    """A home written before the version file existed: a warehouse write reads the tables again
    (never a stale screen)."""
    resources = local_resources(lcd_home)
    lcd = resources["lcd"]
    with dg.instance_for_test() as instance:
        assert dg.materialize([plate_registry], instance=instance, resources=resources).success
    lcd.registry_version.unlink()
    first = lcd.screen()
    Warehouse(lcd_home).replace_table("unrelated", pl.DataFrame({"x": [1]}))
    assert lcd.screen() is not first
