"""Training checkpoints without pickle.

``checkpoint_dir/`` is a regular :mod:`lcd_core.embedding.vit` checkpoint of the **teacher backbone**
(``model.safetensors`` + ``config.json``, loadable by ``load_checkpoint`` or plain timm; DINO
evaluates the teacher) plus the state needed to resume:

* ``training_state.safetensors``: ``student.*`` and ``teacher.*`` (backbone + head state dicts),
  ``loss.center`` (the (R, K) teacher centers), and AdamW's moments ``opt.<param>.exp_avg`` /
  ``opt.<param>.exp_avg_sq`` keyed by the student's parameter names;
* ``training_state.json``: ``step`` (completed steps), the SSL config, each parameter's AdamW step
  count, the sampler's fallback counts, the replica labels.

The folder is written next to the old one and swapped in, so a crash never leaves it half-written.
Nothing here is pickled (no ``torch.save``): AdamW's state is three tensors and a count per
parameter, stored above, so a resumed run continues with its moments intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from lcd_core.embedding.vit import save_checkpoint

__all__ = ["STATE_WEIGHTS", "STATE_JSON", "save_training_checkpoint", "load_training_state", "has_training_state"]

STATE_WEIGHTS = "training_state.safetensors"
STATE_JSON = "training_state.json"


def _flat(prefix: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def save_training_checkpoint(checkpoint_dir: str | os.PathLike, *, student: torch.nn.Module,
                             teacher: torch.nn.Module, center: torch.Tensor,
                             optimizer: torch.optim.Optimizer, meta: dict[str, Any], arch: str,
                             name: str, extra: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    out = Path(checkpoint_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {**_flat("student", student.state_dict()), **_flat("teacher", teacher.state_dict()),
               "loss.center": center.detach().cpu().contiguous().clone()}
    names = {id(p): n for n, p in student.named_parameters()}
    opt_steps: dict[str, float] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            tensors[f"opt.{n}.exp_avg"] = st["exp_avg"].detach().cpu().contiguous().clone()
            tensors[f"opt.{n}.exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().contiguous().clone()
            opt_steps[n] = float(st["step"])
    meta = {**meta, "opt_steps": opt_steps, "format": "lcd-ssl-train-v1"}
    json.dumps(meta)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        staged = save_checkpoint(teacher.backbone, work / "ckpt", name=name, arch=arch, extra=extra)
        save_file(tensors, str(staged / STATE_WEIGHTS))
        (staged / STATE_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if out.exists():
            old = work / "old"
            os.replace(out, old)
        os.replace(staged, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def has_training_state(checkpoint_dir: str | os.PathLike) -> bool:
    d = Path(checkpoint_dir)
    return (d / STATE_WEIGHTS).is_file() and (d / STATE_JSON).is_file()


def load_training_state(checkpoint_dir: str | os.PathLike, *, student: torch.nn.Module,
                        teacher: torch.nn.Module, center: torch.Tensor,
                        optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the models, centers and AdamW state in place; return the JSON metadata."""
    from safetensors.torch import load_file

    d = Path(checkpoint_dir)
    meta = json.loads((d / STATE_JSON).read_text())
    t = load_file(str(d / STATE_WEIGHTS))
    for prefix, model in (("student", student), ("teacher", teacher)):
        sd = {k[len(prefix) + 1:]: v for k, v in t.items() if k.startswith(prefix + ".")}
        model.load_state_dict(sd, strict=True)
    if t["loss.center"].shape != center.shape:
        raise ValueError(f"{d}: centers {tuple(t['loss.center'].shape)} do not fit {tuple(center.shape)} "
                         "(different replica count or out_dim)")
    center.copy_(t["loss.center"])
    params = dict(student.named_parameters())
    for n, step in meta.get("opt_steps", {}).items():
        p = params[n]
        optimizer.state[p] = {
            "step": torch.tensor(float(step)),
            "exp_avg": t[f"opt.{n}.exp_avg"].to(p.device, p.dtype),
            "exp_avg_sq": t[f"opt.{n}.exp_avg_sq"].to(p.device, p.dtype),
        }
    return meta
