"""Seeded, stratified train/val split of the training pool; the test set is never touched.

Byte-identical copies (``bbn.data.duplicates``) stay on one side. Every class keeps at least one
training image: a class with a single image stays in train, and
stratification gives every larger class at least one training image too (checked, not assumed).
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from bbn.errors import BBNError


def stratified_split(pool: pd.DataFrame, val_fraction: float, seed: int,
                     copies: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``pool`` (one row per image, column category_id) into (train, val). ``copies``: a key
    per row of ``pool`` (the sha256 of its bytes) that byte-identical copies share; the first of each
    copy set is split and the others follow it, so no image is in train with its copy in val."""
    if copies is not None and copies.duplicated().any():
        first = ~copies.duplicated()
        train, val = stratified_split(pool[first], val_fraction, seed)
        in_val = copies.isin(set(copies[first][pool[first]["image_id"].isin(val["image_id"])]))
        return (pool[~in_val].sort_values("image_id").reset_index(drop=True),
                pool[in_val].sort_values("image_id").reset_index(drop=True))
    if val_fraction == 0:
        return pool.reset_index(drop=True), pool.iloc[:0].copy()
    sizes = pool["category_id"].map(pool["category_id"].value_counts())
    single, rest = pool[sizes == 1], pool[sizes > 1]
    n_val = round(len(rest) * val_fraction)
    if n_val < 1:
        return pool.reset_index(drop=True), pool.iloc[:0].copy()
    if n_val < rest["category_id"].nunique():
        train, val = small_val_split(rest, n_val, seed)
    else:
        train, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=rest["category_id"])
    train = pd.concat([train, single]).sort_values("image_id").reset_index(drop=True)
    val = val.sort_values("image_id").reset_index(drop=True)
    check_every_class_trains(pool, train)
    return train, val


def small_val_split(rest: pd.DataFrame, n_val: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fewer val images than classes, so stratification is impossible: draw the val images from all
    but one (seeded) image of every class, so that no class loses its last training image."""
    keep = rest.groupby("category_id").sample(n=1, random_state=seed)
    val = rest.drop(keep.index).sample(n=n_val, random_state=seed)
    return rest.drop(val.index), val


def check_every_class_trains(pool: pd.DataFrame, train: pd.DataFrame) -> None:
    lost = sorted(set(pool["category_id"]) - set(train["category_id"]))
    if lost:
        raise BBNError(f"split: category {lost[0]} has no training image after the split "
                       "(check the data, or lower split.val_fraction)")


def val_split_kind(official: bool, train_counts) -> str:
    """How the val split was made, for reports: ``official`` (the dataset's own val set),
    ``holdout-longtailed`` (a stratified hold-out of a pool whose largest class has at least twice
    the images of its smallest: as long-tailed as training, so its accuracy favours head classes
    and is not comparable with a balanced val set) or ``holdout-balanced``."""
    if official:
        return "official"
    counts = [int(c) for c in train_counts if int(c) > 0]
    return "holdout-longtailed" if counts and max(counts) >= 2 * min(counts) else "holdout-balanced"
