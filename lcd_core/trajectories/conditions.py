"""The profiles of a screen split into dose × timepoint conditions, in dose and time order.

A trajectory reads one compound's wells at every condition against the DMSO wells of the same
condition (each dose × timepoint was normalized against its own DMSO, SPEC §4.4), so every
statistic of this package starts from :func:`split_conditions`: per condition the DMSO wells and
each compound's wells as float64 matrices, checked (the metadata columns present, finite
features, DMSO wells wherever a compound sits).

Order: doses by their value in µM (``"0.156uM" < "2.5uM" < "10uM"``, not text order), timepoints
by their hour (``"04h"`` → 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lcd_core.keys import parse_dose_key, parse_timepoint_key
from lcd_core.profiling.draws import ActivityColumns

__all__ = ["Condition", "dose_sort_key", "timepoint_hours", "ordered", "require_columns",
           "split_conditions"]

_HOURS_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*h?\s*$")


def dose_sort_key(dose) -> tuple:
    """Sort key of a dose: by µM (``"10uM"`` after ``"2.5uM"``), non-numeric doses last as text."""
    text = str(dose)
    for parse in (parse_dose_key, float):
        try:
            return 0, float(parse(text)), text
        except (TypeError, ValueError):
            continue
    return 1, 0.0, text


def timepoint_hours(timepoint) -> float:
    """Hours after dosing of a timepoint: ``"04h"`` → 4, ``"12"`` → 12, a number as is.

    Raises
    ------
    ValueError
        Naming the timepoint when it carries no hour.
    """
    if isinstance(timepoint, (int, float, np.integer, np.floating)):
        return float(timepoint)
    try:
        return float(parse_timepoint_key(str(timepoint)))
    except ValueError:
        m = _HOURS_RE.match(str(timepoint))
        if not m:
            raise ValueError(f"timepoint {timepoint!r} has no hour (expected e.g. '04h')") from None
        return float(m.group(1))


def ordered(values: Iterable, *, kind: str) -> list:
    """The distinct ``values`` in dose order (``kind="dose"``) or time order (``"timepoint"``)."""
    key = {"dose": dose_sort_key, "timepoint": timepoint_hours}[kind]
    return sorted(set(values), key=key)


def require_columns(df: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise ValueError naming the ``columns`` that ``df`` (called ``what``) lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lack the column(s) {missing} (have {df.columns})")


@dataclass
class Condition:
    """One dose × timepoint: the DMSO wells and each compound's wells (rows × features).

    ``dmso``: ``(n_dmso, p)``; ``compounds``: name → ``(n_wells, p)``, names sorted;
    ``moa``: name → its first non-null MoA label (None when it has none).
    """

    dose: str
    timepoint: str
    hours: float
    dmso: np.ndarray
    compounds: dict[str, np.ndarray] = field(default_factory=dict)
    moa: dict[str, str | None] = field(default_factory=dict)

    @property
    def dmso_mean(self) -> np.ndarray:
        """The DMSO centroid, the origin of this condition's trajectories."""
        return self.dmso.mean(axis=0)


def _check_features(df: pl.DataFrame, features: Sequence[str]) -> None:
    if not features:
        raise ValueError("no feature columns given")
    require_columns(df, features, "profiles")
    schema = df.schema  # once: polars builds a new Schema on every ``.schema``
    bad = [c for c in features if not schema[c].is_numeric()]
    if bad:
        raise ValueError(f"feature column(s) {bad[:5]} are not numeric")


def _condition(key: tuple, sub: pl.DataFrame, features: Sequence[str],
               cols: ActivityColumns) -> Condition:
    X = sub.select(features).to_numpy().astype(np.float64, copy=False)
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        wells = sub.filter(pl.Series(bad)).select(cols.compound).to_series().to_list()[:5]
        raise ValueError(f"dose {key[0]} × timepoint {key[1]}: {int(bad.sum())} well(s) with "
                         f"non-finite features (compounds {wells})")
    ctrl = (sub[cols.role] == cols.control_value).fill_null(False).to_numpy()
    names = sub[cols.compound].to_numpy()
    unnamed = int(sum(c is None for c, k in zip(names, ctrl) if not k))
    if unnamed:
        raise ValueError(f"dose {key[0]} × timepoint {key[1]}: {unnamed} treatment well(s) without a "
                         f"{cols.compound}")
    moas = sub[cols.moa].to_list() if cols.moa in sub.columns else [None] * sub.height
    compounds = sorted({c for c, k in zip(names, ctrl) if not k})
    if compounds and not ctrl.any():
        raise ValueError(f"dose {key[0]} × timepoint {key[1]} has no DMSO wells "
                         f"({cols.role} == {cols.control_value!r}) to measure its compounds against")
    moa: dict[str, str | None] = {c: None for c in compounds}
    for c, m, k in zip(names, moas, ctrl):
        if not k and moa[c] is None:
            moa[c] = m
    return Condition(str(key[0]), str(key[1]), timepoint_hours(key[1]), X[ctrl],
                     {c: X[(names == c) & ~ctrl] for c in compounds}, moa)


def split_conditions(profiles: pl.DataFrame, features: Sequence[str], *,
                     cols: ActivityColumns = ActivityColumns()) -> list[Condition]:
    """The conditions of a profile table, in dose then time order.

    Parameters
    ----------
    profiles
        Normalized well profiles (cytomining convention), all doses × timepoints.
    features
        The feature columns.
    cols
        Metadata column names; compound, dose, timepoint and role are needed, moa is optional.

    Raises
    ------
    ValueError
        Naming a missing column, a non-numeric feature, a condition with non-finite features or
        treatment wells without a compound, or a dose × timepoint whose compounds have no DMSO
        wells.
    """
    require_columns(profiles, [cols.compound, cols.dose, cols.timepoint, cols.role], "profiles")
    _check_features(profiles, features)
    if profiles.height == 0:
        raise ValueError("profiles are empty")
    parts = profiles.partition_by(cols.dose, cols.timepoint, as_dict=True, maintain_order=True)
    keys = sorted(parts, key=lambda k: (dose_sort_key(k[0]), timepoint_hours(k[1])))
    return [_condition(k, parts[k], list(features), cols) for k in keys]
