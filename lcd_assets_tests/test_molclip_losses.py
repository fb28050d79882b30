"""lcd_core.molclip.losses: SupCon against a loop reference, CLIP InfoNCE against cross-entropy by
hand, the logit-scale clamp and soft targets for duplicate molecules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lcd_core.molclip.losses import clip_loss, clip_targets, supcon_loss


def _supcon_reference(z, labels, tau):
    total, n = 0.0, 0
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        pos = [p for p in others if labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos) / len(pos)
        n += 1
    return total / n


def test_supcon_matches_the_loop_definition():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(9, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])  # class 3 has no positive: not an anchor
    assert supcon_loss(z, labels, 0.2).item() == pytest.approx(_supcon_reference(z, labels, 0.2), rel=1e-10)


def test_supcon_prefers_clustered_classes_and_handles_no_positives():
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]])
    mixed = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0], [0, 1.0]])
    assert supcon_loss(clustered, labels) < supcon_loss(mixed, labels)
    z = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(F.normalize(z, dim=1), torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()  # still differentiable
    with pytest.raises(ValueError):
        supcon_loss(z, torch.tensor([0, 1]))


def test_clip_loss_is_symmetric_cross_entropy_with_the_learned_scale():
    g = torch.Generator().manual_seed(1)
    v = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    m = F.normalize(torch.randn(5, 8, generator=g), dim=1)
    log_scale = torch.tensor(math.log(10.0))
    logits = 10.0 * v @ m.T
    y = torch.arange(5)
    expected = (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y)) / 2
    assert clip_loss(v, m, log_scale).item() == pytest.approx(expected.item(), rel=1e-6)
    # identity soft targets = hard targets
    assert clip_loss(v, m, log_scale, targets=torch.eye(5)).item() == pytest.approx(expected.item(), rel=1e-6)


def test_logit_scale_is_clamped_to_max_scale():
    g = torch.Generator().manual_seed(2)
    v, m = F.normalize(torch.randn(4, 6, generator=g), dim=1), F.normalize(torch.randn(4, 6, generator=g), dim=1)
    huge = clip_loss(v, m, torch.tensor(20.0), max_scale=100.0)
    at_max = clip_loss(v, m, torch.tensor(math.log(100.0)), max_scale=100.0)
    assert huge.item() == pytest.approx(at_max.item(), rel=1e-6)
    p = torch.tensor(20.0, requires_grad=True)
    clip_loss(v, m, p).backward()
    assert p.grad == 0  # beyond the clamp the scale stops learning


def test_soft_targets_share_duplicate_molecules():
    fp = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 0]], dtype=torch.float32)
    t = clip_targets(fp)
    assert torch.allclose(t, torch.tensor([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1.0]]))
    # wells 0 and 1 hold the same molecule; their (dropout-noisy) molecule embeddings sit
    # closer to the other well's video: hard targets penalise the swap, soft targets do not care
    v = F.normalize(torch.tensor([[1.0, -0.3], [1.0, 0.3], [-1.0, 0.0]]), dim=1)
    m = F.normalize(torch.tensor([[1.0, 0.3], [1.0, -0.3], [-1.0, 0.0]]), dim=1)
    swapped = [1, 0, 2]
    s = torch.tensor(math.log(50.0))
    soft = clip_loss(v, m, s, targets=t)
    assert soft < clip_loss(v, m, s)
    assert soft.item() == pytest.approx(clip_loss(v[swapped], m, s, targets=t).item(), rel=1e-6)
