"""The models: the checkpoint the embedding assets use (the untrained ViT-S/16 baseline, written
here, or a pre-trained ``ssl-<variant>`` checkpoint written by the ``ssl_checkpoint`` assets), and
the cell segmentation network of the handcrafted baseline."""


import json

import dagster as dg
import numpy as np

from lcd_assets import metadata as md
from lcd_assets.resources import CELL_SEGMENTATION_MODEL, EmbeddingSettings, LcdHome, SegmentationSettings
from lcd_core.embedding.vit import create_vit, describe_checkpoint, load_checkpoint, save_checkpoint

UNTRAINED_SEED = 0


@dg.asset(
    group_name="models",
    kinds={"pytorch", "safetensors"},
    check_specs=[
        dg.AssetCheckSpec(
            "weights_finite",
            asset="model_checkpoint",
            blocking=True,
            description="The checkpoint loads through timm and every weight is finite.",
        )
    ],
    description=(
        "The ViT-S/16 checkpoint the embedding assets use (safetensors + JSON config under "
        "`$LCD_HOME/models/<name>`, loadable with `timm.create_model`), chosen by the `embedding` "
        "resource: by default an UNTRAINED ViT with a fixed seed (a baseline, labelled as such), or a "
        "pre-trained `ssl-<variant>` checkpoint of the pretraining group."
    ),
)
def model_checkpoint(context: dg.AssetExecutionContext, lcd: LcdHome, embedding: EmbeddingSettings):
    target = lcd.models_dir / embedding.checkpoint
    if not (target / "model.safetensors").exists():
        if not embedding.checkpoint.startswith("untrained-"):
            hint = (f"materialize ssl_checkpoint partition {embedding.checkpoint[4:]!r} (`lcd pretrain`)"
                    if embedding.checkpoint.startswith("ssl-") else "only 'untrained-*' checkpoints are created here")
            raise FileNotFoundError(f"checkpoint {embedding.checkpoint!r} not found in {lcd.models_dir}; {hint}")
        model = create_vit(seed=UNTRAINED_SEED)
        save_checkpoint(
            model,
            target,
            name=embedding.checkpoint,
            arch="vit_small_patch16_224",
            extra={"trained": False, "seed": UNTRAINED_SEED},
        )
    model, config = load_checkpoint(target)
    finite = all(bool(np.isfinite(p.detach().float().numpy()).all()) for p in model.parameters())
    n_params = sum(p.numel() for p in model.parameters())
    return dg.MaterializeResult(
        metadata={
            "model": describe_checkpoint(config),
            "path": dg.MetadataValue.path(str(target)),
            "parameters": n_params,
            "trained": bool(config.get("trained", False)),
        },
        check_results=[dg.AssetCheckResult(check_name="weights_finite", passed=finite)],
    )


#: validation floors of the `segmentation_recovers_shape` check
MIN_NUCLEUS_RECALL = 0.7
MIN_FOV_ELONGATION_R = 0.5


@dg.asset(
    group_name="models",
    kinds={"pytorch"},
    check_specs=[
        dg.AssetCheckSpec(
            "segmentation_recovers_shape",
            asset="segmentation_model",
            description=(f"On fresh annotated FOVs: nucleus recall ≥ {MIN_NUCLEUS_RECALL} and the per-FOV mean "
                         f"log elongation correlates with the truth at r ≥ {MIN_FOV_ELONGATION_R}."),
        )
    ],
    description=(
        "The single-cell segmentation network of the handcrafted baseline (`lcd_core.cells`): nuclei "
        "from the transport-of-intensity phase of the z-stack, and around each a star-convex cell polygon "
        "whose 32 ray lengths a small CNN regresses from a nucleus-centred crop (StarDist's representation). "
        "Trained on an annotation set the synthetic generator renders with morphologies drawn at random "
        "(no compound, no MoA program, never the screen's own images), validated on fresh FOVs against "
        f"their cell ellipses. Written to `$LCD_HOME/models/{CELL_SEGMENTATION_MODEL}`."
    ),
)
def segmentation_model(context: dg.AssetExecutionContext, segmentation: SegmentationSettings,
                       lcd: LcdHome) -> dg.MaterializeResult:
    from lcd_core.cells import load_raynet, save_raynet
    from lcd_core.cells.features import segment_tiles
    from lcd_core.cells.train import fit_segmentation, render_annotated_fov
    from lcd_core.plots import segmentation_overlay

    folder = lcd.models_dir / CELL_SEGMENTATION_MODEL
    wanted = segmentation.training()
    record = json.loads((folder / "raynet.json").read_text()) if (folder / "raynet.json").exists() else {}
    reused = record.get("training") == wanted
    if reused:
        try:
            net, record = load_raynet(folder)
            context.log.info(f"{folder} was trained with the same settings: reused")
        except ValueError as err:  # weights of an older network geometry: train anew
            context.log.warning(f"{err}; retraining")
            reused = False
    if not reused:
        net, record = fit_segmentation(**wanted, progress=context.log.info)
        save_raynet(net, folder, record)
    validation = record["validation"]
    image, _ = render_annotated_fov(np.random.default_rng(segmentation.seed + 2))
    seg = segment_tiles(net, image[None])[0]
    overlay = segmentation_overlay(image, seg.centres, seg.rays, seg.cell,
                                   f"validation FOV: {seg.detected} nuclei found, "
                                   f"{len(seg.centres)} live, {len(set(seg.cell.tolist()))} cells")
    passed = (validation["recall"] >= MIN_NUCLEUS_RECALL
              and float(validation["fov_log_elongation_r"] or 0) >= MIN_FOV_ELONGATION_R)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(folder)),
            "reused": reused,
            "training_fovs": segmentation.n_fovs,
            "crops": record.get("crops"),
            "epochs": segmentation.epochs,
            "training": dg.MetadataValue.json(wanted),
            "seconds": record.get("seconds"),
            "validation": dg.MetadataValue.json({k: (round(v, 4) if isinstance(v, float) else v)
                                                 for k, v in validation.items()}),
            "overlay": md.image(overlay, "segmented cells of a validation FOV",
                                lcd.previews_dir / "segmentation" / "validation_fov.png"),
        },
        check_results=[dg.AssetCheckResult(
            check_name="segmentation_recovers_shape", passed=bool(passed),
            description=(f"nucleus recall {validation['recall']:.3f}, precision {validation['precision']:.3f}; "
                         f"per-FOV log elongation r {validation['fov_log_elongation_r']:.3f}, "
                         f"log area r {validation['fov_log_area_r']:.3f}"))],
    )
