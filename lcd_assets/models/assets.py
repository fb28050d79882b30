"""The checkpoint the embedding assets use: the untrained ViT-S/16 baseline (written here) or a
pre-trained ``ssl-<variant>`` checkpoint (written by the ``ssl_checkpoint`` assets)."""


import dagster as dg
import numpy as np

from lcd_assets.resources import EmbeddingSettings, LcdHome
from lcd_core.vit import create_vit, describe_checkpoint, load_checkpoint, save_checkpoint

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
