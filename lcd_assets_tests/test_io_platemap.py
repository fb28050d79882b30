"""Tests of lcd_core.io.platemap (with io.tables and io.registry through load_screen): a valid small
screen, then each kind of bad metadata."""

from __future__ import annotations

import copy
import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import polars as pl
import pytest

from lcd_core.io.platemap import ScreenConfig, load_screen, validate_barcodes, write_metadata, write_screen
from lcd_core.io.tables import PlateMapError

CONFIG: dict[str, Any] = {
    "name": "mini",
    "plate_type": "24-well",
    "plate_rows": 4,
    "plate_columns": 6,
    "timepoints_h": [4, 8, 12],
    "control": "DMSO",
    "min_control_wells": 4,
}
COMPOUNDS = [
    {"compound": "DMSO", "moa": "", "smiles": "CS(C)=O"},
    {"compound": "cmpA", "moa": "HDAC inhibitor", "smiles": "CCO"},
    {"compound": "cmpB", "moa": "", "smiles": "CCN"},
]
DOSED = "2024-03-01T08:00:00+01:00"


def _layout_rows() -> list[dict[str, str]]:
    rows = []
    for lay, order in (("L01", ["DMSO"] * 4 + ["cmpA", "cmpA", "cmpB", "cmpB"]),
                       ("L02", ["cmpB", "DMSO", "cmpA", "DMSO", "cmpB", "DMSO", "cmpA", "DMSO"])):
        ref = {c["compound"]: c for c in COMPOUNDS}
        for i, comp in enumerate(order):
            rows.append({
                "layout": lay, "well": f"{'AB'[i // 4]}{i % 4 + 1:02d}", "compound": comp,
                "moa": ref[comp]["moa"], "smiles": ref[comp]["smiles"],
                "role": "negative_control" if comp == "DMSO" else "treatment",
            })
    return rows


REGISTRY = [
    {"barcode": "LCD-R01-L01", "replica": "R01", "layout": "L01", "dose_um": "10", "dosed_at": DOSED},
    {"barcode": "LCD-R01-L02", "replica": "R01", "layout": "L02", "dose_um": "10", "dosed_at": DOSED},
    {"barcode": "LCD-R02-L01", "replica": "2", "layout": "1", "dose_um": "0.156", "dosed_at": "2024-03-02T07:00:00Z"},
    {"barcode": "LCD-R02-L02", "replica": "R02", "layout": "L02", "dose_um": "0.156", "dosed_at": "2024-03-02T07:00:00Z"},
]


def _tables() -> dict[str, Any]:
    return {"screen": copy.deepcopy(CONFIG), "compounds": copy.deepcopy(COMPOUNDS),
            "layouts": _layout_rows(), "registry": copy.deepcopy(REGISTRY)}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write(folder: Path, tables: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "screen.json").write_text(json.dumps(tables["screen"]))
    for name in ("compounds", "layouts", "registry"):
        _write_csv(folder / f"{name}.csv", tables[name])
    return folder


def _bad(tmp_path: Path, mutate: Callable[[dict[str, Any]], None]) -> PlateMapError:
    tables = _tables()
    mutate(tables)
    folder = _write(tmp_path / "meta", tables)
    with pytest.raises(PlateMapError) as info:
        load_screen(folder)
    return info.value


@pytest.fixture()
def screen(tmp_path: Path):
    return load_screen(_write(tmp_path / "meta", _tables()))


def test_valid_screen_normalised(screen) -> None:
    assert screen.config == ScreenConfig("mini", "24-well", 4, 6, (4.0, 8.0, 12.0), "DMSO", 4, 1.0)
    assert screen.layouts.height == 16  # never drops or duplicates a well
    assert {"row", "col"} <= set(screen.layouts.columns)
    assert screen.layouts.schema["row"] == pl.Int32
    assert screen.plates() == ["R01-L01", "R01-L02", "R02-L01", "R02-L02"]
    assert screen.doses() == ["0.156uM", "10uM"]
    assert screen.timepoints() == ["04h", "08h", "12h"]
    rec = screen.plate_for_barcode("LCD-R02-L01")
    assert (rec["plate"], rec["replica"], rec["layout"], rec["dose"]) == ("R02-L01", "R02", "L01", "0.156uM")
    assert rec["dosed_at"] == datetime(2024, 3, 2, 7, tzinfo=timezone.utc)
    assert screen.registry.schema["dosed_at"] == pl.Datetime("us", "UTC")
    wells = screen.layout_of("R01-L02")
    assert wells["well"].to_list() == ["A01", "A02", "A03", "A04", "B01", "B02", "B03", "B04"]
    assert wells["compound"].to_list()[:2] == ["cmpB", "DMSO"]
    assert screen.compounds.filter(pl.col("compound") == "DMSO")["moa"].to_list() == [None]


