"""The ``lcd`` console script: what users do outside the Dagster UI.

``lcd inspect PATH``  what a Phenix measurement holds
``lcd synth OUT``     write a synthetic screen (exports + metadata + ground truth)
``lcd demo``          a synthetic screen end to end through Dagster, under ``$LCD_HOME``
``lcd pretrain``      self-supervised pre-training of the ablation variants + the ablation table
``lcd ui``            the Dagster UI on 127.0.0.1
``lcd sql QUERY``     a query against the warehouse
``lcd export``        profiles in the cytomining convention (Metadata_* + features)
``lcd nuclei PATH``   nuclei counts, centres and confluency per field, from brightfield
``lcd search``        molecule-aware phenotype search in MolCLIP's joint space (--compound / --smiles)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


def _home(args) -> Path:
    from lcd_assets.resources import lcd_home_from_env

    return Path(args.home).expanduser().resolve() if args.home else lcd_home_from_env()


def cmd_inspect(args) -> int:
    from lcd_core.io.describe import describe, format_text
    from lcd_core.io.phenix import PhenixError, read_index

    try:
        d = describe(read_index(Path(args.path)))
    except (PhenixError, FileNotFoundError) as exc:
        print(f"lcd inspect: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(d, indent=2, default=str) if args.json else format_text(d))
    return 0


def cmd_synth(args) -> int:
    from lcd_core.synth import generate_screen

    res = generate_screen(Path(args.out), preset=args.preset, seed=args.seed, **_overrides(args))
    print(f"wrote synthetic screen {args.preset!r} (seed {args.seed}) to {args.out}: {res}")
    return 0


def _overrides(args) -> dict:
    """Screen design knobs given on the command line (the preset's values otherwise)."""
    return {} if args.polypharmacology is None else {"n_polypharmacology": args.polypharmacology}


def cmd_demo(args) -> int:
    from lcd_assets.demo import run_demo

    home = _home(args)
    print(f"LCD_HOME={home}")
    res = run_demo(home, preset=args.preset, seed=args.seed, checkpoint=args.checkpoint, overrides=_overrides(args),
                   workers=args.workers)
    print("\n== lcd demo summary ==")
    for k, v in res.counts.items():
        print(f"  {k:18s} {v:>8d} rows")
    for k, v in res.seconds.items():
        print(f"  {k:18s} {v:>8.1f} s")
    print(f"  runs: {res.runs}")
    for line in res.science:
        print(f"  {line}")
    if res.failed:
        print(f"  {len(res.failed)} runs FAILED:")
        for f in res.failed:
            print(f"    {f}")
    print(
        f"\nOpen the UI:  LCD_HOME={home} lcd ui   (then http://127.0.0.1:3000)\n"
        f"Query:        LCD_HOME={home} lcd sql \"SELECT * FROM well_embeddings LIMIT 5\""
    )
    return 1 if res.failed else 0


def cmd_pretrain(args) -> int:
    from lcd_assets.demo import run_pretraining

    home = _home(args)
    print(f"LCD_HOME={home}")
    res = run_pretraining(home, variants=args.variant, steps=args.steps, time_budget_s=args.time_budget,
                          num_threads=args.threads, train=not args.ablation_only)
    print("\n== lcd pretrain summary ==")
    for k, v in res.seconds.items():
        print(f"  {k:32s} {v:>8.1f} s")
    for line in res.science:
        print(f"  {line}")
    for f in res.failed:
        print(f"  FAILED: {f}")
    return 1 if res.failed else 0


def cmd_ui(args) -> int:
    from lcd_assets.demo import prepare_instance

    home = _home(args)
    dagster_home = prepare_instance(home)
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(dagster_home / "workspace.yaml"),  # the code location named `lcd`, as in workspace.yaml
        "-h", "127.0.0.1", "-p", str(args.port),
    ]
    print(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} {' '.join(cmd)}")
    return subprocess.call(cmd, env=os.environ.copy())


