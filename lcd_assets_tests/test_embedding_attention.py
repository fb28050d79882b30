"""lcd_core.embedding.attention: patch tokens and last-layer CLS attention, dense strides, maps, figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lcd_core.embedding.attention import attention_maps, token_maps, upsample_maps
from lcd_core.embedding.vit import create_vit, normalize_input


@pytest.fixture(scope="module")
def vit():
    torch.set_num_threads(1)
    return create_vit(seed=0)


def _tiles(n=2, size=224, seed=0):
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


def test_shapes_softmax_and_cls_equals_forward(vit):
    x = _tiles()
    tm = token_maps(vit, x)
    assert tm.cls.shape == (2, 384) and tm.patches.shape == (2, 14, 14, 384)
    assert tm.attention.shape == (2, 6, 14, 14) and tm.grid == (14, 14)
    assert (tm.attention >= 0).all()
    np.testing.assert_allclose(tm.attention.sum(axis=(2, 3)), 1.0, atol=1e-5)
    with torch.no_grad():
        ref = vit(normalize_input(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(tm.cls, ref, atol=1e-5)
    # the patch tokens are the final-norm outputs of forward_features
    with torch.no_grad():
        feats = vit.forward_features(normalize_input(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(tm.patches.reshape(2, -1, 384), feats[:, 1:], atol=1e-5)


def test_attention_matches_unfused_softmax(vit):
    """The CLS row recomputed from qkv equals timm's own unfused attention (renormalised to patches)."""
    x = normalize_input(torch.from_numpy(_tiles(1)))
    captured = {}
    attn = vit.blocks[-1].attn
    hook = attn.register_forward_hook(lambda m, i, o: captured.setdefault("x", i[0]))
    try:
        with torch.no_grad():
            vit(x)
    finally:
        hook.remove()
    with torch.no_grad():
        B, N, _ = captured["x"].shape
        qkv = attn.qkv(captured["x"]).reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        full = ((qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1)).softmax(-1)[0, :, 0, 1:]
    want = (full / full.sum(-1, keepdim=True)).reshape(6, 14, 14).numpy()
    np.testing.assert_allclose(token_maps(vit, _tiles(1)).attention[0], want, atol=1e-5)


def test_stride_8_denser_grid_and_model_restored(vit):
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    x = _tiles(1)
    tm = token_maps(vit, x, stride=8)
    assert tm.patches.shape == (1, 27, 27, 384) and tm.attention.shape == (1, 6, 27, 27)
    assert tm.stride == 8 and tm.patch_size == 16
    np.testing.assert_allclose(tm.attention.sum(axis=(2, 3)), 1.0, atol=1e-5)
    assert tuple(vit.patch_embed.proj.stride) == (16, 16)
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())
    with torch.no_grad():
        out = vit(normalize_input(torch.from_numpy(x)))
    assert out.shape == (1, 384)
    np.testing.assert_allclose(token_maps(vit, x).cls, out.numpy(), atol=1e-5)
    # tokens at even positions of the stride-8 grid see the same pixels as the stride-16 grid:
    # different context (position embedding, neighbours) but strongly related features
    a = tm.patches[0, ::2, ::2].reshape(-1, 384)
    b = token_maps(vit, x).patches[0].reshape(-1, 384)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.median(cos) > 0.5


def test_bad_inputs(vit):
    with pytest.raises(ValueError, match="stride"):
        token_maps(vit, _tiles(1), stride=32)
    with pytest.raises(ValueError, match=r"\(n, 3, T, T\)"):
        token_maps(vit, np.zeros((1, 1, 224, 224), np.float32))


def test_attention_maps_upsampled_to_any_tile(vit):
    mean, heads = attention_maps(vit, _tiles(1, size=112))
    assert mean.shape == (1, 112, 112) and heads.shape == (1, 6, 112, 112)
    np.testing.assert_allclose(mean, heads.mean(axis=1), atol=1e-6)
    # a one-hot token map peaks at its token's pixel centre
    tok = np.zeros((4, 4), np.float32)
    tok[1, 2] = 1.0
    up = upsample_maps(tok, None, 64, stride=16, patch=16)
    assert up.shape == (64, 64)
    assert np.unravel_index(np.argmax(up), up.shape) in {(23, 39), (24, 40), (23, 40), (24, 39)}


def test_attention_figure_is_png(vit):
    from lcd_core.plots import attention_figure

    x = _tiles(2, size=112)
    mean, heads = attention_maps(vit, x)
    png = attention_figure(x, heads, ["tile a", "tile b"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    with pytest.raises(ValueError):
        attention_figure(x, heads[:1], ["a", "b"])
