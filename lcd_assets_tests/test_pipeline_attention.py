"""lcd_core.pipeline.attention: which tiles are shown, and one figure per compound and DMSO."""

from __future__ import annotations

import numpy as np
import polars as pl

from lcd_core.embedding.vit import create_vit
from lcd_core.pipeline import attention as steps


def _kept():
    rows = []
    for compound, role, dose, tp in [("A", "treatment", "1uM", "04h"), ("A", "treatment", "10uM", "04h"),
                                     ("A", "treatment", "10uM", "08h"), ("B", "treatment", "10uM", "04h"),
                                     ("DMSO", "negative_control", "0uM", "04h"),
                                     ("DMSO", "negative_control", "0uM", "08h")]:
        for k in range(4):
            rows.append({"tile_id": f"{compound}/{dose}/{tp}/{k}", "plate": "P", "timepoint": tp, "well": f"W{k}",
                         "compound": compound, "role": role, "dose": dose})
    return pl.DataFrame(rows)


def test_samples_the_highest_active_dose_and_dmso_of_its_timepoint():
    activity = pl.DataFrame({"compound": ["A", "A", "A", "B"], "dose": ["1uM", "10uM", "10uM", "10uM"],
                             "timepoint": ["04h", "04h", "08h", "04h"], "active": [True, True, True, False],
                             "map_es": [2.0, 1.0, 3.0, 0.1]})
    s = steps.sample_tiles(activity, _kept(), per_compound=2)
    a = s.filter(pl.col("panel") == "A")
    assert a.height == 2 and set(a["dose"]) == {"10uM"} and set(a["timepoint"]) == {"08h"}  # largest mAP-ES there
    assert "B" not in set(s["panel"])  # not active
    assert set(s["panel"]) == {"A", "DMSO 08h"} and s["label"].str.starts_with("A 10uM 08h").sum() == 2
    none = steps.sample_tiles(activity.with_columns(pl.lit(False).alias("active")), _kept())
    assert none.height == 0 and steps.attention_panels(None, none, np.zeros((0, 3, 32, 32)), 32) == {}


def test_one_png_per_panel():
    samples = pl.DataFrame({"panel": ["A", "A", "DMSO 04h"], "label": ["a1", "a2", "d"]})
    tiles = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    panels = steps.attention_panels(create_vit(seed=0).eval(), samples, tiles, 32)
    assert list(panels) == ["A", "DMSO 04h"] and all(p.startswith(b"\x89PNG") for p in panels.values())
