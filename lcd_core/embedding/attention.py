"""Patch tokens and last-layer CLS attention of a timm ViT (SPEC §4.3, §4.10).

:func:`token_maps` runs the backbone on ``(n, 3, T, T)`` tiles in [0, 1] (normalised like
:mod:`lcd_core.embedding.inference`) and returns, per tile,

* the CLS embedding ``(D,)``: exactly the model's ordinary forward (``model(x)``);
* the patch tokens ``(h, w, D)``: the final-norm outputs of the patch positions;
* the last block's CLS → patch attention per head ``(heads, h, w)``: ``softmax(q_cls · k / √d)``
  over the *patch* keys (the prefix tokens are left out, so each map sums to 1). It is computed
  from the last block's own ``qkv`` projection on that block's input, so it is the same with fused
  (flash) and unfused attention.

Dense tokens (Amir et al., "Deep ViT features as dense visual descriptors"): ``stride`` below the
patch size runs the patch-embedding convolution at that stride (overlapping patches) and
interpolates the position embedding to the denser grid (timm's ``resample_abs_pos_embed``, as
``dynamic_img_size`` does). The convolution is applied with the model's own weights through
:func:`torch.nn.functional.conv2d`: the model itself is never modified, so it needs no restoring
and a concurrent ordinary forward is unaffected. The grid is ``(T − p) // stride + 1`` per side.

:func:`attention_maps` is the library call for the UI: mean and per-head maps upsampled to the
tile size; :func:`lcd_core.plots.attention_figure` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lcd_core.embedding.vit import INPUT_MEAN, INPUT_STD

__all__ = ["TokenMaps", "token_maps", "attention_maps", "upsample_maps", "patch_size_of", "grid_size"]


@dataclass(frozen=True)
class TokenMaps:
    """Tokens and attention of ``n`` tiles (float32 NumPy arrays).

    Attributes
    ----------
    cls
        ``(n, D)`` CLS embeddings (the model's forward).
    patches
        ``(n, h, w, D)`` patch tokens after the final norm.
    attention
        ``(n, heads, h, w)`` last-layer CLS → patch attention, each map summing to 1.
    stride, patch_size
        Token stride and patch side in tile pixels: token ``(i, j)`` covers tile pixels
        ``[i·stride, i·stride + patch_size)`` (rows) and likewise for columns.
    """

    cls: np.ndarray
    patches: np.ndarray
    attention: np.ndarray
    stride: int
    patch_size: int

    @property
    def grid(self) -> tuple[int, int]:
        """``(h, w)`` of the token grid."""
        return int(self.patches.shape[1]), int(self.patches.shape[2])


def patch_size_of(model: torch.nn.Module) -> int:
    """The (square) patch side of a timm ViT."""
    pe = getattr(model, "patch_embed", None)
    if pe is None or not hasattr(pe, "proj"):
        raise ValueError("not a timm ViT: the model has no patch_embed.proj")
    k = tuple(pe.proj.kernel_size)
    if k[0] != k[1]:
        raise ValueError(f"non-square patches {k} are not supported")
    return int(k[0])


def grid_size(tile: int, patch: int, stride: int) -> int:
    """Tokens per side of a ``tile``-px tile at ``stride`` (patches fully inside the tile)."""
    if tile < patch:
        raise ValueError(f"tile {tile} px is smaller than the patch ({patch} px)")
    return (tile - patch) // stride + 1


def _embed(model: torch.nn.Module, x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch embedding at ``stride`` + prefix tokens + (resampled) position embedding → ``(B, N, D)``."""
    from lcd_core._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from timm.layers import resample_abs_pos_embed

    pe = model.patch_embed
    y = F.conv2d(x, pe.proj.weight, pe.proj.bias, stride=stride)
    h, w = y.shape[-2:]
    y = pe.norm(y.flatten(2).transpose(1, 2))
    prefix = [t.expand(y.shape[0], -1, -1) for t in (model.cls_token, getattr(model, "reg_token", None))
              if t is not None]
    n_prefix = int(getattr(model, "num_prefix_tokens", len(prefix)))
    if model.pos_embed is not None:
        no_embed_class = bool(getattr(model, "no_embed_class", False))
        pos = resample_abs_pos_embed(model.pos_embed, new_size=(h, w), old_size=tuple(pe.grid_size),
                                     num_prefix_tokens=0 if no_embed_class else n_prefix)
        if no_embed_class:
            y = torch.cat(prefix + [y + pos], dim=1)
        else:
            y = torch.cat(prefix + [y], dim=1) + pos
    else:
        y = torch.cat(prefix + [y], dim=1)
    return model.norm_pre(model.pos_drop(y)), (int(h), int(w))


def _cls_attention(block: torch.nn.Module, x: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """``(B, heads, N − n_prefix)`` softmax of the CLS query against the patch keys of ``block``."""
    attn = block.attn
    xn = block.norm1(x)
    B, N, _ = xn.shape
    qkv = attn.qkv(xn).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    logits = (q[:, :, :1] * attn.scale) @ k[:, :, n_prefix:].transpose(-2, -1)
    return logits[:, :, 0].float().softmax(dim=-1)


def _run(model: torch.nn.Module, x: torch.Tensor, stride: int):
    """One batch: (cls, patches, attention, grid) tensors."""
    y, (h, w) = _embed(model, x, stride)
    n_prefix = int(getattr(model, "num_prefix_tokens", 1))
    for blk in model.blocks[:-1]:
        y = blk(y)
    att = _cls_attention(model.blocks[-1], y, n_prefix)
    y = model.norm(model.blocks[-1](y))
    cls = model.forward_head(y)
    patches = y[:, n_prefix:].reshape(y.shape[0], h, w, -1)
    return cls, patches, att.reshape(att.shape[0], att.shape[1], h, w)


def _check_tiles(tiles) -> np.ndarray | torch.Tensor:
    if isinstance(tiles, torch.Tensor):
        tiles = tiles.detach().cpu()
    else:
        tiles = np.asarray(tiles)
    if tiles.ndim == 3:
        tiles = tiles[None]
    if tiles.ndim != 4 or tiles.shape[1] != 3:
        raise ValueError(f"tiles must be (n, 3, T, T), got shape {tuple(tiles.shape)}")
    return tiles


def token_maps(model: torch.nn.Module, tiles, *, stride: int | None = None, batch_size: int = 8,
               dtype: str | torch.dtype | None = "float32") -> TokenMaps:
    """CLS embeddings, patch tokens and last-layer CLS attention of ``tiles``.

    Parameters
    ----------
    model
        A timm ``VisionTransformer`` with a CLS token (e.g. :func:`lcd_core.embedding.vit.create_vit`
        or a loaded checkpoint); used in eval mode, never modified.
    tiles
        ``(n, 3, T, T)`` (or one ``(3, T, T)``) float in [0, 1]; normalised here with
        ``(x − 0.5) / 0.25``.
    stride
        Token stride in pixels; ``None`` = the patch size (the model's own grid). A smaller stride
        gives overlapping patches and a denser grid (cost grows with the token count squared).
    batch_size
        Tiles per forward.
    dtype
        ``"float32"`` (default), ``"bfloat16"`` or ``"auto"`` (see
        :func:`lcd_core.embedding.inference.resolve_dtype`): autocast dtype of the forward.

    Returns
    -------
    TokenMaps
    """
    from lcd_core.embedding.inference import resolve_dtype

    tiles = _check_tiles(tiles)
    patch = patch_size_of(model)
    if getattr(model, "cls_token", None) is None:
        raise ValueError("the model has no CLS token")
    stride = patch if stride is None else int(stride)
    if not 1 <= stride <= patch:
        raise ValueError(f"stride must be in [1, patch size {patch}], got {stride}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = next(model.parameters()).device
    amp = resolve_dtype(dtype, dev)
    was_training = model.training
    model.eval()
    outs: list[tuple] = []
    try:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            for i in range(0, len(tiles), batch_size):
                x = torch.as_tensor(np.asarray(tiles[i:i + batch_size], dtype=np.float32)).to(dev)
                x = (x - INPUT_MEAN) * (1.0 / INPUT_STD)
                outs.append(tuple(t.float().cpu().numpy() for t in _run(model, x, stride)))
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError("no tiles given")
    cls, patches, att = (np.concatenate(p) for p in zip(*outs))
    return TokenMaps(cls, patches, att, stride, patch)


def upsample_maps(maps: np.ndarray, tokens: TokenMaps | None, size: int | tuple[int, int], *,
                  stride: int | None = None, patch: int | None = None) -> np.ndarray:
    """``(..., h, w)`` token maps → ``(..., H, W)`` pixel maps (``size``: ``T`` or ``(H, W)``).

    Bilinear, token ``(i, j)`` centred at pixel ``(i·stride + patch/2, j·stride + patch/2)``; the
    border outside the first/last token centres is held constant. ``stride`` / ``patch`` come from
    ``tokens`` when given."""
    stride = tokens.stride if tokens is not None else int(stride)
    patch = tokens.patch_size if tokens is not None else int(patch)
    sh, sw = (size, size) if np.isscalar(size) else size
    h, w = maps.shape[-2:]
    lead = maps.shape[:-2]
    gy = np.clip((np.arange(sh) + 0.5 - patch / 2) / stride, 0, h - 1)
    gx = np.clip((np.arange(sw) + 0.5 - patch / 2) / stride, 0, w - 1)
    flat = torch.as_tensor(np.ascontiguousarray(maps.reshape(-1, 1, h, w), dtype=np.float32))
    # grid_sample coordinates in [-1, 1] of the token grid (align_corners=True: -1 = token 0)
    ny = torch.as_tensor(2 * gy / max(h - 1, 1) - 1, dtype=torch.float32)
    nx = torch.as_tensor(2 * gx / max(w - 1, 1) - 1, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(ny, nx, indexing="ij")[::-1], dim=-1)[None].expand(flat.shape[0], -1, -1, -1)
    out = F.grid_sample(flat, grid, mode="bilinear", align_corners=True)
    return out.numpy().reshape(*lead, sh, sw)


def attention_maps(model: torch.nn.Module, tiles, *, stride: int | None = None,
                   batch_size: int = 8, dtype: str | torch.dtype | None = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Last-layer CLS attention upsampled to the tile size, for display.

    Parameters
    ----------
    model, tiles, stride, batch_size, dtype
        As :func:`token_maps`; any tile size of at least one patch.

    Returns
    -------
    (mean, per_head)
        ``(n, T, T)`` mean over heads and ``(n, heads, T, T)`` per head, float32; each map is
        rescaled so that its token values sum to 1 (as in :class:`TokenMaps`), then interpolated.
    """
    tiles = _check_tiles(tiles)
    tok = token_maps(model, tiles, stride=stride, batch_size=batch_size, dtype=dtype)
    size = int(tiles.shape[-1])
    if tiles.shape[-2] != size:
        raise ValueError(f"square tiles expected, got {tuple(tiles.shape[-2:])}")
    heads = upsample_maps(tok.attention, tok, size)
    return heads.mean(axis=1), heads
