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
    dev = _resolve_device(device)
    amp = _amp_dtype(config.amp, dev)
    table = tile_source.table
    B = int(config.batch_size)
    sampler = CrossBatchSampler(table, cross_batch=config.cross_batch, seed=config.seed)
    spe = sampler.steps_per_epoch(B)
    sched = schedules_for(config, spe)
    total = len(sched.lr)
    if config.cross_batch:
        rep_ids, rep_labels, rep_share = replica_index(table)
    else:
        rep_ids, rep_labels, rep_share = np.zeros(len(tile_source), np.int64), [None], np.ones(1)

    can_resume = checkpoint_dir is not None and resume and has_training_state(checkpoint_dir)
    if can_resume:  # refuse before building anything
        saved = SSLConfig.from_dict(json.loads((Path(checkpoint_dir) / STATE_JSON).read_text())["config"])
        bad = [f for f in MODEL_FIELDS if getattr(saved, f) != getattr(config, f)]
        saved_reps = json.loads((Path(checkpoint_dir) / STATE_JSON).read_text()).get("replicas")
        if config.cross_batch and saved_reps is not None and saved_reps != [str(r) for r in rep_labels]:
            bad.append(f"replicas ({saved_reps} saved, {[str(r) for r in rep_labels]} now)")
        if bad:
            raise ValueError(f"cannot resume {checkpoint_dir}: config differs in {bad}; use resume=False "
                             "or another checkpoint_dir")

    student, teacher = build_student_teacher(config)
    student.to(dev).train()
    teacher.to(dev).train()  # no dropout/BN in a ViT: train/eval only matters for drop-path (0)
    dino = DINOLoss(config.out_dim, config.n_crops, len(rep_labels), config.student_temp,
                    config.center_momentum, torch.as_tensor(rep_share, dtype=torch.float32),
                    config.center_weight_cap).to(dev)
    barlow = BarlowTwinsLoss(config.barlow_lambda) if config.barlow else None
    opt = torch.optim.AdamW(_param_groups(student), lr=0.0, weight_decay=0.0)
    aug = MultiCropAugment(config)
    name = name or f"ssl-{config.variant.replace(' + ', '-').lower()}"

    start, resumed_from = 0, None
    if can_resume:
        meta = load_training_state(checkpoint_dir, student=student, teacher=teacher, center=dino.center,
                                   optimizer=opt)
        start = resumed_from = int(meta["step"])
        sampler.stats.update(meta.get("sampler_stats", {}))

    def save(step: int) -> Path | None:
        if checkpoint_dir is None:
            return None
        meta = {"step": step, "total_steps": total, "config": config.to_dict(),
                "sampler_stats": dict(sampler.stats), "replicas": [str(r) for r in rep_labels]}
        extra = {"ssl": config.to_dict(), "variant": config.variant, "step": step,
                 "total_steps": total, "epoch": step / spe, "trained": True, "source": "lcd_core.ssl",
                 "input_size": config.global_crop_size,
                 "seed": config.seed}
        return save_training_checkpoint(checkpoint_dir, student=student, teacher=teacher, center=dino.center,
                                        optimizer=opt, meta=meta, arch=config.arch, name=name, extra=extra)

    end = total if steps is None else min(total, start + int(steps))
    history: list[dict[str, Any]] = []
    crops_per_step = B * config.n_crops
    t_call = time.perf_counter()
    step_times: list[float] = []
    stopped_by = "done" if end == total else "steps"
    params = [p for p in student.parameters() if p.requires_grad]
    last_saved, saved_step = None, start
    step = start
    for it in range(start, end):
        if time_budget_s is not None and time.perf_counter() - t_call >= time_budget_s:
            stopped_by = "time"
            break
        t0 = time.perf_counter()
        s = sched.at(it)
        for i, gr in enumerate(opt.param_groups):
            gr["lr"] = s["lr"]
            if i == 0:
                gr["weight_decay"] = s["wd"]
        pb = sampler.batch(it, B)
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + it)
        crops = [normalize_input(c).to(dev, non_blocking=True)
                 for c in _collate(tile_source, aug, pb.anchor, pb.partner, not config.cross_batch, g)]
        replica = torch.as_tensor(np.concatenate([rep_ids[pb.anchor], rep_ids[pb.partner]]), device=dev)
        with torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            with torch.no_grad():
                t_out, t_feat = teacher(crops[:2], return_features=True)
            s_out = student(crops)
        terms = total_loss(dino, s_out.float(), t_out.float(), s["teacher_temp"], replica, barlow,
                           config.barlow_weight)
        if not torch.isfinite(terms.total):
            raise FloatingPointError(f"loss is {float(terms.total)} at step {it}; stopping")
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        gnorm = _clip_gradients(params, config.clip_grad) if config.clip_grad > 0 else None
        if it / spe < config.freeze_last_layer:
            for n, p in student.named_parameters():
                if "last_layer" in n:
                    p.grad = None
        opt.step()
        with torch.no_grad():
            m = s["momentum"]
            tp = list(teacher.parameters())
            sp = list(student.parameters())
            torch._foreach_mul_(tp, m)
            torch._foreach_add_(tp, sp, alpha=1.0 - m)
        step = it + 1
        step_times.append(time.perf_counter() - t0)
        if step % log_every == 0 or step == end:
            recent = step_times[1:] if len(step_times) > 1 else step_times
            dt = float(np.mean(recent[-20:]))
            rec = {"step": step, "total_steps": total, "epoch": it / spe, "loss": float(terms.total.detach()),
                   "dino": float(terms.dino), "barlow": None if terms.barlow is None else float(terms.barlow),
                   **s, "grad_norm": None if gnorm is None else float(gnorm),
                   "crops_per_s": crops_per_step / dt, "step_s": dt,
                   "eta_s": (total - step) * dt, "eta_call_s": (end - step) * dt,
                   **collapse_indicators(terms.teacher_probs, t_feat.detach()),
                   **{f"pairs_{k}": v for k, v in sampler.stats.items()}}
            history.append(rec)
            if progress is not None:
                progress(rec)
        if checkpoint_dir is not None and checkpoint_every and step % checkpoint_every == 0:
            last_saved, saved_step = save(step), step
    if checkpoint_dir is not None and step > saved_step:
        last_saved = save(step)
    elif checkpoint_dir is not None and has_training_state(checkpoint_dir):
        last_saved = Path(checkpoint_dir)
    ckpt = last_saved
    recent = step_times[1:] if len(step_times) > 1 else step_times
    return TrainResult(step=step, total_steps=total, steps_run=step - start, stopped_by=stopped_by,
                       checkpoint=ckpt, crops_per_s=crops_per_step / float(np.mean(recent)) if recent else 0.0,
                       history=history, sampler_stats=dict(sampler.stats), resumed_from=resumed_from)
