"""Every knob of the self-supervised recipe in one dataclass (SPEC 4.2, 7).

The five ablation variants of the paper differ by three switches only — ``barlow``,
``cross_batch``, ``plane_agnostic`` — so there is one code path, configured by :func:`variants`.

Defaults are the paper / DINO ViT-S/16 recipe (``gpu_default``). ``cpu_default`` keeps the recipe
but shrinks what a 2–16-core CPU cannot afford (see its docstring).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SSLConfig", "VARIANTS", "variants", "cpu_default", "gpu_default", "fit_to_steps",
           "preset_config", "CPU_PRETRAINING"]


@dataclass
class SSLConfig:
    # backbone -------------------------------------------------------------------------------
    arch: str = "vit_small_patch16_224"  # timm name; ViT-S/16 = 384-d, depth 12, 6 heads
    drop_path_rate: float = 0.1  # student only (DINO); the teacher has none
    seed: int = 0
    # DINO head (3-layer MLP, GELU, L2-normalised bottleneck, weight-normed last layer) -----------
    out_dim: int = 65536  # K, the prototype count (DINO default)
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_nlayers: int = 3
    norm_last_layer: bool = True  # weight-norm gain fixed at 1 (DINO default for ViT-S)
    # multi-crop ------------------------------------------------------------------------------
    global_crop_size: int = 224
    local_crop_size: int = 96
    global_crop_scale: tuple[float, float] = (0.4, 1.0)  # DINO multi-crop defaults
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    n_local_crops_per_source: int = 3  # per global-crop source image → 6 local crops in all
    hflip_p: float = 0.5
    vflip_p: float = 0.5  # microscopy has no "up": vertical flips too
    jitter_p: float = 0.8
    brightness: float = 0.4  # multiplicative factor in [1−b, 1+b]
    contrast: float = 0.4  # about the crop mean, factor in [1−c, 1+c]
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)  # global 1, global 2, locals (DINO)
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels of the output crop (DINO)
    # loss ------------------------------------------------------------------------------------
    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07  # > 0.07 reported unstable (DINO)
    warmup_teacher_temp_epochs: float = 30
    center_momentum: float = 0.9
    center_weight_cap: float = 2.0  # XB centers: cap of the over-representation weight (losses.py)
    barlow: bool = False
    barlow_lambda: float = 0.5  # off-diagonal coefficient ("strong decorrelation helps")
    barlow_weight: float = 0.5  # total = (1 − w)·DINO/log K + w·Barlow·s (CDCL); 0.5 = paper 1:1
    cross_batch: bool = False  # global crops from two replicas + one teacher center per replica
    plane_agnostic: bool = False  # each crop one random z-plane ×3, no blur
    # optimisation ----------------------------------------------------------------------------
    epochs: float = 60
    batch_size: int = 256  # pairs (= source images for global crop 1) per step
    lr: float = 0.001  # at batch 256; actual peak lr = lr · batch_size / 256
    min_lr: float = 1e-6
    warmup_epochs: float = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.996  # → 1.0, cosine
    clip_grad: float = 3.0  # 0 disables
    freeze_last_layer: float = 1  # epochs with the head's last layer frozen
    amp: str = "auto"  # autocast dtype: auto | bfloat16 | float32
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes carried into checkpoints

    # derived --------------------------------------------------------------------------------
    @property
    def n_local_crops(self) -> int:
        return 2 * self.n_local_crops_per_source

    @property
    def n_crops(self) -> int:
        return 2 + self.n_local_crops

    @property
    def peak_lr(self) -> float:
        return self.lr * self.batch_size / 256.0

    @property
    def barlow_scale(self) -> float:
        """CDCL's normalisation of the Barlow term: 1 / ((1 − λ) + 0.01 λ), so that an untrained
        model scores ≈ 1 on Barlow as on DINO/log K."""
        lam = self.barlow_lambda
        return 1.0 / ((1.0 - lam) + 0.01 * lam)

    @property
    def dino_scale(self) -> float:
        """1 / log K (CDCL): a uniform student against any teacher scores 1."""
        return 1.0 / math.log(self.out_dim)

    @property
    def variant(self) -> str:
        """The paper's name of this configuration ("PA + DINO + Barlow + XB", ...)."""
        parts = (["PA"] if self.plane_agnostic else []) + ["DINO"]
        parts += (["Barlow"] if self.barlow else []) + (["XB"] if self.cross_batch else [])
        return " + ".join(parts)

    # (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SSLConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) and k != "extra" else v) for k, v in d.items() if k in names}
        return cls(**kw)

    def replace(self, **changes: Any) -> SSLConfig:
        return dataclasses.replace(self, **changes)


# one switch set per paper variant (SPEC 4.2): (barlow, cross_batch, plane_agnostic)
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "dino": (False, False, False),
    "dino_barlow": (True, False, False),
    "dino_xb": (False, True, False),
    "dino_barlow_xb": (True, True, False),
    "pa_dino_barlow_xb": (True, True, True),  # the paper's best
}


def variants(base: SSLConfig | None = None) -> dict[str, SSLConfig]:
    """The five ablation variants as configs derived from ``base`` (default ``gpu_default()``)."""
    base = base or gpu_default()
    return {
        name: base.replace(barlow=b, cross_batch=x, plane_agnostic=p)
        for name, (b, x, p) in VARIANTS.items()
    }


