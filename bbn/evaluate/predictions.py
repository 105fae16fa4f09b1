"""Evaluation of a trained checkpoint: predictions, metrics, per-class table and pictures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from bbn.data.loading import eval_loader
from bbn.data.prepare import test_images
from bbn.data.stats import log_prior
from bbn.errors import BBNError
from bbn.evaluate import plots
from bbn.evaluate.metrics import (
    classification_metrics,
    confused_pairs,
    expected_calibration_error,
    most_confused,
    per_class_table,
    reliability_bins,
    softmax,
)
from bbn.evaluate.posthoc import posthoc_adjust, tune_tau
from bbn.files import atomic_path
from bbn.model.inference import predict
from bbn.model.network import BilateralNet

if TYPE_CHECKING:
    from bbn.model.checkpoint import Checkpoint


def class_indices(frame: pd.DataFrame, category_ids, source: str) -> list[int]:
    """Model output index of each row's category_id (-1: unlabelled)."""
    index = {int(c): i for i, c in enumerate(category_ids)}
    unknown = frame.loc[~frame["category_id"].isin(index) & (frame["category_id"] != -1), "category_id"]
    if len(unknown):
        raise BBNError(f"{source}: category_id {unknown.iloc[0]} is not one of the model's classes")
    return [index.get(int(c), -1) for c in frame["category_id"]]


def predict_frame(model: BilateralNet, ckpt: Checkpoint, frame: pd.DataFrame, source: str, batch_size: int,
                  num_workers: int | str, alpha: float, tta_flip: bool, device: torch.device, originals: bool = False):
    """(logits, targets) for the images of ``frame`` (columns path, category_id). ``originals``:
    the paths are original files, which go through the checkpoint's prepare step in memory first
    (``bbn.data.prepare.prepared_image``), so that they give the logits of their prepared copies."""
    targets = class_indices(frame, ckpt.category_ids, source)
    images = test_images(ckpt, frame["path"], targets, originals)
    loader = eval_loader(images, batch_size, num_workers, device)
    return predict(model, loader, device, alpha, desc=Path(source).stem, tta_flip=tta_flip)


def save_predictions(target: Path, image_ids, logits: np.ndarray, targets: np.ndarray, category_ids) -> None:
    with atomic_path(target, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, image_id=np.asarray(image_ids), logits=logits, target=targets,
                            category_ids=np.asarray(category_ids))


def labelled(targets: np.ndarray) -> bool:
    return len(targets) > 0 and bool((targets >= 0).all())


def metrics_for(logits: np.ndarray, targets: np.ndarray, groups, prefix: str) -> dict:
    """``classification_metrics`` with keys ``<prefix>_<metric>``, rounded to 6 digits."""
    found = classification_metrics(logits, targets, groups)
    return {f"{prefix}_{k}": None if v is None else round(v, 6) for k, v in found.items()}


def posthoc_metrics(val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], train_counts,
                    groups) -> dict:
    """Post-hoc logit adjustment (Menon et al. 2021): test logits - tau * log prior, with tau chosen
    on the val split alone (balanced accuracy); {} without labelled val and test sets."""
    (val_logits, val_y), (test_logits, test_y) = val, test
    if not (labelled(val_y) and labelled(test_y)):
        return {}
    prior = log_prior(train_counts)
    tau, _ = tune_tau(val_logits, val_y, prior)
    adjusted = posthoc_adjust(test_logits, prior, tau)
    return {"posthoc_tau": round(float(tau), 4)} | metrics_for(adjusted, test_y, groups, "test_posthoc")


HEADLINE = ("top1_error", "top5_error", "macro_acc", "many_acc", "medium_acc", "few_acc", "ece")


def headline(numbers: dict, reported: str) -> tuple[dict, dict]:
    """(headline, details) of the evaluation numbers: the headline holds the reported split's
    (``reported``: 'test', or 'val' without test labels) top-1/top-5 error, macro, many/medium/few
    accuracy and ECE, and the shot-group sizes (``<group>_classes``); the details hold the rest."""
    keys = [f"{reported}_{k}" for k in HEADLINE] + [k for k in numbers if k.endswith("_classes")]
    head = {k: numbers[k] for k in keys if k in numbers}
    return head, {k: v for k, v in numbers.items() if k not in head}


def write_report(logits: np.ndarray, targets: np.ndarray, classes: pd.DataFrame, folder: Path) -> None:
    """Per-class CSV and the pictures: accuracy vs frequency, reliability, most confused classes.
    ``classes``: one row per class in model order (category_id, name, train_count, group)."""
    table = per_class_table(logits, targets, classes["name"], classes["category_id"], classes["train_count"],
                            classes["group"])
    with atomic_path(folder / "per_class.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    plots.per_class_accuracy(table, folder / "per_class_accuracy.png")
    probs = softmax(logits)
    bins = reliability_bins(probs, targets)
    with atomic_path(folder / "reliability.csv", suffix=".csv") as tmp:
        pd.DataFrame(bins).to_csv(tmp, index=False)
    plots.reliability(bins, expected_calibration_error(probs, targets), folder / "reliability.png")
    plots.confused_pairs(most_confused(logits, targets, classes["name"]), folder / "confusion.png", len(classes))
    with atomic_path(folder / "confusion.csv", suffix=".csv") as tmp:
        confused_pairs(logits, targets, classes["name"]).to_csv(tmp, index=False)