def cmd_sql(args) -> int:
    import polars as pl

    from lcd_core.io.warehouse import Warehouse

    df = Warehouse(_home(args)).query(args.query)
    with pl.Config(tbl_rows=args.rows, tbl_cols=20, fmt_str_lengths=40):
        print(df)
    return 0


def cmd_export(args) -> int:
    import polars as pl

    from lcd_core.io.warehouse import Warehouse

    wh = Warehouse(_home(args))
    root = wh.parquet_root / args.dataset
    files = sorted(root.glob("**/*.parquet"))
    if not files:
        print(f"lcd export: no Parquet files under {root}", file=sys.stderr)
        return 2
    df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    for col, value in (("Metadata_dose", args.dose), ("Metadata_timepoint", args.timepoint)):
        if value and col in df.columns:
            df = df.filter(pl.col(col) == value)
    df = df.drop([c for c in ("dose", "timepoint") if c in df.columns and f"Metadata_{c}" in df.columns])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (df.write_csv if out.suffix == ".csv" else df.write_parquet)(out)
    print(f"wrote {df.height} profiles × {df.width} columns to {out}")
    return 0


def _write_labels(path: Path, labels) -> None:
    """One label TIFF (uint16 if it fits, else int32), written to a temporary file then renamed."""
    import numpy as np
    import tifffile

    dtype = np.uint16 if int(labels.max(initial=0)) <= np.iinfo(np.uint16).max else np.int32
    tmp = path.with_name(f".{path.name}.tmp")
    tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib")
    os.replace(tmp, path)


def cmd_nuclei(args) -> int:
    from lcd_core.io.phenix import PhenixError
    from lcd_core.nuclei.measurement import detect_measurement

    masks = Path(args.masks) if args.masks else None
    if masks is not None:
        masks.mkdir(parents=True, exist_ok=True)
    try:
        fovs = list(detect_measurement(Path(args.path), method=args.method))
    except (PhenixError, FileNotFoundError, ValueError) as exc:
        print(f"lcd nuclei: {exc}", file=sys.stderr)
        return 2
    several_t = len({f.timepoint for f in fovs}) > 1
    for f in fovs:
        if masks is not None:
            name = f"{f.well}_f{f.field}" + (f"_t{f.timepoint}" if several_t else "") + ".tiff"
            _write_labels(masks / name, f.nuclei.labels)
    if args.json:
        print(json.dumps({"fovs": [f.to_json() for f in fovs]}))
        return 0
    print(f"{'well':<6}{'field':>6}{'timepoint':>10}{'n_nuclei':>10}{'confluency':>12}  centres (x, y) px")
    for f in fovs:
        centres = " ".join(f"({x:.0f},{y:.0f})" for x, y in f.nuclei.centres[:8])
        more = f" … +{f.nuclei.n - 8}" if f.nuclei.n > 8 else ""
        print(f"{f.well:<6}{f.field:>6}{f.timepoint:>10}{f.nuclei.n:>10}{f.nuclei.confluency:>12.3f}  {centres}{more}")
    return 0


def _search_inputs(home: Path):
    """(model, videos, compound table) of a home whose ``timelapse`` job has run."""
    from lcd_assets.resources import MOLCLIP_MODEL
    from lcd_assets.timelapse.profiles import profiles_of
    from lcd_core.io.warehouse import Warehouse
    from lcd_core.molclip import load_molclip
    from lcd_core.pipeline import molclip as steps

    folder = home / "models" / MOLCLIP_MODEL
    if not (folder / "config.json").exists():
        raise ValueError(f"no MolCLIP model in {folder}: materialize molclip_model (the timelapse job) first")
    model, wh = load_molclip(folder), Warehouse(home)
    for source in ("model", "handcrafted"):  # the profiles the model was trained on: those with its features
        try:
            profiles, features = profiles_of(wh, source)
        except ValueError:
            continue
        if set(model.features) <= set(features):
            break
    else:
        raise ValueError(f"no profiles in {home} hold the MolCLIP model's features ({model.features[:3]} …)")
    videos = steps.screen_videos(profiles, model.features)
    return model, videos, steps.screen_compounds(wh.query("SELECT * FROM compounds"))


