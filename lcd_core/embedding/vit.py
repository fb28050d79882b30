"""The ViT backbone (timm) and its checkpoint format.

A checkpoint is a folder ``$LCD_HOME/models/<name>/`` with

* ``model.safetensors``: the backbone's ``state_dict`` (no classifier head: ``num_classes=0``), never
  pickle;
* ``config.json``: ``arch``, ``embed_dim``, ``img_size``, ``patch_size``, ``name``, ``trained``,
  ``created_at`` (ISO 8601 UTC), ``input_mean`` / ``input_std`` (the input normalisation, see
  below), plus any ``extra`` keys (training recipe, seed, epochs, ...).

The weights load with plain timm (no lcd code needed)::

    timm.create_model(arch, pretrained=True, num_classes=0, dynamic_img_size=True,
                      pretrained_cfg_overlay=dict(file=".../model.safetensors"))

(timm ≥ 1.0.31 resets the registry's ``custom_load`` when a ``file`` is supplied; we also pass
``custom_load=False`` and ``num_classes=0`` in the overlay explicitly so older/newer timm versions
neither try the original ``.npz`` loader nor look for a classifier head.)

Input convention: tiles are float in [0, 1] per plane (see :mod:`lcd_core.tiles.preprocess`); the model sees
``(x − INPUT_MEAN) / INPUT_STD`` = ``(x − 0.5) / 0.25`` on every channel (a [0, 1] tile maps to
[−2, 2], and a percentile-normalised brightfield tile has roughly zero mean and unit-ish std).
Training code must use :func:`normalize_input` too.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from lcd_core._torchvision_compat import ensure_torchvision_importable

__all__ = [
    "DEFAULT_ARCH",
    "INPUT_MEAN",
    "INPUT_STD",
    "create_vit",
    "normalize_input",
    "save_checkpoint",
    "load_checkpoint",
    "describe_checkpoint",
    "arch_label",
]

DEFAULT_ARCH = "vit_small_patch16_224"
INPUT_MEAN = 0.5
INPUT_STD = 0.25
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _timm():
    """Import timm lazily (≈3 s; keeps ``import lcd_core.embedding.vit`` cheap) after the torchvision fix."""
    ensure_torchvision_importable()
    import timm

    return timm


def normalize_input(x: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] tiles to the ViT input range: ``(x − 0.5) / 0.25`` (new tensor, float32 kept)."""
    return (x - INPUT_MEAN) * (1.0 / INPUT_STD)


def create_vit(arch: str = DEFAULT_ARCH, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised timm ViT (``num_classes=0``: forward returns the CLS embedding, 384-d
    for ViT-S/16; ``dynamic_img_size=True``: 96-px crops work too), in eval mode.

    The init is deterministic in ``seed`` and leaves the global RNG state untouched (it runs under
    ``torch.random.fork_rng``), so the "untrained ViT" baseline is reproducible.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _timm().create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True)
    return model.eval()


def _model_geometry(model: torch.nn.Module) -> dict[str, Any]:
    pe = getattr(model, "patch_embed", None)
    img_size = list(getattr(pe, "img_size", None) or ()) or None
    patch_size = list(getattr(pe, "patch_size", None) or ()) or None
    return {
        "embed_dim": int(getattr(model, "num_features", getattr(model, "embed_dim", 0))),
        "img_size": img_size[0] if img_size and len(set(img_size)) == 1 else img_size,
        "patch_size": patch_size[0] if patch_size and len(set(patch_size)) == 1 else patch_size,
    }


