"""Saving and loading a trained MolCLIP: a folder with ``model.safetensors`` + ``config.json``.

No pickle: tensors go to safetensors, everything else (config, feature names, timepoints,
fingerprint settings, the trained compounds, the loss history) to JSON. A save is atomic: the
folder is written under a temporary name next to the target and renamed into place (an existing
folder is moved aside first and removed once the new one is in place).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lcd_core.molclip.train import MolClip, MolClipConfig

__all__ = ["MODEL_FILE", "CONFIG_FILE", "FORMAT", "save_molclip", "load_molclip"]

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"
FORMAT = "lcd.molclip/1"


def _description(model: MolClip) -> dict:
    c = model.config
    return {
        "format": FORMAT,
        "config": c.to_dict(),
        "use_molecules": model.use_molecules,
        "features": model.features,
        "timepoints": model.timepoints,
        "fingerprint": {"kind": "morgan", "radius": c.fp_radius, "n_bits": c.fp_bits, "chirality": c.fp_chirality},
        "trained_compounds": model.trained_compounds,
        "history": model.history,
    }


def save_molclip(model: MolClip, folder: str | Path) -> Path:
    """Write ``model`` to ``folder`` (created or replaced atomically); returns the folder."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps(_description(model), indent=2, allow_nan=False))
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            folder.rename(old)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def load_molclip(folder: str | Path) -> MolClip:
    """Read a model written by :func:`save_molclip` (eval mode)."""
    folder = Path(folder)
    for f in (MODEL_FILE, CONFIG_FILE):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"{folder} holds no {f}: not a saved MolCLIP model")
    d = json.loads((folder / CONFIG_FILE).read_text())
    if d.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE}: format {d.get('format')!r}, expected {FORMAT!r}")
    config = MolClipConfig.from_dict(d["config"])
    fp = d["fingerprint"]
    if (fp["radius"], fp["n_bits"], fp["chirality"]) != (config.fp_radius, config.fp_bits, config.fp_chirality):
        raise ValueError(f"{folder / CONFIG_FILE}: fingerprint settings disagree with the config")
    with torch.random.fork_rng(devices=[]):  # the throw-away initialisation leaves the caller's RNG alone
        model = MolClip(config, d["features"], d["timepoints"], d["use_molecules"], d["trained_compounds"],
                        d["history"])
    model.load_state_dict(load_file(str(folder / MODEL_FILE)), strict=True)
    return model.eval()
