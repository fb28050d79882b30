"""lcd_core.embedding.vit: deterministic init, safetensors checkpoints loadable by plain timm, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcd_core._torchvision_compat import ensure_torchvision_importable
from lcd_core.embedding.vit import (
    create_vit,
    describe_checkpoint,
    load_checkpoint,
    normalize_input,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def vit():
    return create_vit("vit_small_patch16_224", seed=0)


def _x(n=2, size=224, seed=0):
    g = torch.Generator().manual_seed(seed)
    return normalize_input(torch.rand(n, 3, size, size, generator=g))


def test_torchvision_compat_is_idempotent():
    ensure_torchvision_importable()
    ensure_torchvision_importable()
    import timm  # noqa: F401
    import torchvision  # noqa: F401

    assert hasattr(torch.ops.torchvision, "nms")


def test_same_seed_same_weights_and_rng_untouched(vit):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = create_vit(seed=0)
    after = torch.rand(3)
    assert torch.equal(before, after)  # create_vit leaves the global RNG alone
    sa, sb = a.state_dict(), vit.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    c = create_vit(seed=1)
    assert not torch.equal(c.state_dict()["pos_embed"], sa["pos_embed"])
    assert not vit.training


def test_cls_embedding_shape_and_dynamic_size(vit):
    with torch.inference_mode():
        y = vit(_x(2, 224))
        y96 = vit(_x(3, 96))
    assert y.shape == (2, 384) and y96.shape == (3, 384)
    assert torch.isfinite(y).all() and torch.isfinite(y96).all()


def test_save_load_round_trip(vit, tmp_path):
    out = save_checkpoint(vit, tmp_path / "models" / "untrained-s0", name="untrained-s0", extra={"seed": 0}, trained=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["arch"] == "vit_small_patch16_224" and cfg["embed_dim"] == 384
    assert cfg["img_size"] == 224 and cfg["patch_size"] == 16 and cfg["trained"] is False
    assert cfg["seed"] == 0 and cfg["name"] == "untrained-s0" and "created_at" in cfg
    assert (out / "model.safetensors").read_bytes()[:8] != b"\x80\x02"  # not a pickle
    x = _x(2)
    for path in (out, out / "model.safetensors"):
        m, c = load_checkpoint(path)
        with torch.inference_mode():
            assert torch.equal(m(x), vit(x))
        assert c["arch"] == "vit_small_patch16_224"
    assert describe_checkpoint(c) == "untrained ViT-S/16 (seed 0)"
    # overwrite in place (atomic swap) and the trained label
    save_checkpoint(vit, out, name="dino-pa", extra={"recipe": "PA+DINO+Barlow+XB"})
    _, c2 = load_checkpoint(out)
    assert describe_checkpoint(c2) == "ViT-S/16 trained: dino-pa" and c2["recipe"] == "PA+DINO+Barlow+XB"


def test_loadable_by_plain_timm(vit, tmp_path):
    import timm

    out = save_checkpoint(vit, tmp_path / "m", name="m", extra={"seed": 0}, trained=False)
    m = timm.create_model(
        "vit_small_patch16_224",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")),
        num_classes=0,
        dynamic_img_size=True,
    ).eval()
    x = _x(1)
    with torch.inference_mode():
        np.testing.assert_array_equal(m(x).numpy(), vit(x).numpy())
        assert m(_x(1, 96)).shape == (1, 384)


def test_wrong_arch_weights_clear_error(tmp_path):
    tiny = create_vit("vit_tiny_patch16_224", seed=0)
    # weights of ViT-Ti saved under a folder claiming ViT-S
    out = save_checkpoint(tiny, tmp_path / "bad", name="bad", arch="vit_small_patch16_224")
    with pytest.raises(ValueError, match=r"bad[/\\]model\.safetensors.*vit_small_patch16_224"):
        load_checkpoint(out)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nowhere")
