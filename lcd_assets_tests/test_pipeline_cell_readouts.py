"""lcd_core.pipeline.cell_readouts: QC-kept FOVs, the cell readouts and the sensitivity inputs."""

from __future__ import annotations

import numpy as np
import polars as pl

from lcd_core.pipeline import cell_readouts as readouts


def _fovs():
    rng = np.random.default_rng(0)
    rows = []
    for plate in ("P1", "P2"):
        for compound, role, n, dose in [("DMSO", "negative_control", 30, "0uM"), ("KILL", "treatment", 5, "10uM"),
                                        ("NULL", "treatment", 30, "10uM")]:
            for field in range(1, 7):
                c = int(rng.poisson(n))
                rows.append({"plate": plate, "timepoint": "04h", "well": f"{compound[:1]}{plate}", "field": field,
                             "compound": compound, "role": role, "dose": dose, "moa": None, "n_nuclei": c,
                             "confluency": min(1.0, c / 40)})
    return pl.DataFrame(rows)


def test_only_fovs_qc_kept_are_counted():
    fovs = _fovs()
    kept = fovs.filter(pl.col("field") != 6).select("plate", "timepoint", "well", "field")
    assert readouts.qc_kept_fovs(fovs, pl.concat([kept, kept])).height == fovs.height * 5 // 6


def test_cell_readouts_call_the_killer_and_not_the_null():
    out = readouts.cell_readouts(_fovs(), n_boot=200)
    act = dict(zip(out.count_activity["compound"], out.count_activity["active"]))
    assert act == {"KILL": True, "NULL": False}
    inh = dict(zip(out.inhibition["compound"], out.inhibition["count_inhibition"]))
    assert inh["KILL"] > 70 and abs(inh["NULL"]) < 15
    assert out.correlation.height == 1


def test_sensitivity_table_of_the_readouts_present():
    model = pl.DataFrame({"compound": ["KILL", "NULL"], "dose": ["10uM"] * 2, "timepoint": ["04h"] * 2,
                          "active": [True, False], "map_es": [3.0, 0.1]})
    cells = readouts.cell_readouts(_fovs(), n_boot=200).count_activity
    truth = pl.DataFrame({"compound": ["KILL", "NULL"], "dose": ["10uM"] * 2, "timepoint": ["04h"] * 2,
                          "truly_active": [True, False]})
    table = readouts.compare_sensitivity(model, cell_count=cells, truth=truth)
    overall = table.filter((pl.col("kind") == "readout") & (pl.col("dose") == "all"))
    assert dict(zip(overall["readout"], overall["n_active"])) == {"mAP-ES (model)": 1, "cell count": 1}
    assert "mAP-ES (model) − cell count" in set(table["readout"])
    assert readouts.HANDCRAFTED not in set(table["readout"])  # absent readouts are not invented
