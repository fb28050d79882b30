"""Reading the normalized well profiles of every dose × timepoint (the time-lapse assets' and
``lcd search``'s input)."""

import polars as pl

from lcd_core.io.warehouse import Warehouse
from lcd_core.profiling.profiles import feature_columns


def all_profiles(wh: Warehouse) -> tuple[pl.DataFrame, list[str]]:
    """Every materialized ``normalized_profiles`` partition, concatenated, and its feature columns.

    Raises a ValueError naming the missing asset when no condition has been analysed yet.
    """
    if "activity" not in wh.tables():
        raise ValueError("no activity table: materialize the analysis job (normalized_profiles, activity) first")
    conditions = wh.query("SELECT DISTINCT dose, timepoint FROM activity ORDER BY timepoint, dose")
    frames = [wh.read_parquet_partition("normalized_profiles", {"dose": d, "timepoint": t}).drop(
        ["dose", "timepoint"], strict=False) for d, t in conditions.iter_rows()
        if wh.has_parquet_partition("normalized_profiles", {"dose": d, "timepoint": t})]
    if not frames:
        raise ValueError("no normalized_profiles partition: materialize the analysis job first")
    profiles = pl.concat(frames, how="diagonal_relaxed")
    return profiles, feature_columns(profiles)


def handcrafted_profiles(wh: Warehouse) -> tuple[pl.DataFrame, list[str]]:
    """The handcrafted baseline's normalized well profiles (every dose × timepoint) and features."""
    if "handcrafted_profiles" not in wh.tables():
        raise ValueError("no handcrafted_profiles table: materialize handcrafted_baseline first")
    profiles = wh.query("SELECT * FROM handcrafted_profiles").drop(["dose", "timepoint"], strict=False)
    return profiles, feature_columns(profiles)


def profiles_of(wh: Warehouse, features: str) -> tuple[pl.DataFrame, list[str]]:
    """The profiles of a feature set: ``model`` (the ViT's) or ``handcrafted``."""
    if features not in ("model", "handcrafted"):
        raise ValueError(f"unknown feature set {features!r}: expected 'model' or 'handcrafted'")
    return all_profiles(wh) if features == "model" else handcrafted_profiles(wh)
