"""Phenotype trajectories (SPEC §4.11): the path of each compound's profile across timepoints.

From normalized well profiles of every dose × timepoint (each normalized against its own DMSO):

* :mod:`~lcd_core.trajectories.conditions`: the profiles split per dose × timepoint, checked,
  doses ordered by µM and timepoints by hour;
* :mod:`~lcd_core.trajectories.distance`: per compound × dose × timepoint the (debiased) distance
  of its centroid from DMSO in MAD units, a 95 % bootstrap interval and the DMSO null's 95th
  percentile at the compound's well count;
* :mod:`~lcd_core.trajectories.onset`: the first timepoint a compound × dose is called active
  (by mAP-ES, by the distance) and whether it stays active (sustained vs transient);
* :mod:`~lcd_core.trajectories.agreement`: those onsets against a synthetic screen's truth;
* :mod:`~lcd_core.trajectories.projection`: a 2-D map of the paths, DMSO at the origin.

:func:`lcd_core.pipeline.trajectories.trajectories` runs them all on a screen.
"""

from lcd_core.trajectories.agreement import (
    agreement_summary,
    onset_confusion,
    onset_pairs,
    truth_onsets,
    wilson_interval,
)
from lcd_core.trajectories.conditions import (
    Condition,
    dose_sort_key,
    ordered,
    split_conditions,
    timepoint_hours,
)
from lcd_core.trajectories.distance import (
    Distance,
    centroid_distance,
    condition_distances,
    distances,
    dmso_null,
)
from lcd_core.trajectories.onset import NEVER, Onset, first_onset, onset_table
from lcd_core.trajectories.projection import TrajectoryMap, centred_centroids, centroid_map, fit_map

__all__ = [
    "Condition", "dose_sort_key", "ordered", "split_conditions", "timepoint_hours",
    "Distance", "centroid_distance", "condition_distances", "distances", "dmso_null",
    "NEVER", "Onset", "first_onset", "onset_table",
    "agreement_summary", "onset_confusion", "onset_pairs", "truth_onsets", "wilson_interval",
    "TrajectoryMap", "centred_centroids", "centroid_map", "fit_map",
]