def test_unknown_barcode(screen) -> None:
    with pytest.raises(PlateMapError, match=r"barcode 'NOPE' is not in the run registry .*registry\.csv"):
        screen.plate_for_barcode("NOPE")
    with pytest.raises(PlateMapError) as info:
        validate_barcodes(screen, ["LCD-R01-L01", "X1", "X2"])
    assert "X1" in str(info.value) and "X2" in str(info.value) and "LCD-R01-L01" not in str(info.value)
    validate_barcodes(screen, ["LCD-R01-L01", "LCD-R02-L02"])


def test_timepoint_snapping(screen) -> None:
    dosed = datetime(2024, 3, 1, 7, tzinfo=timezone.utc)  # 08:00+01:00
    assert screen.timepoint_for("LCD-R01-L01", dosed + timedelta(hours=4, minutes=20)) == "04h"
    assert screen.timepoint_for("LCD-R01-L01", dosed + timedelta(hours=7, minutes=5)) == "08h"
    other_tz = (dosed + timedelta(hours=12, minutes=-50)).astimezone(timezone(timedelta(hours=-5)))
    assert screen.timepoint_for("LCD-R01-L01", other_tz) == "12h"
    with pytest.raises(PlateMapError, match=r"6\.00 h after dosing.*within 1\.0 h"):
        screen.timepoint_for("LCD-R01-L01", dosed + timedelta(hours=6))
    with pytest.raises(PlateMapError, match="no UTC offset"):
        screen.timepoint_for("LCD-R01-L01", datetime(2024, 3, 1, 12))


def test_roundtrip_write_metadata_and_parquet(screen, tmp_path: Path) -> None:
    out = write_screen(screen, tmp_path / "copy")
    again = load_screen(out)
    assert again.registry.equals(screen.registry)
    assert again.layouts.equals(screen.layouts)
    # parquet variants of the tables are accepted too
    pq_dir = tmp_path / "pq"
    write_metadata(pq_dir, screen.config, screen.compounds, screen.layouts, screen.registry)
    for name, df in (("layouts", screen.layouts), ("registry", screen.registry)):
        (pq_dir / f"{name}.csv").unlink()
        df.write_parquet(pq_dir / f"{name}.parquet")
    assert load_screen(pq_dir).registry.equals(screen.registry)


def test_missing_file(tmp_path: Path) -> None:
    folder = _write(tmp_path / "meta", _tables())
    (folder / "layouts.csv").unlink()
    with pytest.raises(PlateMapError, match=r"missing metadata file .*layouts\.csv"):
        load_screen(folder)


def test_missing_column(tmp_path: Path) -> None:
    def drop(t):
        for r in t["registry"]:
            del r["dosed_at"]
    err = _bad(tmp_path, drop)
    assert "registry.csv" in str(err) and "dosed_at" in str(err)


def test_duplicate_wells_all_listed(tmp_path: Path) -> None:
    def dup(t):
        t["layouts"][1]["well"] = "A01"  # line 3 duplicates line 2
        t["layouts"][11]["well"] = "a3"  # line 13 ('a3' -> A03) duplicates L02's A03 on line 12
    err = _bad(tmp_path, dup)
    msg = str(err)
    assert "layouts.csv" in msg and "duplicate well within a layout" in msg
    assert "line 2:" in msg and "line 3:" in msg
    assert "line 12:" in msg and "line 13:" in msg
    assert err.lines == [2, 3, 12, 13]