def cmd_search(args) -> int:
    from lcd_core.molclip import search_by_compound, search_by_smiles

    try:
        model, videos, compounds = _search_inputs(_home(args))
        if args.compound:
            found = search_by_compound(model, videos, compounds, args.compound, k=args.k)
            parts = {"molecules": found.molecules, "phenotypes": found.phenotypes}
        else:
            found = search_by_smiles(model, videos, compounds, args.smiles, k=args.k)
            parts = {"compounds": found.compounds, "wells": found.wells}
    except ValueError as exc:
        print(f"lcd search: {exc}", file=sys.stderr)
        return 2
    query = {"compound": args.compound} if args.compound else {"smiles": args.smiles}
    if args.json:
        print(json.dumps({"query": query, **{k: v.to_dicts() for k, v in parts.items()}}, indent=2, default=str))
        return 0
    print(f"query: {query}")
    for name, table in parts.items():
        print(f"\n{name} (nearest first; score = cosine in the joint space)")
        print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lcd", description="Live Cell Dynamics platform")
    p.add_argument("--home", help="LCD_HOME (default: $LCD_HOME or ~/.lcd)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="what a Phenix measurement holds")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("synth", help="write a synthetic screen")
    s.add_argument("out")
    s.add_argument("--preset", default="demo", choices=["demo", "timelapse", "small"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--polypharmacology", type=int, metavar="N",
                   help="planted two-MoA compounds, 0-3 (default: the preset's, 1)")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("demo", help="a synthetic screen end to end through Dagster")
    s.add_argument("--preset", default="demo", choices=["demo", "timelapse", "small"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint", help="model folder that embeds the tiles (e.g. ssl-pa_dino_barlow_xb)")
    s.add_argument("--workers", type=int, default=2, help="processes running partitions side by side (default 2)")
    s.add_argument("--polypharmacology", type=int, metavar="N",
                   help="planted two-MoA compounds, 0-3 (default: the preset's, 1); a validation screen "
                        "for the polypharmacology readings, e.g. --seed 1 --polypharmacology 3")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("pretrain", help="pre-train the ablation variants on an acquired screen, then the ablation")
    s.add_argument("--variant", action="append", help="one variant (repeatable; default: all five)")
    s.add_argument("--steps", type=int, default=0, help="optimizer steps per variant (default: the preset's)")
    s.add_argument("--time-budget", type=float, default=0.0, help="seconds per variant call (resumable)")
    s.add_argument("--threads", type=int, default=0, help="torch threads for training (default: torch's)")
    s.add_argument("--ablation-only", action="store_true", help="re-score the existing checkpoints, no training")
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    s.add_argument("--port", type=int, default=3000)
    s.set_defaults(func=cmd_ui)

    s = sub.add_parser("export", help="profiles in the cytomining convention, for pycytominer / copairs")
    s.add_argument("dataset", nargs="?", default="normalized_profiles",
                   choices=["normalized_profiles", "condition_profiles"])
    s.add_argument("out", help="output file (.parquet or .csv)")
    s.add_argument("--dose")
    s.add_argument("--timepoint")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("nuclei", help="nuclei and confluency per field of a measurement, from brightfield")
    s.add_argument("path", help="measurement folder (or its index file)")
    s.add_argument("--json", action="store_true", help='print {"fovs": [...]} with every centre')
    s.add_argument("--method", default="brightfield", help="detector: brightfield (default) or patches")
    s.add_argument("--masks", metavar="DIR", help="write one label TIFF per field: <well>_f<field>[_t<tp>].tiff")
    s.set_defaults(func=cmd_nuclei)

    s = sub.add_parser("search", help="molecule-aware phenotype search (MolCLIP)")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--compound", help="a library compound: the molecules and compounds nearest its phenotype")
    which.add_argument("--smiles", help="any structure: the compounds and wells nearest its molecule embedding")
    s.add_argument("-k", type=int, default=10, help="rows per list (default 10)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("sql", help="query the DuckDB warehouse")
    s.add_argument("query")
    s.add_argument("--rows", type=int, default=20)
    s.set_defaults(func=cmd_sql)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
