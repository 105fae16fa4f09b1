"""Seeded, stratified train/val split of the training pool; the test set is never touched.

Every class keeps at least one training image: a class with a single image stays in train, and
stratification gives every larger class at least one training image too (checked, not assumed).
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from bbn.errors import BBNError


def stratified_split(pool: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``pool`` (one row per image, column category_id) into (train, val)."""
    if val_fraction == 0:
        return pool.reset_index(drop=True), pool.iloc[:0].copy()
    sizes = pool["category_id"].map(pool["category_id"].value_counts())
    single, rest = pool[sizes == 1], pool[sizes > 1]
    n_val = round(len(rest) * val_fraction)
    if n_val < 1:
        return pool.reset_index(drop=True), pool.iloc[:0].copy()
    if n_val < rest["category_id"].nunique() and n_val < len(rest):
        # too small a val set to hold every class: still stratified as far as it goes
        train, val = train_test_split(rest, test_size=n_val, random_state=seed)
    else:
        train, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=rest["category_id"])
    train = pd.concat([train, single]).sort_values("image_id").reset_index(drop=True)
    val = val.sort_values("image_id").reset_index(drop=True)
    check_every_class_trains(pool, train)
    return train, val


def check_every_class_trains(pool: pd.DataFrame, train: pd.DataFrame) -> None:
    lost = sorted(set(pool["category_id"]) - set(train["category_id"]))
    if lost:
        raise BBNError(f"split: category {lost[0]} has no training image after the split "
                       "(check the data, or lower split.val_fraction)")
