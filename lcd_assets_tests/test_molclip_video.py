"""lcd_core.molclip.video: the temporal aggregator respects the mask and gives unit vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lcd_core.molclip.video import VideoEncoder


@pytest.fixture()
def encoder():
    torch.manual_seed(0)
    return VideoEncoder(in_dim=6, n_timepoints=4, dim=8, hidden=16, n_heads=2).eval()


def test_output_is_unit_and_pooling_weights_sum_to_one(encoder):
    x, mask = torch.randn(3, 4, 6), torch.ones(3, 4, dtype=torch.bool)
    z, w = encoder(x, mask, return_weights=True)
    assert z.shape == (3, 8) and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.allclose(w.sum(1), torch.ones(3), atol=1e-6)


def test_masked_timepoints_have_no_influence(encoder):
    x = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, False, True], [False, True, True, True]])
    with torch.no_grad():
        z, w = encoder(x, mask, return_weights=True)
        x2 = x.clone()
        x2[~mask] = 1e3 * torch.randn(int((~mask).sum()), 6)
        z2 = encoder(x2, mask)
    assert torch.allclose(z, z2, atol=1e-5)
    assert (w[~mask] == 0).all()


def test_timepoint_order_matters(encoder):
    x, mask = torch.randn(1, 4, 6), torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        assert not torch.allclose(encoder(x, mask), encoder(x.flip(1), mask))


def test_input_statistics_and_errors(encoder):
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(50, 4, 6)).astype(np.float32)
    mask = np.ones((50, 4), bool)
    mask[:, 0] = False
    x[:, 0] = 1e6  # masked values must not enter the statistics
    encoder.set_input_stats(x, mask)
    assert np.allclose(encoder.in_mean.numpy(), x[:, 1:].reshape(-1, 6).mean(0), atol=1e-4)
    assert np.allclose(encoder.in_scale.numpy(), x[:, 1:].reshape(-1, 6).std(0), rtol=1e-4)
    with pytest.raises(ValueError, match="no observed timepoint"):
        encoder(torch.zeros(1, 4, 6), torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, 4, 6\)"):
        encoder(torch.zeros(1, 5, 6), torch.ones(1, 5, dtype=torch.bool))