def test_wells_off_plate_and_malformed(tmp_path: Path) -> None:
    def off(t):
        t["layouts"][0]["well"] = "E01"   # row 5 of a 4-row plate
        t["layouts"][1]["well"] = "A07"   # column 7 of 6
        t["layouts"][2]["well"] = "7A"    # malformed
    msg = str(_bad(tmp_path, off))
    assert "well not on a 24-well plate" in msg and "malformed well name" in msg
    assert "line 2: layout='L01', well='E01'" in msg
    assert "line 3: layout='L01', well='A07'" in msg
    assert "line 4: layout='L01', well='7A'" in msg


def test_unknown_compound(tmp_path: Path) -> None:
    def unknown(t):
        t["layouts"][5]["compound"] = "cmpZ"
        t["layouts"][13]["compound"] = "cmpY"
    msg = str(_bad(tmp_path, unknown))
    assert "compound not in compounds file (2)" in msg
    assert "line 7:" in msg and "cmpZ" in msg and "line 15:" in msg and "cmpY" in msg


def test_moa_and_smiles_disagree(tmp_path: Path) -> None:
    def disagree(t):
        t["layouts"][4]["moa"] = "tubulin"
        t["layouts"][6]["smiles"] = "CCCC"
    msg = str(_bad(tmp_path, disagree))
    assert "moa disagrees with compounds file" in msg and "'tubulin'" in msg and "'HDAC inhibitor'" in msg
    assert "smiles disagrees with compounds file" in msg and "line 8:" in msg and "'CCCC'" in msg


def test_bad_roles(tmp_path: Path) -> None:
    def roles(t):
        t["layouts"][0]["role"] = "control"            # not a role
        t["layouts"][1]["role"] = "treatment"          # DMSO as treatment
        t["layouts"][4]["role"] = "negative_control"   # cmpA as control
    msg = str(_bad(tmp_path, roles))
    assert "role not one of" in msg and "line 2:" in msg and "'control'" in msg
    assert "control compound 'DMSO' without role negative_control" in msg and "line 3:" in msg
    assert "role negative_control on a compound other than the control" in msg and "line 6:" in msg


def test_too_few_control_wells(tmp_path: Path) -> None:
    def few(t):
        t["screen"]["min_control_wells"] = 5
    msg = str(_bad(tmp_path, few))
    assert "layouts.csv" in msg and "layout L01: 4 control wells" in msg and "layout L02: 4 control wells" in msg


def test_registry_unknown_layout_and_bad_values(tmp_path: Path) -> None:
    def bad(t):
        t["registry"][0]["layout"] = "L09"
        t["registry"][1]["dose_um"] = "ten"
        t["registry"][2]["dose_um"] = "-1"
        t["registry"][3]["dosed_at"] = "2024-03-02 07:00"  # no offset
    err = _bad(tmp_path, bad)
    msg = str(err)
    assert "registry.csv" in msg
    assert "layout not in layouts file" in msg and "line 2:" in msg and "'L09'" in msg
    assert "dose_um not a positive number (2)" in msg and "'ten'" in msg and "'-1'" in msg
    assert "dosed_at not an ISO 8601" in msg and "line 5:" in msg
    assert err.lines == [2, 3, 4, 5]


def test_registry_duplicates_and_dose_conflict(tmp_path: Path) -> None:
    def dup(t):
        t["registry"].append(dict(t["registry"][0]))                      # line 6: duplicate barcode
        t["registry"].append(dict(t["registry"][1], barcode="OTHER"))     # line 7: same R01+L02
        t["registry"][3]["dose_um"] = "2.5"                               # R02 with two doses
    msg = str(_bad(tmp_path, dup))
    assert "duplicate barcode (2)" in msg and "line 2:" in msg and "line 6:" in msg
    assert "several barcodes for one replica + layout" in msg and "plate R01-L02" in msg and "line 7:" in msg
    assert "replica with more than one dose" in msg and "line 4:" in msg and "line 5:" in msg


def test_many_offending_rows_capped(tmp_path: Path) -> None:
    def many(t):
        for i in range(30):
            t["registry"].append(dict(t["registry"][0], barcode=f"B{i}", layout="L77", replica=f"R{10 + i}"))
    msg = str(_bad(tmp_path, many))
    assert "layout not in layouts file (30)" in msg and "... and 10 more" in msg


