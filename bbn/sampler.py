"""BBN's two samplers.

* Uniform: every training image exactly once per epoch, in a seeded random order.
* Reversed: class i is drawn with probability proportional to 1/N_i, then an image uniformly within
  the class, so image j of class y has probability (1/N_y) / sum_k(1/N_k) * 1/N_y. All draws of an
  epoch come from one ``torch.multinomial`` call (with replacement), not a Python loop per item.

Both are re-seeded per epoch from (seed, epoch), so a run is reproducible and resumable.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


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


def reversed_weights(labels: Sequence[int]) -> torch.Tensor:
    """Per-image probabilities of the reversed sampler: (1/N_y)^2, normalised."""
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse].astype(np.float64) ** 2
    return torch.as_tensor(w / w.sum())


class ReversedSampler(_EpochSampler):
    """Class ~ 1/N_i, then an image uniformly within the class; ``num_samples`` draws per epoch."""

    def __init__(self, labels: Sequence[int], num_samples: int | None = None, seed: int = 0):
        super().__init__(len(labels) if num_samples is None else num_samples, seed + 1)
        self.weights = reversed_weights(labels)

    def __iter__(self) -> Iterator[int]:
        draws = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=self._generator())
        return iter(draws.tolist())
