"""The molecule branch: compound table, Morgan fingerprints (RDKit), and the MLP molecule encoder.

Fingerprints follow CLOOME's recipe in spirit (Morgan / ECFP bits into an MLP); the defaults here
are the common ECFP4 setting (radius 2, 2,048 bits, no chirality), CLOOME's own is radius 3,
1,024 bits with chirality: all three are parameters and are stored with a trained model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["COMPOUND_COLUMNS", "compound_table", "molecule_library", "morgan_fingerprints", "MoleculeEncoder"]

#: Columns of the compound table.
COMPOUND_COLUMNS = ("compound", "moa", "smiles", "set")
_SETS = ("training", "holdout")


def compound_table(compounds: pl.DataFrame) -> pl.DataFrame:
    """Validate the compound table and normalise it.

    Parameters
    ----------
    compounds
        Columns ``compound, moa, smiles, set`` (``set`` is ``"training"`` or ``"holdout"``).

    Returns
    -------
    polars.DataFrame
        The four columns; ``moa`` null where unknown (``""`` → null), ``smiles`` ``""`` where the
        compound was declared without a structure (null → ``""``).

    Raises
    ------
    ValueError
        On a missing column, a null / duplicated compound name, or an unknown ``set`` value.
    """
    missing = [c for c in COMPOUND_COLUMNS if c not in compounds.columns]
    if missing:
        raise ValueError(f"compound table lacks column(s) {missing} (has {compounds.columns})")
    t = compounds.select(
        pl.col("compound").cast(pl.String),
        pl.col("moa").cast(pl.String).str.strip_chars().replace("", None),
        pl.col("smiles").cast(pl.String).fill_null("").str.strip_chars(),
        pl.col("set").cast(pl.String),
    )
    if t["compound"].null_count():
        raise ValueError(f"compound table has {t['compound'].null_count()} row(s) without a compound name")
    dup = t.filter(pl.col("compound").is_duplicated())["compound"].unique().sort().to_list()
    if dup:
        raise ValueError(f"compound table lists compound(s) more than once: {dup}")
    bad = t.filter(~pl.col("set").is_in(_SETS) | pl.col("set").is_null())
    if bad.height:
        raise ValueError(f"compound table: set must be one of {_SETS}; bad rows: {bad.head(5).rows()}")
    return t


def molecule_library(compounds: pl.DataFrame, exclude: Sequence[str] = ()) -> pl.DataFrame:
    """The compounds that have a structure (non-empty SMILES), in table order, minus ``exclude``
    (e.g. the negative control)."""
    t = compound_table(compounds)
    return t.filter((pl.col("smiles") != "") & ~pl.col("compound").is_in(list(exclude)))


def morgan_fingerprints(
    smiles: Sequence[str], radius: int = 2, n_bits: int = 2048, chirality: bool = False
) -> np.ndarray:
    """Morgan bit fingerprints of a list of SMILES.

    Parameters
    ----------
    smiles
        SMILES strings.
    radius, n_bits, chirality
        Morgan radius (2 = ECFP4), fingerprint length, whether chirality enters the invariants.

    Returns
    -------
    numpy.ndarray
        (len(smiles), n_bits) uint8 in {0, 1}.

    Raises
    ------
    ValueError
        On an empty or unparsable SMILES (named in the message), or bad radius / n_bits.
    """
    from rdkit import Chem, rdBase
    from rdkit.Chem import rdFingerprintGenerator

    if radius < 0 or n_bits < 1:
        raise ValueError(f"radius must be ≥ 0 and n_bits ≥ 1 (got {radius}, {n_bits})")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=int(radius), fpSize=int(n_bits),
                                                    includeChirality=bool(chirality))
    out = np.zeros((len(smiles), int(n_bits)), dtype=np.uint8)
    for i, smi in enumerate(smiles):
        if not isinstance(smi, str) or not smi.strip():
            raise ValueError(f"empty SMILES at position {i}: a compound without structure has no fingerprint")
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise ValueError(f"RDKit cannot parse SMILES {smi!r} (position {i})")
        out[i] = gen.GetFingerprintAsNumPy(mol)
    return out


class MoleculeEncoder(nn.Module):
    """MLP from a fingerprint to an L2-normalised embedding.

    ``n_layers`` hidden blocks (Linear → LayerNorm → GELU → Dropout) of width ``hidden``, then a
    linear map to ``dim``. CLOOME uses 4 × 1,024; the default here (2 × 256) suits a library of
    tens to hundreds of molecules.
    """

    def __init__(self, n_bits: int = 2048, dim: int = 128, hidden: int = 256, n_layers: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError("MoleculeEncoder needs n_layers ≥ 1")
        blocks: list[nn.Module] = []
        width = n_bits
        for _ in range(n_layers):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        blocks.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*blocks)
        self.n_bits = n_bits

    def forward(self, fingerprints: torch.Tensor) -> torch.Tensor:
        """(M, n_bits) fingerprints (any numeric dtype) → (M, dim) unit vectors."""
        if fingerprints.ndim != 2 or fingerprints.shape[1] != self.n_bits:
            raise ValueError(f"expected (M, {self.n_bits}) fingerprints, got {tuple(fingerprints.shape)}")
        return F.normalize(self.mlp(fingerprints.float()), dim=-1)