def test_bad_screen_json(tmp_path: Path) -> None:
    def cfg(t):
        t["screen"]["timepoints_h"] = [4, 4.5]
        t["screen"]["plate_rows"] = 0
    msg = str(_bad(tmp_path, cfg))
    assert "screen.json" in msg and "4.5" in msg and "plate_rows=0" in msg


# --------------------------------------------------------------------------------------------
# structures (lcd_core.molecules) and the optional drug column


def test_smiles_are_canonicalised_and_compared_as_structures(tmp_path: Path) -> None:
    tables = _tables()
    tables["compounds"][1]["smiles"] = "OCC"           # cmpA: ethanol written another way
    for row in tables["layouts"]:
        if row["compound"] == "cmpA":
            row["smiles"] = "C(O)C"                    # yet another way: the same structure
    screen = load_screen(_write(tmp_path / "meta", tables))
    comp = dict(screen.compounds.select("compound", "smiles").iter_rows())
    assert comp == {"DMSO": "CS(C)=O", "cmpA": "CCO", "cmpB": "CCN"}
    assert set(screen.layouts.filter(pl.col("compound") == "cmpA")["smiles"]) == {"CCO"}
    assert screen.compounds["has_structure"].all() and screen.compounds_without_structure() == []


def test_invalid_smiles_names_file_compound_and_line(tmp_path: Path) -> None:
    def bad(t):
        t["compounds"][1]["smiles"] = "C1CC"             # line 3: unclosed ring
        t["compounds"][2]["smiles"] = "C(C)(C)(C)(C)C"   # line 4: pentavalent carbon
    err = _bad(tmp_path, bad)
    msg = str(err)
    assert "compounds.csv" in msg and "invalid SMILES (2)" in msg
    assert "line 3: compound='cmpA', smiles='C1CC' (SMILES syntax error)" in msg
    assert "line 4: compound='cmpB'" in msg and "valence" in msg
    assert err.lines == [3, 4] and isinstance(err, ValueError)


def test_invalid_smiles_in_the_layouts_file(tmp_path: Path) -> None:
    def bad(t):
        t["layouts"][5]["smiles"] = "c1cccc1"            # line 7: cannot be kekulized
    err = _bad(tmp_path, bad)
    msg = str(err)
    assert "layouts.csv" in msg and "invalid SMILES (1)" in msg
    assert "line 7: layout='L01', well='B02', compound='cmpA', smiles='c1cccc1'" in msg
    assert "smiles disagrees" not in msg and err.lines == [7]


def test_compound_without_structure_is_kept_and_flagged(tmp_path: Path) -> None:
    tables = _tables()
    tables["compounds"][2]["smiles"] = ""                # cmpB: declared without a structure
    for row in tables["layouts"]:
        if row["compound"] == "cmpB":
            row["smiles"] = ""
    screen = load_screen(_write(tmp_path / "meta", tables))
    assert screen.compounds.height == 3 and screen.layouts.height == 16  # nothing dropped
    assert screen.compounds_without_structure() == ["cmpB"]
    assert screen.compounds.filter(pl.col("compound") == "cmpB")["smiles"].to_list() == [None]
    assert screen.layouts.filter(pl.col("compound") == "cmpB")["smiles"].null_count() == 4
    # a layout row giving a structure the compounds file does not have still disagrees
    tables["layouts"][6]["smiles"] = "CCN"
    msg = str(_bad_tables(tmp_path / "again", tables))
    assert "smiles disagrees with compounds file" in msg and "line 8:" in msg


def test_drug_column_is_optional_and_written_back(tmp_path: Path) -> None:
    tables = _tables()
    old = load_screen(_write(tmp_path / "old", tables))  # older metadata: no drug column
    assert old.compounds["drug"].null_count() == 3
    header = (write_screen(old, tmp_path / "old_copy") / "compounds.csv").read_text().splitlines()[0]
    assert header == "compound,moa,smiles,set"
    for row, drug in zip(tables["compounds"], ("", "vorinostat", "olaparib")):
        row["drug"] = drug
    screen = load_screen(_write(tmp_path / "new", tables))
    assert screen.compounds["drug"].to_list() == [None, "vorinostat", "olaparib"]
    out = write_screen(screen, tmp_path / "copy")
    header = (out / "compounds.csv").read_text().splitlines()[0]
    assert header == "compound,moa,smiles,set,drug"
    assert load_screen(out).compounds.equals(screen.compounds)


