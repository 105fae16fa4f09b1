"""Bring-your-own data: an ImageFolder tree (``root/<class>/*.jpg``), optionally long-tailed.

Accepted trees: ``root/<class>/...`` or ``root/train/<class>/...``; a ``test/`` folder beside the
classes is the test set (``test/<class>/...`` labelled, ``test/*.jpg`` unlabelled, as iNaturalist's).
Without one, ``data.test_per_class`` images of each class (at most half of it) are held out, seeded.
Classes are the sorted folder names, as torchvision's ImageFolder orders them; that order is also the
order of the long-tail profile (CIFAR's label order for the CIFAR-10 JPEG tree).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bbn.data.decode import is_image_name, is_os_metadata
from bbn.data.inat import require_two_classes
from bbn.errors import BBNError
from bbn.sources.layout import Record
from bbn.sources.longtail import longtail_subsample

RESERVED = {"train", "test", "val"}


def _images(folder: Path) -> list[Path]:
    """Image files below ``folder``, none inside OS metadata (``__MACOSX/``, ``._*``: ``is_os_metadata``)."""
    return sorted(p for p in folder.rglob("*") if is_image_name(p.relative_to(folder)) and p.is_file())


def _folders(root: Path) -> list[Path]:
    """The sub-folders of ``root`` that may hold data: not hidden, not OS metadata."""
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and not is_os_metadata(d.name))


def find_root(root: Path) -> Path:
    """Descend through single wrapper folders (an archive's ``cifar10/``) to the tree itself."""
    while True:
        subdirs = _folders(root)
        if (len(subdirs) == 1 and subdirs[0].name not in RESERVED and not _has_images_directly(root)
                and not _has_images_directly(subdirs[0])):  # a class folder is not a wrapper
            root = subdirs[0]
        else:
            return root


def _has_images_directly(folder: Path) -> bool:
    return any(is_image_name(p.name) for p in folder.iterdir())


Item = tuple[Path, int, str]  # file, class index (-1: unlabelled), path below its split's folder


def scan(root: Path) -> tuple[list[str], list[Item], list[Item] | None]:
    """(class names, training items, test items or None when there is no test/)."""
    root = find_root(root)
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = [d.name for d in _folders(train_root) if d.name not in RESERVED]
    if not classes:
        raise BBNError(f"{train_root}: no class folders (expected {train_root}/<class>/<image>)")
    train = [(p, c, str(p.relative_to(train_root))) for c, name in enumerate(classes)
             for p in _images(train_root / name)]
    empty = [name for c, name in enumerate(classes) if not any(k == c for _, k, _ in train)]
    if empty:
        raise BBNError(f"{train_root / empty[0]}: class folder holds no images")
    require_two_classes(train_root, classes)
    test_root = root / "test"
    if not test_root.is_dir():
        return classes, train, None
    index = {name: c for c, name in enumerate(classes)}
    test = []
    for p in _images(test_root):
        rel = p.relative_to(test_root).parts
        if len(rel) == 1:
            test.append((p, -1, str(p.relative_to(test_root))))
        elif rel[0] in index:
            test.append((p, index[rel[0]], str(p.relative_to(test_root))))
        else:
            raise BBNError(f"{test_root / rel[0]}: test class folder not among the training classes")
    return classes, train, test


def hold_out(train: list[Item], per_class: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Split ``per_class`` images of each class (at most half of it) off as a labelled test set."""
    labels = np.array([c for _, c, _ in train])
    rng = np.random.default_rng(seed)
    test_idx = set()
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_idx.update(idx[: min(per_class, len(idx) // 2)].tolist())
    return ([t for i, t in enumerate(train) if i not in test_idx],
            [t for i, t in enumerate(train) if i in test_idx])


def records(source: Path, p, longtail: bool, prefix: str):
    """Categories and {train, val, test} records (val empty: the split stage holds it out)."""
    classes, train, test = scan(source)
    if test is None:
        train, test = hold_out(train, p.test_per_class, p.seed)
    if longtail:
        keep = longtail_subsample(np.array([c for _, c, _ in train]), len(classes), p.n_max, p.imbalance_ratio,
                                  p.seed, what=str(source))
        train = [train[i] for i in keep]
    categories = [{"id": c, "name": name} for c, name in enumerate(classes)]

    def recs(split: str, items: list[Item]) -> list[Record]:  # the source's own names, traceable
        return [Record(f"{prefix}/{split}/{rel}", c, src=path) for path, c, rel in items]

    return categories, {"train": recs("train", train), "val": [], "test": recs("test", test)}
