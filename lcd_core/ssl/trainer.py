"""The self-supervised training loop (DINO student/teacher), not wired to any launcher.

``train(config, tile_source, steps=… | time_budget_s=…, checkpoint_dir=…)`` runs or resumes one
run: student = backbone + DINO head (drop-path 0.1), teacher = its EMA (momentum schedule
0.996 → 1), AdamW with two parameter groups (no weight decay on biases and norm/1-d parameters),
the DINO per-iteration schedules (:mod:`.schedules`, laid out over ``config.epochs`` epochs of
``len(table) // batch_size`` steps; ``steps`` / ``time_budget_s`` only bound this call, so a run
can be trained in slices and resumed), per-parameter gradient clipping (DINO), last-layer
freezing during the first ``freeze_last_layer`` epochs, autocast bf16 on CUDA and on CPUs with
native bf16 (``amp="auto"``).

CPU threads: ``num_threads`` sets torch's intra-op threads for the call (restored afterwards). On a
CPU shared with other jobs, oversubscribed OpenMP threads spin: on the 2-core development box (load
≈ 3.5) ViT-Ti at 32 px ran 278 crops/s with 1 thread and 5 crops/s with 2, and ViT-S/16
(``cpu_default``, bf16) ≈ 10 crops/s with 1 thread against 3–9 with 2. Measured there: ViT-S/16
trains at ≈ 10 crops/s in bf16 (≈ 6.5 s per step of 8 pairs × 8 crops), i.e. a few thousand
steps a day: enough to fine-tune or smoke-test the recipe, not to pre-train 60 epochs.

Collapse indicators, logged every ``log_every`` steps:

* ``teacher_entropy``: mean per-row entropy of the teacher's softmax / log K (→ 1: uniform
  collapse, → 0 with ``teacher_batch_entropy`` → 0: one-prototype collapse);
* ``teacher_batch_entropy``: entropy of the batch-mean teacher distribution / log K;
* ``embed_std``: mean per-dimension std of the L2-normalised teacher CLS embeddings of the global
  crops (collapse → 0; an isotropic embedding gives 1/√D, reported as ``embed_std_iso``);
* ``effective_rank``: exp(entropy of the normalised singular values) of that embedding batch
  (RankMe; at most min(2B, D)).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lcd_core._torchvision_compat import ensure_torchvision_importable
from lcd_core.ssl.augment import MultiCropAugment
from lcd_core.ssl.checkpoint import STATE_JSON, has_training_state, load_training_state, save_training_checkpoint
from lcd_core.ssl.config import SSLConfig
from lcd_core.ssl.head import DINOHead, MultiCropWrapper
from lcd_core.ssl.losses import BarlowTwinsLoss, DINOLoss, total_loss
from lcd_core.ssl.sampler import CrossBatchSampler
from lcd_core.ssl.schedules import schedules_for
from lcd_core.ssl.source import TileSource, replica_index
from lcd_core.embedding.vit import normalize_input

__all__ = ["train", "TrainResult", "build_student_teacher", "collapse_indicators", "MODEL_FIELDS"]

# config fields that define the saved tensors: a resume with other values is refused
MODEL_FIELDS = ("arch", "out_dim", "head_hidden_dim", "head_bottleneck_dim", "head_nlayers",
                "norm_last_layer", "cross_batch")


@dataclass
class TrainResult:
    step: int  # completed steps of the run (continues across resumes)
    total_steps: int  # the planned run: epochs × steps per epoch
    steps_run: int  # steps done by this call
    stopped_by: str  # "done" | "steps" | "time"
    checkpoint: Path | None
    crops_per_s: float  # this call, excluding the first (warm-up) step when there are more
    history: list[dict[str, Any]] = field(default_factory=list)
    sampler_stats: dict[str, int] = field(default_factory=dict)
    resumed_from: int | None = None


def _backbone(arch: str, seed: int, drop_path_rate: float) -> torch.nn.Module:
    ensure_torchvision_importable()
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True,
                                 drop_path_rate=drop_path_rate)


def build_student_teacher(config: SSLConfig) -> tuple[MultiCropWrapper, MultiCropWrapper]:
    """Student (drop-path) and teacher (none, no grad) with identical initial weights."""
    student_bb = _backbone(config.arch, config.seed, config.drop_path_rate)
    teacher_bb = _backbone(config.arch, config.seed, 0.0)
    dim = int(student_bb.num_features)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        head = DINOHead(dim, config.out_dim, config.head_hidden_dim, config.head_bottleneck_dim,
                        config.head_nlayers, config.norm_last_layer)
    student = MultiCropWrapper(student_bb, head)
    teacher = MultiCropWrapper(teacher_bb, copy.deepcopy(head))
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    return student, teacher


def _param_groups(model: torch.nn.Module) -> list[dict]:
    reg, noreg = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (noreg if n.endswith(".bias") or p.ndim == 1 else reg).append(p)
    return [{"params": reg}, {"params": noreg, "weight_decay": 0.0}]


@torch.no_grad()
def _clip_gradients(params: list[torch.nn.Parameter], clip: float) -> torch.Tensor:
    """DINO's ``utils.clip_gradients``: each parameter's gradient norm is clipped to ``clip``
    separately (not the global norm). Returns the global norm before clipping, for logging."""
    norms = []
    for p in params:
        if p.grad is None:
            continue
        n = p.grad.norm(2)
        norms.append(n)
        p.grad.mul_(torch.clamp(clip / (n + 1e-6), max=1.0))
    return torch.stack(norms).norm(2) if norms else torch.zeros(())


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    from lcd_core.embedding.inference import cpu_has_native_bf16

    if amp in ("float32", "fp32", None):
        return None
    if amp in ("bfloat16", "bf16"):
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


@torch.no_grad()
def collapse_indicators(teacher_probs: torch.Tensor, embeddings: torch.Tensor) -> dict[str, float]:
    p = teacher_probs.float()
    logk = math.log(p.shape[-1])
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean() / logk
    pm = p.mean(0)
    bent = -(pm * torch.log(pm.clamp_min(1e-12))).sum() / logk
    z = F.normalize(embeddings.float(), dim=-1)
    s = torch.linalg.svdvals(z)
    q = s / s.sum().clamp_min(1e-12)
    erank = torch.exp(-(q * torch.log(q.clamp_min(1e-12))).sum())
    return {"teacher_entropy": float(ent), "teacher_batch_entropy": float(bent),
            "embed_std": float(z.std(0).mean()), "embed_std_iso": 1.0 / math.sqrt(z.shape[-1]),
            "effective_rank": float(erank)}


def _collate(source: TileSource, aug: MultiCropAugment, anchor, partner, same: bool,
             g: torch.Generator) -> list[torch.Tensor]:
    per_sample = [aug(source.load(a), None if same else source.load(b), g) for a, b in zip(anchor, partner)]
    return [torch.stack(v) for v in zip(*per_sample)]


def _resolve_device(device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train(config: SSLConfig, tile_source: TileSource, *, steps: int | None = None,
          time_budget_s: float | None = None, checkpoint_dir: str | Path | None = None,
          checkpoint_every: int = 500, resume: bool = True,
          progress: Callable[[dict[str, Any]], None] | None = None, log_every: int = 10,
          device: str | torch.device = "auto", name: str | None = None,
          num_threads: int | None = None) -> TrainResult:
    """Train (or resume) one SSL run; see the module docstring. Returns a :class:`TrainResult`.

    ``progress`` receives a dict every ``log_every`` steps and on the last step: ``step``,
    ``total_steps``, ``epoch``, ``loss``, ``dino``, ``barlow``, ``lr``, ``wd``, ``momentum``,
    ``teacher_temp``, ``grad_norm``, ``crops_per_s``, ``eta_s`` (to the end of the planned run),
    ``eta_call_s`` (to the end of this call's step budget), the collapse indicators and the
    sampler's fallback counts.
    """
    if num_threads is None:
        return _train(config, tile_source, steps, time_budget_s, checkpoint_dir, checkpoint_every, resume,
                      progress, log_every, device, name)
    before = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        return _train(config, tile_source, steps, time_budget_s, checkpoint_dir, checkpoint_every, resume,
                      progress, log_every, device, name)
    finally:
        torch.set_num_threads(before)


def _train(config, tile_source, steps, time_budget_s, checkpoint_dir, checkpoint_every, resume, progress,
           log_every, device, name) -> TrainResult:
    run = _setup(config, tile_source, device, name, checkpoint_dir, resume)
    start = run.resumed_from or 0
    end = run.total if steps is None else min(run.total, start + int(steps))
    stopped_by = "done" if end == run.total else "steps"
    history: list[dict[str, Any]] = []
    step_times: list[float] = []
    t_call = time.perf_counter()
    last_saved, saved_step = None, start
    step = start
    for it in range(start, end):
        if time_budget_s is not None and time.perf_counter() - t_call >= time_budget_s:
            stopped_by = "time"
            break
        t0 = time.perf_counter()
        done = _step(run, it)
        step = it + 1
        step_times.append(time.perf_counter() - t0)
        if step % log_every == 0 or step == end:
            history.append(_log_record(run, done, step, end, step_times))
            if progress is not None:
                progress(history[-1])
        if checkpoint_dir is not None and checkpoint_every and step % checkpoint_every == 0:
            last_saved, saved_step = _save(run, step), step
    if checkpoint_dir is not None and step > saved_step:
        last_saved = _save(run, step)
    elif checkpoint_dir is not None and has_training_state(checkpoint_dir):
        last_saved = Path(checkpoint_dir)
    recent = _steady(step_times)
    crops_per_s = run.crops_per_step / float(np.mean(recent)) if recent else 0.0
    return TrainResult(step=step, total_steps=run.total, steps_run=step - start, stopped_by=stopped_by,
                       checkpoint=last_saved, crops_per_s=crops_per_s, history=history,
                       sampler_stats=dict(run.sampler.stats), resumed_from=run.resumed_from)


@dataclass
class _Run:
    """One call's training state: data, schedules, models, loss, optimiser, checkpoint target."""

    config: SSLConfig
    source: TileSource
    dev: torch.device
    amp: torch.dtype | None
    sampler: CrossBatchSampler
    spe: int  # steps per epoch
    sched: Any
    total: int  # planned steps of the run
    rep_ids: np.ndarray  # replica index of every tile
    rep_labels: list
    student: MultiCropWrapper
    teacher: MultiCropWrapper
    dino: DINOLoss
    barlow: BarlowTwinsLoss | None
    opt: torch.optim.Optimizer
    aug: MultiCropAugment
    name: str
    checkpoint_dir: str | Path | None
    resumed_from: int | None = None

    @property
    def crops_per_step(self) -> int:
        return int(self.config.batch_size) * self.config.n_crops


@dataclass
class _StepOut:
    """What one step leaves for the log: its index, schedule values, loss terms, teacher
    features and gradient norm."""

    it: int
    sched: dict[str, float]
    terms: Any
    t_feat: torch.Tensor
    gnorm: torch.Tensor | None


def _replicas(config: SSLConfig, tile_source: TileSource) -> tuple[np.ndarray, list, np.ndarray]:
    """Replica index of every tile, the replica labels and their shares (one pseudo-replica
    without cross-batch pairs)."""
    if config.cross_batch:
        return replica_index(tile_source.table)
    return np.zeros(len(tile_source), np.int64), [None], np.ones(1)


def _check_resumable(checkpoint_dir: str | Path, config: SSLConfig, rep_labels: list) -> None:
    """``ValueError`` when the saved run differs in a model field or in its replicas."""
    state = json.loads((Path(checkpoint_dir) / STATE_JSON).read_text())
    saved = SSLConfig.from_dict(state["config"])
    bad = [f for f in MODEL_FIELDS if getattr(saved, f) != getattr(config, f)]
    saved_reps = state.get("replicas")
    if config.cross_batch and saved_reps is not None and saved_reps != [str(r) for r in rep_labels]:
        bad.append(f"replicas ({saved_reps} saved, {[str(r) for r in rep_labels]} now)")
    if bad:
        raise ValueError(f"cannot resume {checkpoint_dir}: config differs in {bad}; use resume=False "
                         "or another checkpoint_dir")


def _setup(config: SSLConfig, tile_source: TileSource, device, name: str | None,
           checkpoint_dir: str | Path | None, resume: bool) -> _Run:
    """Sampler, schedules, student / teacher, losses and optimiser, resumed from
    ``checkpoint_dir`` when it holds a training state (checked before anything is built)."""
    dev = _resolve_device(device)
    amp = _amp_dtype(config.amp, dev)
    sampler = CrossBatchSampler(tile_source.table, cross_batch=config.cross_batch, seed=config.seed)
    spe = sampler.steps_per_epoch(int(config.batch_size))
    sched = schedules_for(config, spe)
    rep_ids, rep_labels, rep_share = _replicas(config, tile_source)
    can_resume = checkpoint_dir is not None and resume and has_training_state(checkpoint_dir)
    if can_resume:
        _check_resumable(checkpoint_dir, config, rep_labels)
    student, teacher = build_student_teacher(config)
    student.to(dev).train()
    teacher.to(dev).train()  # no dropout/BN in a ViT: train/eval only matters for drop-path (0)
    dino = DINOLoss(config.out_dim, config.n_crops, len(rep_labels), config.student_temp,
                    config.center_momentum, torch.as_tensor(rep_share, dtype=torch.float32),
                    config.center_weight_cap).to(dev)
    barlow = BarlowTwinsLoss(config.barlow_lambda) if config.barlow else None
    opt = torch.optim.AdamW(_param_groups(student), lr=0.0, weight_decay=0.0)
    run = _Run(config, tile_source, dev, amp, sampler, spe, sched, len(sched.lr), rep_ids, rep_labels,
               student, teacher, dino, barlow, opt, MultiCropAugment(config),
               name or f"ssl-{config.variant.replace(' + ', '-').lower()}", checkpoint_dir)
    if can_resume:
        meta = load_training_state(checkpoint_dir, student=student, teacher=teacher, center=dino.center,
                                   optimizer=opt)
        run.resumed_from = int(meta["step"])
        sampler.stats.update(meta.get("sampler_stats", {}))
    return run


def _crops(run: _Run, it: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Step ``it``'s normalised multi-crops (on the device) and the replica of each pair member."""
    cfg = run.config
    pb = run.sampler.batch(it, int(cfg.batch_size))
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)
    crops = [normalize_input(c).to(run.dev, non_blocking=True)
             for c in _collate(run.source, run.aug, pb.anchor, pb.partner, not cfg.cross_batch, g)]
    replica = torch.as_tensor(np.concatenate([run.rep_ids[pb.anchor], run.rep_ids[pb.partner]]),
                              device=run.dev)
    return crops, replica


def _step(run: _Run, it: int) -> _StepOut:
    """One optimisation step: schedules, forward, loss, clipped backward, last-layer freeze, AdamW,
    teacher EMA."""
    s = run.sched.at(it)
    for i, gr in enumerate(run.opt.param_groups):
        gr["lr"] = s["lr"]
        if i == 0:
            gr["weight_decay"] = s["wd"]
    crops, replica = _crops(run, it)
    with torch.autocast(run.dev.type, dtype=run.amp or torch.bfloat16, enabled=run.amp is not None):
        with torch.no_grad():
            t_out, t_feat = run.teacher(crops[:2], return_features=True)
        s_out = run.student(crops)
    terms = total_loss(run.dino, s_out.float(), t_out.float(), s["teacher_temp"], replica, run.barlow,
                       run.config.barlow_weight)
    if not torch.isfinite(terms.total):
        raise FloatingPointError(f"loss is {float(terms.total)} at step {it}; stopping")
    run.opt.zero_grad(set_to_none=True)
    terms.total.backward()
    gnorm = _clip_and_freeze(run, it)
    run.opt.step()
    _ema_update(run.teacher, run.student, s["momentum"])
    return _StepOut(it, s, terms, t_feat, gnorm)


def _clip_and_freeze(run: _Run, it: int) -> torch.Tensor | None:
    """Per-parameter gradient clipping, then no gradient for the last layer while it is frozen.
    Returns the gradient norm before clipping (None without clipping)."""
    params = [p for p in run.student.parameters() if p.requires_grad]
    gnorm = _clip_gradients(params, run.config.clip_grad) if run.config.clip_grad > 0 else None
    if it / run.spe < run.config.freeze_last_layer:
        for n, p in run.student.named_parameters():
            if "last_layer" in n:
                p.grad = None
    return gnorm


@torch.no_grad()
def _ema_update(teacher: torch.nn.Module, student: torch.nn.Module, m: float) -> None:
    """teacher ← m · teacher + (1 − m) · student."""
    tp = list(teacher.parameters())
    torch._foreach_mul_(tp, m)
    torch._foreach_add_(tp, list(student.parameters()), alpha=1.0 - m)


def _steady(step_times: list[float]) -> list[float]:
    """Step times without the first (warm-up) step when there are more."""
    return step_times[1:] if len(step_times) > 1 else step_times


def _log_record(run: _Run, out: _StepOut, step: int, end: int, step_times: list[float]) -> dict[str, Any]:
    """The progress / history record after ``step`` (see :func:`train`)."""
    dt = float(np.mean(_steady(step_times)[-20:]))
    terms = out.terms
    return {"step": step, "total_steps": run.total, "epoch": out.it / run.spe,
            "loss": float(terms.total.detach()), "dino": float(terms.dino),
            "barlow": None if terms.barlow is None else float(terms.barlow),
            **out.sched, "grad_norm": None if out.gnorm is None else float(out.gnorm),
            "crops_per_s": run.crops_per_step / dt, "step_s": dt,
            "eta_s": (run.total - step) * dt, "eta_call_s": (end - step) * dt,
            **collapse_indicators(terms.teacher_probs, out.t_feat.detach()),
            **{f"pairs_{k}": v for k, v in run.sampler.stats.items()}}


def _save(run: _Run, step: int) -> Path | None:
    """Checkpoint the run at ``step`` (weights, optimiser, center, sampler counts)."""
    if run.checkpoint_dir is None:
        return None
    cfg = run.config
    meta = {"step": step, "total_steps": run.total, "config": cfg.to_dict(),
            "sampler_stats": dict(run.sampler.stats), "replicas": [str(r) for r in run.rep_labels]}
    extra = {"ssl": cfg.to_dict(), "variant": cfg.variant, "step": step, "total_steps": run.total,
             "epoch": step / run.spe, "trained": True, "source": "lcd_core.ssl",
             "input_size": cfg.global_crop_size, "seed": cfg.seed}
    return save_training_checkpoint(run.checkpoint_dir, student=run.student, teacher=run.teacher,
                                    center=run.dino.center, optimizer=run.opt, meta=meta, arch=cfg.arch,
                                    name=run.name, extra=extra)
