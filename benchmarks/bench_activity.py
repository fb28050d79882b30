"""Benchmark: mAP-ES of a whole demo-sized screen, our kernel vs copairs on the same APs.

    python benchmarks/bench_activity.py                 # synthetic demo-sized profiles
    python benchmarks/bench_activity.py --home ~/.lcd   # well_embeddings of a materialized screen

Synthetic set (no ``--home``): the ``demo`` design — 5 replicas (R01 0.156, R02 0.625, R03 2.5,
R04 10, R05 10 µM) × 4 layouts × 54 wells (32 DMSO + 22 compounds) × 2 timepoints, 384-d, with
per-plate offsets and planted compound effects growing with dose (half of the compounds inert).

What is timed
-------------
* **ours**: ``lcd_core.profiling.activity.compute_activity`` end to end — every compound × dose ×
  timepoint with ``--n-draws`` (1000) draws, the matched nulls, Cohen's d, the tables.
* **copairs**: the same APs — identical query / positive / negative sets, re-drawn with the same
  seeded generators — computed by copairs 0.5's own pipeline stages: ``compute.get_similarity_fn
  ("cosine")`` on the positive and negative pairs, ``map.average_precision.build_rank_lists`` and
  ``compute.ap_contiguous``. That is ``copairs.map.average_precision`` minus its ``find_pairs``
  step, which cannot express per-draw sets (a query well recurs in many draws, so each draw's
  query gets its own row, a copy of the query well's features). Only the AP computation is timed
  for copairs (no draws, no effect sizes), so the ratio understates our end-to-end advantage.
* Also printed: copairs' public ``average_precision`` on one compound's draws (rows duplicated per
  draw, pairs found from metadata), as the per-AP cost of the public API.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lcd_core.profiling.activity import compute_activity  # noqa: E402
from lcd_core.profiling.draws import DrawSizes, _condition_n_neg, _rng, draw_sets  # noqa: E402
from lcd_core.profiling.profiles import feature_columns, to_cytomining  # noqa: E402


def synth_profiles(seed: int = 0, d: int = 384) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    reps = [("R01", "0.156uM", 0.156), ("R02", "0.625uM", 0.625), ("R03", "2.5uM", 2.5),
            ("R04", "10uM", 10.0), ("R05", "10uM", 10.0)]
    compounds = [f"CMP{i:02d}" for i in range(22)]
    dirs = {c: rng.normal(size=d) for c in compounds}
    potency = {c: (rng.uniform(0.3, 1.5) if i % 2 == 0 else 0.0) for i, c in enumerate(compounds)}
    rows, X = [], []
    for rep, dose, um in reps:
        rep_off = rng.normal(scale=0.3, size=d)
        for li in range(1, 5):
            for tp, tfac in (("04h", 0.5), ("20h", 1.0)):
                off = rep_off + rng.normal(scale=0.2, size=d)
                wells = [("DMSO", "negative_control")] * 32 + [(c, "treatment") for c in compounds]
                for wi, (c, role) in enumerate(wells):
                    x = off + rng.normal(size=d)
                    if role == "treatment":
                        x += potency[c] * tfac * np.log2(1 + um) / 3.5 * dirs[c]
                    rows.append((f"{rep}-L{li:02d}", tp, rep, f"L{li:02d}", dose, f"W{wi:02d}", c,
                                 None if c == "DMSO" else "MOA", role))
                    X.append(x)
    meta = pl.DataFrame(rows, orient="row", schema=[
        "Metadata_plate", "Metadata_timepoint", "Metadata_replica", "Metadata_layout",
        "Metadata_dose", "Metadata_well", "Metadata_compound", "Metadata_moa", "Metadata_role"])
    return pl.concat([meta, pl.DataFrame(np.asarray(X, np.float32),
                                         schema=[f"emb_{i:03d}" for i in range(d)],
                                         orient="row")], how="horizontal")


def read_home(home: Path, method: str) -> pl.DataFrame:
    """Normalized well profiles of a materialized screen, as the activity asset builds them:
    FOV rows of each timepoint normalized together, then averaged into wells."""
    from lcd_core.profiling.normalize import normalize_to_wells

    f = pl.read_parquet(str(home / "parquet" / "fov_embeddings" / "**" / "*.parquet"),
                        hive_partitioning=False)
    return pl.concat([normalize_to_wells(to_cytomining(g), method)[0]
                      for _, g in f.group_by("timepoint", maintain_order=True)])


def redraw(profiles: pl.DataFrame, n_draws: int, seed: int):
    """The exact draw sets compute_activity used, per condition (same generators)."""
    feats = feature_columns(profiles)
    out = []
    for (dose, tp), sub in profiles.group_by("Metadata_dose", "Metadata_timepoint"):
        ctrl = (sub["Metadata_role"] == "negative_control").to_numpy()
        k_neg = _condition_n_neg(sub, ctrl, 31, _cols())
        comps = sorted(set(sub.filter(~pl.Series(ctrl))["Metadata_compound"].to_list()))
        sets = [draw_sets(sub, c, _rng(seed, dose, tp, c), DrawSizes(3, k_neg, n_draws))
                for c in comps]
        modes = sorted({(s.fallback, s.pos.shape[1]) for s in sets if s.n_draws})
        sets += [draw_sets(sub, None, _rng(seed, dose, tp, "__null__", fb, kp),
                           DrawSizes(kp, k_neg, n_draws), fallback=fb) for fb, kp in modes]
        keys = comps + [None] * len(modes)
        out.append((dose, tp, sub.select(feats).to_numpy().astype(np.float64), sets, keys))
    return out


def _cols():
    from lcd_core.profiling.draws import ActivityColumns

    return ActivityColumns()


def copairs_aps(X: np.ndarray, sets) -> np.ndarray:
    """copairs' pipeline stages on explicit pairs; one row per draw query (a feature copy)."""
    from copairs import compute
    from copairs.map.average_precision import build_rank_lists

    n = X.shape[0]
    q = np.concatenate([s.query for s in sets])
    m = q.size
    feats = np.vstack([X, X[q]])
    vq = n + np.arange(m)
    # sets may differ in list sizes (n_pos falls below 3 where a compound has fewer positives)
    starts = np.cumsum([0] + [s.n_draws for s in sets])
    pos_pairs = np.concatenate([np.stack([np.repeat(vq[a:b], s.pos.shape[1]), s.pos.ravel()], 1)
                                for s, a, b in zip(sets, starts[:-1], starts[1:])])
    neg_pairs = np.concatenate([np.stack([np.repeat(vq[a:b], s.neg.shape[1]), s.neg.ravel()], 1)
                                for s, a, b in zip(sets, starts[:-1], starts[1:])])
    pos_pairs, neg_pairs = pos_pairs[pos_pairs[:, 1] >= 0], neg_pairs[neg_pairs[:, 1] >= 0]
    sim = compute.get_similarity_fn("cosine", progress_bar=False)
    pos_sims = sim(feats, pos_pairs, 20000)
    neg_sims = sim(feats, neg_pairs, 20000)
    paired, rel, counts = build_rank_lists(pos_pairs, neg_pairs, pos_sims, neg_sims)
    ap, _ = compute.ap_contiguous(rel, counts)
    return ap[np.searchsorted(paired, vq)]


