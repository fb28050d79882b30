"""Well profiles → videos: one (plate, well) across timepoints as a [T, D] sequence with a mask.

Input: normalized well profiles in the cytomining convention, one row per well per timepoint (all
doses and timepoints concatenated), metadata columns :data:`META_COLUMNS` + ``Metadata_timepoint``
and float feature columns named by the caller. Timepoints are ordered by their hour (``"04h"`` →
4); a well missing a timepoint gets zeros there and ``mask = False``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["META_COLUMNS", "TIMEPOINT", "CONTROL_ROLE", "Videos", "build_videos", "timepoint_hours"]

#: meta column of :class:`Videos` → profile column it comes from
META_COLUMNS: dict[str, str] = {
    "plate": "Metadata_plate",
    "well": "Metadata_well",
    "replica": "Metadata_replica",
    "layout": "Metadata_layout",
    "dose": "Metadata_dose",
    "compound": "Metadata_compound",
    "moa": "Metadata_moa",
    "role": "Metadata_role",
}
TIMEPOINT = "Metadata_timepoint"
CONTROL_ROLE = "negative_control"
_HOURS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*h\s*$")


@dataclass(frozen=True)
class Videos:
    """Wells as videos.

    Attributes
    ----------
    x
        float32 [N, T, D]; zeros where ``mask`` is False.
    mask
        bool [N, T]: the timepoint was observed.
    meta
        One row per video: ``plate, well, replica, layout, dose, compound, moa, role`` (``moa``
        null where unknown).
    timepoints
        The T timepoint keys, by increasing hour.
    features
        The D feature names.
    """

    x: np.ndarray
    mask: np.ndarray
    meta: pl.DataFrame
    timepoints: list[str]
    features: list[str]

    def __post_init__(self) -> None:
        n, t, d = self.x.shape
        if self.mask.shape != (n, t) or self.meta.height != n:
            raise ValueError(f"Videos: x {self.x.shape}, mask {self.mask.shape}, meta {self.meta.height} rows disagree")
        if len(self.timepoints) != t or len(self.features) != d:
            raise ValueError("Videos: timepoints / features do not match x")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def is_treatment(self) -> np.ndarray:
        """bool [N]: not a negative control (DMSO)."""
        return (self.meta["role"] != CONTROL_ROLE).to_numpy()

    def subset(self, rows: np.ndarray) -> Videos:
        """The videos at ``rows`` (bool mask or integer indices), in that order."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        return Videos(self.x[idx], self.mask[idx], self.meta[idx], list(self.timepoints), list(self.features))


def timepoint_hours(key: str) -> float:
    """Hours of a timepoint key (``"04h"`` → 4.0); ValueError naming the key otherwise."""
    m = _HOURS.match(str(key))
    if not m:
        raise ValueError(f"timepoint {key!r} is not of the form <hours>h (e.g. '04h')")
    return float(m.group(1))


def _check_columns(profiles: pl.DataFrame, features: Sequence[str]) -> None:
    if not features:
        raise ValueError("no feature columns given")
    dup = sorted({f for f in features if list(features).count(f) > 1})
    if dup:
        raise ValueError(f"feature column(s) named twice: {dup}")
    need = [*META_COLUMNS.values(), TIMEPOINT, *features]
    missing = [c for c in need if c not in profiles.columns]
    if missing:
        raise ValueError(f"profiles lack column(s) {missing[:10]}{' …' if len(missing) > 10 else ''}")
    for c in ("Metadata_plate", "Metadata_well", TIMEPOINT, "Metadata_compound", "Metadata_role"):
        if profiles[c].null_count():
            row = profiles.with_row_index().filter(pl.col(c).is_null())["index"][0]
            raise ValueError(f"column {c} is null in {profiles[c].null_count()} row(s), first at row {row}")


def _check_features(profiles: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    try:
        x = profiles.select(pl.col(list(features)).cast(pl.Float64)).to_numpy()
    except Exception as exc:  # polars raises its own errors for non-numeric columns
        raise ValueError(f"feature columns must be numeric: {exc}") from exc
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        p, w, t = profiles.select("Metadata_plate", "Metadata_well", TIMEPOINT).row(int(r))
        raise ValueError(f"feature {features[c]!r} is NaN/inf in {int(bad.sum())} value(s), first at row {r} "
                         f"(plate {p}, well {w}, timepoint {t})")
    return x.astype(np.float32)


def _check_keys(profiles: pl.DataFrame) -> None:
    keys = ["Metadata_plate", "Metadata_well", TIMEPOINT]
    dup = profiles.select(keys).filter(pl.struct(keys).is_duplicated()).unique(maintain_order=True)
    if dup.height:
        raise ValueError(f"duplicate (plate, well, timepoint) rows: {dup.head(5).rows()}"
                         f"{' …' if dup.height > 5 else ''} ({dup.height} key(s))")
    meta = [c for k, c in META_COLUMNS.items() if k not in ("plate", "well")]
    per = profiles.group_by(["Metadata_plate", "Metadata_well"]).agg(pl.col(meta).n_unique())
    for c in meta:
        bad = per.filter(pl.col(c) > 1)
        if bad.height:
            raise ValueError(f"{c} changes across timepoints of well(s) "
                             f"{bad.select('Metadata_plate', 'Metadata_well').head(5).rows()}")


def build_videos(profiles: pl.DataFrame, features: Sequence[str]) -> Videos:
    """Stack the timepoints of each (plate, well) into a video.

    Parameters
    ----------
    profiles
        Well profiles, one row per (plate, well, timepoint); see the module docstring.
    features
        Names of the float feature columns, in the order the videos' last axis takes.

    Returns
    -------
    Videos
        Videos sorted by (plate, well); timepoints sorted by hour.

    Raises
    ------
    ValueError
        Naming the column or rows: missing columns, nulls in key columns, NaN/inf features,
        duplicate (plate, well, timepoint), metadata that changes across a well's timepoints,
        unparsable timepoints.
    """
    features = list(features)
    _check_columns(profiles, features)
    x = _check_features(profiles, features)
    _check_keys(profiles)
    tps = sorted(profiles[TIMEPOINT].unique().to_list(), key=timepoint_hours)
    t_idx = profiles[TIMEPOINT].replace_strict(tps, list(range(len(tps))), return_dtype=pl.Int64).to_numpy()
    wells = profiles.select(pl.concat_str(["Metadata_plate", "Metadata_well"], separator="\x1f")).to_series()
    keys, v_idx = np.unique(wells.to_numpy().astype(str), return_inverse=True)
    first = np.full(len(keys), -1)
    first[v_idx[::-1]] = np.arange(len(v_idx))[::-1]
    meta = profiles[first].select(
        [pl.col(c).cast(pl.String).alias(k) for k, c in META_COLUMNS.items()]
    ).with_columns(pl.col("moa").str.strip_chars().replace("", None))
    out = np.zeros((len(keys), len(tps), len(features)), dtype=np.float32)
    mask = np.zeros((len(keys), len(tps)), dtype=bool)
    out[v_idx, t_idx] = x
    mask[v_idx, t_idx] = True
    return Videos(out, mask, meta, [str(t) for t in tps], features)
