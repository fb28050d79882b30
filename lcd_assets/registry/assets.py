"""The screen's metadata: compounds, plate maps (layouts) and the run registry."""


import uuid

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome
from lcd_core.io.platemap import atomic_write_text


@dg.asset(
    group_name="registry",
    kinds={"csv", "duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "Compounds, layouts (well → compound, MoA, SMILES, role) and the run registry (barcode → "
        "replica, layout, dose, dosing time) from `$LCD_HOME/metadata`, validated on load (duplicate "
        "or foreign wells, unknown compounds, too few DMSO wells, one dose per replica) and written "
        "to the warehouse tables `compounds`, `layouts` and `plates` in one transaction."
    ),
)
def plate_registry(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    screen = lcd.metadata_screen()
    # one transaction: a failure or a killed run never leaves new compounds beside old layouts
    lcd.warehouse().replace_tables(
        {"compounds": screen.compounds, "layouts": screen.layouts, "plates": screen.registry}
    )
    atomic_write_text(lcd.registry_version, uuid.uuid4().hex)  # LcdHome.screen reads the tables again
    control = screen.config.control
    per_layout = screen.layouts.group_by("layout").agg(
        pl.len().alias("wells"),
        (pl.col("compound") == control).sum().alias(f"{control}_wells"),
        pl.col("compound").filter(pl.col("compound") != control).n_unique().alias("compounds"),
    ).sort("layout")
    return dg.MaterializeResult(
        metadata={
            "screen": screen.config.name,
            "compounds": screen.compounds.height,
            "moas": screen.compounds["moa"].drop_nulls().n_unique(),
            "layouts": per_layout.height,
            "plates": screen.registry.height,
            "replicas": screen.registry["replica"].n_unique(),
            "doses": ", ".join(screen.doses()),
            "timepoints": ", ".join(screen.timepoints()),
            "layouts_table": md.table(per_layout),
            "registry": md.table(screen.registry.select(["barcode", "plate", "replica", "layout", "dose"])),
        }
    )
