"""Training-free nuclei from brightfield: counts, masks and confluency against the truth.

    python benchmarks/exp_nuclei.py --seeds 1 2 [--n-fovs 24] [--size 512] [--no-images]

Synthetic FOVs: ``n_fovs`` FOVs of the ``small`` preset at ``size`` px drawn at random (per seed)
over its plates × timepoints × wells (compounds, doses and 4 h / 20 h: varied densities), rendered
directly with :func:`lcd_core.synth.fov.render_fov` (no export written). Truth: **live nuclei only**
(dead cells are 2–3 µm-radius dense bodies that a brightfield method sees as debris, and the area
filter drops them): the count is the FOV's ``n_nuclei`` (live cells with centre in the FOV), the
masks rasterise every live nucleus reaching into the image, confluency is the truth's (live cells).
Methods: ``brightfield-3`` (3 planes), ``brightfield-1`` (the in-focus plane only) and ``patches``
if ``lcd_core.nuclei.patches`` imports. Real fixtures: ``real-nuclei/aiseg-suppl3`` (3 fields with
curated masks: median IoU per field, count r over 256-px blocks of the 3 fields) and the
``harmony-v5`` U2OS field (count and confluency only, no truth). Parameters were chosen on
synthetic seed 0 and real-nuclei field f01; report on other seeds. Overlays: ``docs/img/nuclei_*.png``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from lcd_core.nuclei.brightfield import detect_brightfield  # noqa: E402
from lcd_core.nuclei.evaluate import block_counts, count_r, score_masks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LCD_SHARED", ROOT.parent / "shared"))


def synthetic_fovs(seed: int, n: int, size: int):
    """Yield ``(planes (3, H, W), nucleus truth labels, fov truth row, pixel_um)``."""
    from lcd_core.synth import truth as truthmod
    from lcd_core.synth.design import make_spec
    from lcd_core.synth.fov import render_fov
    from lcd_core.synth.screen import _Design

    spec = make_spec("small", image_size=size, workers=1)
    tasks = _Design.draw(spec, seed).tasks(Path("unused"), Path("unused"))
    picks = [(t, w) for t in tasks for w in t.wells]
    rng = np.random.default_rng(1000 + seed)
    for i in rng.choice(len(picks), size=min(n, len(picks)), replace=False):
        task, well = picks[i]
        planes, rows, fov, _ = render_fov(task, well, 1 + int(rng.integers(spec.fields)))
        live = {k: v[rows["state"] != "dead"] for k, v in rows.items()}
        yield np.stack(planes), truthmod.render_masks(live, (size, size))[0], fov, spec.pixel_size_um


def methods() -> dict:
    out = {"brightfield-3": lambda p, px: detect_brightfield(p, px),
           "brightfield-1": lambda p, px: detect_brightfield(p[p.shape[0] // 2][None], px)}
    try:
        from lcd_core.nuclei.patches import detect_patches

        out["patches"] = detect_patches
    except ImportError:
        pass
    return out


def _run(method, planes, px):
    t0 = time.perf_counter()
    nuc = method(planes, px)
    return nuc, time.perf_counter() - t0


def overlay(path: Path, image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None = None, crop: int = 384):
    """Contours of ``pred`` (red) and ``truth`` (cyan) on a 384-px crop of ``image``."""
    from skimage.io import imsave
    from skimage.segmentation import find_boundaries

    im = image[:crop, :crop].astype(np.float64)
    lo, hi = np.percentile(im, [1, 99])
    g = np.clip((im - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.dstack([g, g, g])
    if truth is not None:
        rgb[find_boundaries(truth[:crop, :crop], mode="inner")] = (0.0, 0.9, 1.0)
    rgb[find_boundaries(pred[:crop, :crop], mode="inner")] = (1.0, 0.15, 0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, (rgb * 255).astype(np.uint8), check_contrast=False)


def synthetic(seeds, n, size, images: bool) -> None:
    meths = methods()
    print(f"\n== synthetic ({n} FOVs × {size} px per seed; truth = live nuclei) ==")
    print(f"{'method':<15}{'seed':>5}{'count r':>9}{'med IoU':>9}{'rec@.5':>8}{'prec@.5':>8}"
          f"{'conf r':>8}{'conf bias':>10}{'n/true':>8}{'s/FOV':>8}")
    for seed in seeds:
        fovs = list(synthetic_fovs(seed, n, size))
        for name, meth in meths.items():
            rows = []
            for k, (planes, truth, fov, px) in enumerate(fovs):
                nuc, s = _run(meth, planes, px)
                sc = score_masks(truth, nuc.labels)
                rows.append((fov["n_nuclei"], nuc.n, sc.median_iou, sc.recall(), sc.precision(),
                             fov["confluency"], nuc.confluency, s))
                if images and k == 0 and seed == seeds[0]:
                    overlay(ROOT / "docs/img" / f"nuclei_synthetic_{name}.png", planes[0], nuc.labels, truth)
            a = np.array(rows, dtype=float)
            print(f"{name:<15}{seed:>5}{count_r(a[:, 0], a[:, 1]):>9.3f}{np.nanmedian(a[:, 2]):>9.3f}"
                  f"{np.nanmean(a[:, 3]):>8.2f}{np.nanmean(a[:, 4]):>8.2f}{count_r(a[:, 5], a[:, 6]):>8.3f}"
                  f"{np.mean(a[:, 6] - a[:, 5]):>10.3f}{a[:, 1].sum() / a[:, 0].sum():>8.2f}{a[:, 7].mean():>8.3f}")


def _centres(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels[labels > 0])
    yx = np.asarray(ndi.center_of_mass(labels > 0, labels, ids)).reshape(-1, 2)
    return yx[:, ::-1]


def real(images: bool) -> None:
    from lcd_core.nuclei.measurement import detect_measurement

    root = SHARED / "fixtures" / "real-nuclei" / "aiseg-suppl3"
    print("\n== real-nuclei/aiseg-suppl3 (1 plane, pixel size 0.38 µm estimated; f01 seen while tuning) ==")
    print(f"{'field':<7}{'n':>6}{'true':>6}{'med IoU':>9}{'rec@.5':>8}{'prec@.5':>8}{'conf':>7}{'s/FOV':>8}")
    tb, pb = [], []
    t0 = time.perf_counter()
    for f in detect_measurement(root / "Images"):
        s = time.perf_counter() - t0
        truth = tifffile.imread(root / "truth" / f"f{f.field:02d}_nuclei.tiff")
        sc = score_masks(truth, f.nuclei.labels)
        tb.append(block_counts(_centres(truth), truth.shape, 256))
        pb.append(block_counts(f.nuclei.centres, truth.shape, 256))
        print(f"f{f.field:02d}{'':<4}{f.nuclei.n:>6}{sc.n_true:>6}{sc.median_iou:>9.3f}{sc.recall():>8.2f}"
              f"{sc.precision():>8.2f}{f.nuclei.confluency:>7.2f}{s:>8.2f}")
        if images and f.field == 2:
            bf = tifffile.imread(root / "Images" / "r01c01f02p01-ch1sk1fk1fl1.tiff")
            overlay(ROOT / "docs/img" / "nuclei_real_aiseg_f02.png", bf, f.nuclei.labels, truth)
        t0 = time.perf_counter()
    print(f"count r over 256-px blocks of the 3 fields: {count_r(np.concatenate(tb), np.concatenate(pb)):.3f}")
    v5 = SHARED / "fixtures" / "phenix" / "harmony-v5"
    t0 = time.perf_counter()
    for f in detect_measurement(v5):
        print(f"\nharmony-v5 U2OS (1 plane, 1080², no truth): {f.nuclei.n} nuclei, confluency "
              f"{f.nuclei.confluency:.2f}, {time.perf_counter() - t0:.2f} s (incl. reading)")
        if images:
            bf = tifffile.imread(v5 / "r01c01f01p01-ch2sk1fk1fl1.tiff")
            overlay(ROOT / "docs/img" / "nuclei_real_harmony_v5.png", bf, f.nuclei.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--n-fovs", type=int, default=24)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-images", action="store_true")
    args = ap.parse_args()
    synthetic(args.seeds, args.n_fovs, args.size, not args.no_images)
    real(not args.no_images)


if __name__ == "__main__":
    main()
