"""Cumulative learning (BBN section 3.3): the weight alpha of the conventional branch per epoch.

With t = min(T / T_max, 1) and T the 0-based epoch:
    parabolic  alpha = 1 - t^2            (the paper's choice)
    linear     alpha = 1 - t
    cosine     alpha = cos(t * pi / 2)
    fixed      alpha = value              (the alpha = 0 / alpha = 1 ablations)
alpha starts at 1 (learn the universal representation) and decays to 0 at T_max (re-balance);
past T_max it stays at 0. T_max is independent of the number of epochs.
"""

from __future__ import annotations

import math

SCHEDULES = ("parabolic", "linear", "cosine", "fixed")


def cumulative_alpha(epoch: int, tmax: int, schedule: str = "parabolic", value: float = 0.5) -> float:
    if schedule == "fixed":
        return float(value)
    if tmax <= 0:
        raise ValueError("tmax must be positive")
    t = min(max(epoch, 0) / tmax, 1.0)
    if schedule == "parabolic":
        return 1.0 - t * t
    if schedule == "linear":
        return 1.0 - t
    if schedule == "cosine":
        return math.cos(t * math.pi / 2)
    raise ValueError(f"unknown alpha schedule {schedule!r}; choose from {SCHEDULES}")


def lr_at(epoch: int, peak: float, warmup_epochs: int, lr_steps, lr_factor: float) -> float:
    """The learning rate of 0-based ``epoch``: linear warm-up to ``peak`` over ``warmup_epochs``
    epochs, then ``peak * lr_factor ** (number of lr_steps <= epoch)``."""
    if epoch < warmup_epochs:
        return peak * (epoch + 1) / warmup_epochs
    return peak * lr_factor ** sum(epoch >= s for s in lr_steps)
