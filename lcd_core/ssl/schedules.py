"""Per-iteration schedules (DINO ``utils.cosine_scheduler``): plain functions → numpy arrays."""

from __future__ import annotations

import numpy as np

__all__ = ["cosine_schedule", "linear_warmup_then_constant", "SSLSchedules", "schedules_for"]


def cosine_schedule(base: float, final: float, total_iters: int, warmup_iters: int = 0,
                    start_warmup_value: float = 0.0) -> np.ndarray:
    """``warmup_iters`` linear from ``start_warmup_value`` to ``base``, then a half cosine from
    ``base`` to ``final`` over the rest; length ``total_iters``."""
    total_iters = int(total_iters)
    warmup_iters = int(min(max(warmup_iters, 0), total_iters))
    warm = np.linspace(start_warmup_value, base, warmup_iters, endpoint=False) if warmup_iters else np.array([])
    n = total_iters - warmup_iters
    it = np.arange(n)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * it / max(n, 1)))
    return np.concatenate([warm, cos]).astype(np.float64)


def linear_warmup_then_constant(start: float, value: float, total_iters: int, warmup_iters: int) -> np.ndarray:
    """Linear ``start`` → ``value`` over ``warmup_iters`` (inclusive ends), then ``value``
    (DINO's teacher temperature, here per iteration instead of per epoch)."""
    total_iters = int(total_iters)
    w = int(min(max(warmup_iters, 0), total_iters))
    warm = np.linspace(start, value, w) if w else np.array([])
    return np.concatenate([warm, np.full(total_iters - w, value)]).astype(np.float64)


class SSLSchedules:
    """lr, weight decay, teacher momentum, teacher temperature: arrays of length ``total_iters``."""

    def __init__(self, lr, wd, momentum, teacher_temp):
        self.lr, self.wd, self.momentum, self.teacher_temp = lr, wd, momentum, teacher_temp

    def at(self, it: int) -> dict[str, float]:
        i = min(int(it), len(self.lr) - 1)
        return {"lr": float(self.lr[i]), "wd": float(self.wd[i]),
                "momentum": float(self.momentum[i]), "teacher_temp": float(self.teacher_temp[i])}


def schedules_for(config, iters_per_epoch: int) -> SSLSchedules:
    """The DINO schedules of ``config`` (an :class:`~lcd_core.ssl.config.SSLConfig`) for a data set
    of ``iters_per_epoch`` steps per epoch; fractional epochs are rounded to whole iterations."""
    ipe = max(int(iters_per_epoch), 1)
    total = max(int(round(config.epochs * ipe)), 1)
    return SSLSchedules(
        lr=cosine_schedule(config.peak_lr, config.min_lr, total, round(config.warmup_epochs * ipe)),
        wd=cosine_schedule(config.weight_decay, config.weight_decay_end, total),
        momentum=cosine_schedule(config.momentum_teacher, 1.0, total),
        teacher_temp=linear_warmup_then_constant(config.warmup_teacher_temp, config.teacher_temp, total,
                                                 round(config.warmup_teacher_temp_epochs * ipe)),
    )
