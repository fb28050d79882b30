"""The video encoder: a well's [T, D] sequence of profiles → one L2-normalised vector.

Architecture (small enough for one screen on a CPU): input standardisation (per-feature mean and
scale of the training videos, stored as buffers) → a shared linear projection of each timepoint →
+ a learned timepoint embedding → a pre-norm transformer encoder (``n_layers`` layers, default 1)
over the observed timepoints (missing ones are key-padding-masked) → attention pooling (one learned
score per timepoint, softmax over the observed ones) → linear → L2 normalisation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VideoEncoder"]


class VideoEncoder(nn.Module):
    """Temporal aggregator of a video of profiles.

    Parameters
    ----------
    in_dim
        Feature dimension D.
    n_timepoints
        T (the learned timepoint embedding has one row per timepoint).
    dim
        Output embedding dimension.
    hidden
        Width of the per-timepoint tokens.
    n_heads, n_layers, dropout
        Transformer encoder settings (feed-forward width 2 × ``hidden``).
    """

    def __init__(self, in_dim: int, n_timepoints: int, dim: int = 128, hidden: int = 128, n_heads: int = 4,
                 n_layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_scale", torch.ones(in_dim))
        self.proj = nn.Linear(in_dim, hidden)
        self.time_embedding = nn.Parameter(torch.randn(n_timepoints, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, n_heads, dim_feedforward=2 * hidden, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.pool = nn.Linear(hidden, 1)
        self.out = nn.Linear(hidden, dim)
        self.in_dim, self.n_timepoints = in_dim, n_timepoints

    @torch.no_grad()
    def set_input_stats(self, x: np.ndarray, mask: np.ndarray) -> None:
        """Set the standardisation from the observed timepoints of training videos [N, T, D]."""
        obs = np.asarray(x, dtype=np.float64)[np.asarray(mask, bool)]
        if obs.shape[0] < 2:
            raise ValueError("need at least 2 observed timepoints to set the input statistics")
        sd = obs.std(0)
        self.in_mean.copy_(torch.from_numpy(obs.mean(0)).float())
        self.in_scale.copy_(torch.from_numpy(np.where(sd > 1e-8, sd, 1.0)).float())

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_weights: bool = False):
        """Embed videos.

        Parameters
        ----------
        x
            (B, T, D) float.
        mask
            (B, T) bool, True where observed; every video needs one observed timepoint.
        return_weights
            Also return the (B, T) attention-pooling weights (which timepoints the vector reads).

        Returns
        -------
        torch.Tensor or tuple
            (B, dim) unit vectors [, (B, T) pooling weights].
        """
        if x.ndim != 3 or x.shape[1:] != (self.n_timepoints, self.in_dim):
            raise ValueError(f"expected (B, {self.n_timepoints}, {self.in_dim}) videos, got {tuple(x.shape)}")
        mask = mask.bool()
        if not bool(mask.any(1).all()):
            raise ValueError("a video has no observed timepoint")
        h = self.proj((x.float() - self.in_mean) / self.in_scale) + self.time_embedding
        h = self.norm(self.temporal(h, src_key_padding_mask=~mask))
        w = torch.softmax(self.pool(h).squeeze(-1).masked_fill(~mask, float("-inf")), dim=1)
        z = F.normalize(self.out((w.unsqueeze(-1) * h).sum(1)), dim=-1)
        return (z, w) if return_weights else z
