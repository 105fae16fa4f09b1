"""Evaluation metrics for long-tailed recognition, as flat numbers.

top-k error, per-class accuracy, and many / medium / few-shot accuracy: the mean per-class accuracy
over the classes of each shot group, the groups defined by the classes' *training* counts.
"""

from __future__ import annotations

import numpy as np

from bbn.stats import GROUPS, shot_group


def topk_error(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(1.0 - (top == labels[:, None]).any(axis=1).mean())


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class over its evaluation images (NaN where a class has none)."""
    hits = np.bincount(labels, weights=(pred == labels).astype(float), minlength=num_classes)
    total = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / np.maximum(total, 1), np.nan)


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else None


def classification_metrics(logits: np.ndarray, labels: np.ndarray, train_counts: np.ndarray,
                           many_above: int, few_below: int) -> dict[str, float | None]:
    """top1/top5 error, accuracy and many/medium/few-shot accuracy (None: empty group)."""
    num_classes = logits.shape[1]
    pred = logits.argmax(axis=1)
    acc = per_class_accuracy(pred, labels, num_classes)
    groups = shot_group(train_counts, many_above, few_below)
    out: dict[str, float | None] = {
        "top1_error": topk_error(logits, labels, 1),
        "top5_error": topk_error(logits, labels, 5),
        "top1_acc": float((pred == labels).mean()),
    }
    for g in GROUPS:
        out[f"{g}_acc"] = _nanmean(acc[groups == g])
    return out
