"""The models the acquisition needs, created or reused: the ViT checkpoint that embeds the tiles
and the cell segmentation network of the handcrafted baseline."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lcd_core.cells import RayNet, load_raynet, save_raynet
from lcd_core.embedding.vit import create_vit, load_checkpoint, save_checkpoint

Log = Callable[[str], None]
UNTRAINED_ARCH = "vit_small_patch16_224"


def vit_checkpoint(folder: Path, seed: int = 0) -> tuple[object, dict]:
    """The ViT of ``folder`` (``(model, config)``); when it holds none, an UNTRAINED ViT-S/16 of
    ``seed`` is written there first, named after the folder and labelled untrained."""
    if not (folder / "model.safetensors").exists():
        save_checkpoint(create_vit(seed=seed), folder, name=folder.name, arch=UNTRAINED_ARCH,
                        extra={"trained": False, "seed": seed})
    return load_checkpoint(folder)


def weights_finite(model) -> bool:
    """Every parameter of a torch model is finite."""
    return all(bool(np.isfinite(p.detach().float().numpy()).all()) for p in model.parameters())


def segmentation_network(folder: Path, training: dict, log: Log = print,
                         warn: Log | None = None) -> tuple[RayNet, dict, bool]:
    """The cell segmentation network of ``folder`` when it was trained with ``training`` (the
    keyword arguments of :func:`lcd_core.cells.train.fit_segmentation`), else one trained now and
    saved there (also when the saved weights are of an older network geometry).

    Returns
    -------
    (net, record, reused)
        ``record`` is the training record (``validation`` figures included).
    """
    from lcd_core.cells.train import fit_segmentation

    path = folder / "raynet.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    if record.get("training") == training:
        try:
            net, record = load_raynet(folder)
            log(f"{folder} was trained with the same settings: reused")
            return net, record, True
        except ValueError as err:  # weights of an older network geometry: train anew
            (warn or log)(f"{err}; retraining")
    net, record = fit_segmentation(**training, progress=log)
    save_raynet(net, folder, record)
    return net, record, False


def validation_overlay(net: RayNet, seed: int) -> bytes:
    """A fresh annotated FOV (``seed``) segmented by ``net``: its cells drawn over it, as PNG."""
    from lcd_core.cells.features import segment_tiles
    from lcd_core.cells.train import render_annotated_fov
    from lcd_core.plots import segmentation_overlay

    image, _ = render_annotated_fov(np.random.default_rng(seed))
    seg = segment_tiles(net, image[None])[0]
    return segmentation_overlay(image, seg.centres, seg.rays, seg.cell,
                                f"validation FOV: {seg.detected} nuclei found, "
                                f"{len(seg.centres)} live, {len(set(seg.cell.tolist()))} cells")
