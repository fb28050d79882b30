"""Onset of a phenotype: the first timepoint a compound × dose is called active, and whether it stays.

A *reading* is a per-condition boolean call: the mAP-ES call (``active``, mAP-ES ≥ 0.8, SPEC
§4.5), the distance call (``active_distance``: the distance's lower bound above the DMSO null's
95th percentile, :mod:`lcd_core.trajectories.distance`), or the generator's ``truly_active``.

* ``onset``: the first timepoint (in hour order) with the call true; :data:`NEVER` when no
  timepoint of the compound × dose is; ``onset_h`` its hour (null for never);
* ``sustained``: active at every timepoint after the onset (true), or not (false: a transient
  phenotype — a washout or a recovery shows as one); null for never. The last timepoint's onset
  is sustained by definition (nothing after it to leave).

A missing or null call counts as not active; ``n_timepoints`` says how many timepoints were read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from lcd_core.trajectories.conditions import require_columns, timepoint_hours

__all__ = ["NEVER", "Onset", "first_onset", "onset_table"]

#: the onset of a compound × dose never called active
NEVER = "never"


@dataclass(frozen=True)
class Onset:
    """The onset of one compound × dose under one reading (see the module doc)."""

    onset: str
    onset_h: float | None
    sustained: bool | None
    n_timepoints: int


def first_onset(timepoints: Sequence[str], active: Sequence[bool | None]) -> Onset:
    """The :class:`Onset` of calls ``active`` at ``timepoints`` (any order, null = not active).

    Raises
    ------
    ValueError
        When the two lengths differ or a timepoint repeats.
    """
    if len(timepoints) != len(active):
        raise ValueError(f"{len(timepoints)} timepoints but {len(active)} calls")
    if len(set(timepoints)) != len(timepoints):
        raise ValueError(f"a timepoint repeats in {list(timepoints)}")
    order = sorted(range(len(timepoints)), key=lambda i: timepoint_hours(timepoints[i]))
    calls = [bool(active[i]) for i in order]
    if not any(calls):
        return Onset(NEVER, None, None, len(calls))
    first = calls.index(True)
    tp = str(timepoints[order[first]])
    return Onset(tp, timepoint_hours(tp), all(calls[first:]), len(calls))


def onset_table(table: pl.DataFrame, call: str, name: str, *,
                by: Sequence[str] = ("compound", "dose")) -> pl.DataFrame:
    """Per ``by`` group of ``table`` (one row per group × timepoint) the onset of column ``call``.

    Returns the ``by`` columns, ``onset_{name}`` (timepoint or :data:`NEVER`),
    ``onset_{name}_h`` and ``sustained_{name}``, in the groups' first-seen order.

    Raises
    ------
    ValueError
        Naming a missing column, or a group whose timepoint repeats.
    """
    by = list(by)
    require_columns(table, [*by, "timepoint", call], "the table")
    rows = []
    for key, g in table.group_by(by, maintain_order=True):
        try:
            o = first_onset([str(t) for t in g["timepoint"]], g[call].to_list())
        except ValueError as err:
            raise ValueError(f"{dict(zip(by, key))}: {err}") from None
        rows.append((*key, o.onset, o.onset_h, o.sustained))
    schema = {**{b: table.schema[b] for b in by}, f"onset_{name}": pl.String,
              f"onset_{name}_h": pl.Float64, f"sustained_{name}": pl.Boolean}
    return pl.DataFrame(rows, schema=schema, orient="row")
