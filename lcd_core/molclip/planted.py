"""A planted screen for tests and demos of MolCLIP: real drug structures, known phenotypes.

``planted_screen`` writes well profiles in the cytomining convention (the input of
:func:`lcd_core.molclip.videos.build_videos`) and a compound table (``compound, moa, smiles, set``).
The phenotype of a compound is planted as a function of its structure and MoA, so both the video
encoder and the molecule branch have something real to learn:

``x(well, t) = occ(dose) · g_moa(t) · (a · u_moa + b · P·fp_c / ‖P·fp_c‖) + o_replica + o_well + ε``

* ``u_moa``: a unit class direction; ``g_moa(t) = 1 − exp(−t / onset_moa)`` grows over time, with a
  per-MoA onset, so the temporal shape carries information;
* ``P·fp_c``: a fixed random projection of the centred Morgan fingerprint into a small signature
  subspace (structure → phenotype; two drugs sharing substructures look alike);
* ``occ(dose) = d / (d + 1 µM)``: replicas carry the design's doses (R01 0.156 µM … R04/R05 10 µM);
* nuisance: a replica offset, a well offset constant over time, and per-timepoint noise, all in
  every dimension (the signal lives in ``n_signal`` of ``n_features`` dimensions).

DMSO wells (``Metadata_role = negative_control``, MoA null) carry only the nuisance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from lcd_core.molclip.molecule import morgan_fingerprints
from lcd_core.synth.drugs import drugs_of

__all__ = ["DRUGS", "PLANTED_DOSES", "planted_screen"]

#: The MoAs in the order the planted screen deals them.
_PLANTED_MOAS: tuple[str, ...] = ("HDAC", "tubulin polymerization", "topoisomerase", "PARP", "HSP", "JAK",
                                  "Aurora kinase", "protein synthesis", "retinoid receptor agonist", "ATPase")


def _distinct(n: int) -> tuple[tuple[str, str, str], ...]:
    """``n`` drugs per MoA from the generator's checked table (:mod:`lcd_core.synth.drugs`), in its
    order, skipping any whose Morgan fingerprint repeats one already taken (stereoisomers such as
    tretinoin / isotretinoin share it)."""
    out, seen = [], set()
    for moa in _PLANTED_MOAS:
        taken = 0
        for d in drugs_of(moa):
            key = morgan_fingerprints([d.smiles])[0].tobytes()
            if taken < n and key not in seen:
                out.append((d.name, moa, d.smiles))
                seen.add(key)
                taken += 1
    return tuple(out)


#: Real drugs, four per MoA, Morgan-distinct: (name, MoA, SMILES).
DRUGS: tuple[tuple[str, str, str], ...] = _distinct(4)

#: Dose per replica in the multi-dose design (R01 … R05).
PLANTED_DOSES: tuple[str, ...] = ("0.156uM", "0.625uM", "2.5uM", "10uM", "10uM")

_MOA_ORDER = tuple(dict.fromkeys(m for _, m, _ in DRUGS))


def _pick_drugs(n_compounds: int, n_moas: int) -> list[tuple[str, str, str]]:
    """``n_compounds`` drugs dealt round-robin over the first ``n_moas`` MoAs."""
    if not 1 <= n_moas <= len(_MOA_ORDER):
        raise ValueError(f"n_moas must be 1..{len(_MOA_ORDER)}, got {n_moas}")
    per = {m: [d for d in DRUGS if d[1] == m] for m in _MOA_ORDER[:n_moas]}
    if not 1 <= n_compounds <= sum(len(v) for v in per.values()):
        raise ValueError(f"n_compounds must be 1..{sum(len(v) for v in per.values())} for {n_moas} MoAs")
    order = [v[i] for i in range(max(len(v) for v in per.values())) for v in per.values() if i < len(v)]
    return order[:n_compounds]


def _signatures(drugs: list[tuple[str, str, str]], n_signal: int, rng: np.random.Generator) -> np.ndarray:
    """(C, n_signal) planted signature per drug: class direction + projected structure."""
    from lcd_core.molclip.molecule import morgan_fingerprints

    moas = sorted({m for _, m, _ in drugs})
    u = rng.standard_normal((len(moas), n_signal))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    fp = morgan_fingerprints([s for _, _, s in drugs]).astype(np.float64)
    s = (fp - fp.mean(0)) @ rng.standard_normal((fp.shape[1], n_signal))
    s /= np.linalg.norm(s, axis=1, keepdims=True) + 1e-12
    return np.stack([0.8 * u[moas.index(m)] + 0.6 * s[i] for i, (_, m, _) in enumerate(drugs)])


def planted_screen(
    n_compounds: int = 12,
    n_moas: int = 4,
    n_replicas: int = 3,
    n_layouts: int = 2,
    wells_per_plate: int = 1,
    n_dmso: int = 2,
    n_timepoints: int = 5,
    n_features: int = 32,
    n_signal: int = 8,
    noise: float = 1.0,
    holdout: int = 0,
    missing: float = 0.0,
    doses: Sequence[str] = PLANTED_DOSES,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Well profiles and compound table of a planted screen.

    Parameters
    ----------
    n_compounds, n_moas
        Drugs taken from :data:`DRUGS`, dealt round-robin over the first ``n_moas`` MoAs.
    n_replicas, n_layouts, wells_per_plate
        Plates ``R{r}-L{l}``; every plate holds each compound ``wells_per_plate`` times.
    n_dmso
        DMSO wells per plate.
    n_timepoints
        Timepoints ``04h, 08h, …`` (every 4 h).
    n_features, n_signal
        Feature dimension (``f_000 …``) and the dimension of the signature subspace.
    noise
        Norm of the per-timepoint noise relative to a full-effect signature (norm 3): per-dimension
        standard deviation ``3 · noise / √n_features``; well offsets have the same size, replica
        offsets half of it.
    holdout
        The last ``holdout`` compounds get ``set = "holdout"``.
    missing
        Fraction of (well, timepoint) rows dropped at random (never a well's last row).
    doses
        Dose key per replica (cycled); the signal scales with ``d / (d + 1 µM)``.
    seed
        Random seed (everything is a function of it).

    Returns
    -------
    tuple of polars.DataFrame
        ``(profiles, compounds)``.
    """
    rng = np.random.default_rng(seed)
    drugs = _pick_drugs(n_compounds, n_moas)
    basis = np.linalg.qr(rng.standard_normal((n_features, n_signal)))[0].T  # (n_signal, D)
    sig = _signatures(drugs, n_signal, rng) @ basis * 3.0
    onset = {m: 4.0 + 8.0 * i / max(1, n_moas - 1) for i, m in enumerate(_MOA_ORDER[:n_moas])}
    hours = [4 * (t + 1) for t in range(n_timepoints)]
    sd = 3.0 * noise / np.sqrt(n_features)
    rows = []
    for r in range(n_replicas):
        dose = doses[r % len(doses)]
        occ = float(dose[:-2]) / (float(dose[:-2]) + 1.0)
        rep_off = rng.standard_normal(n_features) * sd / 2
        for lay in range(n_layouts):
            content = [(c, w) for c in range(len(drugs)) for w in range(wells_per_plate)]
            content += [(-1, w) for w in range(n_dmso)]
            wells = rng.permutation(len(content))
            for (c, _), wi in zip(content, wells):
                well = f"{'ABCDEFGHIJKLMNOP'[wi // 22]}{wi % 22 + 2:02d}"
                well_off = rng.standard_normal(n_features) * sd
                for ti, h in enumerate(hours):
                    x = rep_off + well_off + rng.standard_normal(n_features) * sd
                    if c >= 0:
                        x = x + occ * (1 - np.exp(-h / onset[drugs[c][1]])) * sig[c]
                    rows.append((r, lay, well, c, ti, h, x))
    return _profiles_frame(rows, drugs, n_features, missing, doses, rng), _compound_frame(drugs, holdout)


