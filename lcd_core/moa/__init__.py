"""MoA classification: per-condition linear probes, incremental aggregation, metrics (SPEC §4.8).

Entry point::

    from lcd_core import moa

    classes = moa.MoaClasses.from_compounds(screen.compounds)  # the screen's compounds.csv
    res = moa.classify_moa(profiles, activity, classes=classes, holdout_compounds=("X-1", "X-2"), seed=0)
    res.per_condition      # one row per compound × dose × timepoint: softmax per class
    res.predictions        # one row per compound × mode × step: aggregated distribution
    res.metrics            # weighted F1 / accuracy / top-3 per set × mode × step
    res.confusion          # long confusion matrices per set × mode × step
    res.polypharmacology   # top-2 MoAs per compound × condition + ``stable_top2`` / ``stable_residual``

Inputs
------
``profiles``: normalized well profiles of every dose × timepoint, concatenated, in the cytomining
convention (:mod:`lcd_core.moa.wells`). ``activity``: compound, dose, timepoint, map_es, active (as
:mod:`lcd_core.profiling.activity`). ``classes``: the screen's MoAs, from its own compounds table
(:class:`MoaClasses`), plus ``"DMSO"`` (:data:`DMSO_CLASS`, every ``negative_control`` well) as the
probe's extra class; probabilities are one column ``p_<class>`` per probe class. A treatment label
outside the classes is an error naming the compound (:func:`validate_labels`). Compounds without
a label are never trained on but are predicted like any other.

Modules, in the order of the stage
----------------------------------
* :mod:`~lcd_core.moa.classes`: the MoA classes of a screen (:class:`MoaClasses`);
* :mod:`~lcd_core.moa.wells`: the well profiles read (columns, training labels and wells);
* :mod:`~lcd_core.moa.probes`: per-condition probes, grouped CV, holdout prediction;
* :mod:`~lcd_core.moa.aggregation`: incremental aggregation over doses, single highest dose;
* :mod:`~lcd_core.moa.scoring`: weighted F1, top-3, confusion, McNemar, feature-set comparison;
* :mod:`~lcd_core.moa.second_moa`: the top-2 and explain-away readings of a second MoA;
* :mod:`~lcd_core.moa.classify`: :func:`classify_moa`, all of the above on one screen.
"""

from lcd_core.moa.aggregation import WEIGHTINGS, aggregate_incremental, single_highest
from lcd_core.moa.classes import DMSO_CLASS, MoaClasses
from lcd_core.moa.classify import MoaResult, classify_moa, condition_probes
from lcd_core.moa.scoring import (
    McNemar, compare_feature_sets, confusion, final_predictions, mcnemar, mcnemar_predictions, metrics,
)
from lcd_core.moa.second_moa import explain_away, explain_away_readings, high_dose_keys, polypharmacology
from lcd_core.moa.probes import (
    ConditionProbe, SkippedCondition, class_centroids, compound_folds, cv_condition, fit_condition_probe,
    holdout_predict,
)
from lcd_core.moa.wells import validate_labels

__all__ = [
    "DMSO_CLASS", "WEIGHTINGS", "ConditionProbe", "McNemar", "MoaClasses", "MoaResult", "SkippedCondition",
    "aggregate_incremental", "class_centroids", "classify_moa", "compare_feature_sets", "compound_folds",
    "condition_probes", "confusion", "cv_condition", "explain_away", "explain_away_readings", "final_predictions",
    "fit_condition_probe", "high_dose_keys", "holdout_predict", "mcnemar", "mcnemar_predictions", "metrics",
    "polypharmacology", "single_highest", "validate_labels",
]
