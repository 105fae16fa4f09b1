"""The standard long-tailed profile (Cui et al. 2019; Cao et al. 2019) and seeded subsampling to it.

Class i of C (in the dataset's class order) keeps n_i = int(n_max * IR^(-i/(C-1))) training images:
for CIFAR-10 with n_max 5000 and IR 100 that is 5000, 2997, 1796, ..., 50 (12,406 images).
Which images a class keeps is chosen as the reference generator of LDAM-DRW and BBN does
(kaidic/LDAM-DRW imbalance_cifar.py ``gen_imbalanced_data``, copied in Megvii-Nanjing/BBN
lib/dataset/imbalance_cifar.py): one numpy RNG seeded once, classes in sorted order, for each class
its indices in dataset order (``np.where``), shuffled in place, the first n_i kept. From the official
CIFAR python tarball with seed 0 this is the very subset the published CIFAR-LT numbers used.
The kept index list is saved with its hash so that a run can prove it trained on the same subset.
"""

from __future__ import annotations

import hashlib

import numpy as np

from bbn.errors import ArgError


def longtail_counts(n_max: int, imbalance_ratio: float, num_classes: int) -> list[int]:
    """n_i = int(n_max * IR^(-i / (C - 1))) for i = 0 .. C-1."""
    if num_classes == 1:
        return [n_max]
    return [int(n_max * imbalance_ratio ** (-i / (num_classes - 1))) for i in range(num_classes)]


def longtail_subsample(labels: np.ndarray, num_classes: int, n_max: int, imbalance_ratio: float,
                       seed: int, what: str = "data") -> np.ndarray:
    """Sorted indices into ``labels`` (N,) that follow the profile; ``n_max`` 0 = all of class 0's
    images. The reference generator (module docstring) with ``np.random.RandomState(seed)``, which
    draws exactly as the reference's ``np.random.seed(seed)`` + ``np.random.shuffle`` without
    touching the global RNG. ``ArgError('n_max')`` when a class has fewer images than asked for."""
    labels = np.asarray(labels, dtype=np.int64)
    available = np.bincount(labels, minlength=num_classes)
    wanted = longtail_counts(n_max or int(available[0]), imbalance_ratio, num_classes)
    rng = np.random.RandomState(seed)
    keep = []
    for c, n in enumerate(wanted):
        if n > available[c] or n < 1:
            raise ArgError("n_max", f"class {c} of {what} has {available[c]} images, "
                           f"the long-tail profile asks for {n}")
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        keep.append(idx[:n])
    return np.sort(np.concatenate(keep))


def index_digest(names: list[str]) -> str:
    """sha256 of the kept items' names, one per line: equal digests, equal subsets."""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()