def _profiles_frame(rows, drugs, n_features, missing, doses, rng) -> pl.DataFrame:
    keep = rng.uniform(size=len(rows)) >= missing
    last = max(row[4] for row in rows)
    keep[[i for i, row in enumerate(rows) if row[4] == last]] = True
    rows = [row for row, k in zip(rows, keep) if k]
    feats = np.stack([row[6] for row in rows]).astype(np.float64)
    meta = pl.DataFrame(
        {
            "Metadata_plate": [f"R{r + 1:02d}-L{lay + 1:02d}" for r, lay, *_ in rows],
            "Metadata_well": [row[2] for row in rows],
            "Metadata_replica": [f"R{row[0] + 1:02d}" for row in rows],
            "Metadata_layout": [f"L{row[1] + 1:02d}" for row in rows],
            "Metadata_dose": [doses[row[0] % len(doses)] for row in rows],
            "Metadata_timepoint": [f"{row[5]:02d}h" for row in rows],
            "Metadata_compound": [drugs[row[3]][0] if row[3] >= 0 else "DMSO" for row in rows],
            "Metadata_moa": [drugs[row[3]][1] if row[3] >= 0 else None for row in rows],
            "Metadata_role": ["treatment" if row[3] >= 0 else "negative_control" for row in rows],
        },
        schema_overrides={"Metadata_moa": pl.String},
    )
    return meta.hstack(pl.DataFrame(feats, schema=[f"f_{j:03d}" for j in range(n_features)]))


def _compound_frame(drugs, holdout: int) -> pl.DataFrame:
    n = len(drugs)
    return pl.DataFrame(
        {
            "compound": [d[0] for d in drugs],
            "moa": [d[1] for d in drugs],
            "smiles": [d[2] for d in drugs],
            "set": ["holdout" if i >= n - holdout else "training" for i in range(n)],
        }
    )
