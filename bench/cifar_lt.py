"""CIFAR-10-LT (the LDAM/BBN long-tail profile) as JPEG files for the bench and ``bench/gpu.sh``.

From the CIFAR-10 JPEG tarball (``cifar10/{train,test}/<class>/<n>.jpg``, e.g.
``../shared/data/cifar10-jpg.tar.gz``): class i keeps int(n_max * IR^(-i/9)) training images (the
first in file-name order; 5000, 2997, 1796, ..., 50 at IR 100, 12,406 in all, as Cao et al. 2019 and
Zhou et al. 2020) and ``test_per_class`` test images. Without the tarball: synthetic 32-px JPEGs
of the same counts (smooth colour fields, a class-dependent tint), and ``source`` says so.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def profile(n_max: int, ratio: float, classes: int = len(CLASSES)) -> list[int]:
    """Training images per class, head first (at least 1 each)."""
    return [max(1, int(n_max * ratio ** (-i / (classes - 1)))) for i in range(classes)]


@dataclass
class Split:
    train: tuple[list[str], list[int]]
    test: tuple[list[str], list[int]]
    source: str  # where the images came from, for the report


def _from_tarball(tarball: Path, root: Path, counts: list[int], test_per_class: int) -> None:
    """Two sequential passes over the (gzipped) archive: list the names, then extract the chosen ones
    in archive order (a gzip stream cannot seek back cheaply)."""
    want = {("train", c): n for c, n in zip(CLASSES, counts)} | {("test", c): test_per_class for c in CLASSES}
    with tarfile.open(tarball) as tar:
        names = sorted(m.name for m in tar if m.isfile() and m.name.endswith(".jpg"))
    chosen: set[str] = set()
    for (split, cls), n in want.items():
        chosen.update([x for x in names if Path(x).parts[-3:-1] == (split, cls)][:n])
    with tarfile.open(tarball) as tar:
        for m in tar:
            if m.name in chosen:
                split, cls, name = Path(m.name).parts[-3:]
                target = root / split / cls / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())


def _synthetic(root: Path, counts: list[int], test_per_class: int, px: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", counts), ("test", [test_per_class] * len(CLASSES))):
        for k, (name, n) in enumerate(zip(CLASSES, per_class)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            tint = np.array([25 * k, 255 - 25 * k, 128], np.float32)
            for i in range(n):
                field = rng.normal(0, 50, (4, 4, 3)).astype(np.float32) + tint
                img = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).resize((px, px), Image.BICUBIC)
                img.save(folder / f"{i:04d}.jpg", quality=90)


def build(root: Path, tarball: str | Path | None = None, n_max: int = 5000, ratio: float = 100.0,
          test_per_class: int = 1000) -> Split:
    """Write the split under ``root`` and return its (paths, class indices) and its source."""
    counts = profile(n_max, ratio)
    tarball = Path(tarball) if tarball else None
    if tarball and tarball.is_file():
        _from_tarball(tarball, root, counts, test_per_class)
        source = f"CIFAR-10 JPEGs from {tarball.name}"
    else:
        _synthetic(root, counts, test_per_class)
        source = "synthetic 32-px JPEGs (no CIFAR tarball found)"

    def listing(split: str) -> tuple[list[str], list[int]]:
        paths = sorted(root.glob(f"{split}/*/*.jpg"))
        return [str(p) for p in paths], [CLASSES.index(p.parent.name) for p in paths]
    train, test = listing("train"), listing("test")
    if [train[1].count(k) for k in range(len(CLASSES))] != counts:
        raise SystemExit(f"{tarball}: fewer training images per class than {counts}")
    return Split(train, test, f"{source}: {len(train[0])} training images {counts}, {len(test[0])} test")
