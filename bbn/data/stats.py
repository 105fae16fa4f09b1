"""Class-count statistics of a long-tailed training set: counts, imbalance ratio, shot groups.

Shot groups follow the long-tail literature (Liu et al., OLTR 2019): many-shot classes have more
than 100 training images, few-shot fewer than 20, medium-shot the rest (thresholds are params).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GROUPS = ("many", "medium", "few")


def shot_group(counts: np.ndarray, many_above: int, few_below: int) -> np.ndarray:
    """'many' / 'medium' / 'few' for each class count."""
    counts = np.asarray(counts)
    return np.where(counts > many_above, "many", np.where(counts < few_below, "few", "medium"))


def log_prior(counts) -> np.ndarray:
    """log(n_c / sum_c n_c), float64, shape (C,): the log of the training label prior (Menon et al.,
    ICLR 2021, used by the logit-adjusted loss and post-hoc adjustment)."""
    n = np.asarray(counts, dtype=np.float64).ravel()
    return np.log(n / n.sum())


def class_counts(images: pd.DataFrame, categories: pd.DataFrame, many_above: int, few_below: int) -> pd.DataFrame:
    """One row per category (also those with no image): category_id, name, count, group, rank."""
    counts = images["category_id"].value_counts()
    table = pd.DataFrame({"category_id": categories["id"], "name": categories["name"]})
    table["count"] = table["category_id"].map(counts).fillna(0).astype(int)
    table["group"] = shot_group(table["count"].to_numpy(), many_above, few_below)
    table = table.sort_values(["count", "category_id"], ascending=[False, True]).reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def summary(table: pd.DataFrame) -> dict:
    """Flat numbers for ``metrics/stats.json``."""
    counts = table["count"]
    nonzero = counts[counts > 0]
    out = {
        "num_classes": int(len(table)),
        "num_train_images": int(counts.sum()),
        "max_count": int(counts.max()),
        "min_count": int(counts.min()),
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else 0.0,
        "empty_classes": int((counts == 0).sum()),
    }
    for g in GROUPS:
        out[f"{g}_classes"] = int((table["group"] == g).sum())
    return out


TAXONOMY = ("supercategory", "kingdom", "phylum", "class", "order", "family", "genus")


def super_counts(table: pd.DataFrame, categories: pd.DataFrame) -> pd.DataFrame:
    """Classes and training images per value of each taxonomy level the categories carry
    (iNat2017: supercategory; iNat2019: kingdom ... genus)."""
    merged = table[["category_id", "count"]].merge(categories.rename(columns={"id": "category_id"}), on="category_id")
    parts = []
    for level in (c for c in TAXONOMY if c in merged.columns):
        g = merged.groupby(level, dropna=False).agg(classes=("category_id", "size"), images=("count", "sum"))
        parts.append(g.reset_index().rename(columns={level: "value"}).assign(level=level))
    if not parts:
        return pd.DataFrame(columns=["level", "value", "classes", "images"])
    out = pd.concat(parts, ignore_index=True)[["level", "value", "classes", "images"]]
    return out.sort_values(["level", "images"], ascending=[True, False], kind="stable").reset_index(drop=True)
