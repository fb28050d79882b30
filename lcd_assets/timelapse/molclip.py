"""MolCLIP (SPEC §4.12): a well's profiles over the timepoints as a video, aligned with its
compound's molecule. Thin glue over :mod:`lcd_core.molclip` and :mod:`lcd_core.pipeline.molclip`."""

import time

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.resources import MOLCLIP_MODEL, WAREHOUSE_POOL, LcdHome, MolClipSettings
from lcd_assets.timelapse.profiles import profiles_of
from lcd_core.molclip import evaluate, joint_space_figure, load_molclip, retrieval_curves, save_molclip, zero_shot
from lcd_core.molclip.figures import loss_curves
from lcd_core.pipeline import molclip as steps

GROUP = "timelapse"


def _inputs(lcd: LcdHome, settings: MolClipSettings):
    """(videos, compound table) of the chosen feature set."""
    wh = lcd.warehouse()
    profiles, features = profiles_of(wh, settings.features)
    return steps.screen_videos(profiles, features), wh.query("SELECT * FROM compounds")


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "rdkit", "safetensors"}, pool=WAREHOUSE_POOL,
    deps=["normalized_profiles", "plate_registry"],
    description=(
        "MolCLIP trained on the training-set compounds: a temporal transformer over each well's per-timepoint "
        "profiles (supervised contrastive loss on compound identity, P compounds × K wells per batch), a Morgan "
        "fingerprint MLP, and the symmetric InfoNCE between a well's video and its compound's molecule (one well "
        "per compound in each CLIP batch: no false negatives). Written to `models/molclip/` as safetensors + JSON."
    ),
)
def molclip_model(context: dg.AssetExecutionContext, lcd: LcdHome, molclip: MolClipSettings) -> dg.MaterializeResult:
    videos, compounds = _inputs(lcd, molclip)
    t0 = time.perf_counter()
    model = steps.train_screen_model(videos, compounds, molclip.config())
    folder = save_molclip(model, lcd.models_dir / MOLCLIP_MODEL)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(folder)), "seconds": round(time.perf_counter() - t0, 1),
        "videos": videos.x.shape[0], "timepoints": len(videos.timepoints), "features": molclip.features,
        "trained_compounds": len(model.trained_compounds),
        "losses": md.image(loss_curves(model.history), "MolCLIP losses per epoch",
                           lcd.previews_dir / "timelapse" / "molclip_losses.png"),
    })


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "duckdb"}, pool=WAREHOUSE_POOL, deps=["molclip_model"],
    description=("Every well's video and every library molecule in MolCLIP's joint space: table `molclip_embeddings` "
                 "(kind video / molecule), what `lcd search` queries."),
)
def molclip_embeddings(context: dg.AssetExecutionContext, lcd: LcdHome, molclip: MolClipSettings) -> dg.MaterializeResult:
    videos, compounds = _inputs(lcd, molclip)
    model = load_molclip(lcd.models_dir / MOLCLIP_MODEL)
    table = steps.embedding_table(model, videos, compounds)
    lcd.warehouse().replace_table("molclip_embeddings", table)
    v, m = table.filter(pl.col("kind") == "video"), table.filter(pl.col("kind") == "molecule")
    figure = joint_space_figure(v["embedding"].to_list(), v["moa"].to_list(), m["embedding"].to_list(),
                                m["moa"].to_list(), m["compound"].to_list())
    return dg.MaterializeResult(metadata={
        "videos": v.height, "molecules": m.height,
        "joint_space": md.image(figure, "videos and molecules in the joint space",
                                lcd.previews_dir / "timelapse" / "joint_space.png")})


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "duckdb"}, pool=WAREHOUSE_POOL,
    deps=["normalized_profiles", "plate_registry"],
    description=(
        "The MitoReID protocol, with and without the molecule branch on identical folds and seeds: compound-grouped "
        "folds (training set), queries = a held-out compound's wells in one replica, gallery = every library well of "
        "the other replicas; drug-identification mAP (same compound) and MoA mAP (same MoA, the query's own "
        "compound removed), with 95 % bootstrap intervals over query compounds and the relative gain (the paper: "
        "+51.2 % / +20.5 %). Tables `molclip_metrics` (summary) and `molclip_folds` (per fold × seed × arm)."
    ),
)
def molclip_metrics(context: dg.AssetExecutionContext, lcd: LcdHome, molclip: MolClipSettings) -> dg.MaterializeResult:
    videos, compounds = _inputs(lcd, molclip)
    t0 = time.perf_counter()
    result = evaluate(videos, steps.screen_compounds(compounds), molclip.config(), n_folds=molclip.n_folds,
                      seeds=tuple(molclip.seeds), workers=molclip.n_workers())
    wh = lcd.warehouse()
    wh.replace_tables({"molclip_metrics": result.summary.with_columns(pl.lit(molclip.features).alias("features")),
                       "molclip_folds": result.per_fold})  # one transaction
    return dg.MaterializeResult(metadata={
        "seconds": round(time.perf_counter() - t0, 1), "folds": molclip.n_folds, "seeds": str(molclip.seeds),
        "workers": molclip.n_workers(),
        "summary": md.table(result.summary)})


@dg.asset(
    group_name=GROUP, kinds={"pytorch", "duckdb"}, pool=WAREHOUSE_POOL, deps=["molclip_model"],
    description=(
        "Zero-shot retrieval for the holdout compounds (never trained on): every library molecule ranked by its "
        "similarity to the compound's videos; the true molecule's rank, top-1/5/10 against random, and the MoA "
        "read from the nearest training molecules. Tables `molecule_retrieval` (per compound) and "
        "`molecule_retrieval_hits` (top-k)."
    ),
)
def molecule_retrieval(context: dg.AssetExecutionContext, lcd: LcdHome, molclip: MolClipSettings) -> dg.MaterializeResult:
    videos, compounds = _inputs(lcd, molclip)
    out = zero_shot(load_molclip(lcd.models_dir / MOLCLIP_MODEL), videos, steps.screen_compounds(compounds))
    wh = lcd.warehouse()
    wh.replace_tables({"molecule_retrieval": out.per_compound, "molecule_retrieval_hits": out.hit_rates.with_columns(
        **{f"moa_{k}": pl.lit(v) for k, v in out.moa_accuracy.items()})})  # one transaction
    figure = retrieval_curves({"MolCLIP": out.per_compound["rank"].to_list()}, out.n_molecules)
    return dg.MaterializeResult(metadata={
        "queries": out.per_compound.height, "molecules": out.n_molecules, "skipped": str(out.skipped),
        "hit_rates": md.table(out.hit_rates), "moa_from_nearest_molecules": str(out.moa_accuracy),
        "curves": md.image(figure, "top-k hit rate against random", lcd.previews_dir / "timelapse" / "retrieval.png")})
