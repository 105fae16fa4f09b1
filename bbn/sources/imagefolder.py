"""Bring-your-own data: an ImageFolder tree (``root/<class>/*.jpg``), optionally long-tailed.

Accepted trees: ``root/<class>/...`` or ``root/train/<class>/...``; a ``test/`` folder beside the
classes is the test set (``test/<class>/...`` labelled, ``test/*.jpg`` unlabelled, as iNaturalist's),
and a ``val/`` (``valid/``, ``validation/``) folder the user's own val split (``val/<class>/...``),
which the split stage uses as iNaturalist's official val set (``split.use_official_val``).
Without a test folder, ``data.test_per_class`` images of each class (at most half of it) are held
out, seeded, byte-identical copies kept on one side. Files are found by ``bbn.sources.walk``
(hidden files and folders skipped at every depth, links followed).
Classes are the sorted folder names, as torchvision's ImageFolder orders them; that order is also the
order of the long-tail profile (CIFAR's label order for the CIFAR-10 JPEG tree).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bbn.data.decode import is_image_name
from bbn.data.duplicates import content_groups
from bbn.data.inat import require_two_classes
from bbn.errors import BBNError
from bbn.sources.layout import Record
from bbn.sources.longtail import longtail_subsample
from bbn.sources.spec import DataSpec
from bbn.sources.walk import image_files, is_hidden, visible_folders

VAL_FOLDERS = ("val", "valid", "validation")  # ImageNet/Kaggle, Roboflow, Hugging Face names of the val split
RESERVED = {"train", "test", *VAL_FOLDERS}


def _images(folder: Path) -> list[Path]:
    """Image files below ``folder``, found by the one dataset walk (``bbn.sources.walk``)."""
    return image_files(folder)


def find_root(root: Path) -> Path:
    """Descend through single wrapper folders (an archive's ``cifar10/``) to the tree itself."""
    while True:
        subdirs = visible_folders(root)
        if (len(subdirs) == 1 and subdirs[0].name not in RESERVED and not _has_images_directly(root)
                and not _has_images_directly(subdirs[0])):  # a class folder is not a wrapper
            root = subdirs[0]
        else:
            return root


def _has_images_directly(folder: Path) -> bool:
    return any(is_image_name(p.name) and not is_hidden(p.name) for p in folder.iterdir())


Item = tuple[Path, int, str]  # file, class index (-1: unlabelled), path below its split's folder


def _val_root(root: Path) -> Path | None:
    """The user's own val split beside ``train/``: ``val/``, ``valid/`` or ``validation/`` (one of them)."""
    found = [root / name for name in VAL_FOLDERS if (root / name).is_dir()]
    if len(found) > 1:
        raise BBNError(f"{root}: {' and '.join(f.name + '/' for f in found)} both look like the val split; "
                       "keep one")
    return found[0] if found else None


def _labelled(split_root: Path, index: dict[str, int], what: str) -> list[Item]:
    """The images below ``split_root`` labelled by their first folder (-1 for images directly in it)."""
    items = []
    for p in _images(split_root):
        rel = p.relative_to(split_root).parts
        if len(rel) > 1 and rel[0] not in index:
            raise BBNError(f"{split_root / rel[0]}: {what} class folder not among the training classes")
        items.append((p, index[rel[0]] if len(rel) > 1 else -1, str(p.relative_to(split_root))))
    return items


def scan(root: Path) -> tuple[list[str], dict[str, list[Item] | None]]:
    """(class names, {"train": items, "val": items or None, "test": items or None}); None: no such
    folder (no ``val/``/``valid/``/``validation/``, no ``test/``)."""
    root = find_root(root)
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = [d.name for d in visible_folders(train_root) if d.name not in RESERVED]
    if not classes:
        raise BBNError(f"{train_root}: no class folders (expected {train_root}/<class>/<image>)")
    train = [(p, c, str(p.relative_to(train_root))) for c, name in enumerate(classes)
             for p in _images(train_root / name)]
    empty = [name for c, name in enumerate(classes) if not any(k == c for _, k, _ in train)]
    if empty:
        raise BBNError(f"{train_root / empty[0]}: class folder holds no images")
    require_two_classes(train_root, classes)
    index = {name: c for c, name in enumerate(classes)}
    val_root, test_root = _val_root(root), root / "test"
    val = _labelled(val_root, index, "val") if val_root else None
    if val is not None and any(c < 0 for _, c, _ in val):
        raise BBNError(f"{val_root}: images directly in the val folder have no class; put them in <class>/ folders")
    test = _labelled(test_root, index, "test") if test_root.is_dir() else None
    return classes, {"train": train, "val": val, "test": test}


def hold_out(train: list[Item], per_class: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Split ``per_class`` images of each class (at most half of it) off as a labelled test set.
    Byte-identical copies (``content_groups``) go to the same side: a copy of a test image in the
    training set would measure test accuracy on training images. Without copies the choice is that
    of a seeded permutation of each class's images."""
    labels = np.array([c for _, c, _ in train])
    group = np.array(content_groups([p for p, _, _ in train]), dtype=np.int64)
    rng = np.random.default_rng(seed)
    test_groups = set()
    for c in np.unique(labels):
        units = np.unique(group[labels == c])  # each copy set once, by its first member's index
        units = rng.permutation(units)
        test_groups.update(units[: min(per_class, len(units) // 2)].tolist())
    chosen = np.isin(group, list(test_groups))
    return ([t for t, x in zip(train, chosen) if not x], [t for t, x in zip(train, chosen) if x])


def records(source: Path, p: DataSpec, longtail: bool, prefix: str):
    """Categories and {train, val, test} records (val: the user's own val folder, else empty and the
    split stage holds one out)."""
    classes, found = scan(source)
    train, val, test = found["train"], found["val"] or [], found["test"]
    if test is None:
        train, test = hold_out(train, p.test_per_class, p.seed)
    if longtail:
        keep = longtail_subsample(np.array([c for _, c, _ in train]), len(classes), p.n_max, p.imbalance_ratio,
                                  p.seed, what=str(source))
        train = [train[i] for i in keep]
    categories = [{"id": c, "name": name} for c, name in enumerate(classes)]

    def recs(split: str, items: list[Item]) -> list[Record]:  # the source's own names, traceable
        return [Record(f"{prefix}/{split}/{rel}", c, src=path) for path, c, rel in items]

    return categories, {"train": recs("train", train), "val": recs("val", val), "test": recs("test", test)}
