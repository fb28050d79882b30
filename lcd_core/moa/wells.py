"""The well profiles the MoA stage reads: metadata columns, training labels and wells, conditions.

Profiles follow the cytomining convention (:mod:`lcd_core.profiling.profiles`): ``Metadata_compound``,
``Metadata_moa`` (null for DMSO / unknown), ``Metadata_role`` (``negative_control`` = DMSO,
``treatment``), ``Metadata_dose`` (``"10uM"``), ``Metadata_timepoint`` (``"04h"``), … + float features.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import polars as pl

from lcd_core.keys import parse_dose_key
from lcd_core.moa.classes import DMSO_CLASS, MoaClasses
from lcd_core.profiling.profiles import feature_columns

COMPOUND, MOA, ROLE = "Metadata_compound", "Metadata_moa", "Metadata_role"
DOSE, TIMEPOINT = "Metadata_dose", "Metadata_timepoint"
CONTROL = "negative_control"


def well_labels(profiles: pl.DataFrame) -> np.ndarray:
    """Training label per well: DMSO for controls, the MoA otherwise (null → None)."""
    return (
        profiles.select(
            pl.when(pl.col(ROLE) == CONTROL).then(pl.lit(DMSO_CLASS)).otherwise(pl.col(MOA)).alias("y")
        )["y"].to_numpy()
    )


def training_wells(profiles: pl.DataFrame, active: Collection[str]) -> pl.DataFrame:
    """DMSO wells + wells of active, labelled treatment compounds."""
    return profiles.filter(
        (pl.col(ROLE) == CONTROL)
        | (pl.col(COMPOUND).is_in(list(active)) & pl.col(MOA).is_not_null())
    )


def float_features(profiles: pl.DataFrame) -> tuple[str, ...]:
    """Float feature columns (non-``Metadata_``; stray non-float columns are ignored)."""
    schema = profiles.schema  # built once: polars makes a new Schema on every ``.schema``
    return tuple(c for c in feature_columns(profiles) if schema[c].is_float())


def conditions(profiles: pl.DataFrame) -> list[tuple[str, str]]:
    """The (dose, timepoint) keys of the profiles, doses ordered by value."""
    keys = profiles.select(DOSE, TIMEPOINT).unique().rows()
    return sorted(keys, key=lambda k: (parse_dose_key(k[0]), k[1]))


def active_at(active: Collection[str] | pl.DataFrame, dose: str, tp: str) -> set[str]:
    """The compounds active at one condition: from an activity table (compound, dose, timepoint,
    active), or a collection of names that holds at every condition."""
    if isinstance(active, pl.DataFrame):
        sel = active.filter((pl.col("dose") == dose) & (pl.col("timepoint") == tp) & pl.col("active"))
        return set(sel["compound"].to_list())
    return set(active)


def validate_labels(profiles: pl.DataFrame, *, classes: MoaClasses) -> None:
    """Raise ``ValueError`` naming the compounds whose label is not one of ``classes.moas``.

    Null labels (unknown MoA) are fine; DMSO (``negative_control``) rows are not checked. A
    compound with two different labels is an error too.
    """
    tr = profiles.filter(pl.col(ROLE) != CONTROL).select(COMPOUND, MOA).unique()
    bad = tr.filter(pl.col(MOA).is_not_null() & ~pl.col(MOA).is_in(list(classes.moas))).sort(COMPOUND)
    if bad.height:
        items = ", ".join(f"{c} ({m!r})" for c, m in bad.iter_rows())
        raise ValueError(f"MoA labels outside the {len(classes.moas)} classes: {items}")
    multi = tr.drop_nulls(MOA).group_by(COMPOUND).agg(pl.col(MOA).n_unique().alias("n")).filter(pl.col("n") > 1)
    if multi.height:
        raise ValueError(f"compounds with more than one MoA label: {', '.join(sorted(multi[COMPOUND]))}")
