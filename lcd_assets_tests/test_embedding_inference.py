"""lcd_core.embedding.inference: batch inference (shape, dtype tolerance, streaming, threads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lcd_core.embedding.inference import embed_batches, embed_tiles, resolve_dtype
from lcd_core.embedding.vit import create_vit


@pytest.fixture(scope="module")
def vit():
    return create_vit(seed=0)


@pytest.fixture(scope="module")
def tiles():
    rng = np.random.default_rng(0)
    # smooth-ish random tiles in [0, 1] (float16 like tile_fov output)
    return rng.random((6, 3, 224, 224), dtype=np.float32).astype(np.float16)


@pytest.fixture(scope="module")
def ref(vit, tiles):
    return embed_tiles(vit, tiles, batch_size=6)


def cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_shape_finite_dtype(vit, ref, tiles):
    assert ref.shape == (len(tiles), 384) and ref.dtype == np.float32
    # the caller's model is left as it was (bf16 runs on a private copy)
    assert next(vit.parameters()).dtype == torch.float32
    from timm.layers import use_fused_attn

    assert all(b.attn.fused_attn == use_fused_attn() for b in vit.blocks)
    assert np.isfinite(ref).all()
    assert np.abs(ref[0] - ref[1]).max() > 1e-3  # different tiles, different embeddings


def test_batch_size_invariance(vit, tiles, ref):
    e3 = embed_tiles(vit, tiles, batch_size=4)
    # bf16 (when used) rounds differently per batch layout: compare within bf16 tolerance
    assert cos(e3, ref).min() > 0.999
    np.testing.assert_allclose(e3, ref, atol=0.05 * np.abs(ref).max())


def test_matches_fp32_within_bf16_tolerance(vit, tiles, ref):
    fp32 = embed_tiles(vit, tiles[:2], batch_size=2, dtype="float32")
    with torch.inference_mode():
        direct = vit(torch.from_numpy((tiles[:2].astype(np.float32) - 0.5) / 0.25)).numpy()
    np.testing.assert_allclose(fp32, direct, rtol=1e-4, atol=1e-4)
    assert cos(ref[:2], fp32).min() > 0.995


def test_streaming_equals_non_streaming(vit, tiles, ref):
    chunks = [tiles[:2], tiles[2:3], tiles[3:]]  # uneven chunks re-batched to 3
    seen = []
    parts = list(
        embed_batches(vit, iter(chunks), batch_size=3, progress=lambda d, t, r: seen.append((d, t, r)), total=6)
    )
    assert [len(p) for p in parts] == [3, 3]
    assert [s[0] for s in seen] == [3, 6] and all(s[1] == 6 and s[2] > 0 for s in seen)
    whole = embed_tiles(vit, tiles, batch_size=3)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert cos(whole, ref).min() > 0.999
    # no prefetch thread gives the same numbers
    np.testing.assert_array_equal(np.concatenate(list(embed_batches(vit, tiles, batch_size=3, prefetch=0))), whole)


def test_96px_tiles_and_empty_input(vit):
    x = np.random.default_rng(1).random((3, 3, 96, 96), dtype=np.float32)
    assert embed_tiles(vit, x, batch_size=2).shape == (3, 384)
    assert embed_tiles(vit, np.zeros((0, 3, 224, 224), np.float32)).shape == (0, 384)


def test_errors_propagate_from_the_producer(vit):
    def bad():
        yield np.zeros((2, 3, 224, 224), np.float32)
        raise RuntimeError("boom in the reader")

    with pytest.raises(RuntimeError, match="boom"):
        embed_tiles(vit, bad(), batch_size=2)
    with pytest.raises(ValueError):
        embed_tiles(vit, np.zeros((3, 224, 224), np.float32))
    with pytest.raises(ValueError):
        resolve_dtype("int8", torch.device("cpu"))


def test_num_threads_set_during_the_call_and_restored(vit, tiles, ref):
    before = torch.get_num_threads()
    seen = []
    out = embed_tiles(vit, tiles, batch_size=3, dtype=None, num_threads=1,
                      progress=lambda *a: seen.append(torch.get_num_threads()))
    assert seen == [1, 1] and torch.get_num_threads() == before
    assert out.dtype == np.float32 and cos(out, ref).min() > 0.999
