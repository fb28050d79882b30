"""lcd_core.ssl.losses / head: DINO with per-replica centers, center update, Barlow (CDCL form)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lcd_core.ssl.head import DINOHead, MultiCropWrapper
from lcd_core.ssl.losses import BarlowTwinsLoss, DINOLoss, total_loss, view_pairs

LOG = torch.log


def _h(p):  # entropy in nats of a probability list
    return -sum(x * math.log(x) for x in p)


def test_view_pairs_skip_same_view():
    assert view_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]


@pytest.mark.parametrize("temp", [1.0, 0.5])
def test_dino_two_replicas_each_centered_with_its_own_center(temp):
    # K = 4, two global crops, B = 1; teacher row 0 from replica 0, row 1 from replica 1
    loss = DINOLoss(out_dim=4, n_crops=2, n_replicas=2, student_temp=temp)
    c0, c1 = torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 0, 0, 2.0])
    loss.center.copy_(torch.stack([c0, c1]))
    up, down, flat = torch.tensor([1.0, 2, 3, 4]), torch.tensor([4.0, 3, 2, 1]), torch.ones(4)
    teacher = torch.stack([c0 + temp * LOG(up), c1 + temp * LOG(down)])  # q0 = .1..4, q1 = .4..1
    student = torch.stack([temp * LOG(flat), temp * LOG(up)])  # p0 uniform, p1 = .1..4
    # pairs (t0, s1): CE(q0, p1) = H(.1,.2,.3,.4);  (t1, s0): CE(q1, uniform) = ln 4
    expected = (_h([0.1, 0.2, 0.3, 0.4]) + math.log(4)) / 2
    got = loss(student, teacher, teacher_temp=temp, replica=torch.tensor([0, 1]), update_center=False)
    assert float(got) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.3330743, abs=1e-6)
    swapped = loss(student, teacher, teacher_temp=temp, replica=torch.tensor([1, 0]), update_center=False)
    assert abs(float(swapped) - expected) > 0.1  # the wrong center changes the answer


def test_center_update_per_replica_absent_unchanged_and_flood_capped():
    loss = DINOLoss(out_dim=2, n_crops=2, n_replicas=3, center_momentum=0.9, center_weight_cap=2.0)
    loss.center.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]]))
    teacher = torch.tensor([[2.0, 2.0], [4.0, 4.0], [0.0, 0.0], [10.0, 0.0]])
    replica = torch.tensor([0, 0, 0, 1])
    loss.update_center(teacher, replica)
    # replica 0: mean (2, 2), share 3/4 vs prior 1/3 → w = 2.25, capped at 2 → step 0.1·2 = 0.2
    # replica 1: mean (10, 0), share 1/4 → w = 0.75 → step 0.075;  replica 2: absent, unchanged
    expected = torch.tensor([[1.2, 1.2], [0.75, 0.0], [5.0, 5.0]])
    torch.testing.assert_close(loss.center, expected, atol=1e-6, rtol=0)

    uncapped = DINOLoss(out_dim=2, n_crops=2, n_replicas=3, center_weight_cap=float("inf"))  # CDCL
    uncapped.center.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]]))
    uncapped.update_center(teacher, replica)
    torch.testing.assert_close(uncapped.center[0], torch.tensor([1.225, 1.225]), atol=1e-6, rtol=0)


def test_center_update_balanced_and_prior_weighted_is_plain_ema():
    t = torch.tensor([[1.0, 3.0], [3.0, 1.0], [10.0, 0.0], [0.0, 10.0]])
    # each replica at its data-set share → w = 1 → c ← 0.9 c + 0.1 mean
    bal = DINOLoss(out_dim=2, n_crops=2, n_replicas=2)
    bal.update_center(t, torch.tensor([0, 0, 1, 1]))
    torch.testing.assert_close(bal.center, torch.tensor([[0.2, 0.2], [0.5, 0.5]]))
    pri = DINOLoss(out_dim=2, n_crops=2, n_replicas=2, replica_prior=[0.75, 0.25])
    pri.update_center(t, torch.tensor([0, 0, 0, 1]))
    torch.testing.assert_close(pri.center, torch.tensor([[14 / 30, 4 / 30], [0.0, 1.0]]))


def _reference_dino(student_output, teacher_output, center, ncrops, student_temp, temp, momentum):
    """facebookresearch/dino main_dino.py DINOLoss.forward + update_center, single process."""
    student_out = (student_output / student_temp).chunk(ncrops)
    teacher_out = F.softmax((teacher_output - center) / temp, dim=-1).detach().chunk(2)
    total, n_terms = 0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
            n_terms += 1
    total /= n_terms
    batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
    return total, center * momentum + batch_center * (1 - momentum)


def test_single_center_matches_reference_dino_over_steps():
    """Cross-batch off: one center, standard DINO (replica ids are ignored)."""
    g = torch.Generator().manual_seed(0)
    K, B, ncrops = 16, 3, 4
    ours = DINOLoss(out_dim=K, n_crops=ncrops, n_replicas=1, student_temp=0.1, center_momentum=0.9)
    ref_center = torch.zeros(1, K)
    for step, temp in enumerate([0.04, 0.055, 0.07]):
        s = torch.randn(ncrops * B, K, generator=g, requires_grad=True)
        s2 = s.detach().clone().requires_grad_(True)
        t = torch.randn(2 * B, K, generator=g) * 3
        ref, ref_center = _reference_dino(s, t, ref_center, ncrops, 0.1, temp, 0.9)
        got = ours(s2, t, teacher_temp=temp, replica=torch.tensor([0, 1, 2, 0, 1, 2]))
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-6)
        ref.backward()
        got.backward()
        torch.testing.assert_close(s2.grad, s.grad, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ours.center, ref_center, atol=1e-6, rtol=1e-6)


def test_barlow_hand_computed_offdiagonal_weight():
    # every column of t and s has two distinct values → batch-norm gives ±1 (up to eps 1e-5):
    # bn(t) = bn(s) = [[1, −1], [−1, 1]] → c = [[1, −1], [−1, 1]]: diag exact, off-diagonal ±1
    t = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    s = torch.tensor([[3.0, 0.0], [1.0, 2.0]])
    for lam in (0.5, 0.25, 0.0051):
        assert float(BarlowTwinsLoss(lam)(t, s)) == pytest.approx(lam * 1.0, abs=1e-4)
    # decorrelated and aligned: t = s standardised → c = I → loss 0
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(BarlowTwinsLoss(0.5)(x, x)) == pytest.approx(0.0, abs=1e-4)


def test_barlow_gram_form_equals_direct_cross_correlation():
    g = torch.Generator().manual_seed(1)
    t, s = torch.randn(8, 24, generator=g), torch.randn(8, 24, generator=g) + 0.5 * torch.randn(8, 24, generator=g)
    lam = 0.5
    bn = torch.nn.BatchNorm1d(24, affine=False, track_running_stats=False)
    c = bn(t).T @ bn(s) / 8
    on = (torch.diagonal(c) - 1).pow(2).mean()
    off = (c - torch.diag(torch.diagonal(c))).pow(2).sum() / (24 * 23)
    torch.testing.assert_close(BarlowTwinsLoss(lam)(t, s), (1 - lam) * on + lam * off, atol=1e-6, rtol=1e-5)


def test_total_loss_combines_with_cdcl_weights_and_updates_centers():
    g = torch.Generator().manual_seed(2)
    K, B, n = 8, 4, 4
    s, t = torch.randn(n * B, K, generator=g), torch.randn(2 * B, K, generator=g)
    rep = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    dino = DINOLoss(K, n, n_replicas=2)
    dino.center.copy_(torch.randn(2, K, generator=g))
    bt = BarlowTwinsLoss(0.5)
    tc = dino.teacher_logits(t, 0.05, rep)
    d = dino.cross_entropy(s, tc)
    sc, tch = (s / 0.1).chunk(n), tc.chunk(2)
    b = torch.stack([bt(tch[i], sc[j]) for i, j in view_pairs(n)]).mean()
    before = dino.center.clone()
    terms = total_loss(dino, s, t, 0.05, rep, bt, barlow_weight=0.5)
    torch.testing.assert_close(terms.total, 0.5 * d / math.log(K) + 0.5 * b / 0.505)
    assert not torch.equal(before, dino.center)
    only = total_loss(DINOLoss(K, n), s, t, 0.05)  # no Barlow: standard DINO, raw cross-entropy
    assert only.barlow is None and float(only.total) == pytest.approx(float(only.dino))


def test_head_weight_norm_and_multicrop_grouping():
    head = DINOHead(12, 10, hidden_dim=16, bottleneck_dim=6, nlayers=3, norm_last_layer=True)
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad and torch.all(g == 1)
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(10))
    calls = []

    class BB(torch.nn.Module):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return x.mean(dim=(2, 3)).repeat(1, 4)  # (n, 12)

    wrap = MultiCropWrapper(BB(), head)
    crops = [torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)]
    out, feats = wrap(crops, return_features=True)
    assert calls == [(4, 3, 8, 8), (4, 3, 4, 4)] and out.shape == (8, 10) and feats.shape == (8, 12)
