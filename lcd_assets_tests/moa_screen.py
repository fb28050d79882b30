"""A planted MoA screen and hand-made per-condition rows, shared by the ``test_moa_*`` files."""

from __future__ import annotations

import numpy as np
import polars as pl

from lcd_core.moa import MoaClasses

# MoA names as the synthetic screens write them (any strings would do)
CLASSES = ("ATPase", "Aurora kinase", "HDAC", "JAK")
A, B = CLASSES[0], CLASSES[1]
SOLO_CLASS = "PARP"  # one compound only: its CV fold never sees the class
DOSES = {"0.1uM": 0.6, "1uM": 1.8, "10uM": 4.5}  # effect amplitude per dose (dose order ≠ text order)
TIMEPOINTS = {"04h": 0.8, "20h": 1.0}
POTENCY = (0.6, 1.0, 1.4, 2.0)


def make_profiles(seed: int = 0, d: int = 24, wells: int = 3, n_dmso: int = 24, noise: float = 0.5):
    """Planted class directions; effect = amplitude(dose, tp) × potency along the direction.

    Returns (profiles, activity, holdout compounds). Compounds: 4 per class (training), 1 per
    class (holdout), ``MIX`` (A + B directions, labelled A), ``UNK`` (class C direction, no
    label), ``SOLO`` (the only compound of its class).
    """
    rng = np.random.default_rng(seed)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]  # orthonormal class directions
    dirs = {c: basis[:, i] for i, c in enumerate((*CLASSES, SOLO_CLASS))}
    cpds: list[tuple[str, str | None, np.ndarray, float]] = []
    for c in CLASSES:
        for i in range(5):
            v = unit(dirs[c] + 0.3 * unit(rng.normal(size=d)))
            cpds.append((f"{c[:4].upper()}-{i + 1}", c, v, POTENCY[i % 4] if i < 4 else 1.4))
    cpds.append(("MIX", A, unit(dirs[A] + dirs[B]), 2.0))
    cpds.append(("UNK", None, dirs[CLASSES[2]], 2.0))
    cpds.append(("SOLO", SOLO_CLASS, dirs[SOLO_CLASS], 2.0))
    holdout = [f"{c[:4].upper()}-5" for c in CLASSES]
    rows, X, act = [], [], []
    for dose, amp in DOSES.items():
        for tp, tf in TIMEPOINTS.items():
            for w in range(n_dmso):
                rows.append(("DMSO", None, "negative_control", dose, tp, w))
                X.append(rng.normal(scale=noise, size=d))
            for name, moa, v, pot in cpds:
                eff = amp * tf * pot
                for w in range(wells):
                    rows.append((name, moa, "treatment", dose, tp, w))
                    X.append(rng.normal(scale=noise, size=d) + eff * v)
                act.append((name, dose, tp, eff, eff >= 0.8))
    meta = pl.DataFrame(
        rows,
        schema=["Metadata_compound", "Metadata_moa", "Metadata_role", "Metadata_dose",
                "Metadata_timepoint", "Metadata_replica"],
        orient="row",
    ).with_columns(pl.col("Metadata_replica").cast(pl.Utf8), Metadata_plate=pl.lit("R01-L01"))
    feats = pl.DataFrame(np.array(X), schema=[f"f{i:02d}" for i in range(d)])
    activity = pl.DataFrame(act, schema=["compound", "dose", "timepoint", "map_es", "active"],
                            orient="row")
    return pl.concat([meta, feats], how="horizontal"), activity, holdout


def compounds_table(profiles: pl.DataFrame) -> pl.DataFrame:
    """The compounds table (compound, moa, smiles, set) of a screen's profiles, as compounds.csv has it."""
    roles = profiles.select(
        pl.col("Metadata_compound").alias("compound"), pl.col("Metadata_moa").alias("moa"),
        pl.col("Metadata_role")).unique(maintain_order=True)
    return roles.select("compound", "moa", smiles=pl.lit("C"), set=pl.when(
        pl.col("Metadata_role") == "negative_control").then(pl.lit("control")).otherwise(pl.lit("training")))


def classes_of(profiles: pl.DataFrame) -> MoaClasses:
    """The MoA classes of the profiles' compounds table."""
    return MoaClasses.from_compounds(compounds_table(profiles))


#: the classes of :func:`make_profiles` (its compounds table lists them in this order)
SCREEN_CLASSES = MoaClasses((*CLASSES, SOLO_CLASS))


def per_condition_rows(rows, classes: MoaClasses = SCREEN_CLASSES) -> pl.DataFrame:
    """Hand-made per-condition rows: (compound, dose, tp, class → p[, active]), moa A."""
    out = []
    for cpd, dose, tp, probs, *active in rows:
        p = {c: 0.0 for c in classes.columns} | {f"p_{k}": v for k, v in probs.items()}
        out.append({"compound": cpd, "moa": A, "dose": dose, "timepoint": tp, "source": "cv",
                    "fold": 0, "active": active[0] if active else True, "status": "ok", "reason": None,
                    "n_wells": 2, **p})
    return pl.DataFrame(out)
