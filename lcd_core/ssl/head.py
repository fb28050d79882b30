"""DINO projection head and the multi-crop wrapper (facebookresearch/dino, ``vision_transformer.py``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DINOHead", "MultiCropWrapper"]


class DINOHead(nn.Module):
    """MLP (``nlayers`` linear, GELU between) → L2-normalised bottleneck → weight-normed linear to
    ``out_dim`` logits. With ``norm_last_layer`` the weight-norm gain is fixed at 1 (not trained),
    so the last layer is a set of unit-norm prototypes."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (max(nlayers, 1) - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad = not norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class MultiCropWrapper(nn.Module):
    """Backbone over a list of crop batches, one backbone call per run of equal resolution (the two
    global crops together, then the locals), then the head once over all CLS embeddings.

    ``forward(crops)`` returns the logits ``(sum of batch sizes, out_dim)`` in crop order;
    ``forward(crops, return_features=True)`` also returns the backbone embeddings.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: list[torch.Tensor] | torch.Tensor, return_features: bool = False):
        if isinstance(crops, torch.Tensor):
            crops = [crops]
        sizes = torch.tensor([c.shape[-1] for c in crops])
        counts = torch.unique_consecutive(sizes, return_counts=True)[1].tolist()
        feats, start = [], 0
        for n in counts:
            feats.append(self.backbone(torch.cat(crops[start:start + n])))
            start += n
        f = torch.cat(feats)
        out = self.head(f)
        return (out, f) if return_features else out
