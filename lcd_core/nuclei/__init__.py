"""Nuclei and confluency without labels (SPEC §4.9): every detector returns a
:class:`~lcd_core.nuclei.objects.Nuclei` at the original image size, sizes in µm from the index.

* :mod:`~lcd_core.nuclei.brightfield`: training-free, from the brightfield planes (the
  transport-of-intensity phase of a z-stack, or of a single plane) — the default;
* :mod:`~lcd_core.nuclei.patches`: objects discovered in the ViT's patch features (FOUND /
  TokenCut family), refined to the pixel grid;
* :mod:`~lcd_core.nuclei.measurement`: a detector over a whole Phenix measurement folder
  (``lcd nuclei``); :mod:`~lcd_core.nuclei.evaluate`: scoring against reference masks.
"""

from lcd_core.nuclei.brightfield import detect_brightfield
from lcd_core.nuclei.evaluate import MaskScore, block_counts, count_r, score_masks
from lcd_core.nuclei.measurement import METHODS, FovNuclei, detect_measurement, get_method
from lcd_core.nuclei.objects import Nuclei

__all__ = ["METHODS", "FovNuclei", "MaskScore", "Nuclei", "block_counts", "count_r", "detect_brightfield",
           "detect_measurement", "get_method", "score_masks"]
