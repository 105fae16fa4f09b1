"""Per-epoch schedules: the cumulative-learning weight alpha (BBN section 3.3) and the learning rate.

Epochs are counted from 1, as the official BBN code counts them (``main/train.py`` loops
``range(1, MAX_EPOCH + 1)``) and as the training log, ``plots/learning_curve.csv`` and the MLflow
steps show them. With t = min((epoch - 1) / T_max, 1):
    parabolic  alpha = 1 - t^2            (the paper's choice; lib/core/combiner.py ``bbn_mix``)
    linear     alpha = 1 - t
    cosine     alpha = cos(t * pi / 2)
    fixed      alpha = value              (the alpha = 0 / alpha = 1 ablations)
alpha is 1 in epoch 1 (learn the universal representation) and decays to 0 at epoch T_max + 1
(re-balance); after that it stays at 0. T_max is independent of the number of epochs.

The learning rate follows the official ``WarmupMultiStepLR`` (lib/utils/lr_scheduler.py) as stepped
with torch 1.0.1 before every epoch: epoch e is the scheduler's ``last_epoch = e - 1``. So
``lr_steps: [120, 160]`` means epochs 1-120 at the base rate, 121-160 at base x factor and 161 on at
base x factor^2 (a step s lowers the lr from epoch s + 1 on), and ``warmup_epochs: w`` means epochs
1..w ramp linearly from base/3 (the official warm-up factor 1/3) towards the base rate, reached in
epoch w + 1.
"""

from __future__ import annotations

import math

from bbn.vocab import ALPHA_SCHEDULES as SCHEDULES

WARMUP_START = 1 / 3  # the official WarmupMultiStepLR's warmup_factor


def cumulative_alpha(epoch: int, tmax: int, schedule: str = "parabolic", value: float = 0.5) -> float:
    """alpha of 1-based ``epoch`` (1 in epoch 1); ``ValueError`` for tmax <= 0 or an unknown schedule."""
    if schedule == "fixed":
        return float(value)
    if tmax <= 0:
        raise ValueError("tmax must be positive")
    t = min(max(epoch - 1, 0) / tmax, 1.0)
    if schedule == "parabolic":
        return 1.0 - t * t
    if schedule == "linear":
        return 1.0 - t
    if schedule == "cosine":
        return math.cos(t * math.pi / 2)
    raise ValueError(f"unknown alpha schedule {schedule!r}; choose from {SCHEDULES}")


def lr_at(epoch: int, peak: float, warmup_epochs: int, lr_steps, lr_factor: float) -> float:
    """The learning rate of 1-based ``epoch``: ``peak * warm-up factor * lr_factor ** (number of
    lr_steps < epoch)``; the warm-up factor is 1/3 + 2/3 * (epoch - 1) / warmup_epochs for
    epoch <= warmup_epochs, else 1 (official ``WarmupMultiStepLR``, linear method)."""
    done = epoch - 1  # the official scheduler's last_epoch in this epoch
    warm = 1.0
    if done < warmup_epochs:
        a = done / warmup_epochs
        warm = WARMUP_START * (1 - a) + a
    return peak * warm * lr_factor ** sum(done >= s for s in lr_steps)
