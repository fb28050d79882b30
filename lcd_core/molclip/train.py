"""Training MolCLIP: configuration, the trained model, the P × K sampler and the loop.

``train(videos, compounds, config, use_molecules)`` fits on the treatment videos (DMSO wells are
left out) it is given: the video encoder with the supervised-contrastive loss on compound identity
(:func:`.losses.supcon_loss`) and, with ``use_molecules=True``, the molecule encoder and the CLIP
term (:func:`.losses.clip_loss`, weight ``clip_weight``) on the compounds that have a structure.
Batches are P compounds × K wells; the CLIP term is the mean of K sub-batches holding one well per
compound, so no two wells of one molecule ever meet as negatives. Everything random comes from
``config.seed`` (torch RNG forked, so the caller's state is untouched): one seed, one model.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import numpy as np
import polars as pl
import torch
from torch import nn

from lcd_core.molclip.losses import clip_loss, clip_targets, supcon_loss
from lcd_core.molclip.molecule import MoleculeEncoder, compound_table, morgan_fingerprints
from lcd_core.molclip.video import VideoEncoder
from lcd_core.molclip.videos import Videos

__all__ = ["MolClipConfig", "MolClip", "PKSampler", "train", "compound_means", "torch_threads"]


@dataclass(frozen=True)
class MolClipConfig:
    """Hyper-parameters of a MolCLIP run (JSON-serialisable; stored with the model)."""

    dim: int = 128  # joint embedding dimension
    hidden: int = 128  # video token width
    n_heads: int = 4
    n_layers: int = 1
    dropout: float = 0.1
    mol_hidden: int = 256
    mol_layers: int = 2
    fp_radius: int = 2
    fp_bits: int = 2048
    fp_chirality: bool = False
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    p_compounds: int = 16  # P compounds per batch (capped at the number of training compounds)
    k_wells: int = 4  # K wells per compound
    temperature: float = 0.1  # SupCon τ
    clip_weight: float = 1.0
    init_logit_scale: float = 1 / 0.07  # CLIP's initial temperature 0.07
    max_logit_scale: float = 100.0
    seed: int = 0
    threads: int = 1  # torch intra-op threads while training / embedding

    def __post_init__(self) -> None:
        if min(self.dim, self.hidden, self.n_heads, self.n_layers, self.mol_layers, self.fp_bits) < 1:
            raise ValueError("dims, heads, layers and fp_bits must be ≥ 1")
        if self.p_compounds < 2 or self.k_wells < 1 or self.epochs < 0 or self.threads < 1:
            raise ValueError("need p_compounds ≥ 2, k_wells ≥ 1, epochs ≥ 0, threads ≥ 1")
        if self.hidden % self.n_heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by n_heads ({self.n_heads})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MolClipConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown MolClipConfig field(s): {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Set torch's intra-op threads for a block, restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def compound_means(emb: np.ndarray, compounds: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Per-compound mean of unit embeddings, re-normalised: (sorted names, (C, d) unit vectors)."""
    names, inv = np.unique(np.asarray(compounds, dtype=str), return_inverse=True)
    sums = np.zeros((len(names), emb.shape[1]))
    np.add.at(sums, inv, np.asarray(emb, dtype=np.float64))
    return names.tolist(), (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class MolClip(nn.Module):
    """A trained (or untrained) MolCLIP: video encoder, optional molecule encoder, logit scale.

    Attributes
    ----------
    config, features, timepoints, use_molecules
        What the tensors mean; stored by :mod:`.store`.
    trained_compounds
        The compounds whose videos it was trained on (zero-shot refuses to score them).
    history
        One dict per epoch: ``epoch, metric, clip (None without molecules), total, logit_scale,
        lr, seconds``.
    """

    def __init__(self, config: MolClipConfig, features: Sequence[str], timepoints: Sequence[str],
                 use_molecules: bool, trained_compounds: Sequence[str] = (), history: Sequence[dict] = ()) -> None:
        super().__init__()
        self.config, self.use_molecules = config, bool(use_molecules)
        self.features, self.timepoints = list(features), list(timepoints)
        self.trained_compounds, self.history = list(trained_compounds), list(history)
        c = config
        self.video_encoder = VideoEncoder(len(self.features), len(self.timepoints), c.dim, c.hidden, c.n_heads,
                                          c.n_layers, c.dropout)
        self.molecule_encoder = (MoleculeEncoder(c.fp_bits, c.dim, c.mol_hidden, c.mol_layers, c.dropout)
                                 if self.use_molecules else None)
        self.log_scale = nn.Parameter(torch.tensor(math.log(c.init_logit_scale)))

    def _aligned(self, videos: Videos) -> tuple[np.ndarray, np.ndarray]:
        """``videos`` on the model's features and timepoints (absent timepoints masked)."""
        missing = [f for f in self.features if f not in set(videos.features)]
        if missing:
            raise ValueError(f"videos lack feature(s) the model was trained on: {missing[:10]}")
        extra = [t for t in videos.timepoints if t not in self.timepoints]
        if extra:
            raise ValueError(f"videos have timepoint(s) {extra} the model was not trained on ({self.timepoints})")
        fi = [videos.features.index(f) for f in self.features]
        ti = [self.timepoints.index(t) for t in videos.timepoints]
        x = np.zeros((len(videos), len(self.timepoints), len(fi)), dtype=np.float32)
        m = np.zeros((len(videos), len(self.timepoints)), dtype=bool)
        x[:, ti] = videos.x[:, :, fi]
        m[:, ti] = videos.mask
        return x, m

    @torch.no_grad()
    def embed_videos(self, videos: Videos, batch_size: int = 4096) -> np.ndarray:
        """(N, dim) float32 unit embeddings of ``videos`` (eval mode)."""
        x, m = self._aligned(videos)
        self.eval()
        with torch_threads(self.config.threads):
            out = [self.video_encoder(torch.from_numpy(x[i:i + batch_size]), torch.from_numpy(m[i:i + batch_size]))
                   for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.dim), np.float32)

    @torch.no_grad()
    def embed_smiles(self, smiles: Sequence[str]) -> np.ndarray:
        """(M, dim) float32 unit embeddings of molecules; ValueError on an unparsable SMILES or a
        model trained without the molecule branch."""
        if self.molecule_encoder is None:
            raise ValueError("this model was trained without the molecule branch (use_molecules=False)")
        c = self.config
        fp = morgan_fingerprints(list(smiles), c.fp_radius, c.fp_bits, c.fp_chirality)
        self.eval()
        with torch_threads(c.threads):
            return self.molecule_encoder(torch.from_numpy(fp)).numpy()

    def embed_compounds(self, videos: Videos) -> tuple[list[str], np.ndarray]:
        """Mean video embedding per treatment compound: (sorted names, (C, dim) unit vectors)."""
        sub = videos.subset(videos.is_treatment)
        return compound_means(self.embed_videos(sub), sub.meta["compound"].to_list())


