"""Images to tensors: the Dataset and the training and evaluation loaders (transforms: bbn.data.transforms)."""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from bbn.data.decode import decode
from bbn.data.samplers import ClassBalancedSampler, ReversedSampler, StepBatches, UniformSampler, rank_seed
from bbn.errors import ArgError, BBNError


class ImageList(Dataset):
    """(image, class index) pairs from file paths, decoded to uint8 tensors and transformed on them.

    ``decode_size`` > 0: large JPEGs are decoded at the smallest DCT scale whose short side is still
    at least that (a large original costs a fraction of a full decode).
    """

    def __init__(self, paths: Sequence[str], targets: Sequence[int], transform, decode_size: int = 0):
        self.paths, self.targets, self.transform = list(paths), list(targets), transform
        self.decode_size = decode_size

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, data: bytes) -> torch.Tensor:
        """One file's bytes as the uint8 image (3, H, W) the transform gets."""
        return decode(data, self.decode_size)

    def __getitem__(self, i: int):
        try:
            with open(self.paths[i], "rb") as fh:
                image = self.load(fh.read())
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's ways of saying "not an image"
            raise BBNError(f"{self.paths[i]}: cannot read image ({exc})") from None
        return self.transform(image), self.targets[i]


def resolve_workers(num_workers: int | str, share: int = 1) -> int:
    """DataLoader worker processes for ``num_workers``: a count as given, or ``"auto"`` (also -1):
    the CPUs this process may use (``os.sched_getaffinity``), shared among the ``share`` loaders
    that run side by side (BBN's uniform and reversed loaders) and, under torchrun, among the
    processes of this node (``LOCAL_WORLD_SIZE``); at least 1. A BBN step reads two images per
    sample, so a GPU needs every core decoding (README "Training on iNaturalist 2019")."""
    if num_workers == "auto" or num_workers == -1:
        share *= int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return max(1, len(os.sched_getaffinity(0)) // max(1, share))
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ArgError("num_workers", f"{num_workers!r}: a worker count >= 0, or auto")
    return num_workers


def _loader(dataset: Dataset, num_workers: int, persistent: bool = True, **batching) -> DataLoader:
    extra = {"persistent_workers": persistent, "prefetch_factor": 4} if num_workers > 0 else {}
    return DataLoader(dataset, num_workers=num_workers, pin_memory=torch.cuda.is_available(), **batching, **extra)


def train_loaders(dataset: ImageList, batch_size: int, num_workers: int | str, seed: int, rank: int = 0,
                  world_size: int = 1, accumulate: int = 1, persistent: bool = True,
                  drop_last: bool = False, share: int = 2) -> dict[str, DataLoader]:
    """The 'uniform' and 'reversed' loaders of BBN (of equal length, zipped batch by batch) and the
    'balanced' loader of the re-sampling baselines, each yielding this rank's micro-batches of
    ``batch_size`` (``StepBatches``). Workers start only for the loaders iterated; ``persistent``
    False restarts them every epoch, seeded from that epoch's RNG (deterministic training).
    ``drop_last``: no last, partial step (the official BBN loaders). ``share``: how many of them run
    at once (2 for BBN, 1 for a single-sampler baseline): ``num_workers`` auto is divided by it."""
    n, mine = len(dataset), rank_seed(seed, rank)
    samplers = {"uniform": UniformSampler(n, seed=seed),  # one permutation, shared out among ranks
                "reversed": ReversedSampler(dataset.targets, num_samples=n, seed=mine),
                "balanced": ClassBalancedSampler(dataset.targets, num_samples=n, seed=mine)}
    workers = resolve_workers(num_workers, share)
    return {name: _loader(dataset, workers, persistent,
                          batch_sampler=StepBatches(s, batch_size, world_size, rank, accumulate, drop_last))
            for name, s in samplers.items()}


def eval_batch_size(batch_size: int, device: torch.device) -> int:
    """``eval.batch_size`` 0: 64 on CPU, where larger batches ran slower (ResNet-32, 32 px, one
    thread: 256 img/s at 64 vs 194 at 256; bench/README.md), 256 on accelerators."""
    return batch_size or (64 if device.type == "cpu" else 256)


def eval_loader(dataset: ImageList, batch_size: int, num_workers: int | str, device: torch.device) -> DataLoader:
    """Evaluation batches in dataset order; ``batch_size`` 0 chooses by device (``eval_batch_size``)."""
    return _loader(dataset, resolve_workers(num_workers), batch_size=eval_batch_size(batch_size, device))
