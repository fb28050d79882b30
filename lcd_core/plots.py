"""Figures for the UI, as PNG bytes (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def ap_distribution(compound_aps: np.ndarray, null_aps: np.ndarray, title: str) -> bytes:
    """Histogram of a compound's draw APs against the DMSO null (the paper's Fig. 6 shape)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.linspace(0, 1, 41)
    ax.hist(null_aps, bins=bins, alpha=0.6, label="DMSO null", color="grey", density=True)
    ax.hist(compound_aps, bins=bins, alpha=0.6, label="compound", color="tab:red", density=True)
    ax.set_xlabel("average precision")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def sensitivity_curves(sens: pl.DataFrame) -> bytes:
    """Fraction of compounds active vs mAP-ES threshold, one line per dose × timepoint."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for (dose, tp), g in sens.sort("threshold").group_by(["dose", "timepoint"], maintain_order=True):
        ax.plot(g["threshold"], g["sensitivity"], marker=".", label=f"{dose} {tp}")
    ax.axvline(0.8, color="k", lw=0.8, ls="--")
    ax.set_xlabel("mAP-ES threshold")
    ax.set_ylabel("fraction of compounds active")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def es_heatmap(activity: pl.DataFrame, dose_order: list[str]) -> bytes:
    """mAP-ES per compound (rows) over dose × timepoint (columns)."""
    act = activity.with_columns((pl.col("dose") + " " + pl.col("timepoint")).alias("condition"))
    conds = [f"{d} {t}" for d in dose_order for t in sorted(act["timepoint"].unique().to_list())]
    conds = [c for c in conds if c in set(act["condition"].to_list())]
    compounds = sorted(act["compound"].unique().to_list())
    grid = np.full((len(compounds), len(conds)), np.nan)
    ci = {c: i for i, c in enumerate(compounds)}
    cj = {c: j for j, c in enumerate(conds)}
    for c, cond, es in act.select(["compound", "condition", "map_es"]).iter_rows():
        grid[ci[c], cj[cond]] = es
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(conds), 1.0 + 0.22 * len(compounds)))
    im = ax.imshow(grid, aspect="auto", cmap="magma", vmin=min(0.0, np.nanmin(grid)), vmax=np.nanmax(grid))
    ax.set_xticks(range(len(conds)), conds, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(compounds)), compounds, fontsize=7)
    fig.colorbar(im, ax=ax, label="mAP-ES")
    return _png(fig)


def grouped_bars(table: pl.DataFrame, group: str, series: str, value: str, title: str) -> bytes:
    """Bars of ``value`` per ``group`` (x) and ``series`` (colour), e.g. mAP per dose per method."""
    groups = table[group].unique(maintain_order=True).to_list()
    names = table[series].unique(maintain_order=True).to_list()
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for i, name in enumerate(names):
        sub = {g: v for g, v in table.filter(pl.col(series) == name).select([group, value]).iter_rows()}
        heights = [np.nan if sub.get(g) is None else sub[g] for g in groups]  # missing or null: a gap
        ax.bar(np.arange(len(groups)) + i * width, heights, width, label=name)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups, fontsize=8)
    ax.set_ylabel(value)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def metric_curves(scores: pl.DataFrame) -> bytes:
    """Weighted F1, accuracy and top-3 accuracy vs number of doses, per set × mode (Fig. 3A)."""
    metrics = ["weighted_f1", "accuracy", "top3_accuracy"]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3), sharey=True)
    for ax, m in zip(axes, metrics):
        for (set_name, mode), g in scores.sort("step").group_by(["set", "mode"], maintain_order=True):
            ax.plot(g["step"], g[m], marker="o", ls="-" if mode == "incremental" else ":",
                    label=f"{set_name} {mode}")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("doses included")
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    return _png(fig)


def confusion_heatmap(cells: pl.DataFrame) -> bytes:
    """A confusion matrix from long rows (true, predicted, n)."""
    labels = sorted(set(cells["true"].to_list()) | set(cells["predicted"].to_list()))
    idx = {c: i for i, c in enumerate(labels)}
    M = np.zeros((len(labels), len(labels)))
    for t, p, n in cells.select(["true", "predicted", "n"]).iter_rows():
        M[idx[t], idx[p]] += n
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(M, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            if M[i, j]:
                ax.text(j, i, int(M[i, j]), ha="center", va="center", fontsize=6)
    return _png(fig)


def training_curves(history: pl.DataFrame, title: str) -> bytes:
    """Loss terms and collapse indicators over training steps (the ``ssl_checkpoint`` metadata)."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    s = history["step"]
    for col in ("loss", "dino", "barlow"):
        if col in history.columns and history[col].null_count() < history.height:
            v = history[col].cast(pl.Float64)
            axes[0].plot(s, v / (v.max() or 1.0), label=f"{col} (/ max)")
    axes[0].set_title("loss terms", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(s, history["teacher_entropy"], label="teacher entropy / log K")
    axes[1].plot(s, history["teacher_batch_entropy"], label="batch-mean entropy / log K")
    axes[1].set_ylim(0, 1.05)
    axes[1].legend(fontsize=7)
    axes[1].set_title("teacher outputs", fontsize=9)
    axes[2].plot(s, history["effective_rank"], color="tab:purple")
    axes[2].set_title("effective rank of teacher embeddings", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def ablation_bars(table: pl.DataFrame) -> bytes:
    """Retrieval mAP, replica predictability and (when present) screen activity per model (the
    pre-training ablation); untrained rows grey, the handcrafted reference orange."""
    activity = next((c for c in ("activity_auroc", "activity_map")
                     if c in table.columns and table[c].is_not_null().all()), None)
    fig, axes = plt.subplots(1, 3 if activity else 2, figsize=(15 if activity else 11, 3.4))
    labels = [f"{v}\n({m})" if v == "untrained" else v for m, v in zip(table["model"], table["variant"])]
    colors = ["tab:orange" if v == "handcrafted features" else "grey" if not t else "tab:blue"
              for v, t in zip(table["variant"], table["trained"])]
    y = np.arange(table.height)
    axes[0].barh(y, table["retrieval_map"], color=colors)
    axes[0].set_title("compound retrieval mAP (higher: better)", fontsize=9)
    axes[1].barh(y, table["replica_balanced_accuracy"], color=colors)
    axes[1].axvline(float(table["replica_chance"][0]), color="k", ls=":", label="chance")
    axes[1].set_title("replica predictability on DMSO (lower: more batch-invariant)", fontsize=9)
    axes[1].legend(fontsize=7)
    if activity:
        axes[2].barh(y, table[activity], color=colors)
        axes[2].set_title("screen activity: " + ("AUROC of mAP-ES vs truth" if activity == "activity_auroc"
                                                  else "mean mAP") + " (higher: better)", fontsize=9)
    for ax in axes:
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
    return _png(fig)


def segmentation_overlay(planes: np.ndarray, centres: np.ndarray, rays: np.ndarray, cell: np.ndarray,
                         title: str) -> bytes:
    """The segmented cells of one tile: each nucleus's polygon over the plane above focus, one
    colour per cell (nuclei of a multinucleated cell share it), nuclei as dots."""
    theta = np.linspace(0, 2 * np.pi, rays.shape[1], endpoint=False) if len(rays) else np.zeros(0)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(planes[-1], cmap="gray")
    colours = plt.get_cmap("tab10")
    for (y, x), r, c in zip(centres, rays, cell):
        px, py = x + r * np.cos(theta), y + r * np.sin(theta)
        ax.plot(np.r_[px, px[:1]], np.r_[py, py[:1]], "-", lw=1.2, color=colours(int(c) % 10))
        ax.plot([x], [y], ".", ms=4, color=colours(int(c) % 10))
    ax.set_xlim(0, planes.shape[-1])
    ax.set_ylim(planes.shape[-2], 0)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return _png(fig)


def sensitivity_figure(table: pl.DataFrame) -> bytes:
    """Fraction of compounds called active per dose, one line per readout, one panel per timepoint,
    with the table's intervals (the ``kind == "readout"`` rows of
    :func:`lcd_core.pipeline.sensitivity.sensitivity_comparison`; its "all" rows are left out)."""
    rows = table.filter((pl.col("kind") == "readout") & (pl.col("dose") != "all"))
    doses = rows["dose"].unique(maintain_order=True).to_list()
    tps = sorted(rows["timepoint"].unique().to_list())
    fig, axes = plt.subplots(1, max(1, len(tps)), figsize=(1.5 + 2.6 * max(1, len(tps)), 3.2),
                             sharey=True, squeeze=False)
    x = {d: i for i, d in enumerate(doses)}
    for ax, tp in zip(axes[0], tps):
        for k, (name, g) in enumerate(rows.filter(pl.col("timepoint") == tp).group_by("readout", maintain_order=True)):
            f, lo, hi = (g[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
                         for c in ("fraction_active", "fraction_ci_low", "fraction_ci_high"))
            xs = np.array([x[d] for d in g["dose"]]) + (k - 1) * 0.06
            ax.errorbar(xs, f, yerr=[np.clip(f - lo, 0, None), np.clip(hi - f, 0, None)], marker="o", ms=4,
                        capsize=2, lw=1.2, label=name[0])
        ax.set_title(tp, fontsize=9)
        ax.set_xticks(range(len(doses)), doses, fontsize=7)
        ax.set_xlabel("dose")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("fraction of compounds active")
    axes[0][0].legend(fontsize=7)
    return _png(fig)


def attention_figure(tiles: np.ndarray, maps: np.ndarray, titles: list[str]) -> bytes:
    """Last-layer CLS attention over each tile: one row per tile, the tile, the mean over heads,
    then each head (``maps``: ``(n, heads, T, T)`` from
    :func:`lcd_core.embedding.attention.attention_maps`; ``tiles``: ``(n, 3, T, T)`` in [0, 1]).

    The panels are blended into one RGB mosaic (inferno at 60 % over the grey in-focus plane, each
    map on its own range) and drawn as one image: a figure of hundreds of axes spent a second per
    compound laying out titles."""
    tiles, maps = np.asarray(tiles, np.float32), np.asarray(maps, np.float32)
    if maps.ndim != 4 or tiles.ndim != 4 or len(tiles) != len(maps) or len(titles) != len(tiles):
        raise ValueError(f"need (n, 3, T, T) tiles, (n, heads, T, T) maps and n titles; got {tiles.shape}, "
                         f"{maps.shape}, {len(titles)} titles")
    n, heads, t = maps.shape[0], maps.shape[1], tiles.shape[-1]
    inferno = plt.get_cmap("inferno")
    rows = []
    for i in range(n):
        grey = np.repeat(np.clip(tiles[i, tiles.shape[1] // 2], 0, 1)[..., None], 3, axis=-1)
        panels = [grey]
        for m in [maps[i].mean(0), *maps[i]]:
            lo, hi = float(m.min()), float(m.max())
            heat = inferno((m - lo) / max(hi - lo, 1e-12))[..., :3]
            panels.append(0.4 * grey + 0.6 * heat)
        rows.append(np.concatenate(panels, axis=1))
    mosaic = np.concatenate(rows, axis=0)
    fig, ax = plt.subplots(figsize=(1.6 * (heads + 2), 1.7 * n + 0.3))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for j, name in enumerate(["tile", "mean"] + [f"head {h}" for h in range(heads)]):
        ax.text((j + 0.5) * t, -4, name, ha="center", va="bottom", fontsize=7)
    for i, title in enumerate(titles):
        ax.text(3, i * t + 3, title, ha="left", va="top", fontsize=7, color="yellow",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - 0.3 / (1.7 * n + 0.3))
    return _png(fig)


def nuclei_overlay(planes: np.ndarray, nuclei, max_px: int = 512) -> bytes:
    """Detected nuclei of one FOV: their outlines (and centres) over the in-focus plane (the middle
    plane of a stack, the only one of a single-plane export); the top-left ``max_px`` square of a
    larger FOV. ``nuclei``: a :class:`lcd_core.nuclei.objects.Nuclei`."""
    from skimage.segmentation import find_boundaries

    plane = np.asarray(planes, np.float32)
    plane = plane[plane.shape[0] // 2] if plane.ndim == 3 else plane
    crop = (slice(0, max_px), slice(0, max_px))
    img, labels = plane[crop], nuclei.labels[crop]
    lo, hi = np.percentile(img, [1, 99.5]) if img.size else (0.0, 1.0)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1), cmap="gray")
    edges = np.ma.masked_where(~find_boundaries(labels, mode="inner"), np.ones_like(labels))
    ax.imshow(edges, cmap="autumn", interpolation="nearest", alpha=0.9)
    inside = (nuclei.centres[:, 0] < img.shape[1]) & (nuclei.centres[:, 1] < img.shape[0])
    ax.plot(nuclei.centres[inside, 0], nuclei.centres[inside, 1], "c+", ms=4)
    ax.set_axis_off()
    ax.set_title(f"{nuclei.n} nuclei, confluency {nuclei.confluency:.2f}", fontsize=9)
    return _png(fig)


def _by_dose(table: pl.DataFrame) -> list[str]:
    """The doses of a table in µM order (``"2.5uM"`` before ``"10uM"``), others last as text."""
    def key(d: str) -> tuple:
        try:
            return 0, float(str(d).removesuffix("uM")), str(d)
        except ValueError:
            return 1, 0.0, str(d)

    return sorted(table["dose"].cast(pl.String).unique().to_list(), key=key)


def _moa_colours(table: pl.DataFrame) -> dict:
    """MoA → colour (tab10, then tab20), no MoA (None) grey."""
    moas = sorted(m for m in table["moa"].unique().to_list() if m is not None)
    cmap = plt.get_cmap("tab10" if len(moas) <= 10 else "tab20")
    return {**{m: cmap(i % cmap.N) for i, m in enumerate(moas)}, None: "0.55"}


def _moa_legend(ax, colours: dict, extra: list) -> None:
    """A legend of the MoA colours (and ``extra`` handles) right of ``ax``."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2, label=m if m is not None else "no MoA")
               for m, c in colours.items()] + extra
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)


def trajectory_map(table: pl.DataFrame, explained: tuple[float, float] | None = None) -> bytes:
    """The trajectories on their 2-D map (the ``table`` of
    :func:`lcd_core.pipeline.trajectories.trajectories`: compound, moa, dose, timepoint_h, pc1,
    pc2): one panel per dose, one path per compound in time order coloured by MoA, an open circle
    at the first timepoint and an arrow into the last, DMSO (the origin) a black star.
    ``explained``: the axes' shares (``result.map.explained``) for the axis labels."""
    doses = _by_dose(table)
    colours = _moa_colours(table)
    n = max(1, len(doses))
    fig, axes = plt.subplots(1, n, figsize=(0.5 + 3.4 * n, 3.4), squeeze=False, sharex=True, sharey=True)
    for ax, dose in zip(axes[0], doses):
        rows = table.filter(pl.col("dose").cast(pl.String) == dose).sort("compound", "timepoint_h")
        for _, g in rows.group_by("compound", maintain_order=True):
            x, y, c = g["pc1"].to_numpy(), g["pc2"].to_numpy(), colours[g["moa"][0]]
            ax.plot(x, y, "-", color=c, lw=1, alpha=0.8)
            ax.plot(x[:1], y[:1], "o", mfc="none", color=c, ms=4)
            if len(x) > 1:
                ax.annotate("", xy=(x[-1], y[-1]), xytext=(x[-2], y[-2]),
                            arrowprops=dict(arrowstyle="-|>", color=c, lw=1.2))
        ax.axhline(0, color="0.85", lw=0.6, zorder=0)
        ax.axvline(0, color="0.85", lw=0.6, zorder=0)
        ax.plot([0], [0], "*", color="k", ms=11, zorder=5)
        ax.set_title(dose, fontsize=9)
        ax.set_xlabel("PC1" + (f" ({explained[0]:.0%})" if explained is not None else ""), fontsize=8)
    axes[0][0].set_ylabel("PC2" + (f" ({explained[1]:.0%})" if explained is not None else ""), fontsize=8)
    from matplotlib.lines import Line2D

    _moa_legend(axes[0][-1], colours, [Line2D([], [], marker="*", color="k", ls="none", ms=9, label="DMSO")])
    return _png(fig)


def trajectory_distance(table: pl.DataFrame, compounds: list[str] | None = None) -> bytes:
    """Distance from DMSO against hours after dosing (the ``table`` of
    :func:`lcd_core.pipeline.trajectories.trajectories`): one panel per dose, one line per compound
    (``compounds``: only these) coloured by MoA with its bootstrap interval as a ribbon, and the
    DMSO null (0 to the largest ``null_p95`` of the compounds at each hour) as a grey band."""
    if compounds is not None:
        table = table.filter(pl.col("compound").is_in(list(compounds)))
    doses = _by_dose(table)
    colours = _moa_colours(table)
    n = max(1, len(doses))
    fig, axes = plt.subplots(1, n, figsize=(0.5 + 3.4 * n, 3.2), squeeze=False, sharey=True)
    hours = sorted(table["timepoint_h"].unique().to_list())
    labels = dict(table.select("timepoint_h", pl.col("timepoint").cast(pl.String)).unique().iter_rows())
    for ax, dose in zip(axes[0], doses):
        rows = table.filter(pl.col("dose").cast(pl.String) == dose).sort("compound", "timepoint_h")
        null = rows.group_by("timepoint_h").agg(pl.col("null_p95").max()).sort("timepoint_h")
        ax.fill_between(null["timepoint_h"], 0, null["null_p95"].fill_null(np.nan), color="0.8",
                        alpha=0.7, lw=0, zorder=0)
        for _, g in rows.group_by("compound", maintain_order=True):
            c = colours[g["moa"][0]]
            h = g["timepoint_h"].to_numpy()
            ax.fill_between(h, g["ci_low"].fill_null(np.nan).to_numpy(), g["ci_high"].fill_null(np.nan).to_numpy(),
                            color=c, alpha=0.15, lw=0)
            ax.plot(h, g["distance"], "-", marker=".", color=c, lw=1, ms=4)
        ax.set_xticks(hours, [labels[h] for h in hours], fontsize=7)
        ax.set_title(dose, fontsize=9)
        ax.set_xlabel("time after dosing", fontsize=8)
    axes[0][0].set_ylabel("distance from DMSO (MAD units)", fontsize=8)
    from matplotlib.patches import Patch

    _moa_legend(axes[0][-1], colours, [Patch(color="0.8", label="DMSO null (95th pct.)")])
    return _png(fig)
