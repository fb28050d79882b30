"""The MoA classes of a screen, read from its own compounds table (compounds.csv).

The probe's classes are the screen's MoAs plus ``"DMSO"`` (:data:`DMSO_CLASS`, every
``negative_control`` well). Probabilities are wide: one column ``p_<class>`` per probe class, the
class string verbatim (``"p_Aurora kinase"``, ``"p_DMSO"``; :attr:`MoaClasses.columns`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import polars as pl

DMSO_CLASS = "DMSO"


@dataclass(frozen=True)
class MoaClasses:
    """The MoA names of a screen, in the order of first appearance in its compounds table.

    That order is the order of the probability columns and breaks argmax ties (the first class
    wins), so the same compounds table always gives the same tables.
    """

    moas: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.moas)) != len(self.moas):
            raise ValueError(f"MoA classes listed twice: {self.moas}")
        if DMSO_CLASS in self.moas:
            raise ValueError(f"{DMSO_CLASS!r} is the control class, not a MoA")

    @classmethod
    def from_compounds(cls, compounds: pl.DataFrame) -> MoaClasses:
        """The distinct MoAs of a compounds table (columns compound, moa, smiles[, set]).

        A compound lists one MoA (a two-MoA compound its primary one, as the synthetic screens
        write it), so every distinct listed MoA is one class. An empty or null ``moa`` is an
        unknown MoA, not a class; the control compound (``set = "control"``) is never a MoA.
        """
        rows = compounds
        if "set" in compounds.columns:
            rows = rows.filter(pl.col("set").is_null() | (pl.col("set") != "control"))
        moas = rows.select(pl.col("moa").cast(pl.String).str.strip_chars()).filter(pl.col("moa").str.len_chars() > 0)
        return cls(tuple(moas["moa"].unique(maintain_order=True).to_list()))

    @cached_property
    def probe(self) -> tuple[str, ...]:
        """The probe's classes: the MoAs, then DMSO."""
        return (*self.moas, DMSO_CLASS)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """``p_<class>`` of every probe class (DMSO last)."""
        return tuple(f"p_{c}" for c in self.probe)

    @cached_property
    def moa_columns(self) -> tuple[str, ...]:
        """``p_<moa>`` of the MoAs only."""
        return self.columns[:-1]
