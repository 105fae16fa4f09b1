"""Exact duplicates: files with the same bytes, found by their sha256.

A photo collection holds copies (exports, edits saved twice, a tool's hidden originals); a copy of
a test image among the training images measures test accuracy partly on training images. The
readability check hashes every image it decodes (``bbn.data.imagecheck``) and lists the copies in
``data/stats/duplicates.csv``; every split keeps copies on one side (``content_groups``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import pandas as pd

from bbn.files import file_hash


def file_digest(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes."""
    return file_hash(path)


def content_groups(paths: Sequence[str | Path]) -> list[int]:
    """For each path the index of the first path with the same bytes (its own index when it has no
    earlier copy). Only files whose size another file shares are hashed, so a folder without copies
    costs one ``stat`` per file."""
    sizes = [Path(p).stat().st_size for p in paths]
    by_size: dict[int, list[int]] = defaultdict(list)
    for i, size in enumerate(sizes):
        by_size[size].append(i)
    group = list(range(len(paths)))
    for members in (m for m in by_size.values() if len(m) > 1):
        first: dict[str, int] = {}
        for i in members:
            group[i] = first.setdefault(file_digest(paths[i]), i)
    return group


def duplicate_rows(images: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``images`` (columns split, image_id, path, category_id, sha256) whose sha256
    another row shares, sorted by sha256 then path: the table of ``data/stats/duplicates.csv``."""
    dup = images[images["sha256"].duplicated(keep=False) & (images["sha256"] != "")]
    columns = ["sha256", "split", "image_id", "path", "category_id"]
    return dup[columns].sort_values(["sha256", "path"]).reset_index(drop=True)


def conflicting_labels(duplicates: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``duplicates`` whose copies are labelled with different categories (the same
    picture in two class folders: one of the labels is wrong); unlabelled rows (-1) do not count."""
    labelled = duplicates[duplicates["category_id"] >= 0]
    mixed = labelled.groupby("sha256")["category_id"].nunique()
    return labelled[labelled["sha256"].isin(mixed[mixed > 1].index)].reset_index(drop=True)


def copies_of_test_images(duplicates: pd.DataFrame, used: Sequence[str] | None = None) -> pd.DataFrame:
    """The test rows of ``duplicates`` whose bytes are also among the training images: the rows of
    the train and val splits, or (``used``) the paths that the split stage kept for training and
    validation (unreadable images and an unused val set left out)."""
    training = duplicates["split"].isin(["train", "val"])
    if used is not None:
        training &= duplicates["path"].isin(set(used))
    seen = set(duplicates.loc[training, "sha256"])
    return duplicates[(duplicates["split"] == "test") & duplicates["sha256"].isin(seen)].reset_index(drop=True)
