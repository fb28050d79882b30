"""MolCLIP (SPEC §4.12): molecule-auxiliary alignment of time-lapse well videos (pure library).

A well's profiles over timepoints form a video (:func:`build_videos`); a temporal aggregator
(:class:`VideoEncoder`) trained with a supervised-contrastive loss on compound identity maps it to
one vector; a molecule encoder (:class:`MoleculeEncoder`, Morgan fingerprint + MLP) maps the
SMILES to the same space; a symmetric InfoNCE (:func:`clip_loss`) pulls matching video and
molecule together. :func:`evaluate` runs the MitoReID protocol with and without the molecule
branch, :func:`zero_shot` ranks library molecules for unseen compounds, :mod:`.search` queries the
joint space, :mod:`.store` saves a model as safetensors + JSON.
"""

from lcd_core.molclip.evaluate import (
    MolClipEvaluation,
    ZeroShotResult,
    average_precision,
    average_precisions,
    compound_folds,
    evaluate,
    hit_rates,
    moa_vote,
    molecule_ranks,
    retrieval_aps,
    summarize,
    zero_shot,
)
from lcd_core.molclip.figures import joint_space_figure, loss_curves, pca_2d, retrieval_curves
from lcd_core.molclip.losses import clip_loss, clip_targets, supcon_loss
from lcd_core.molclip.molecule import MoleculeEncoder, compound_table, molecule_library, morgan_fingerprints
from lcd_core.molclip.planted import planted_screen
from lcd_core.molclip.search import CompoundSearch, SmilesSearch, search_by_compound, search_by_smiles
from lcd_core.molclip.store import load_molclip, save_molclip
from lcd_core.molclip.train import MolClip, MolClipConfig, PKSampler, compound_means, train
from lcd_core.molclip.video import VideoEncoder
from lcd_core.molclip.videos import Videos, build_videos

__all__ = [
    "Videos", "build_videos",
    "morgan_fingerprints", "compound_table", "molecule_library", "MoleculeEncoder",
    "VideoEncoder",
    "supcon_loss", "clip_loss", "clip_targets",
    "MolClipConfig", "MolClip", "PKSampler", "train", "compound_means",
    "save_molclip", "load_molclip",
    "average_precision", "average_precisions", "retrieval_aps", "compound_folds", "evaluate", "summarize",
    "MolClipEvaluation", "molecule_ranks", "hit_rates", "moa_vote", "zero_shot", "ZeroShotResult",
    "search_by_compound", "search_by_smiles", "CompoundSearch", "SmilesSearch",
    "joint_space_figure", "retrieval_curves", "loss_curves", "pca_2d",
    "planted_screen",
]
