"""One classifier-stage spec on a trained network (``rebalance``)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from bbn.classifier.heads import read_linear, with_linear_heads
from bbn.classifier.retrain import retrain
from bbn.classifier.spec import ClassifierSpec, check
from bbn.classifier.tau import choose_tau, extract_features, tau_normalise_model
from bbn.model.network import BilateralNet


def rebalance(model: BilateralNet, spec: ClassifierSpec, bilateral: bool, train_batches, val: DataLoader | None,
              counts, device: torch.device, on_epoch=None) -> tuple[BilateralNet, dict]:
    """(network, summary) after ``spec`` on ``model`` (trained by a bilateral method or not):
    ``none`` returns ``model`` unchanged; ``tau_norm`` chooses tau on ``val`` (the val split's
    batches; summary: tau, val_balanced_acc); ``crt`` / ``lws`` / ``mislas`` re-train on
    ``train_batches`` (class-balanced, ``bbn.classifier.retrain.balanced_loader``), ``counts`` (C,)
    training images per class (summary: the last epoch's train_loss, train_acc). cRT on a cosine
    classifier returns a new network with linear heads; the others change ``model`` in place.
    Errors: ``ArgError`` from ``bbn.classifier.spec.check`` and ``choose_tau``."""
    check(spec, bilateral, model.spec.head)
    if spec.method == "none":
        return model, {}
    torch.manual_seed(spec.seed)  # cRT's new classifier
    if spec.method == "tau_norm":
        feats, labels = extract_features(model, val, spec.branch, device) if val is not None else (
            torch.zeros(0, 0), np.zeros(0, np.int64))
        tau, acc, _ = choose_tau(feats, labels, read_linear(model, spec.branch)[0], spec.tau_grid)
        tau_normalise_model(model, spec.branch, tau)
        return model, {"tau": tau, "val_balanced_acc": acc}
    if spec.method == "crt":
        model = with_linear_heads(model)
    history = retrain(model, spec, train_batches, counts, device, on_epoch)
    last = history[-1] if history else {}
    return model, {"epochs": len(history), "train_loss": last.get("train_loss"), "train_acc": last.get("train_acc")}