def copairs_public_per_ap(X: np.ndarray, ds, n: int = 300) -> float:
    """Seconds per AP of copairs' public average_precision (rows duplicated per draw)."""
    from copairs.map import average_precision

    meta, rows = [], []
    for i in range(min(n, ds.n_draws)):
        for kind, j in [("q", ds.query[i])] + [("p", j) for j in ds.pos[i]] + [
                ("n", j) for j in ds.neg[i]]:
            meta.append(dict(draw=i, poskey=f"d{i}" if kind != "n" else f"n{len(meta)}",
                             is_ctrl=kind == "n"))
            rows.append(X[j])
    t = time.perf_counter()
    average_precision(pd.DataFrame(meta), np.asarray(rows), ["poskey"], [], ["draw"], ["is_ctrl"],
                      progress_bar=False)
    return (time.perf_counter() - t) / min(n, ds.n_draws)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, help="LCD_HOME of a materialized screen")
    ap.add_argument("--norm", default="mad_harmony_fov", help="normalization for --home")
    ap.add_argument("--n-draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats of ours (best of)")
    ap.add_argument("--copairs-repeats", type=int, default=1,
                    help="timing repeats of copairs (best of; each is tens of seconds)")
    args = ap.parse_args()
    print(f"load average at start: {_loadavg()}")

    t = time.perf_counter()
    prof = read_home(args.home, args.norm) if args.home else synth_profiles(args.seed)
    print(f"profiles: {prof.height} wells × {len(feature_columns(prof))} features "
          f"({'home ' + str(args.home) if args.home else 'synthetic demo design'}; "
          f"{time.perf_counter() - t:.1f} s to build)")

    best = np.inf
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = compute_activity(prof, n_draws=args.n_draws, seed=args.seed)
        best = min(best, time.perf_counter() - t)
    # the same run keeping every draw's AP (untimed), to compare values with copairs
    res = compute_activity(prof, n_draws=args.n_draws, seed=args.seed, keep_draws=True)
    act = res.activity
    n_ap = res.draws.height
    print(f"ours   : mAP-ES for {act.height} compound × condition rows + "
          f"{res.null.height} nulls = {n_ap} APs in {best:.3f} s (best of {args.repeats})")

    conds = redraw(prof, args.n_draws, args.seed)
    t_cp = np.inf
    for _ in range(max(1, args.copairs_repeats)):
        t = time.perf_counter()
        ref = {}
        for dose, tp, X, sets, keys in conds:
            live = [(s, k) for s, k in zip(sets, keys) if s.n_draws]
            aps = copairs_aps(X, [s for s, _ in live])
            off = 0
            for s, k in live:
                ref[(dose, tp, k, s.fallback, s.pos.shape[1])] = aps[off:off + s.n_draws]
                off += s.n_draws
        t_cp = min(t_cp, time.perf_counter() - t)

    # our APs, from res.draws, in the same grouping
    ours = {}
    d = res.draws
    null_kp = {(r["dose"], r["timepoint"], r["fallback"]): r["n_pos"]
               for r in res.null.iter_rows(named=True)}
    act_kp = {(r["dose"], r["timepoint"], r["compound"]): r["n_pos"]
              for r in act.iter_rows(named=True)}
    for (dose, tp, c, fb), g in d.group_by("dose", "timepoint", "compound", "fallback"):
        kp = act_kp[(dose, tp, c)] if c is not None else null_kp[(dose, tp, fb)]
        ours[(dose, tp, c, fb, kp)] = g.sort("draw")["ap"].to_numpy()
    assert set(ours) == set(ref), "draw sets differ between runs"
    diff = max(float(np.max(np.abs(ours[k] - ref[k]))) for k in ref)
    n_ref = sum(v.size for v in ref.values())
    print(f"copairs: same {n_ref} APs (build_rank_lists + ap_contiguous on explicit pairs) "
          f"in {t_cp:.3f} s (best of {max(1, args.copairs_repeats)})")
    print(f"speed-up: {t_cp / best:.1f}× (ours end-to-end vs copairs AP only)")
    print(f"max |AP ours − AP copairs| = {diff:.3e}")

    first = next(s for s in conds[0][3] if s.n_draws)
    per = copairs_public_per_ap(conds[0][2], first)
    print(f"copairs public average_precision (rows duplicated per draw): {per * 1e3:.2f} ms/AP "
          f"→ ≈ {per * n_ap:.0f} s for this screen's {n_ap} APs")
    print(f"active at mAP-ES ≥ 0.8: {int(act['active'].sum())} / {act.height}")
    print(f"load average at end: {_loadavg()}")


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
