"""DINO loss with per-replica teacher centers (cross-batch DINO, CDCL) and the CDCL Barlow term.

Crop layout (all losses): ``student_out`` is ``(n_crops · B, K)`` — global crop 1, global crop 2,
then the local crops, each a block of B rows; ``teacher_out`` is ``(2 · B, K)`` (the teacher sees
the two global crops only). Every (teacher global view t, student view s ≠ t) pair is one loss term;
the same-view pairs are skipped (DINO).

Per-replica centers (CDCL ``DINOLossMultiCenter``): the buffer ``center`` is ``(R, K)``; teacher
row i is centered with ``center[replica[i]]``. After each step, for each replica r with
``n_r > 0`` of the ``N = 2B`` teacher rows:

    mean_r  = mean of its teacher rows
    w_r     = min((n_r / N) / π_r, cap)          π_r = r's share of the data set (uniform if unknown)
    center_r ← center_r + (1 − m) · w_r · (mean_r − center_r)      (m = center momentum, 0.9)

and ``center_r`` is left unchanged when r is absent (``w_r = 0``). ``w_r`` is CDCL's
over/under-representation weight: a replica present in its data-set share (``w = 1``) gets the
plain DINO update ``m·c + (1 − m)·mean``; an under-represented one (few rows, a noisy mean) moves
less; over a run every replica's center moves at the same expected rate whatever its size. A replica
flooding the batch cannot dominate: it only ever updates its own center, from a *mean* (not a sum)
of its rows, and its step is capped at ``(1 − m)·cap`` (cap 2 → 0.2; CDCL has no cap, and with
``w > 1/(1 − m)`` its update would overshoot the batch mean). ``cap = inf`` reproduces CDCL.
With one replica (cross-batch off) ``w = 1`` always: standard DINO's single global center.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DINOLoss", "BarlowTwinsLoss", "LossTerms", "total_loss", "view_pairs"]


def view_pairs(n_crops: int, n_global: int = 2) -> list[tuple[int, int]]:
    """(teacher view, student view) index pairs with the same-view pairs skipped."""
    return [(t, s) for t in range(n_global) for s in range(n_crops) if s != t]


class DINOLoss(nn.Module):
    def __init__(self, out_dim: int, n_crops: int, n_replicas: int = 1, student_temp: float = 0.1,
                 center_momentum: float = 0.9, replica_prior: torch.Tensor | list[float] | None = None,
                 center_weight_cap: float = 2.0):
        super().__init__()
        self.out_dim, self.n_crops, self.n_replicas = int(out_dim), int(n_crops), int(n_replicas)
        self.student_temp, self.center_momentum = float(student_temp), float(center_momentum)
        self.center_weight_cap = float(center_weight_cap)
        self.register_buffer("center", torch.zeros(self.n_replicas, self.out_dim))
        prior = torch.full((self.n_replicas,), 1.0 / self.n_replicas) if replica_prior is None \
            else torch.as_tensor(replica_prior, dtype=torch.float32)
        if prior.shape != (self.n_replicas,) or bool((prior <= 0).any()):
            raise ValueError(f"replica_prior must be {self.n_replicas} positive shares, got {prior.tolist()}")
        self.register_buffer("replica_prior", prior / prior.sum())

    def _replica(self, replica: torch.Tensor | None, n: int, device) -> torch.Tensor:
        if replica is None or self.n_replicas == 1:
            return torch.zeros(n, dtype=torch.long, device=device)
        replica = torch.as_tensor(replica, dtype=torch.long, device=device)
        if replica.shape != (n,):
            raise ValueError(f"replica must have one id per teacher row ({n}), got shape {tuple(replica.shape)}")
        return replica

    @torch.no_grad()
    def teacher_logits(self, teacher_out: torch.Tensor, teacher_temp: float,
                       replica: torch.Tensor | None = None) -> torch.Tensor:
        """Centered, sharpened teacher logits ``(teacher_out − center[replica]) / temp`` (float32)."""
        t = teacher_out.detach().float()
        r = self._replica(replica, t.shape[0], t.device)
        return (t - self.center[r]) / teacher_temp

    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor, teacher_temp: float,
                replica: torch.Tensor | None = None, update_center: bool = True) -> torch.Tensor:
        tc = self.teacher_logits(teacher_out, teacher_temp, replica)
        loss = self.cross_entropy(student_out, tc)
        if update_center:
            self.update_center(teacher_out, replica)
        return loss

    def cross_entropy(self, student_out: torch.Tensor, teacher_centered: torch.Tensor) -> torch.Tensor:
        """Mean over view pairs of ``mean_b Σ_k −softmax(t)·log_softmax(s / τ_s)``."""
        s = (student_out.float() / self.student_temp).chunk(self.n_crops)
        q = F.softmax(teacher_centered, dim=-1).chunk(2)
        terms = [torch.sum(-q[t] * F.log_softmax(s[v], dim=-1), dim=-1).mean()
                 for t, v in view_pairs(self.n_crops)]
        return torch.stack(terms).mean()

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor, replica: torch.Tensor | None = None) -> None:
        t = teacher_out.detach().float()
        r = self._replica(replica, t.shape[0], t.device)
        onehot = F.one_hot(r, self.n_replicas).float()  # (N, R)
        n = onehot.sum(0)  # (R,)
        means = (onehot.T @ t) / n.clamp_min(1.0)[:, None]
        w = (n / n.sum()) / self.replica_prior.to(t.device)
        w = torch.where(n > 0, w.clamp(max=self.center_weight_cap), torch.zeros_like(w))
        step = (1.0 - self.center_momentum) * w
        self.center.add_(step[:, None] * (means - self.center))


def _bn(x: torch.Tensor) -> torch.Tensor:
    """BatchNorm1d without affine or running stats (biased variance, eps 1e-5)."""
    return F.batch_norm(x, None, None, training=True, eps=1e-5)


class BarlowTwinsLoss(nn.Module):
    """CDCL form: ``c = bn(t)ᵀ bn(s) / B``; ``(1 − λ)·mean((diag(c) − 1)²) + λ·mean(offdiag(c)²)``.

    ``t`` is the centered, temperature-scaled teacher logits of one global view, ``s`` the student
    logits (/ τ_s) of another view. The K × K matrix is never formed (K = 65536 would be 17 GB):
    ``‖c‖²_F = Σ (AAᵀ ∘ BBᵀ) / B²`` with the B × B Gram matrices of A = bn(t), B = bn(s), and
    ``diag(c) = Σ_b A ∘ B / B``; equal to the direct form up to float rounding (tested).
    """

    def __init__(self, lambda_offdiag: float = 0.5):
        super().__init__()
        self.lambda_offdiag = float(lambda_offdiag)

    def forward(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        a, b = _bn(t.float()), _bn(s.float())
        n, k = a.shape
        diag = (a * b).sum(0) / n
        fro2 = ((a @ a.T) * (b @ b.T)).sum() / (n * n)
        on = (diag - 1.0).pow(2).mean()
        off = (fro2 - diag.pow(2).sum()) / (k * (k - 1))
        return (1.0 - self.lambda_offdiag) * on + self.lambda_offdiag * off


@dataclass
class LossTerms:
    total: torch.Tensor
    dino: torch.Tensor  # raw DINO cross-entropy (nats), before /log K
    barlow: torch.Tensor | None  # raw Barlow (mean over view pairs), before the CDCL scale
    teacher_probs: torch.Tensor  # (2B, K) detached, for collapse indicators


def total_loss(dino: DINOLoss, student_out: torch.Tensor, teacher_out: torch.Tensor, teacher_temp: float,
               replica: torch.Tensor | None = None, barlow: BarlowTwinsLoss | None = None,
               barlow_weight: float = 0.5, update_center: bool = True) -> LossTerms:
    """DINO alone, or CDCL's ``(1 − w)·DINO / log K + w·Barlow / ((1 − λ) + 0.01 λ)``; the Barlow
    term is averaged over the same (teacher view, student view) pairs as DINO. Updates the centers
    afterwards (from the uncentered teacher outputs) when ``update_center``."""
    tc = dino.teacher_logits(teacher_out, teacher_temp, replica)
    d = dino.cross_entropy(student_out, tc)
    b = None
    if barlow is None:
        total = d
    else:
        s = (student_out.float() / dino.student_temp).chunk(dino.n_crops)
        t = tc.chunk(2)
        b = torch.stack([barlow(t[i], s[j]) for i, j in view_pairs(dino.n_crops)]).mean()
        lam = barlow.lambda_offdiag
        total = (1 - barlow_weight) * d / math.log(dino.out_dim) + barlow_weight * b / ((1 - lam) + 0.01 * lam)
    if update_center:
        dino.update_center(teacher_out, replica)
    return LossTerms(total=total, dino=d.detach(), barlow=None if b is None else b.detach(),
                     teacher_probs=F.softmax(tc, dim=-1))
