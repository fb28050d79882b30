"""The models: the checkpoint the embedding assets use (the untrained ViT-S/16 baseline, written
here, or a pre-trained ``ssl-<variant>`` checkpoint written by the ``ssl_checkpoint`` assets), and
the optional cell segmentation network (trained on synthetic annotations)."""


import dagster as dg

from lcd_assets import metadata as md
from lcd_assets.resources import CELL_SEGMENTATION_MODEL, EmbeddingSettings, LcdHome, SegmentationSettings
from lcd_core.embedding.vit import describe_checkpoint
from lcd_core.pipeline import setup

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
    target = lcd.model_folder(embedding.checkpoint)
    if not (target / "model.safetensors").exists() and not embedding.checkpoint.startswith("untrained-"):
        hint = (f"materialize ssl_checkpoint partition {embedding.checkpoint[4:]!r} (`lcd pretrain`)"
                if embedding.checkpoint.startswith("ssl-") else "only 'untrained-*' checkpoints are created here")
        raise FileNotFoundError(f"checkpoint {embedding.checkpoint!r} not found in {lcd.models_dir}; {hint}")
    model, config = setup.vit_checkpoint(target, seed=UNTRAINED_SEED)
    return dg.MaterializeResult(
        metadata={
            "model": describe_checkpoint(config),
            "path": dg.MetadataValue.path(str(target)),
            "parameters": sum(p.numel() for p in model.parameters()),
            "trained": bool(config.get("trained", False)),
        },
        check_results=[dg.AssetCheckResult(check_name="weights_finite", passed=setup.weights_finite(model))],
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
        "OPTIONAL, not in the main job (job `segmentation_training`): a cell segmentation network TRAINED ON "
        "SYNTHETIC ANNOTATIONS, for the labelled RayNet comparison rows of the handcrafted baseline "
        "(`lcd_core.cells`); the platform's nuclei come from the unsupervised `fov_nuclei`. Nuclei "
        "from the transport-of-intensity phase of the z-stack, and around each a star-convex cell polygon "
        "whose 32 ray lengths a small CNN regresses from a nucleus-centred crop (StarDist's representation). "
        "Trained on an annotation set the synthetic generator renders with morphologies drawn at random "
        "(no compound, no MoA program, never the screen's own images), validated on fresh FOVs against "
        f"their cell ellipses. Written to `$LCD_HOME/models/{CELL_SEGMENTATION_MODEL}`."
    ),
)
def segmentation_model(context: dg.AssetExecutionContext, segmentation: SegmentationSettings,
                       lcd: LcdHome) -> dg.MaterializeResult:
    folder = lcd.models_dir / CELL_SEGMENTATION_MODEL
    wanted = segmentation.training()
    net, record, reused = setup.segmentation_network(folder, wanted, log=context.log.info, warn=context.log.warning)
    validation = record["validation"]
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
            "overlay": md.image(setup.validation_overlay(net, segmentation.seed + 2),
                                "segmented cells of a validation FOV",
                                lcd.previews_dir / "segmentation" / "validation_fov.png"),
        },
        check_results=[dg.AssetCheckResult(
            check_name="segmentation_recovers_shape", passed=bool(passed),
            description=(f"nucleus recall {validation['recall']:.3f}, precision {validation['precision']:.3f}; "
                         f"per-FOV log elongation r {validation['fov_log_elongation_r']:.3f}, "
                         f"log area r {validation['fov_log_area_r']:.3f}"))],
    )
