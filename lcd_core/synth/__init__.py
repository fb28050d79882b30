"""Synthetic live-cell brightfield screens in the Opera Phenix export layout, with ground truth.

Public API::

    from lcd_core.synth import generate_screen, ScreenSpec, SynthResult, make_spec, PRESETS
    res = generate_screen("/tmp/lcd_home", preset="demo", seed=0)        # or preset="small"
    res = generate_screen(out, "demo", n_layouts=8, fields=4, image_size=1080)  # any ScreenSpec knob
    res = generate_screen(out, "demo", holdout_compounds_per_moa=0)   # no holdout compound set

The ``demo`` and ``small`` presets include a holdout compound set (``AURK-H1`` …: other compounds of
the same ten MoA classes on their own layouts after the training layouts, one listed with an
unknown MoA); compounds.csv marks membership in its ``set`` column, the truth in ``set`` /
``moa_listed`` of ``compounds.parquet``.

Modules: ``design`` (MoA classes, knobs, presets), ``compounds`` (compounds, SMILES, dose-time
response), ``plates`` (layouts, plates, batch effects, field positions), ``cells`` (populations and
MoA morphology programs), ``optics`` (brightfield image formation), ``fov`` (one field of view:
debris, cells, focus, illumination, planes, truth rows), ``phenix_writer`` (Harmony 5 exports),
``metadata`` (the metadata CSVs), ``truth`` (ground-truth schemas and tables, activity rule,
``render_masks``), ``screen`` (orchestration).
This package never imports dagster.
"""

from lcd_core.synth.design import MOAS, PRESETS, ScreenSpec, make_spec
from lcd_core.synth.screen import SynthResult, generate_screen
from lcd_core.synth.truth import render_masks

__all__ = ["MOAS", "PRESETS", "ScreenSpec", "SynthResult", "generate_screen", "make_spec", "render_masks"]
