"""Tests of the synthetic screen generator (lcd_core.synth.screen, generate_screen end to end), on the ``small`` preset."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tifffile
from scipy import ndimage as ndi

from lcd_core.synth import generate_screen, make_spec, render_masks
from lcd_core.molecules import canonical_smiles
from lcd_core.synth.compounds import make_compounds
from lcd_core.synth.drugs import DRUGS
from lcd_core.synth.design import MOAS
from lcd_core.synth.plates import holdout_layout_keys, make_layouts, training_layout_keys

NS = "{http://www.perkinelmer.com/PEHH/HarmonyV5}"


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    return generate_screen(tmp_path_factory.mktemp("synth_a"), "small", seed=0)


@pytest.fixture(scope="module")
def screen_same(tmp_path_factory):
    return generate_screen(tmp_path_factory.mktemp("synth_b"), "small", seed=0, workers=1)


def _fovs(res) -> pl.DataFrame:
    return pl.read_parquet(res.truth_dir / "fovs.parquet")


def _cells(res) -> pl.DataFrame:
    return pl.read_parquet(res.truth_dir / "cells.parquet")


def _stack(res, fov_row: dict) -> np.ndarray:
    """The 3 planes of one FOV (by truth row), read from the written TIFFs."""
    tp = fov_row["timepoint_h"]
    mdirs = [d for d in res.measurement_dirs if d.name.startswith(fov_row["barcode"] + "__")]
    # measurements of a plate are in timepoint order
    mdir = mdirs[sorted(res.spec.timepoints_h).index(tp)]
    from lcd_core.keys import parse_well

    r, c = parse_well(fov_row["well"])
    f = fov_row["field"]
    return np.stack(
        [
            tifffile.imread(mdir / "Images" / f"r{r:02d}c{c:02d}f{f:02d}p{p:02d}-ch1sk1fk1fl1.tiff").astype(np.float64)
            for p in (1, 2, 3)
        ]
    )


def test_small_preset_generates(screen):
    spec = screen.spec
    assert screen.n_measurements == 2 * (2 + 1) * 2 == len(screen.measurement_dirs)  # 2 training + 1 holdout layout
    assert screen.n_images == spec.n_images
    for d in screen.measurement_dirs:
        assert (d / "Images" / "Index.idx.xml").exists()
        assert d.parent == screen.out / "inbox"
        assert d.name.endswith("-Measurement 1") and d.name.startswith("LCD-R0")
    for name in ("compounds", "conditions", "cells", "fovs"):
        assert (screen.truth_dir / f"{name}.parquet").exists()
    summary = json.loads((screen.truth_dir / "truth.json").read_text())
    assert summary["n_images"] == screen.n_images
    assert not (screen.truth_dir / "_parts").exists()


def test_deterministic_same_seed(screen, screen_same, tmp_path):
    d0 = screen.measurement_dirs[3]
    d1 = screen_same.measurement_dirs[3]
    assert d0.name == d1.name
    names = sorted(p.name for p in (d0 / "Images").glob("*.tiff"))
    assert names == sorted(p.name for p in (d1 / "Images").glob("*.tiff"))
    for n in names[:6]:
        assert (d0 / "Images" / n).read_bytes() == (d1 / "Images" / n).read_bytes()
    assert (d0 / "Images" / "Index.idx.xml").read_bytes() == (d1 / "Images" / "Index.idx.xml").read_bytes()
    for t in ("compounds", "conditions", "cells", "fovs"):
        a = pl.read_parquet(screen.truth_dir / f"{t}.parquet")
        b = pl.read_parquet(screen_same.truth_dir / f"{t}.parquet")
        assert a.equals(b), t
    for m in ("compounds.csv", "layouts.csv", "registry.csv", "screen.json"):
        assert (screen.metadata_dir / m).read_bytes() == (screen_same.metadata_dir / m).read_bytes()
    # the holdout plates too
    h0 = [d for d in screen.measurement_dirs if "-L03__" in d.name]
    h1 = [d for d in screen_same.measurement_dirs if "-L03__" in d.name]
    assert len(h0) == 4 and [d.name for d in h0] == [d.name for d in h1]
    for n in sorted(p.name for p in (h0[-1] / "Images").glob("*.tiff"))[:6]:
        assert (h0[-1] / "Images" / n).read_bytes() == (h1[-1] / "Images" / n).read_bytes()
    # a different seed differs (one measurement only, to stay fast)
    other = generate_screen(
        tmp_path,
        "small",
        seed=1,
        n_layouts=1,
        replica_doses_um=(10.0,),
        timepoints_h=(4,),
        holdout_compounds_per_moa=0,
        workers=1,
    )
    assert other.n_measurements == 1
    img0 = sorted((screen.measurement_dirs[0] / "Images").glob("*.tiff"))[0]
    img1 = other.measurement_dirs[0] / "Images" / img0.name
    if img1.exists():
        assert img0.read_bytes() != img1.read_bytes()
    assert not pl.read_parquet(other.truth_dir / "compounds.parquet")["ec50_um"].equals(
        pl.read_parquet(screen.truth_dir / "compounds.parquet")["ec50_um"]
    )


def test_metadata_formats(screen):
    md = screen.metadata_dir
    comp = pl.read_csv(md / "compounds.csv")
    assert comp.columns == ["compound", "moa", "smiles", "set", "drug"]
    assert comp.filter(pl.col("compound") == "POLY-AURK-JAK")["drug"].to_list() == ["TAK-901"]
    assert set(comp["set"]) == {"training", "holdout", "control"}
    assert comp.filter(pl.col("compound") == "DMSO")["set"].to_list() == ["control"]
    assert "DMSO" in comp["compound"].to_list()
    assert comp.filter(pl.col("compound") == "DMSO")["moa"].null_count() == 1
    assert comp["smiles"].n_unique() == comp.height
    lay = pl.read_csv(md / "layouts.csv")
    assert lay.columns == ["layout", "well", "compound", "moa", "smiles", "role"]
    assert set(lay["role"]) == {"treatment", "negative_control"}
    reg = pl.read_csv(md / "registry.csv")
    assert reg.columns == ["barcode", "replica", "layout", "dose_um", "dosed_at"]
    assert reg["barcode"].to_list()[0] == "LCD-R01-L01"
    assert all("+01:00" in s for s in reg["dosed_at"])
    screen_json = json.loads((md / "screen.json").read_text())
    assert set(screen_json) == {
        "name",
        "plate_type",
        "plate_rows",
        "plate_columns",
        "timepoints_h",
        "control",
        "min_control_wells",
    }
    assert screen_json["min_control_wells"] == 8 and screen_json["timepoints_h"] == [4, 20]
    assert set(comp.filter(pl.col("moa").is_not_null())["moa"]) == set(MOAS)
    assert "POLY-AURK-JAK" in comp["compound"].to_list()


def test_every_layout_has_every_compound(screen):
    lay = pl.read_csv(screen.metadata_dir / "layouts.csv")
    comp = pl.read_csv(screen.metadata_dir / "compounds.csv")
    sets = {s: set(comp.filter(pl.col("set") == s)["compound"]) for s in ("training", "holdout")}
    assert sorted(lay["layout"].unique()) == ["L01", "L02", "L03"]
    for (layout,), g in lay.group_by(["layout"]):
        expected = sets["holdout"] if layout in holdout_layout_keys(screen.spec) else sets["training"]
        assert set(g.filter(pl.col("role") == "treatment")["compound"]) == expected, layout
        assert g.filter(pl.col("compound") == "DMSO").height >= screen.spec.control_wells
        assert g["well"].n_unique() == g.height
        assert (g["role"] == "negative_control").sum() == (g["compound"] == "DMSO").sum()


def test_index_lists_every_tiff(screen):
    from lcd_core.keys import parse_dose_key  # noqa: F401  (keys importable alongside)

    reg = pl.read_csv(screen.metadata_dir / "registry.csv")
    dosed = {b: d for b, d in zip(reg["barcode"], reg["dosed_at"])}
    from datetime import datetime

    for d in screen.measurement_dirs:
        root = ET.parse(d / "Images" / "Index.idx.xml").getroot()
        assert root.tag == f"{NS}EvaluationInputData"
        urls = {e.findtext(f"{NS}URL") for e in root.iter(f"{NS}Image") if e.find(f"{NS}URL") is not None}
        files = {p.name for p in (d / "Images").glob("*.tiff")}
        holdout = any(f"-{k}__" in d.name for k in holdout_layout_keys(screen.spec))
        n_wells = screen.spec.holdout_wells_per_layout if holdout else screen.spec.wells_per_layout
        assert urls == files and len(files) == n_wells * 2 * 3
        types = {e.findtext(f"{NS}ChannelType") for e in root.iter(f"{NS}Image") if e.find(f"{NS}URL") is not None}
        assert types == {"Brightfield"}
        zs = sorted({float(e.findtext(f"{NS}PositionZ")) for e in root.iter(f"{NS}Image") if e.find(f"{NS}URL") is not None})
        assert np.allclose(np.diff(zs), 3.6e-6)
        # timepoint derivable from AbsTime - dosed_at
        barcode = root.findtext(f".//{NS}PlateID")
        t0 = datetime.fromisoformat(dosed[barcode])
        hours = [
            (datetime.fromisoformat(e.findtext(f"{NS}AbsTime")) - t0).total_seconds() / 3600
            for e in root.iter(f"{NS}Image")
            if e.find(f"{NS}AbsTime") is not None
        ]
        snapped = {min(screen.spec.timepoints_h, key=lambda t: abs(t - h)) for h in hours}
        assert len(snapped) == 1 and max(abs(h - snapped.copy().pop()) for h in hours) < 1.0
    try:
        from lcd_core.io.phenix import read_index
    except ImportError:  # pragma: no cover
        return
    m = read_index(screen.measurement_dirs[0])
    assert m.plate_id == "LCD-R01-L01"
    assert m.images.height == screen.spec.wells_per_layout * 2 * 3
    assert (m.images["channel_type"] == "Brightfield").all() and m.images["exists"].all()
    assert m.images["size_x"].unique().to_list() == [screen.spec.image_size]
    assert abs(m.images["resolution_x_m"][0] - screen.spec.pixel_size_um * 1e-6) < 1e-12


def test_image_statistics_like_fixture(screen):
    fov = _fovs(screen).filter((pl.col("compound") == "DMSO") & (pl.col("artifact") == "none")).row(0, named=True)
    st = _stack(screen, fov)
    assert 3000 < st.mean() < 15000  # fixture mean ≈ 7900 ADU
    assert 50 < st[1].std() < 1500  # fixture std ≈ 380 ADU
    assert st.min() > 0 and st.max() < 65535


def test_defocus_contrast_sign_flips(screen):
    fovs = _fovs(screen).filter(
        (pl.col("compound") == "DMSO") & (pl.col("artifact") == "none") & (pl.col("focus_offset_um").abs() < 2.0)
    )
    cells = _cells(screen).filter((pl.col("state") == "normal") & pl.col("in_fov"))
    c1, c3 = [], []
    for fov in fovs.head(12).iter_rows(named=True):
        st = _stack(screen, fov)
        sel = cells.filter(
            (pl.col("barcode") == fov["barcode"])
            & (pl.col("timepoint") == fov["timepoint"])
            & (pl.col("well") == fov["well"])
            & (pl.col("field") == fov["field"])
        )
        xs = np.clip(sel["nucleus_x"].to_numpy().round().astype(int), 0, st.shape[2] - 1)
        ys = np.clip(sel["nucleus_y"].to_numpy().round().astype(int), 0, st.shape[1] - 1)
        for p, acc in ((0, c1), (2, c3)):
            bg = ndi.gaussian_filter(st[p], sigma=20, mode="reflect")
            acc.extend((st[p] - bg)[ys, xs])
    assert len(c1) > 20
    m1, m3 = float(np.mean(c1)), float(np.mean(c3))
    assert m1 < 0 < m3, (m1, m3)


def _texture(st: np.ndarray) -> float:
    p = st[0]
    return float((p - ndi.gaussian_filter(p, 3)).std() / p.mean())


def test_strong_effect_differs_from_dmso_inactive_does_not(screen):
    cond = pl.read_parquet(screen.truth_dir / "conditions.parquet")
    fovs = _fovs(screen).filter((pl.col("artifact") == "none") & (pl.col("timepoint_h") == 20) & (pl.col("dose_um") == 10.0))
    strong = cond.filter((pl.col("dose_um") == 10.0) & (pl.col("timepoint_h") == 20) & (pl.col("moa") == "tubulin polymerization"))
    assert strong["effect"].max() > 0.5 and strong["truly_active"].all()
    inactive = cond.filter(pl.col("compound") == "INACT-1")
    assert inactive["effect"].max() == 0 and not inactive["truly_active"].any()

    def stat(compound):
        rows = fovs.filter(pl.col("compound") == compound)
        return np.array([_texture(_stack(screen, r)) for r in rows.iter_rows(named=True)]), rows

    dmso, dmso_rows = stat("DMSO")
    tub, tub_rows = stat(strong["compound"][0])
    ina, ina_rows = stat("INACT-1")
    mu, sd = dmso.mean(), dmso.std()
    # tubulin: mitotic arrest -> round refractile cells, high-frequency contrast changes strongly
    assert abs(tub.mean() - mu) > 3 * sd / np.sqrt(len(tub)) + 0.25 * sd
    assert tub_rows["n_mitotic"].sum() > 3 * max(1, dmso_rows["n_mitotic"].mean() * len(tub_rows))
    # inactive: indistinguishable from DMSO
    assert abs(ina.mean() - mu) < 2.5 * sd
    assert abs(ina_rows["n_cells"].mean() - dmso_rows["n_cells"].mean()) < 3 * dmso_rows["n_cells"].std()


def test_cell_counts_grow_in_dmso(screen):
    f = _fovs(screen).filter(pl.col("compound") == "DMSO")
    by_t = f.group_by("timepoint_h").agg(pl.col("n_cells").mean()).sort("timepoint_h")
    n4, n20 = by_t["n_cells"].to_list()
    assert n20 > 1.25 * n4  # doubling 24 h: expected ×1.59
    cells = _cells(screen)
    assert set(cells["state"].unique()) <= {"normal", "rounded", "mitotic", "dead"}
    assert (cells["n_nuclei"] >= 1).all()


def test_render_masks_and_truth_tables(screen):
    cells = _cells(screen)
    fov = _fovs(screen).row(0, named=True)
    one = cells.filter(
        (pl.col("barcode") == fov["barcode"])
        & (pl.col("timepoint") == fov["timepoint"])
        & (pl.col("well") == fov["well"])
        & (pl.col("field") == fov["field"])
        & (pl.col("state") != "dead")
    )
    size = screen.spec.image_size
    nuc, cel = render_masks(one, (size, size))
    assert nuc.shape == cel.shape == (size, size)
    assert abs((cel > 0).mean() - fov["confluency"]) < 1e-9
    assert nuc.max() <= one.height and set(np.unique(cel)) - {0} <= set(one["cell_id"].to_list())
    assert ((nuc > 0) <= (cel > 0)).all()
    comp = pl.read_parquet(screen.truth_dir / "compounds.parquet")
    for c in ("compound", "moa", "moa_secondary", "ec50_um", "hill", "max_effect", "onset_h", "is_active_anywhere"):
        assert c in comp.columns
    poly = comp.filter(pl.col("compound") == "POLY-AURK-JAK").row(0, named=True)
    assert poly["moa"] == "Aurora kinase" and poly["moa_secondary"] == "JAK"
    cond = pl.read_parquet(screen.truth_dir / "conditions.parquet")
    for c in ("compound", "dose_um", "dose", "timepoint", "effect", "truly_active"):
        assert c in cond.columns
    assert set(cond["dose"]) == {"0.625uM", "10uM"} and set(cond["timepoint"]) == {"04h", "20h"}
    # effect grows with time and dose
    w = cond.filter(pl.col("compound") == "POLY-AURK-JAK").sort(["dose_um", "timepoint_h"])["effect"].to_list()
    assert w[0] <= w[1] and w[2] <= w[3] and w[0] <= w[2]
    fov_cols = ("n_cells", "n_nuclei", "confluency", "focus_offset_um", "illum_gradient", "has_debris", "artifact")
    assert all(c in _fovs(screen).columns for c in fov_cols)


def test_spec_knobs_and_presets():
    demo = make_spec("demo")
    # the paper's five timepoints, one field, the holdout compounds on the four training layouts
    assert demo.timepoints_h == (4, 8, 12, 16, 20) and demo.fields == 1
    assert demo.n_measurements == 100 and demo.wells_per_layout == 64 and demo.n_compounds == 22
    assert demo.n_holdout_compounds == 10 and demo.n_holdout_layouts == 0 and demo.holdout_on_training_layouts
    assert demo.n_images == 5 * 5 * 4 * 64 * 1 * 3
    assert make_spec("demo", holdout_compounds_per_moa=0).n_measurements == 100
    own = make_spec("demo", holdout_layouts=1)
    assert own.n_measurements == 125 and own.wells_per_layout == 54 and own.holdout_wells_per_layout == 42
    assert holdout_layout_keys(own) == ["L05"] and training_layout_keys(own) == ["L01", "L02", "L03", "L04"]
    assert holdout_layout_keys(demo) == [] and len(make_spec("timelapse").timepoints_h) == 12
    with pytest.raises(ValueError):
        make_spec("demo", holdout_unknown_moa=11)
    assert demo.replica_doses_um == (0.156, 0.625, 2.5, 10.0, 10.0)
    small = make_spec("small")
    assert small.n_compounds == 12 and small.control_wells == 8
    with pytest.raises(ValueError):
        make_spec("demo", not_a_knob=1)
    names = [c.name for c in make_compounds(demo, 0)]
    assert len(names) == len(set(names)) and "AURK-1" in names and "INACT-1" in names


def test_holdout_compounds_on_the_training_layouts_without_holdout_layouts():
    spec = make_spec("small", holdout_layouts=0)
    compounds = make_compounds(spec, 0)
    layouts = make_layouts(spec, compounds, 0)
    holdout = {c.name for c in compounds if c.compound_set == "holdout"}
    assert sorted(layouts) == training_layout_keys(spec) and len(holdout) == 10
    for wells in layouts.values():
        names = [w.compound for w in wells]
        assert holdout <= set(names) and len(names) == spec.wells_per_layout == 12 + 10 + 8
        assert len({(w.row, w.col) for w in wells}) == len(wells)


def test_paths_are_paths(screen):
    assert isinstance(screen.out, Path) and screen.inbox.is_dir() and screen.metadata_dir.is_dir()


# --------------------------------------------------------------------------------------------
# holdout compound set
# --------------------------------------------------------------------------------------------


def test_holdout_compounds_share_classes_and_sit_on_their_own_layouts(screen):
    spec = screen.spec
    md = screen.metadata_dir
    comp = pl.read_csv(md / "compounds.csv")
    truth = pl.read_parquet(screen.truth_dir / "compounds.parquet")
    assert {"set", "moa_listed"} <= set(truth.columns)
    hold = truth.filter(pl.col("set") == "holdout")
    train = truth.filter(pl.col("set") == "training")
    assert hold.height == spec.n_holdout_compounds == 10
    assert all(n.split("-")[-1].startswith("H") for n in hold["compound"])
    assert not set(hold["compound"]) & set(train["compound"])
    assert not set(hold["smiles"]) & set(train["smiles"])
    # same ten classes, real drugs of the class, own potencies
    assert set(hold["moa"]) == set(MOAS) <= set(train["moa"])
    for row in hold.iter_rows(named=True):
        assert row["smiles"] in {canonical_smiles(d.smiles) for d in DRUGS[row["moa"]]}
    assert hold["ec50_um"].is_not_null().all() and hold["ec50_um"].n_unique() == hold.height
    assert set(comp.filter(pl.col("set") == "holdout")["compound"]) == set(hold["compound"])
    # holdout compounds only on holdout layouts, training compounds never there
    lay = pl.read_csv(md / "layouts.csv")
    hl = holdout_layout_keys(spec)
    assert hl == ["L03"]
    on = lay.filter(pl.col("compound").is_in(hold["compound"].to_list()))
    assert set(on["layout"]) == set(hl)
    assert on.group_by("compound").len()["len"].to_list() == [spec.wells_per_compound] * hold.height
    assert not lay.filter(pl.col("layout").is_in(hl) & pl.col("compound").is_in(train["compound"].to_list())).height
    # enough DMSO on every holdout layout to normalise it on its own
    for lk in hl:
        g = lay.filter(pl.col("layout") == lk)
        assert (g["compound"] == "DMSO").sum() == spec.control_wells
        assert g.height == spec.holdout_wells_per_layout
    # imaged in every replica at every timepoint
    reg = pl.read_csv(md / "registry.csv")
    assert sorted(reg.filter(pl.col("layout") == "L03")["replica"]) == ["R01", "R02"]
    fovs = _fovs(screen).filter(pl.col("layout") == "L03")
    assert fovs.group_by("plate", "timepoint").len().height == spec.n_replicas * len(spec.timepoints_h)
    assert set(fovs["compound"]) == set(hold["compound"]) | {"DMSO"}
    # conditions cover the holdout compounds
    cond = pl.read_parquet(screen.truth_dir / "conditions.parquet")
    hc = cond.filter(pl.col("set") == "holdout")
    assert set(hc["compound"]) == set(hold["compound"])
    assert hc.height == hold.height * len(set(spec.replica_doses_um)) * len(spec.timepoints_h)
    summary = json.loads((screen.truth_dir / "truth.json").read_text())
    assert summary["holdout_layouts"] == hl and summary["training_layouts"] == ["L01", "L02"]


def test_unknown_moa_holdout_compounds(screen):
    md = screen.metadata_dir
    truth = pl.read_parquet(screen.truth_dir / "compounds.parquet")
    hidden = truth.filter((pl.col("set") == "holdout") & pl.col("moa_listed").is_null())
    assert hidden.height == screen.spec.holdout_unknown_moa == 1
    assert hidden["moa"].is_in(list(MOAS)).all()  # the truth knows the class
    names = hidden["compound"].to_list()
    comp = pl.read_csv(md / "compounds.csv")
    assert comp.filter(pl.col("compound").is_in(names))["moa"].null_count() == len(names)
    lay = pl.read_csv(md / "layouts.csv")
    assert lay.filter(pl.col("compound").is_in(names))["moa"].null_count() == screen.spec.wells_per_compound * len(names)
    # every other holdout compound is listed with its true class
    listed = truth.filter((pl.col("set") == "holdout") & pl.col("moa_listed").is_not_null())
    assert (listed["moa"] == listed["moa_listed"]).all()
    shown = dict(zip(comp["compound"], comp["moa"]))
    assert all(shown[c] == m for c, m in zip(listed["compound"], listed["moa"]))


def test_platemap_loads_screen_with_holdout(screen):
    from lcd_core.io.platemap import load_screen

    s = load_screen(screen.metadata_dir)
    assert sorted(s.layouts["layout"].unique()) == ["L01", "L02", "L03"]
    assert "R02-L03" in s.plates() and len(s.plates()) == 6
    assert s.compounds.height == pl.read_csv(screen.metadata_dir / "compounds.csv").height


def _training_digest(preset: str, seed: int, **overrides) -> str:
    """Digest of the training compounds (potencies, SMILES) and training layouts."""
    import hashlib

    from lcd_core.keys import layout_key

    spec = make_spec(preset, **overrides)
    compounds = make_compounds(spec, seed)
    layouts = make_layouts(spec, compounds, seed)
    lines = [
        f"{c.name}|{c.moa}|{c.smiles}|{c.ec50_um}|{c.hill}|{c.max_effect}|{c.onset_h}|{c.moa_secondary}|{c.ec50_secondary_um}"
        for c in compounds
        if c.compound_set == "training"
    ]
    lines += [f"{w.layout}|{w.well}|{w.compound}" for li in range(1, spec.n_layouts + 1) for w in layouts[layout_key(li)]]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# recorded with the generator as it was before the holdout set existed
_TRAINING_DIGESTS = {
    ("demo", 0): "59174474c7b2dd0461f13db9ab51fd916c5bf76c4e0c92689049e089d7b6f7e2",
    ("small", 0): "44aa020a824b4ce6e71a0b54ac9100e5e0e895905b258010dbd3a24841f148fa",
    ("small", 7): "4cf2bf77ed5b6e79a67f4067079e0489a6b5841ad29d2bd30d2e1937daf4f8f9",
}


@pytest.mark.parametrize("overrides", [{}, {"holdout_compounds_per_moa": 0}, {"holdout_compounds_per_moa": 3, "holdout_layouts": 2, "holdout_unknown_moa": 5}])
def test_training_design_unchanged_by_holdout(overrides):
    """Holds while the holdout compounds have layouts of their own (the demo's default puts them on
    the training layouts, by design)."""
    for (preset, seed), digest in _TRAINING_DIGESTS.items():
        own = {"holdout_layouts": 1, **overrides}
        assert _training_digest(preset, seed, **own) == digest, (preset, seed, own)


def test_training_plates_unchanged_by_holdout(screen, tmp_path):
    """Replica R01 at 4 h without a holdout set: byte-identical to the same plates with one."""
    res = generate_screen(
        tmp_path, "small", seed=0, replica_doses_um=(0.625,), timepoints_h=(4,), holdout_compounds_per_moa=0, workers=1
    )
    assert res.n_measurements == 2 and not holdout_layout_keys(res.spec)
    for d in res.measurement_dirs:
        twin = next(x for x in screen.measurement_dirs if x.name == d.name)
        names = sorted(p.name for p in (d / "Images").iterdir())
        assert names == sorted(p.name for p in (twin / "Images").iterdir())
        for n in names:
            assert (d / "Images" / n).read_bytes() == (twin / "Images" / n).read_bytes(), (d.name, n)
    md0, md1 = res.metadata_dir, screen.metadata_dir
    lay0 = pl.read_csv(md0 / "layouts.csv")
    assert lay0.equals(pl.read_csv(md1 / "layouts.csv").filter(pl.col("layout").is_in(["L01", "L02"])))
    comp0 = pl.read_csv(md0 / "compounds.csv")
    assert set(comp0["set"]) == {"training", "control"}
    assert comp0.equals(pl.read_csv(md1 / "compounds.csv").filter(pl.col("set") != "holdout"))
    reg0 = pl.read_csv(md0 / "registry.csv")
    assert reg0.equals(pl.read_csv(md1 / "registry.csv").filter(pl.col("barcode").is_in(reg0["barcode"].to_list())))
    t0 = pl.read_parquet(res.truth_dir / "compounds.parquet").drop("is_active_anywhere")
    t1 = pl.read_parquet(screen.truth_dir / "compounds.parquet").drop("is_active_anywhere")
    assert t0.equals(t1.filter(pl.col("set") == "training"))
    keys = ["barcode", "timepoint", "well", "field"]
    f0 = _fovs(res).sort(keys)
    f1 = _fovs(screen).filter(pl.col("barcode").is_in(f0["barcode"].to_list()) & (pl.col("timepoint_h") == 4)).sort(keys)
    assert f0.equals(f1)