def save_checkpoint(
    model: torch.nn.Module,
    out_dir: str | os.PathLike,
    *,
    name: str,
    arch: str = DEFAULT_ARCH,
    extra: dict[str, Any] | None = None,
    trained: bool | None = None,
) -> Path:
    """Write ``out_dir/model.safetensors`` + ``out_dir/config.json`` atomically; return ``out_dir``.

    The files are written into a temporary sibling folder which then replaces ``out_dir`` (an
    existing checkpoint folder of the same name is swapped out, never left half-written).
    ``trained`` defaults to ``extra.get("trained", True)``; pass ``trained=False`` for an untrained
    baseline. ``extra`` keys are merged into ``config.json`` (must be JSON-serialisable).
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    if trained is None:
        trained = bool(extra.pop("trained", True))
    else:
        extra.pop("trained", None)
    config: dict[str, Any] = {
        "arch": arch,
        **_model_geometry(model),
        "name": name,
        "trained": bool(trained),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input_mean": INPUT_MEAN,
        "input_std": INPUT_STD,
        "format": "timm-safetensors-v1",
    }
    for k, v in extra.items():
        config.setdefault(k, v)
    json.dumps(config)  # fail before touching the disk if extra is not serialisable

    # state_dict tensors may share storage / be non-contiguous: safetensors wants neither
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"arch": arch, "name": name})
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            old.rmdir()
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _resolve(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights file, config file) of a checkpoint folder or its ``.safetensors`` file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if p.is_dir():
        weights, cfg = p / WEIGHTS_FILE, p / CONFIG_FILE
    elif p.suffix == ".safetensors":
        weights, cfg = p, p.parent / CONFIG_FILE
    else:
        raise ValueError(f"not a checkpoint folder or .safetensors file: {p}")
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    return weights, cfg


def load_checkpoint(path: str | os.PathLike, *, arch: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint folder (or its ``model.safetensors``) with ``timm.create_model``.

    The architecture comes from ``config.json`` (or ``arch``, or the safetensors metadata when no
    config exists). Returns ``(model in eval mode, config dict)``. Weights that do not fit the
    architecture raise ``ValueError`` naming the file.
    """
    weights, cfg_path = _resolve(path)
    config: dict[str, Any] = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    if arch is None:
        arch = config.get("arch")
    if arch is None:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            arch = (f.metadata() or {}).get("arch")
    if not arch:
        raise ValueError(f"{weights}: no architecture in {cfg_path.name} or the file's metadata; pass arch=")
    try:
        model = _timm().create_model(
            arch,
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(weights), custom_load=False, num_classes=0),
            num_classes=0,
            dynamic_img_size=True,
        )
    except RuntimeError as e:  # size mismatch / missing or unexpected keys from load_state_dict
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0] if first else ""
        raise ValueError(f"checkpoint {weights} does not match architecture {arch!r}: {detail}") from e
    config = {**config, "arch": arch}
    config.setdefault("name", weights.parent.name)
    config.setdefault("trained", True)
    config.update({k: v for k, v in _model_geometry(model).items() if k not in config})
    return model.eval(), config


_ARCH_LABELS = {
    "vit_small_patch16_224": "ViT-S/16",
    "vit_small_patch8_224": "ViT-S/8",
    "vit_base_patch16_224": "ViT-B/16",
    "vit_base_patch8_224": "ViT-B/8",
    "vit_tiny_patch16_224": "ViT-Ti/16",
    "vit_large_patch16_224": "ViT-L/16",
}


def arch_label(arch: str) -> str:
    """Short human label of a timm arch name (``vit_small_patch16_224`` → ``ViT-S/16``)."""
    return _ARCH_LABELS.get(arch, arch)


def describe_checkpoint(config: dict[str, Any]) -> str:
    """``"untrained ViT-S/16 (seed 0)"`` or ``"ViT-S/16 trained: <name>"``."""
    label = arch_label(str(config.get("arch", DEFAULT_ARCH)))
    if not config.get("trained", True):
        seed = config.get("seed")
        return f"untrained {label}" + (f" (seed {seed})" if seed is not None else "")
    detail = [str(config["variant"])] if config.get("variant") else []
    if config.get("step") is not None:
        detail.append(f"step {config['step']}" + (f"/{config['total_steps']}" if config.get("total_steps") else ""))
    if config.get("input_size"):
        detail.append(f"{config['input_size']} px")
    return f"{label} trained: {config.get('name', '?')}" + (f" ({', '.join(detail)})" if detail else "")
