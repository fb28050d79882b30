"""Searching the joint space of a trained MolCLIP: by compound name and by structure.

* :func:`search_by_compound`: a library compound's mean video embedding → the nearest library
  molecules (which structures its phenotype looks like) and the nearest compounds by phenotype;
* :func:`search_by_smiles`: a structure (possibly not in the library) → the compounds and wells
  whose videos lie nearest to its molecule embedding.

Scores are cosine similarities in the joint space; DMSO wells are never returned.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import polars as pl

from lcd_core.molclip.molecule import compound_table, molecule_library
from lcd_core.molclip.train import MolClip, compound_means
from lcd_core.molclip.videos import CONTROL_ROLE, Videos

__all__ = ["CompoundSearch", "SmilesSearch", "search_by_compound", "search_by_smiles"]


@dataclass(frozen=True)
class CompoundSearch:
    """``molecules``: rank, compound, moa, set, score (empty for a model without the molecule
    branch); ``phenotypes``: rank, compound, moa, score (the query itself excluded)."""

    compound: str
    molecules: pl.DataFrame
    phenotypes: pl.DataFrame


@dataclass(frozen=True)
class SmilesSearch:
    """``compounds``: rank, compound, moa, score; ``wells``: rank, plate, well, replica, dose,
    compound, moa, score."""

    smiles: str
    compounds: pl.DataFrame
    wells: pl.DataFrame


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first (ties by index)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[: max(0, int(k))]


def _ranked(frame: pl.DataFrame, scores: np.ndarray, k: int) -> pl.DataFrame:
    idx = _top(scores, k)
    return pl.concat([pl.DataFrame({"rank": np.arange(1, len(idx) + 1)}), frame[idx]], how="horizontal") \
        .with_columns(pl.Series("score", np.asarray(scores, dtype=np.float64)[idx]))


def _moa_lookup(table: pl.DataFrame, videos: Videos) -> dict[str, str | None]:
    out = dict(videos.meta.select("compound", "moa").unique("compound", keep="first").iter_rows())
    return out | {c: m for c, m in table.select("compound", "moa").iter_rows() if m is not None}


def search_by_compound(model: MolClip, videos: Videos, compounds: pl.DataFrame, name: str,
                       k: int = 10) -> CompoundSearch:
    """Nearest library molecules and phenotypes of a library compound.

    Raises
    ------
    ValueError
        An unknown compound (listing close names) or one without treatment videos.
    """
    table = compound_table(compounds)
    names, cemb = model.embed_compounds(videos)
    if name not in names:
        known = sorted(set(names) | set(table["compound"].to_list()))
        if name in known:
            raise ValueError(f"compound {name!r} has no treatment video to embed")
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
        raise ValueError(f"unknown compound {name!r}; close names: {close or 'none'}")
    q = cemb[names.index(name)]
    moa = _moa_lookup(table, videos)
    others = [i for i, n in enumerate(names) if n != name]
    pheno = pl.DataFrame({"compound": [names[i] for i in others], "moa": [moa.get(names[i]) for i in others]},
                         schema={"compound": pl.String, "moa": pl.String})
    phenotypes = _ranked(pheno, cemb[others] @ q, k)
    if model.molecule_encoder is None:
        molecules = pl.DataFrame(schema={"rank": pl.Int64, "compound": pl.String, "moa": pl.String,
                                         "set": pl.String, "score": pl.Float64})
    else:
        controls = videos.meta.filter(pl.col("role") == CONTROL_ROLE)["compound"].unique().to_list()
        lib = molecule_library(table, exclude=controls)
        mol = model.embed_smiles(lib["smiles"].to_list())
        molecules = _ranked(lib.select("compound", "moa", "set"), mol @ q, k)
    return CompoundSearch(name, molecules, phenotypes)


def search_by_smiles(model: MolClip, videos: Videos, compounds: pl.DataFrame, smiles: str,
                     k: int = 10) -> SmilesSearch:
    """Compounds and wells nearest (by video embedding) to a structure's molecule embedding.

    Raises
    ------
    ValueError
        An unparsable or empty SMILES (named), or a model trained without the molecule branch.
    """
    mol = model.embed_smiles([smiles])[0]
    table = compound_table(compounds)
    moa = _moa_lookup(table, videos)
    sub = videos.subset(videos.is_treatment)
    emb = model.embed_videos(sub)
    names, cemb = compound_means(emb, sub.meta["compound"].to_list())
    comp = pl.DataFrame({"compound": names, "moa": [moa.get(n) for n in names]},
                        schema={"compound": pl.String, "moa": pl.String})
    wells = sub.meta.select("plate", "well", "replica", "dose", "compound").with_columns(
        pl.Series("moa", [moa.get(c) for c in sub.meta["compound"].to_list()], pl.String))
    return SmilesSearch(smiles, _ranked(comp, cemb @ mol, k), _ranked(wells, emb @ mol, k))
