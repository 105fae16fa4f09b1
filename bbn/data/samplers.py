"""BBN's two samplers, and the class-balanced sampler of the re-sampling baselines.

* Uniform: every training image exactly once per epoch, in a seeded random order.
* Reversed: class i is drawn with probability proportional to 1/N_i, then an image uniformly within
  the class, so image j of class y has probability (1/N_y) / sum_k(1/N_k) * 1/N_y. All draws of an
  epoch come from one ``torch.multinomial`` call (with replacement), not a Python loop per item.

Both are re-seeded per epoch from (seed, epoch), so a run is reproducible and resumable.

Distributed training and gradient accumulation: ``StepBatches`` cuts one epoch's draws into optimizer
steps of ``batch_size x world_size x accumulate`` images and hands each rank its ``accumulate``
micro-batches of every step. With the uniform sampler (the same permutation on every rank) each
image is seen exactly once per epoch across all ranks; the reversed sampler is given a rank-specific
seed, so each rank draws independently from the same 1/N_i distribution.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler


class _EpochSampler(Sampler[int]):
    def __init__(self, num_samples: int, seed: int):
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def __len__(self) -> int:
        return self.num_samples


class UniformSampler(_EpochSampler):
    """A seeded permutation of all indices: each image once per epoch."""

    def __init__(self, num_samples: int, seed: int = 0):
        super().__init__(num_samples, seed)

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.num_samples, generator=self._generator()).tolist())


def class_power_weights(labels: Sequence[int], power: float) -> torch.Tensor:
    """Per-image probabilities when class i is drawn with probability ~ N_i^-power and then an image
    uniformly within it: (N_y^-power) * (1/N_y), normalised."""
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    w = counts[inverse].astype(np.float64) ** -(power + 1.0)
    return torch.as_tensor(w / w.sum())


def reversed_weights(labels: Sequence[int]) -> torch.Tensor:
    """Per-image probabilities of the reversed sampler: (1/N_y)^2, normalised."""
    return class_power_weights(labels, 1.0)


class _ClassSampler(_EpochSampler):
    """Class ~ N_i^-power, then an image uniformly within it; ``num_samples`` draws per epoch."""

    power = 1.0

    def __init__(self, labels: Sequence[int], num_samples: int | None = None, seed: int = 0):
        super().__init__(len(labels) if num_samples is None else num_samples, seed + 1)
        self.weights = class_power_weights(labels, self.power)

    def __iter__(self) -> Iterator[int]:
        draws = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=self._generator())
        return iter(draws.tolist())


class ReversedSampler(_ClassSampler):
    """BBN's reversed sampler: class ~ 1/N_i, then an image uniformly within the class."""

    power = 1.0


class ClassBalancedSampler(_ClassSampler):
    """Class-balanced re-sampling (the CE-RS / DRS baselines): every class equally likely."""

    power = 0.0


def rank_seed(seed: int, rank: int) -> int:
    """Independent draws per rank; rank 0 keeps ``seed``, so one process draws as before."""
    return seed + 7919 * rank


class StepBatches(BatchSampler):
    """This rank's micro-batches of every optimizer step of an epoch.

    Step s takes draws [s*G, (s+1)*G) of ``sampler`` (G = batch_size * world_size * accumulate),
    cuts them into world_size * accumulate pieces and yields pieces rank*accumulate .. +accumulate-1.
    So 2 processes with accumulate 1 and 1 process with accumulate 2 see the same images in the
    same steps. ``drop_last`` (the official BBN loaders' ``drop_last=True``): the last, partial
    step is dropped, so every step has the same size. Otherwise it is split evenly; if a piece would
    hold fewer than 2 images (BatchNorm needs 2), that remainder is dropped.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, world_size: int = 1, rank: int = 0,
                 accumulate: int = 1, drop_last: bool = False):
        self.sampler, self.batch_size, self.world_size, self.rank = sampler, batch_size, world_size, rank
        self.accumulate, self.drop_last = accumulate, drop_last

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _pieces(self) -> int:
        return self.world_size * self.accumulate

    def _step_sizes(self) -> list[int]:
        """Images per piece for every step of an epoch (the same on every rank)."""
        n, pieces = len(self.sampler), self._pieces()
        full, rest = divmod(n, self.batch_size * pieces)
        sizes = [self.batch_size] * full
        if not self.drop_last and rest // pieces >= 2:
            sizes.append(rest)  # the partial step, split by np.array_split
        return sizes

    def __iter__(self) -> Iterator[list[int]]:
        draws = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        start, mine = 0, slice(self.rank * self.accumulate, (self.rank + 1) * self.accumulate)
        for size in self._step_sizes():
            step = size * self._pieces() if size == self.batch_size else size
            for piece in np.array_split(draws[start:start + step], self._pieces())[mine]:
                yield piece.tolist()
            start += step

    def __len__(self) -> int:
        return len(self._step_sizes()) * self.accumulate