def gpu_default(**changes: Any) -> SSLConfig:
    """The paper-scale recipe: ViT-S/16, K = 65536, batch 256 pairs (2 × 224² + 6 × 96² crops each),
    peak lr 0.001, 60 epochs with 10 warm-up epochs, teacher temperature 0.04 → 0.07 over 30
    epochs, the PA + DINO + Barlow + XB switches on. Needs a GPU (≈ 20 GB at batch 256 in bf16)."""
    return SSLConfig(barlow=True, cross_batch=True, plane_agnostic=True).replace(**changes)


def cpu_default(**changes: Any) -> SSLConfig:
    """The same recipe shrunk for a CPU (no GPU available):

    * ``out_dim`` 4096 instead of 65536 (CDCL's projection size): the last head layer at 65536 is
      16.8 M parameters (ViT-S itself is 21.7 M) that AdamW must update every step, and a CPU-sized
      data set (thousands of tiles) has far fewer images than 65536 prototypes; DINO's own
      ablation puts K = 4096 within about a point of 65536;
    * batch 16 pairs (lr scales to 6.25e-5 by the batch/256 rule), a lower teacher momentum 0.99
      (DINO issues #43/#246: small batches and small data collapse with 0.996);
    * 10 epochs with 1 warm-up epoch and teacher-temperature warm-up over 3: ViT-S/16 trains at
      ≈ 10 crops/s on 2 shared cores in bf16 (≈ 13 s per 16-pair step of 128 crops, ≈ 6k steps or
      100k tile pairs a day), so this is a fine-tuning / smoke-scale schedule, not the paper's 60
      epochs;
    * crop sizes unchanged (224 / 96): the embedding step feeds 224-px tiles.
    """
    return SSLConfig(
        out_dim=4096,
        batch_size=16,
        momentum_teacher=0.99,
        epochs=10,
        warmup_epochs=1,
        warmup_teacher_temp_epochs=3,
        barlow=True,
        cross_batch=True,
        plane_agnostic=True,
    ).replace(**changes)


# the paper/DINO schedule as fractions of the run: 10 warm-up epochs and 30 teacher-temperature
# warm-up epochs of 60, the last layer frozen for 1 of 60
_PAPER_EPOCHS = 60.0
_FRACTIONS = {"warmup_epochs": 10.0, "warmup_teacher_temp_epochs": 30.0, "freeze_last_layer": 1.0}


def fit_to_steps(config: SSLConfig, n_tiles: int, steps: int) -> SSLConfig:
    """``config`` with its run laid over exactly ``steps`` optimizer steps of ``n_tiles`` tiles.

    A bounded run (a CPU budget) trained with the paper's epoch counts would end inside the
    learning-rate warm-up. Here ``epochs = steps · batch / n_tiles`` and the epoch-counted knobs
    keep the paper's proportions of the run (warm-up 1/6, teacher-temperature warm-up 1/2,
    frozen last layer 1/60), so a short run still goes through warm-up, peak and cosine decay.
    """
    if steps < 1 or n_tiles < 1:
        raise ValueError(f"steps and n_tiles must be ≥ 1, got {steps} and {n_tiles}")
    spe = max(n_tiles // config.batch_size, 1)
    epochs = steps / spe
    return config.replace(epochs=epochs, **{k: epochs * v / _PAPER_EPOCHS for k, v in _FRACTIONS.items()})


# the bounded CPU run of the ``ssl_checkpoint`` assets (measured in README "Pre-training")
CPU_PRETRAINING: dict[str, Any] = {
    "arch": "vit_small_patch16_224",
    "global_crop_size": 112,
    "local_crop_size": 48,
    "batch_size": 32,
    "n_local_crops_per_source": 1,
    "lr": 0.001,
    "steps": 100,
}


def preset_config(preset: str, variant: str, n_tiles: int, *, steps: int | None = None,
                  seed: int = 0) -> tuple[SSLConfig, int]:
    """The config and step count of one ablation ``variant`` under a ``preset``.

    ``gpu``: :func:`gpu_default` with the variant's switches, 60 epochs of ``n_tiles`` (or
    ``steps``, the paper's schedule proportions kept by :func:`fit_to_steps`). ``cpu``:
    :func:`cpu_default` shrunk further by :data:`CPU_PRETRAINING` so that one variant trains in a
    few minutes on 2 cores: ViT-S/16 on 112-px global and 48-px local crops (¼ of the tokens; the
    embedding step then resizes tiles to 112 px, see ``input_size`` in the checkpoint), one local
    crop per global source, batch 32 (peak lr 1.25e-4 by the batch/256 rule; 2–8× higher rates
    collapsed the embedding's effective rank within ~100 steps here), a run of
    ``CPU_PRETRAINING["steps"]`` steps with the schedules fitted to them.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    b, x, p = VARIANTS[variant]
    if preset == "gpu":
        config = gpu_default(barlow=b, cross_batch=x, plane_agnostic=p, seed=seed)
        if steps is None:
            return config, max(int(round(config.epochs * max(n_tiles // config.batch_size, 1))), 1)
        return fit_to_steps(config, n_tiles, steps), int(steps)
    if preset != "cpu":
        raise ValueError(f"unknown pre-training preset {preset!r}; expected 'cpu' or 'gpu'")
    knobs = {k: v for k, v in CPU_PRETRAINING.items() if k != "steps"}
    steps = int(steps or CPU_PRETRAINING["steps"])
    config = cpu_default(barlow=b, cross_batch=x, plane_agnostic=p, seed=seed, **knobs)
    return fit_to_steps(config, n_tiles, steps), steps