def _bad_tables(folder: Path, tables: dict[str, Any]) -> PlateMapError:
    with pytest.raises(PlateMapError) as info:
        load_screen(_write(folder, tables))
    return info.value


# --------------------------------------------------------------------------------------------
# keys of the run registry: barcodes (Unicode form, invisible characters, case) and doses


def test_barcode_lookup_ignores_unicode_form_invisible_characters_and_case(tmp_path: Path) -> None:
    tables = _tables()
    tables["registry"][0]["barcode"] = "LCD-\u00c9-01"  # É composed (NFC)
    screen = load_screen(_write(tmp_path / "meta", tables))
    for spelled in ("LCD-E\u0301-01", "LCD-\u00c9-\u200b01", "lcd-\u00e9-01", "LCD-R01-L02\u200b", "lcd-r01-l02"):
        assert screen.plate_for_barcode(spelled)["barcode"] in ("LCD-\u00c9-01", "LCD-R01-L02"), ascii(spelled)
    assert screen.plate_for_barcode("lcd-e\u0301-01")["plate"] == "R01-L01"
    validate_barcodes(screen, ["LCD-E\u0301-01", "lcd-r02-l01"])
    assert screen.barcodes()[0] == "LCD-R01-L02"  # as the registry spells them


def test_barcodes_colliding_after_normalisation_are_refused(tmp_path: Path) -> None:
    def collide(t):
        t["registry"][0]["barcode"] = "LCD-\u00c9-01"                                            # line 2, NFC
        t["registry"].append(dict(t["registry"][0], barcode="LCD-E\u0301-01", replica="R03"))   # line 6, NFD
        t["registry"].append(dict(t["registry"][0], barcode="LCD-R01-L02\u200b", replica="R04"))  # line 7 ~ line 3
        t["registry"].append(dict(t["registry"][0], barcode="lcd-r02-l01", replica="R05"))       # line 8 ~ line 4
    err = _bad(tmp_path, collide)
    msg = str(err)
    assert "registry.csv: invalid metadata" in msg
    kind = "barcodes that are one barcode after Unicode NFKC, removing invisible characters and ignoring case"
    assert f"{kind} (6)" in msg
    assert ("line 2: barcode='LCD-\u00c9-01' (key 'lcd-\u00e9-01'; "
            "line 2: 'LCD-\\xc9-01', line 6: 'LCD-E\\u0301-01')") in msg
    assert "line 7: barcode='LCD-R01-L02\\u200b' (key 'lcd-r01-l02'; line 3: 'LCD-R01-L02', line 7:" in msg
    assert "key 'lcd-r02-l01'; line 4: 'LCD-R02-L01', line 8: 'lcd-r02-l01'" in msg
    assert err.lines == [2, 3, 4, 6, 7, 8]


@pytest.mark.parametrize(
    "r02_dose, kind, key",
    [
        ("10.0000001", "different doses with the same dose partition key (4)", "key 10uM"),
        ("10.00001", "doses within 0.1% of each other (one dose typed twice?) (4)", "keys 10uM and 10.00001uM"),
    ],
)
def test_doses_that_round_to_one_key_are_refused(tmp_path: Path, r02_dose: str, kind: str, key: str) -> None:
    def near(t):
        for row in t["registry"][2:]:  # R02's plates: a dose the R01 plates (10 µM) already have, mistyped
            row["dose_um"] = r02_dose
    err = _bad(tmp_path, near)
    msg = str(err)
    assert "registry.csv: invalid metadata" in msg and kind in msg and key in msg
    assert f"line 4: barcode='LCD-R02-L01', dose_um='{r02_dose}' ({key})" in msg
    assert err.lines == [2, 3, 4, 5]
