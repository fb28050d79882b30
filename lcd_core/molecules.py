"""Chemical structures of compounds (RDKit): canonical SMILES and the check of a compound table.

A compound is registered with a SMILES string; every structure entering the platform goes through
:func:`canonical_smiles`, so the same molecule always has the same text (RDKit's isomeric canonical
SMILES: stereo kept) and a bad one stops registration with a clear error instead of reaching the
molecule encoder. A compound may be declared without a structure (empty SMILES): that is allowed,
kept empty and flagged (``has_structure``), never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
from rdkit import Chem, rdBase

__all__ = ["InvalidStructure", "canonical_smiles", "structure_problem", "validate_structures"]

#: Offending rows named in one error before the rest is summarised.
MAX_LISTED = 20


class InvalidStructure(ValueError):
    """A SMILES string that is empty or does not describe a valid molecule.

    Attributes
    ----------
    problems : list of str
        One line per offending structure (the SMILES, and the compound and row where known).
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


def structure_problem(smiles: str | None) -> str | None:
    """Why a SMILES string is not a valid structure, or None when it is.

    Parameters
    ----------
    smiles
        The SMILES text (surrounding whitespace is ignored).

    Returns
    -------
    str or None
        ``"empty SMILES"``, ``"SMILES syntax error"`` or RDKit's sanitization message
        (e.g. a valence or aromaticity error); None for a valid structure.
    """
    text = (smiles or "").strip()
    if not text:
        return "empty SMILES"
    return _parse(text)[1]


def canonical_smiles(smiles: str) -> str:
    """RDKit's isomeric canonical SMILES of a structure.

    Parameters
    ----------
    smiles
        Any valid SMILES (CXSMILES extensions are read and dropped).

    Returns
    -------
    str
        The canonical SMILES; stereo centres and double-bond geometry are kept.

    Raises
    ------
    InvalidStructure
        For empty text or a SMILES RDKit cannot parse or sanitize; the message quotes it.
    """
    text = (smiles or "").strip()
    mol, why = _parse(text) if text else (None, "empty SMILES")
    if mol is None:
        raise InvalidStructure(f"invalid SMILES {smiles!r}: {why}")
    return Chem.MolToSmiles(mol)


def validate_structures(
    table: pl.DataFrame,
    compound_col: str = "compound",
    smiles_col: str = "smiles",
    *,
    row_numbers: Sequence[int] | None = None,
    source: str | None = None,
) -> pl.DataFrame:
    """Canonicalise the SMILES column of a compound table, naming every bad structure at once.

    Parameters
    ----------
    table
        A table with a compound name column and a SMILES column.
    compound_col, smiles_col
        Names of those columns.
    row_numbers
        How to name each row in the error (e.g. line numbers of the file it was read from);
        default 1, 2, … in table order.
    source
        What the table is (e.g. a file path), put at the head of the error.

    Returns
    -------
    polars.DataFrame
        ``table`` with ``smiles_col`` canonical (null where the SMILES was empty or null: a
        compound declared without a structure) and a Boolean column ``has_structure``.

    Raises
    ------
    InvalidStructure
        Listing compound, row number and reason of every SMILES that is not a valid structure.
    KeyError
        When a named column is missing.
    """
    for col in (compound_col, smiles_col):
        if col not in table.columns:
            raise KeyError(f"column {col!r} not in the table (has {table.columns})")
    rows = list(row_numbers) if row_numbers is not None else list(range(1, table.height + 1))
    canon, problems = _canonical_column(table[compound_col].to_list(), table[smiles_col].to_list(), rows)
    if problems:
        raise InvalidStructure(_summary(problems, source), problems)
    return table.with_columns(
        pl.Series(smiles_col, canon, dtype=pl.String),
        pl.Series("has_structure", [c is not None for c in canon], dtype=pl.Boolean),
    )


def _parse(text: str) -> tuple[Chem.Mol | None, str | None]:
    """``(molecule, None)`` for a valid SMILES, ``(None, reason)`` otherwise (RDKit's log muted)."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(text, sanitize=False)
        if mol is None:
            return None, "SMILES syntax error"
        if mol.GetNumAtoms() == 0:
            return None, "no atoms"
        try:
            Chem.SanitizeMol(mol)
            Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
        except (Chem.MolSanitizeException, RuntimeError, ValueError) as exc:
            return None, str(exc).strip() or type(exc).__name__
    return mol, None


def _canonical_column(
    names: Sequence[object], smiles: Sequence[object], rows: Sequence[int]
) -> tuple[list[str | None], list[str]]:
    """Canonical SMILES (None where empty) and one problem line per invalid structure."""
    canon: list[str | None] = []
    problems: list[str] = []
    for name, smi, row in zip(names, smiles, rows, strict=True):
        text = "" if smi is None else str(smi).strip()
        if not text:
            canon.append(None)
            continue
        try:
            canon.append(canonical_smiles(text))
        except InvalidStructure:
            canon.append(None)
            problems.append(f"row {row}: compound {name!r}, smiles {text!r}: {structure_problem(text)}")
    return canon, problems


def _summary(problems: Sequence[str], source: str | None) -> str:
    """One message listing (up to :data:`MAX_LISTED`) invalid structures."""
    head = f"{source}: " if source else ""
    lines = [f"{head}{len(problems)} invalid structure(s):", *(f"  {p}" for p in problems[:MAX_LISTED])]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    return "\n".join(lines)