class PKSampler:
    """P compounds × K wells per batch; ``round(N / (P·K))`` batches per epoch.

    Compounds are drawn without replacement from a reshuffled stream (every compound once before
    any twice), wells from a per-compound reshuffled queue (no repeat inside a batch unless the
    compound has fewer than K wells, then it is topped up with replacement).
    """

    def __init__(self, labels: np.ndarray, p: int, k: int) -> None:
        labels = np.asarray(labels)
        self.groups = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        if any(len(g) == 0 for g in self.groups):
            raise ValueError("labels must be 0..C-1 with every class present")
        self.p, self.k = min(p, len(self.groups)), k
        self.batches_per_epoch = max(1, round(len(labels) / (self.p * k)))
        self._pool: list[int] = []
        self._queues = [np.zeros(0, np.int64) for _ in self.groups]

    def _compounds(self, rng: np.random.Generator) -> list[int]:
        chosen: list[int] = []
        deferred: list[int] = []
        while len(chosen) < self.p:
            if not self._pool:
                self._pool = [int(c) for c in rng.permutation(len(self.groups))]
            c = self._pool.pop()
            (deferred if c in chosen else chosen).append(c)
        self._pool.extend(deferred)
        return chosen

    def _wells(self, c: int, rng: np.random.Generator) -> np.ndarray:
        g = self.groups[c]
        if len(g) < self.k:
            return np.concatenate([rng.permutation(g), rng.choice(g, self.k - len(g))])
        q = self._queues[c]
        if len(q) < self.k:
            q = np.concatenate([q, rng.permutation(g[~np.isin(g, q)])])
        self._queues[c] = q[self.k:]
        return q[: self.k]

    def epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The epoch's batches, each a (P, K) array of row indices (row p = one compound)."""
        return [np.stack([self._wells(c, rng) for c in self._compounds(rng)])
                for _ in range(self.batches_per_epoch)]


