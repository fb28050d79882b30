"""lcd_core: the pure library of the Live Cell Dynamics platform (no Dagster imports)."""

__version__ = "0.1.0"
