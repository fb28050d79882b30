"""Losses of MolCLIP: a metric-learning loss on compound identity and the CLIP alignment loss.

Metric loss: **supervised contrastive** (SupCon, Khosla et al. 2020, the ``L_out`` form), chosen
over MitoReID's batch-hard triplet because, with a P compounds × K wells batch and few wells per
compound (K ≈ 4),

* every anchor uses all its K − 1 positives and all (P − 1)·K negatives, softly weighted by a
  temperature, instead of one hardest positive and one hardest negative: lower-variance gradients
  on tens of compounds, where batch-hard mining chases single outlier wells;
* inactive compounds look like DMSO and like each other; a batch-hard triplet keeps hitting those
  unsatisfiable pairs (and its margin has to be tuned), SupCon only down-weights them;
* it lives on the unit sphere with a temperature, the geometry of the CLIP term and of the cosine
  retrieval the evaluation uses.

CLIP loss: symmetric InfoNCE (CLIP / CLOOME's InfoNCE variant) between video and molecule
embeddings with a learned logit scale ``exp(log_scale)`` clamped to [1, ``max_scale``] (CLIP's 100).
False negatives (many wells share one molecule): the trainer builds each CLIP sub-batch with
**one well per compound** (a P × K batch gives K such sub-batches), so every off-diagonal pair is a
true negative; compounds with identical fingerprints (duplicates, salts) would still collide, and
for those ``clip_targets`` gives **soft targets** spread evenly over the matching molecules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["supcon_loss", "clip_loss", "clip_targets"]


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (``L_out``) of L2-normalised embeddings.

    Parameters
    ----------
    z
        (B, d) unit vectors.
    labels
        (B,) integer class (compound) per row.
    temperature
        Softmax temperature τ.

    Returns
    -------
    torch.Tensor
        Scalar: mean over anchors with at least one positive of
        ``−mean_{p ∈ P(i)} log(exp(z_i·z_p/τ) / Σ_{a ≠ i} exp(z_i·z_a/τ))``; 0 (with a graph) when
        no anchor has a positive.
    """
    if z.ndim != 2 or labels.shape != (z.shape[0],):
        raise ValueError(f"z must be (B, d) and labels (B,), got {tuple(z.shape)} and {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    b = z.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has])
    return per_anchor.mean()


def clip_targets(fingerprints: torch.Tensor) -> torch.Tensor:
    """(P, P) soft targets: row i spread evenly over the molecules whose fingerprint equals i's
    (the identity when all P fingerprints differ)."""
    same = (fingerprints[:, None, :] == fingerprints[None, :, :]).all(-1).float()
    return same / same.sum(1, keepdim=True)


def clip_loss(
    video: torch.Tensor,
    molecule: torch.Tensor,
    log_scale: torch.Tensor,
    max_scale: float = 100.0,
    targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between matched rows of ``video`` and ``molecule``.

    Parameters
    ----------
    video, molecule
        (P, d) unit vectors; row i of each belongs to compound i (one well per compound).
    log_scale
        Learned log logit scale (scalar tensor); the scale used is ``exp(log_scale)`` clamped to
        [1, ``max_scale``].
    max_scale
        Upper clamp of the logit scale (CLIP: 100).
    targets
        Optional (P, P) row-stochastic soft targets (see :func:`clip_targets`); default identity.

    Returns
    -------
    torch.Tensor
        Scalar ``(CE(video → molecule) + CE(molecule → video)) / 2``.
    """
    if video.shape != molecule.shape or video.ndim != 2:
        raise ValueError(f"video {tuple(video.shape)} and molecule {tuple(molecule.shape)} must be equal (P, d)")
    scale = log_scale.clamp(0.0, math.log(max_scale)).exp()
    logits = scale * video @ molecule.T
    if targets is None:
        labels = torch.arange(video.shape[0], device=video.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    if targets.shape != logits.shape:
        raise ValueError(f"targets must be {tuple(logits.shape)}, got {tuple(targets.shape)}")
    v2m = -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()
    m2v = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return (v2m + m2v) / 2
