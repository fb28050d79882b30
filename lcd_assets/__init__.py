"""lcd_assets: Dagster definitions of the lcd platform, thin glue over ``lcd_core``."""
