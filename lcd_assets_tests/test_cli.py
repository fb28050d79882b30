"""The ``lcd`` console script on real fixtures and a real warehouse."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from lcd_assets.cli import main

SHARED = Path(os.environ.get("LCD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES = SHARED / "fixtures" / "phenix"


def test_inspect_real_harmony5_export_as_json(capsys):
    assert main(["inspect", str(FIXTURES / "harmony-v5"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["plate_id"] == "BR00122249"
    assert d["brightfield_channel"] == 2
    assert d["n_missing"] == 0 and d["image_size"] == [1080, 1080]


def test_inspect_real_harmony7_index_reports_missing_files(capsys):
    assert main(["inspect", str(FIXTURES / "harmony-v7")]) == 0
    text = capsys.readouterr().out
    assert "240624_WES_Perturbs_n_densities_1.1" in text
    assert "7 missing on disk" in text and "channel 7" in text


def test_inspect_bad_path_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_sql_queries_the_warehouse(tmp_path, capsys):
    from lcd_core.io.warehouse import Warehouse

    Warehouse(tmp_path).replace_table("plates", pl.DataFrame({"plate": ["R01-L01", "R02-L01"]}))
    assert main(["--home", str(tmp_path), "sql", "SELECT count(*) AS n FROM plates"]) == 0
    assert "2" in capsys.readouterr().out


def test_plate_registry_asset_fails_naming_duplicate_wells(lcd_home, instance):
    from lcd_assets.definitions import build_definitions
    from lcd_assets_tests.conftest import local_resources

    layouts = lcd_home / "metadata" / "layouts.csv"
    lines = layouts.read_text().splitlines()
    lines.append(lines[1])  # the first well again
    layouts.write_text("\n".join(lines) + "\n")
    defs = build_definitions(local_resources(lcd_home))
    res = defs.resolve_job_def("setup").execute_in_process(instance=instance, raise_on_error=False)
    assert not res.success
    err = str(next(e for e in res.all_events if e.is_step_failure).step_failure_data.error)
    assert "layouts.csv" in err and str(len(lines)) in err


def test_pretrain_before_acquisition_fails_clearly(lcd_home, capsys, monkeypatch):
    """`lcd pretrain` on a screen with no acquired tiles reports the failed tile bank run and
    exits non-zero, without writing a checkpoint."""
    monkeypatch.setenv("DAGSTER_HOME", str(lcd_home / "dagster"))  # restored after the test
    monkeypatch.setenv("LCD_HOME", str(lcd_home))
    code = main(["--home", str(lcd_home), "pretrain", "--variant", "dino", "--steps", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: tile_bank" in out and "FAILED: pretraining[dino]" in out
    assert not (lcd_home / "models" / "ssl-dino").exists()


def test_synth_plants_the_asked_two_moa_compounds(tmp_path, capsys):
    """`lcd synth --polypharmacology 3` writes a validation screen with all three planted pairs."""
    assert main(["synth", str(tmp_path), "--preset", "small", "--seed", "1", "--polypharmacology", "3"]) == 0
    truth = pl.read_parquet(tmp_path / "truth" / "compounds.parquet").filter(pl.col("moa_secondary") != "")
    assert sorted(truth["compound"]) == ["POLY-AURK-JAK", "POLY-HDAC-TUBB", "POLY-HSP-TOPO"]
    listed = pl.read_csv(tmp_path / "metadata" / "compounds.csv")["compound"].to_list()
    assert set(truth["compound"]) <= set(listed)
    with pytest.raises(ValueError, match="n_polypharmacology must be 0..3"):
        main(["synth", str(tmp_path / "bad"), "--preset", "small", "--polypharmacology", "4"])
