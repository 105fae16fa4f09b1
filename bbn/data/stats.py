"""Class-count statistics of a long-tailed training set: counts, imbalance ratio, shot groups.

Shot groups follow the long-tail literature (Liu et al., OLTR 2019): many-shot classes have more
than 100 training images, few-shot fewer than 20, medium-shot the rest. The counts are those of the
images the model trains on (after the validation hold-out), and the groups are computed once from
them (``class_table``) and read by every later consumer: statistics, plots, evaluation, report.

Two rules (``shot_thresholds``): ``fixed`` uses the given thresholds (100 / 20 suit iNaturalist-style
data); ``terciles`` suits datasets where every class is large (all many-shot under the fixed rule):
the third of the classes with the most images is many-shot, the third with the fewest few-shot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GROUPS = ("many", "medium", "few")
RULES = ("fixed", "terciles")


def shot_group(counts: np.ndarray, many_above: int, few_below: int) -> np.ndarray:
    """'many' (count > many_above) / 'medium' / 'few' (count < few_below) for each class count."""
    counts = np.asarray(counts)
    return np.where(counts > many_above, "many", np.where(counts < few_below, "few", "medium"))


def shot_thresholds(counts, rule: str, many_above: int, few_below: int) -> tuple[int, int]:
    """(many_above, few_below) that ``shot_group`` applies under ``rule``.

    ``fixed``: the arguments as given. ``terciles``: with k = C // 3 classes per outer group,
    many_above is the (k+1)-th largest count and few_below the (k+1)-th smallest, so the k classes
    with the most images are many-shot and the k with the fewest few-shot; classes tied with a
    boundary count go to medium, so that a group depends on the count alone (C < 3: all medium).
    Raises ValueError for an unknown rule or no classes.
    """
    if rule == "fixed":
        return int(many_above), int(few_below)
    if rule != "terciles":
        raise ValueError(f"unknown shot-group rule {rule!r}; choose from {RULES}")
    ordered = np.sort(np.asarray(counts, dtype=np.int64))
    if not len(ordered):
        raise ValueError("no classes")
    k = len(ordered) // 3
    return int(ordered[::-1][k]), int(ordered[k])


def log_prior(counts) -> np.ndarray:
    """log(n_c / sum_c n_c), float64, shape (C,): the log of the training label prior (Menon et al.,
    ICLR 2021, used by the logit-adjusted loss and post-hoc adjustment)."""
    n = np.asarray(counts, dtype=np.float64).ravel()
    return np.log(n / n.sum())


def class_table(classes: pd.DataFrame, many_above: int, few_below: int) -> pd.DataFrame:
    """``classes`` (category_id, name, train_count: one row per class) with its shot ``group`` and
    ``rank`` (1 = most training images), sorted by rank (ties by category_id)."""
    table = classes[["category_id", "name", "train_count"]].copy()
    table["train_count"] = table["train_count"].astype(int)
    table["group"] = shot_group(table["train_count"].to_numpy(), many_above, few_below)
    table = table.sort_values(["train_count", "category_id"], ascending=[False, True]).reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def group_sizes(groups) -> dict[str, int]:
    """{'many_classes': n, 'medium_classes': n, 'few_classes': n}: classes per shot group (0 for an
    empty group); they add up to the number of classes."""
    groups = np.asarray(groups)
    return {f"{g}_classes": int((groups == g).sum()) for g in GROUPS}


def summary(table: pd.DataFrame) -> dict:
    """Flat numbers of a ``class_table`` for the statistics file (few, so that a metrics listing stays
    readable; the per-class counts are in the table): classes, training images, imbalance
    ratio (largest / smallest non-zero count) and the shot-group sizes."""
    counts = table["train_count"]
    nonzero = counts[counts > 0]
    return {
        "num_classes": int(len(table)),
        "num_train_images": int(counts.sum()),
        "imbalance_ratio": round(float(nonzero.max() / nonzero.min()), 4) if len(nonzero) else 0.0,
    } | group_sizes(table["group"])


TAXONOMY = ("supercategory", "kingdom", "phylum", "class", "order", "family", "genus")


def super_counts(table: pd.DataFrame, categories: pd.DataFrame) -> pd.DataFrame:
    """Classes and training images per value of each taxonomy level the categories carry
    (iNat2017: supercategory; iNat2019: kingdom ... genus)."""
    merged = table[["category_id", "train_count"]].merge(categories.rename(columns={"id": "category_id"}),
                                                         on="category_id")
    parts = []
    for level in (c for c in TAXONOMY if c in merged.columns):
        g = merged.groupby(level, dropna=False).agg(classes=("category_id", "size"), images=("train_count", "sum"))
        parts.append(g.reset_index().rename(columns={level: "value"}).assign(level=level))
    if not parts:
        return pd.DataFrame(columns=["level", "value", "classes", "images"])
    out = pd.concat(parts, ignore_index=True)[["level", "value", "classes", "images"]]
    return out.sort_values(["level", "images"], ascending=[True, False], kind="stable").reset_index(drop=True)