def _fingerprints(names: Sequence[str], compounds: pl.DataFrame | None, c: MolClipConfig):
    """(C, bits) fingerprints of the training compounds and a (C,) mask of those with a SMILES."""
    if compounds is None:
        raise ValueError("use_molecules=True needs the compound table (compound, moa, smiles, set)")
    table = compound_table(compounds)
    smiles = dict(table.select("compound", "smiles").iter_rows())
    unknown = [n for n in names if n not in smiles]
    if unknown:
        raise ValueError(f"compound(s) missing from the compound table: {unknown[:10]}")
    has = np.array([smiles[n] != "" for n in names])
    if has.sum() < 2:
        raise ValueError("the molecule branch needs at least 2 training compounds with a SMILES")
    fp = np.zeros((len(names), c.fp_bits), np.uint8)
    fp[has] = morgan_fingerprints([smiles[n] for n in np.asarray(names)[has]], c.fp_radius, c.fp_bits,
                                  c.fp_chirality)
    return torch.from_numpy(fp).float(), torch.from_numpy(has)


def _batch_loss(model: MolClip, x, m, y, fp, has_fp, batch: np.ndarray) -> dict[str, torch.Tensor]:
    """Loss terms of one (P, K) batch."""
    c = model.config
    flat = torch.from_numpy(batch.reshape(-1))
    z = model.video_encoder(x[flat], m[flat])
    out = {"metric": supcon_loss(z, y[flat], c.temperature)}
    out["total"] = out["metric"]
    if model.molecule_encoder is not None:
        comp = y[torch.from_numpy(batch[:, 0])]
        keep = has_fp[comp]
        if int(keep.sum()) >= 2:
            f = fp[comp[keep]]
            mol = model.molecule_encoder(f)
            zk = z.view(batch.shape[0], batch.shape[1], -1)[keep]
            tg = clip_targets(f)
            out["clip"] = torch.stack([clip_loss(zk[:, k], mol, model.log_scale, c.max_logit_scale, tg)
                                       for k in range(batch.shape[1])]).mean()
            out["total"] = out["metric"] + c.clip_weight * out["clip"]
    return out


def _lr_at(step: int, total: int, lr: float) -> float:
    """Linear warm-up over the first 5 % of steps, then cosine decay to 0."""
    warm = max(1, total // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _fit(model: MolClip, x, m, y, fp, has_fp, rng: np.random.Generator) -> None:
    c = model.config
    sampler = PKSampler(y.numpy(), c.p_compounds, c.k_wells)
    total = c.epochs * sampler.batches_per_epoch
    decay = [p for p in model.parameters() if p.ndim > 1]  # no decay on biases, norms, the logit scale
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=c.lr, foreach=True)
    step, t0 = 0, time.perf_counter()
    model.train()
    for epoch in range(c.epochs):
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for batch in sampler.epoch(rng):
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, c.lr)
            parts = _batch_loss(model, x, m, y, fp, has_fp, batch)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            step += 1
            for k, v in parts.items():
                sums[k], counts[k] = sums.get(k, 0.0) + float(v.detach()), counts.get(k, 0) + 1
        mean = {k: sums[k] / counts[k] for k in sums}
        model.history.append({
            "epoch": epoch + 1, "metric": mean["metric"], "total": mean["total"], "clip": mean.get("clip"),
            "logit_scale": float(model.log_scale.detach().clamp(0, math.log(c.max_logit_scale)).exp()),
            "lr": _lr_at(step - 1, total, c.lr), "seconds": round(time.perf_counter() - t0, 3)})
    model.eval()


def train(videos: Videos, compounds: pl.DataFrame | None = None, config: MolClipConfig = MolClipConfig(),
          use_molecules: bool = True) -> MolClip:
    """Train MolCLIP on the treatment videos of ``videos``.

    Parameters
    ----------
    videos
        Training videos (DMSO wells are ignored; select the training compounds before calling).
    compounds
        Compound table (``compound, moa, smiles, set``); needed with ``use_molecules``.
    config
        Hyper-parameters; ``epochs=0`` gives the untrained model (input statistics set).
    use_molecules
        False: the video encoder with the metric loss only ("without molecule branch");
        True: + molecule encoder and CLIP term.

    Returns
    -------
    MolClip
        In eval mode, with its per-epoch ``history``.
    """
    idx = np.flatnonzero(videos.is_treatment)
    if len(idx) < 2:
        raise ValueError("need at least 2 treatment videos to train")
    names, labels = np.unique(videos.meta["compound"].to_numpy()[idx].astype(str), return_inverse=True)
    if len(names) < 2:
        raise ValueError("need at least 2 compounds to train a metric on compound identity")
    fp, has_fp = _fingerprints(names.tolist(), compounds, config) if use_molecules else (None, None)
    x, m = torch.from_numpy(videos.x[idx]), torch.from_numpy(videos.mask[idx])
    with torch_threads(config.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = MolClip(config, videos.features, videos.timepoints, use_molecules, names.tolist())
        model.video_encoder.set_input_stats(videos.x[idx], videos.mask[idx])
        _fit(model, x, m, torch.from_numpy(labels), fp, has_fp, np.random.default_rng(config.seed))
    return model
