"""MolCLIP over a screen (SPEC §4.12): the warehouse's profiles and compounds in, the model, its
embeddings, the with / without comparison and the zero-shot retrieval out. The algorithms are
:mod:`lcd_core.molclip`; this module only shapes the screen's tables for them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from lcd_core.molclip import MolClip, MolClipConfig, Videos, build_videos, train
from lcd_core.molclip.molecule import compound_table, molecule_library

__all__ = ["screen_compounds", "screen_videos", "train_screen_model", "embedding_table"]

#: the compound-table sets MolCLIP knows (DMSO, the control, is not a library compound)
LIBRARY_SETS = ("training", "holdout")


def screen_compounds(compounds: pl.DataFrame) -> pl.DataFrame:
    """The warehouse's ``compounds`` table as MolCLIP's compound table (controls left out)."""
    return compound_table(compounds.filter(pl.col("set").is_in(LIBRARY_SETS)))


def screen_videos(profiles: pl.DataFrame, features: Sequence[str]) -> Videos:
    """One video per (plate, well) over the screen's timepoints, from normalized well profiles."""
    return build_videos(profiles, features)


def train_screen_model(videos: Videos, compounds: pl.DataFrame, config: MolClipConfig) -> MolClip:
    """MolCLIP (with the molecule branch) trained on the training-set compounds' videos only, so
    the holdout compounds stay unseen for zero-shot retrieval."""
    table = screen_compounds(compounds)
    training = set(table.filter(pl.col("set") == "training")["compound"].to_list())
    keep = np.isin(videos.meta["compound"].to_numpy().astype(str), list(training))
    return train(videos.subset(keep), table, config, use_molecules=True)


def embedding_table(model: MolClip, videos: Videos, compounds: pl.DataFrame) -> pl.DataFrame:
    """Every video's and every library molecule's joint embedding, one row each.

    Columns: kind (``video`` / ``molecule``), plate, well, replica, dose, compound, moa, set,
    embedding (list of floats).
    """
    table = screen_compounds(compounds)
    sets = dict(table.select("compound", "set").iter_rows())
    moas = dict(table.select("compound", "moa").iter_rows())
    v = videos.meta.select("plate", "well", "replica", "dose", "compound").with_columns(
        pl.lit("video").alias("kind"),
        pl.col("compound").replace_strict(moas, default=None, return_dtype=pl.String).alias("moa"),
        pl.col("compound").replace_strict(sets, default="control", return_dtype=pl.String).alias("set"),
        pl.Series("embedding", model.embed_videos(videos).tolist()))
    lib = molecule_library(table)
    m = lib.select("compound", "moa", "set").with_columns(
        pl.lit("molecule").alias("kind"), *(pl.lit(None, pl.String).alias(c) for c in ("plate", "well", "replica", "dose")),
        pl.Series("embedding", model.embed_smiles(lib["smiles"].to_list()).tolist()))
    cols = ["kind", "plate", "well", "replica", "dose", "compound", "moa", "set", "embedding"]
    return pl.concat([v.select(cols), m.select(cols)], how="vertical_relaxed")
