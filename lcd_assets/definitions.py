"""The Dagster code location of lcd: ``dagster dev -w workspace.yaml`` or ``lcd ui``."""

from __future__ import annotations

import dagster as dg

from lcd_assets.acquisition import assets as acquisition
from lcd_assets.attention import assets as attention
from lcd_assets.acquisition.sensors import inbox_sensor_factory
from lcd_assets.profiling import activity
from lcd_assets.profiling import profiles as analysis
from lcd_assets.handcrafted import assets as handcrafted
from lcd_assets.models import assets as models
from lcd_assets.moa import assets as moa
from lcd_assets.nuclei import assets as nuclei
from lcd_assets.partitions import condition_partitions, measurement_partitions
from lcd_assets.pretraining import assets as pretraining
from lcd_assets.registry import assets as registry
from lcd_assets.resources import resources_for_env
from lcd_assets.timelapse import assets as timelapse
from lcd_assets.timelapse import molclip
from lcd_core._malloc import retain_freed_memory

retain_freed_memory()  # every process of the code location reuses freed blocks (lcd_core._malloc)

ACQUISITION_ASSETS = [
    acquisition.image_index,
    acquisition.tiles,
    acquisition.kept_tile_pass,  # tile_embeddings, fov_features, cell_features: one decode of the kept tiles
    acquisition.fov_embeddings,
    acquisition.well_embeddings,
    nuclei.fov_nuclei,
]
#: the main job's acquisition: everything but the optional network segmentation (``cell_features``)
MAIN_ACQUISITION = (dg.AssetSelection.assets(*ACQUISITION_ASSETS)
                    - dg.AssetSelection.assets(acquisition.CELL_FEATURES))

setup_job = dg.define_asset_job(
    "setup",
    selection=dg.AssetSelection.assets(registry.plate_registry, models.model_checkpoint),
    description="Load and validate the plate maps and run registry; write the ViT checkpoint. Nothing is trained.",
)
acquisition_job = dg.define_asset_job(
    "acquisition",
    selection=MAIN_ACQUISITION,
    partitions_def=measurement_partitions,
    description=(
        "One measurement (plate × timepoint): image index → tiles → embeddings → FOV/well profiles, "
        "the handcrafted baseline's FOV features, and the unsupervised nuclei and confluency per FOV."
    ),
)
segmentation_training_job = dg.define_asset_job(
    "segmentation_training",
    selection=dg.AssetSelection.assets(models.segmentation_model),
    description=("Optional: train the RayNet cell segmentation network on annotated renders of the synthetic "
                 "generator (its outputs are labelled as trained on synthetic annotations)."),
)
cell_segmentation_job = dg.define_asset_job(
    "cell_segmentation",
    selection=dg.AssetSelection.assets(acquisition.CELL_FEATURES),
    partitions_def=measurement_partitions,
    description=("Optional, after segmentation_training: the RayNet segmentation of one measurement's kept tiles "
                 "(`cell_features`, `segmented_cells`; trained on synthetic annotations)."),
)
TIMELAPSE_ASSETS = [
    timelapse.trajectories, molclip.molclip_model, molclip.molclip_embeddings, molclip.molclip_metrics,
    molclip.molecule_retrieval,
]
ANALYSIS_ASSETS = [
    analysis.condition_profiles, activity.normalized_profiles, activity.activity, moa.moa_probes,
]
SCREEN_ASSETS = [
    activity.activity_sensitivity, activity.normalization_comparison, moa.moa_predictions,
    moa.moa_metrics, handcrafted.handcrafted_baseline, nuclei.cell_count_activity, nuclei.sensitivity_comparison,
    attention.attention_maps,
]

analysis_job = dg.define_asset_job(
    "analysis",
    selection=dg.AssetSelection.assets(*ANALYSIS_ASSETS),
    partitions_def=condition_partitions,
    description="One dose × timepoint: profiles gathered across its plates, normalized, mAP-ES, MoA probes.",
)
screen_job = dg.define_asset_job(
    "screen_summary",
    selection=dg.AssetSelection.assets(*SCREEN_ASSETS),
    description=(
        "Across the screen: activity sensitivity, normalization comparison, MoA predictions "
        "aggregated over doses and their metrics, the handcrafted baseline through the same steps "
        "and its comparison with the ViT."
    ),
)

timelapse_job = dg.define_asset_job(
    "timelapse",
    selection=dg.AssetSelection.assets(*TIMELAPSE_ASSETS),
    description=("Across timepoints: phenotype trajectories and onsets, MolCLIP (model, joint embeddings, "
                 "drug-ID / MoA mAP with and without the molecule branch) and zero-shot molecule retrieval."),
)
tile_bank_job = dg.define_asset_job(
    "tile_bank",
    selection=dg.AssetSelection.assets(pretraining.ssl_tile_bank),
    description="Write every kept tile once for pre-training (train / held-out split).",
)
pretraining_job = dg.define_asset_job(
    "pretraining",
    selection=dg.AssetSelection.assets(pretraining.ssl_checkpoint),
    partitions_def=pretraining.variant_partitions,
    description="Train one ablation variant's self-supervised ViT (partition = variant); resumable.",
)
ablation_job = dg.define_asset_job(
    "ablation",
    selection=dg.AssetSelection.assets(pretraining.ssl_ablation),
    description="Score every trained variant and the untrained baselines on the held-out tiles.",
)
PRETRAINING_ASSETS = [pretraining.ssl_tile_bank, pretraining.ssl_checkpoint, pretraining.ssl_ablation]


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """Definitions with the environment's resources (or the ones given, e.g. in tests)."""
    return dg.Definitions(
        assets=[
            registry.plate_registry, models.model_checkpoint, models.segmentation_model, *ACQUISITION_ASSETS,
            *ANALYSIS_ASSETS, *SCREEN_ASSETS, *TIMELAPSE_ASSETS, *PRETRAINING_ASSETS,
        ],
        jobs=[setup_job, acquisition_job, analysis_job, screen_job, timelapse_job, tile_bank_job, pretraining_job, ablation_job,
              segmentation_training_job, cell_segmentation_job],
        sensors=[
            inbox_sensor_factory(acquisition_job),
            dg.AutomationConditionSensorDefinition(
                "automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING
            ),
        ],
        resources=resources if resources is not None else resources_for_env(),
        # Every run's steps in the run's own process, as `lcd demo` and the tests run them: Dagster's
        # default multiprocess executor starts a Python process per step, each importing torch,
        # timm and the platform again (about 15 s here), which took 100 of an acquisition run's
        # 116 s in the live inbox experiment (benchmarks/exp_live_inbox.py). Runs still go side by
        # side (the run queue), retries and pools work the same.
        executor=dg.in_process_executor,
    )


defs = build_definitions()
