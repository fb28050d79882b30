"""Figures of MolCLIP for the UI, as PNG bytes (matplotlib Agg; ``_png`` as in :mod:`lcd_core.plots`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["pca_2d", "joint_space_figure", "retrieval_curves", "loss_curves"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(N, 2) projection on the two leading principal axes (sign fixed: largest |loading| > 0)."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2, [np.argmax(np.abs(v)) for v in vt[:2]]].diagonal())[:, None]
    out = xc @ vt.T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def _colours(labels: Sequence[str | None]) -> dict[str, tuple]:
    known = sorted({m for m in labels if m})
    cmap = plt.get_cmap("tab10" if len(known) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(known)}


def joint_space_figure(video_emb: np.ndarray, video_moa: Sequence[str | None], molecule_emb: np.ndarray,
                       molecule_moa: Sequence[str | None], molecule_names: Sequence[str] | None = None,
                       title: str = "MolCLIP joint space (PCA)") -> bytes:
    """2-D PCA of video (dots) and molecule (stars) embeddings together, coloured by MoA.

    Both sets live in the same joint space, so one PCA is fitted on their union; unknown MoA is
    grey. Molecule names are written next to their stars when there are at most 40.
    """
    v, m = np.asarray(video_emb), np.asarray(molecule_emb)
    if len(v) != len(video_moa) or len(m) != len(molecule_moa):
        raise ValueError("embeddings and MoA labels differ in length")
    xy = pca_2d(np.vstack([v, m]))
    pv, pm = xy[: len(v)], xy[len(v):]
    col = _colours([*video_moa, *molecule_moa])
    fig, ax = plt.subplots(figsize=(6.5, 5))
    grey = (0.6, 0.6, 0.6, 1.0)
    ax.scatter(pv[:, 0], pv[:, 1], s=10, alpha=0.45, c=[col.get(a, grey) for a in video_moa], linewidths=0)
    ax.scatter(pm[:, 0], pm[:, 1], s=120, marker="*", c=[col.get(a, grey) for a in molecule_moa],
               edgecolors="k", linewidths=0.6, zorder=3)
    if molecule_names is not None and len(molecule_names) <= 40:
        for (x, y), name in zip(pm, molecule_names):
            ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for label, c in col.items():
        ax.scatter([], [], c=[c], s=20, label=label)
    ax.scatter([], [], c="w", edgecolors="k", marker="*", s=80, label="molecule")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def retrieval_curves(ranks: Mapping[str, Sequence[int]], n_molecules: int, max_k: int | None = None,
                     title: str = "zero-shot molecule retrieval") -> bytes:
    """Top-k hit rate against k (one line per entry of ``ranks``, e.g. per model), with random
    retrieval ``k / n_molecules`` dashed."""
    if n_molecules < 1:
        raise ValueError("n_molecules must be ≥ 1")
    ks = np.arange(1, (max_k or n_molecules) + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, r in ranks.items():
        r = np.asarray(r)
        hit = (r[:, None] <= ks[None, :]).mean(0) if len(r) else np.full(len(ks), np.nan)
        ax.step(ks, hit, where="post", label=f"{label} (n={len(r)})")
    ax.plot(ks, np.minimum(ks, n_molecules) / n_molecules, "k--", lw=0.8, label="random")
    ax.set_xlabel("k")
    ax.set_ylabel("top-k hit rate")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def loss_curves(history: Sequence[Mapping], title: str = "MolCLIP training") -> bytes:
    """Per-epoch losses of a training run (``MolClip.history``): metric (SupCon), CLIP and total,
    with the learned logit scale on a second axis when the molecule branch was trained."""
    if not history:
        raise ValueError("empty training history (epochs=0?)")
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(ep, [h["metric"] for h in history], marker=".", label="metric (SupCon)")
    has_clip = any(h.get("clip") is not None for h in history)
    if has_clip:
        ax.plot(ep, [np.nan if h["clip"] is None else h["clip"] for h in history], marker=".", label="CLIP")
        ax.plot(ep, [h["total"] for h in history], color="k", lw=0.8, label="total")
        ax2 = ax.twinx()
        ax2.plot(ep, [h["logit_scale"] for h in history], color="grey", ls=":", label="logit scale")
        ax2.set_ylabel("logit scale", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)
