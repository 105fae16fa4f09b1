"""Evaluation metrics for long-tailed recognition, as flat numbers.

top-k error; per-class accuracy and what long-tail papers read from it: macro (class-balanced)
accuracy, worst-class accuracy, and many / medium / few-shot accuracy (the mean per-class accuracy
over the classes of each shot group, the groups defined by the classes' *training* counts);
negative log-likelihood and expected calibration error (equal-width confidence bins, Guo et al. 2017).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bbn.data.stats import GROUPS


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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (log-softmax, numerically stable)."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Per confidence bin (lo, hi]: count, mean confidence and accuracy of the top-1 prediction."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n,
                    "confidence": float(conf[inside].mean()) if n else 0.0,
                    "accuracy": float((pred[inside] == labels[inside]).mean()) if n else 0.0})
    return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE = sum over bins of |B|/n * |accuracy(B) - confidence(B)|."""
    total = len(labels)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(probs, labels, bins)))


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Macro (class-balanced) accuracy: the mean per-class accuracy over the classes present in
    ``labels``; ``pred`` and ``labels`` (N,) class indices."""
    num_classes = int(max(pred.max(initial=0), labels.max(initial=0))) + 1
    return _nanmean(per_class_accuracy(pred, labels, num_classes)) or 0.0


def _nanmean(x: np.ndarray) -> float | None:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else None


def classification_metrics(logits: np.ndarray, labels: np.ndarray, groups) -> dict[str, float | None]:
    """Every metric above, flat. ``groups`` (C,): each class's shot group ('many' / 'medium' /
    'few', ``bbn.data.stats.class_table``); a group's accuracy is the mean per-class accuracy of its
    classes that have evaluation images (None: none has, e.g. an empty group)."""
    num_classes = logits.shape[1]
    pred = logits.argmax(axis=1)
    acc = per_class_accuracy(pred, labels, num_classes)
    groups = np.asarray(groups)
    present = acc[~np.isnan(acc)]
    out: dict[str, float | None] = {
        "top1_error": topk_error(logits, labels, 1),
        "top5_error": topk_error(logits, labels, 5),
        "top1_acc": float((pred == labels).mean()),
        "macro_acc": _nanmean(acc),
        "worst_class_acc": float(present.min()) if len(present) else None,
        "nll": nll(logits, labels),
        "ece": expected_calibration_error(softmax(logits), labels),
    }
    for g in GROUPS:
        out[f"{g}_acc"] = _nanmean(acc[groups == g])
    return out


def per_class_table(logits: np.ndarray, labels: np.ndarray, names, category_ids, train_counts,
                    groups=None) -> pd.DataFrame:
    """One row per class: id, name, training count, shot group (when given), evaluation images, accuracy."""
    num_classes = logits.shape[1]
    table = pd.DataFrame({
        "category_id": np.asarray(category_ids), "name": list(names), "train_count": np.asarray(train_counts),
        "eval_images": np.bincount(labels, minlength=num_classes),
        "accuracy": per_class_accuracy(logits.argmax(axis=1), labels, num_classes),
    })
    if groups is not None:
        table.insert(3, "group", np.asarray(groups))
    return table


def confused_classes(logits: np.ndarray, labels: np.ndarray, k: int = 20) -> list[int]:
    """Every class when there are at most ``k``; else the classes of the k largest off-diagonal
    confusion cells (a readable subset at 1,010 classes)."""
    num_classes = logits.shape[1]
    if num_classes <= k:
        return list(range(num_classes))
    off = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(off, (labels, logits.argmax(axis=1)), 1)
    np.fill_diagonal(off, 0)
    cells = np.argsort(-off, axis=None, kind="stable")[:k]
    cells = cells[off.flat[cells] > 0]
    rows, cols = np.unravel_index(cells, off.shape)
    return sorted(set(rows.tolist()) | set(cols.tolist())) or list(range(min(k, num_classes)))


def most_confused(logits: np.ndarray, labels: np.ndarray, names, k: int = 20) -> pd.DataFrame:
    """The confusion matrix (rows: true class, columns: predicted) among ``confused_classes``."""
    keep = confused_classes(logits, labels, k)
    full = np.zeros((logits.shape[1],) * 2, dtype=np.int64)
    np.add.at(full, (labels, logits.argmax(axis=1)), 1)
    names = np.asarray(list(names))
    return pd.DataFrame(full[np.ix_(keep, keep)], index=names[keep], columns=names[keep])


def confused_pairs(logits: np.ndarray, labels: np.ndarray, names, k: int = 20) -> pd.DataFrame:
    """(actual, predicted) names of the samples inside ``confused_classes``: the (actual, predicted) table of confusion plots."""
    keep = confused_classes(logits, labels, k)
    pred = logits.argmax(axis=1)
    inside = np.isin(labels, keep) & np.isin(pred, keep)
    names = np.asarray(list(names))
    return pd.DataFrame({"actual": names[labels[inside]], "predicted": names[pred[inside]]})
