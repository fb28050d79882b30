"""Phenotype trajectories (SPEC §4.11): a compound's path away from DMSO over the timepoints.
Thin glue over :func:`lcd_core.pipeline.trajectories.trajectories`."""

import dagster as dg
import polars as pl

from lcd_assets import metadata as md
from lcd_assets.resources import WAREHOUSE_POOL, LcdHome
from lcd_assets.timelapse.profiles import all_profiles
from lcd_core.pipeline.trajectories import trajectories as compute_trajectories
from lcd_core.plots import trajectory_distance, trajectory_map

GROUP = "timelapse"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "scikitlearn"},
    pool=WAREHOUSE_POOL,
    deps=["normalized_profiles", "activity"],
    check_specs=[dg.AssetCheckSpec(
        "onset_vs_truth", asset="trajectories",
        description=("On a synthetic screen: the share of compound × doses whose first active timepoint (mAP-ES) "
                     "is the truth's, within one timepoint (reported, not blocking; uses the truth)."))],
    description=(
        "Per compound × dose × timepoint: the distance of the compound's normalized profile from DMSO (MAD units, "
        "95 % bootstrap interval, the DMSO null's 95th percentile), its mAP-ES call, and its place on a 2-D map "
        "(PCA fitted on DMSO-centred condition centroids, DMSO at the origin). Per compound × dose the onset: the "
        "first timepoint it is active by mAP-ES and by distance, and whether it stays active (sustained) or "
        "returns (transient, e.g. recovery). Tables `trajectories`, `trajectory_onsets`, "
        "`trajectory_onset_agreement` (against the generator's truth, with Wilson intervals) and "
        "`trajectory_onset_confusion`."
    ),
)
def trajectories(context: dg.AssetExecutionContext, lcd: LcdHome) -> dg.MaterializeResult:
    wh = lcd.warehouse()
    profiles, features = all_profiles(wh)
    truth_path = lcd.truth_dir / "conditions.parquet"
    out = compute_trajectories(profiles, features, wh.query("SELECT * FROM activity"),
                               truth=pl.read_parquet(truth_path) if truth_path.exists() else None)
    wh.replace_tables({"trajectories": out.table, "trajectory_onsets": out.onsets,  # one transaction
                       "trajectory_onset_agreement": out.agreement, "trajectory_onset_confusion": out.confusion})
    overall = out.agreement.filter(pl.col("dose") == "all") if out.agreement.height else out.agreement
    figures = lcd.previews_dir / "timelapse"
    return dg.MaterializeResult(
        metadata={
            "map_explained": str([round(float(v), 3) for v in out.map.explained]),
            "compound_doses": out.onsets.height, "timepoints": out.table["timepoint"].n_unique(),
            "onsets": md.table(out.onsets.group_by("onset_map_es").len().sort("onset_map_es")),
            "agreement_with_truth": md.table(overall),
            "map": md.image(trajectory_map(out.table), "trajectories on the DMSO-centred map", figures / "map.png"),
            "distance": md.image(trajectory_distance(out.table), "distance from DMSO over time",
                                 figures / "distance.png"),
        },
        check_results=[_onset_check(overall)],
    )


def _onset_check(overall: pl.DataFrame) -> dg.AssetCheckResult:
    row = overall.filter(pl.col("reading") == "map_es") if overall.height else overall
    if not row.height:
        return dg.AssetCheckResult(check_name="onset_vs_truth", passed=True, description="no truth (a real screen)")
    r = row.row(0, named=True)
    return dg.AssetCheckResult(
        check_name="onset_vs_truth", passed=True, severity=dg.AssetCheckSeverity.WARN,
        description=f"onset exact {r['exact']:.2f}, within one timepoint {r['within_one']:.2f} over {r['n']} compound × doses",
        metadata={k: v for k, v in r.items() if isinstance(v, (int, float)) and v is not None})
