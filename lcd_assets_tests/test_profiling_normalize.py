"""Normalization (lcd_core.profiling.normalize): pycytominer agreement, batch removal, edge-case
policy."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import silhouette_score

from lcd_core.profiling.batch_correction import fastmnn
from lcd_core.profiling.normalize import METHODS, normalize, to_wells


def make_fov_profiles(*, n_rep=2, n_lay=3, n_dmso=8, n_cmp=6, fields=2, d=20, shift=1.0,
                      seed=0) -> pl.DataFrame:
    """FOV profiles with a strong planted replica shift and a weaker per-plate / per-field one."""
    rng = np.random.default_rng(seed)
    rep_shift = {f"R{r + 1:02d}": rng.normal(size=d) * shift for r in range(n_rep)}
    field_shift = {f: rng.normal(size=d) * 0.5 for f in range(1, fields + 1)}
    cmp_eff = {f"C{c}": rng.normal(size=d) for c in range(n_cmp)}
    rows, X = [], []
    for rep in rep_shift:
        for li in range(1, n_lay + 1):
            plate = f"{rep}-L{li:02d}"
            scale = rng.uniform(0.5, 2.0, size=d)
            off = rep_shift[rep] + rng.normal(size=d) * 0.5
            wells = [("DMSO", "negative_control")] * n_dmso + [(c, "treatment") for c in cmp_eff]
            for wi, (cmp, role) in enumerate(wells):
                base = rng.normal(size=d) + (cmp_eff[cmp] if role == "treatment" else 0)
                for f in range(1, fields + 1):
                    x = off + scale * (base + 0.3 * rng.normal(size=d)) + field_shift[f]
                    rows.append(dict(Metadata_plate=plate, Metadata_timepoint="04h",
                                     Metadata_replica=rep, Metadata_layout=f"L{li:02d}",
                                     Metadata_well=f"W{wi:02d}", Metadata_field=f,
                                     Metadata_compound=cmp, Metadata_role=role,
                                     Metadata_n_tiles=4))
                    X.append(x)
    return pl.concat([pl.DataFrame(rows),
                      pl.DataFrame(np.array(X), schema=[f"emb_{i:03d}" for i in range(d)],
                                   orient="row")], how="horizontal")


FEATS = [f"emb_{i:03d}" for i in range(20)]


@pytest.fixture(scope="module")
def fov():
    return make_fov_profiles()


def test_mad_equals_pycytominer_robustmad(fov):
    from pycytominer.operations.transform import RobustMAD

    res = normalize(fov, "mad")
    assert res.features == FEATS and res.profiles.height == fov.height
    for plate in ("R01-L01", "R02-L03"):
        one = fov.filter(pl.col("Metadata_plate") == plate).to_pandas()
        ctrl = one[one.Metadata_role == "negative_control"][FEATS]
        ref = RobustMAD().fit(ctrl).transform(one[FEATS]).to_numpy()
        ours = res.profiles.filter(pl.col("Metadata_plate") == plate).select(FEATS).to_numpy()
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    assert (res.diagnostics["n_controls"] == 8).all()
    assert (res.diagnostics["n_floored"] == 0).all()
    # DMSO medians are 0 and MADs 1/1.4826 after robustization
    d = res.profiles.filter((pl.col("Metadata_plate") == "R01-L02")
                            & (pl.col("Metadata_role") == "negative_control")).select(FEATS)
    np.testing.assert_allclose(np.median(d.to_numpy(), axis=0), 0, atol=1e-12)


def test_zero_mad_is_floored_and_constant_feature_dropped(fov):
    df = fov.with_columns(
        # emb_000 constant on R01-L01's DMSO rows only: its MAD there is 0 → floored
        pl.when((pl.col("Metadata_plate") == "R01-L01")
                & (pl.col("Metadata_role") == "negative_control"))
        .then(pl.lit(1.5)).otherwise(pl.col("emb_000")).alias("emb_000"),
        # emb_001 constant over every DMSO row (varies on treatments) → dropped
        pl.when(pl.col("Metadata_role") == "negative_control").then(pl.lit(2.0))
        .otherwise(pl.col("emb_001")).alias("emb_001"),
    )
    with pytest.warns(UserWarning, match="emb_001") as caught:
        res = normalize(df, "mad")
    assert caught[0].filename == __file__  # attributed to normalize's caller
    assert res.dropped_features == ["emb_001"] and "emb_001" not in res.profiles.columns
    X = res.profiles.select(res.features).to_numpy()
    assert np.isfinite(X).all() and np.abs(X).max() < 1e4
    diag = {r["Metadata_plate"]: r for r in res.diagnostics.iter_rows(named=True)}
    assert diag["R01-L01"]["n_floored"] == 1 and diag["R01-L02"]["n_floored"] == 0
    assert (res.diagnostics["n_dropped"] == 1).all()


def test_too_few_dmso_wells_names_the_plate(fov):
    df = fov.filter(~((pl.col("Metadata_plate") == "R02-L02")
                      & (pl.col("Metadata_role") == "negative_control")
                      & (pl.col("Metadata_well").is_in(["W00", "W01", "W02", "W03", "W04"]))))
    with pytest.raises(ValueError, match=r"plate=R02-L02.*3 control wells"):
        normalize(df, "mad")
    normalize(df, "mad", min_controls=3)  # allowed when asked
    normalize(df, "harmony")  # controls not used


def test_nan_raises_with_rows_and_features(fov):
    df = fov.with_columns(
        pl.when((pl.col("Metadata_plate") == "R01-L03") & (pl.col("Metadata_well") == "W09"))
        .then(None).otherwise(pl.col("emb_007")).alias("emb_007"))
    for m in METHODS:
        with pytest.raises(ValueError, match=r"(?s)plate=R01-L03.*well=W09.*emb_007"):
            normalize(df, m)
    res = normalize(df, "mad", nan_policy="drop")
    assert res.profiles.height == fov.height - 2
    assert res.diagnostics.filter(pl.col("Metadata_plate") == "R01-L03")["n_dropped_rows"][0] == 2


def _replica_silhouette(df: pl.DataFrame, feats) -> float:
    return silhouette_score(df.select(feats).to_numpy(), df["Metadata_replica"].to_numpy())


def test_harmony_reduces_batch_separation(fov):
    before = _replica_silhouette(fov, FEATS)
    res = normalize(fov, "harmony", harmony_vars=("Metadata_replica",))
    after = _replica_silhouette(res.profiles, res.features)
    assert before > 0.05 and after < before / 2
    assert res.profiles.shape == fov.shape
    # deterministic for a seed
    again = normalize(fov, "harmony", harmony_vars=("Metadata_replica",))
    assert again.profiles.equals(res.profiles)


def test_fastmnn_reduces_batch_separation(fov):
    # before: the same cosine-normalised PCA without any MNN correction (one batch)
    pcs = fastmnn(fov.select(FEATS).to_numpy(), np.zeros(fov.height), n_pcs=10)
    before = silhouette_score(pcs, fov["Metadata_replica"].to_numpy())
    res = normalize(fov, "fastmnn", mnn_batch="Metadata_replica", mnn_npcs=10)
    assert res.features == [f"mnn_{i:03d}" for i in range(10)]
    after = _replica_silhouette(res.profiles, res.features)
    assert before > 0.05 and after < before / 2
    # compounds stay distinguishable: same-compound wells closer than different-compound ones
    w = to_wells(res.profiles)
    X = w.select(res.features).to_numpy()
    c = w["Metadata_compound"].to_numpy()
    trt = c != "DMSO"
    D = np.linalg.norm(X[trt][:, None] - X[trt][None], axis=2)
    same = c[trt][:, None] == c[trt][None]
    np.fill_diagonal(same, False)
    assert D[same].mean() < D[~same & ~np.eye(trt.sum(), dtype=bool)].mean()


def test_mad_harmony_fov_and_to_wells(fov):
    res = normalize(fov, "mad_harmony_fov")
    assert res.method == "mad_harmony_fov" and np.isfinite(
        res.profiles.select(res.features).to_numpy()).all()
    w = to_wells(res.profiles)
    assert w.height == fov.height // 2 and "Metadata_field" not in w.columns
    assert (w["Metadata_n_fov"] == 2).all() and (w["Metadata_n_tiles"] == 8).all()
    one = res.profiles.filter((pl.col("Metadata_plate") == "R01-L01")
                              & (pl.col("Metadata_well") == "W03")).select(FEATS).to_numpy()
    got = w.filter((pl.col("Metadata_plate") == "R01-L01")
                   & (pl.col("Metadata_well") == "W03")).select(FEATS).to_numpy()
    np.testing.assert_allclose(got[0], one.mean(axis=0))
    # needs FOV rows
    with pytest.raises(ValueError, match="Metadata_field"):
        normalize(to_wells(fov), "mad_harmony_fov")


def test_missing_harmony_var_is_skipped_and_noted(fov):
    wells = to_wells(fov)
    with pytest.warns(UserWarning, match="Metadata_field"):
        res = normalize(wells, "harmony")
    assert any("Metadata_field" in n for n in res.notes)


def test_unknown_method(fov):
    with pytest.raises(ValueError, match="unknown normalization method"):
        normalize(fov, "combat")
    assert normalize(fov, "none").profiles.select(FEATS).equals(fov.select(FEATS).cast(pl.Float64))


def test_mad_spherize_whitens_dmso_and_is_fitted_on_dmso_only(fov):
    res = normalize(fov, "mad_spherize")
    assert res.features == FEATS and res.profiles.height == fov.height
    ctrl = (res.profiles["Metadata_role"] == "negative_control").to_numpy()
    Z = res.profiles.select(FEATS).to_numpy()
    # the DMSO rows come out with identity correlation and unit variance (ZCA-cor)
    np.testing.assert_allclose(np.corrcoef(Z[ctrl].T), np.eye(len(FEATS)), atol=1e-6)
    np.testing.assert_allclose(Z[ctrl].std(axis=0, ddof=1), 1.0, atol=1e-6)
    # treated rows never enter the fit: moving one treated well leaves every DMSO row unchanged
    moved = fov.with_columns(
        pl.when(pl.col("Metadata_compound") == "C0").then(pl.col(f) * 50 + 7).otherwise(pl.col(f)).alias(f)
        for f in FEATS)
    Z2 = normalize(moved, "mad_spherize").profiles.select(FEATS).to_numpy()
    np.testing.assert_allclose(Z2[ctrl], Z[ctrl], atol=1e-9)


def test_mad_spherize_equals_pycytominer_spherize_on_the_mad_output(fov):
    import pandas as pd
    from pycytominer.operations.transform import Spherize

    mad = normalize(fov, "mad").profiles
    ctrl = (mad["Metadata_role"] == "negative_control").to_numpy()
    X = mad.select(FEATS).to_numpy()
    ref = Spherize(method="ZCA-cor", epsilon=1e-6, return_numpy=True).fit(pd.DataFrame(X[ctrl]))
    expected = ref.transform(pd.DataFrame(X))
    ours = normalize(fov, "mad_spherize").profiles.select(FEATS).to_numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-9)


def test_a_plate_whose_dmso_wells_all_failed_qc_is_named_never_nan(fov):
    """The DMSO wells of one plate have no FOV row (all their tiles failed QC): the timepoint's
    normalization, through the function the normalized_profiles asset calls, stops naming the plate,
    its dose and the timepoint; no profile comes out."""
    from lcd_core.pipeline.downstream import ChainSettings, condition_wells

    df = fov.with_columns(pl.when(pl.col("Metadata_replica") == "R01").then(pl.lit("10uM"))
                          .otherwise(pl.lit("1uM")).alias("Metadata_dose"))
    df = df.filter(~((pl.col("Metadata_plate") == "R02-L02") & (pl.col("Metadata_role") == "negative_control")))
    for method in ("mad", "mad_harmony_fov", "mad_spherize"):
        with pytest.raises(ValueError, match=r"plate=R02-L02, timepoint=04h, dose=1uM \(0 control wells\).*failed QC"):
            condition_wells(df, "10uM", ChainSettings(method=method))
    wells, _ = condition_wells(df, "1uM", ChainSettings(method="none"))  # no DMSO reference: runs, finite
    assert np.isfinite(wells.select(FEATS).to_numpy()).all()
