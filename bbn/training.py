"""The BBN training loop, readable in one sitting.

Per epoch T: alpha = cumulative_alpha(T); for each pair of batches (uniform x_c, y_c) and
(reversed x_r, y_r): logits of both branches, z = alpha*W_c f_c + (1-alpha)*W_r f_r,
loss = alpha*CE(z, y_c) + (1-alpha)*CE(z, y_r), one SGD step. Then validation on the val split.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from bbn import baselines
from bbn.alpha import cumulative_alpha
from bbn.config import TrainParams
from bbn.errors import BBNError
from bbn.losses import bilateral_loss
from bbn.network import BilateralNet, mix_logits


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BBNError(f"params.yaml: train.device: {name!r} asked for, but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(epoch: int, p: TrainParams) -> float:
    """Linear warm-up, then multiply by lr_factor at each epoch listed in lr_steps."""
    if epoch < p.warmup_epochs:
        return p.lr * (epoch + 1) / p.warmup_epochs
    return p.lr * p.lr_factor ** sum(epoch >= s for s in p.lr_steps)


def make_optimizer(model: torch.nn.Module, p: TrainParams) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum,
                           weight_decay=p.weight_decay, nesterov=p.nesterov and p.momentum > 0)


@dataclass
class _Meter:
    """Sums of a weighted quantity over an epoch."""

    total: float = 0.0
    weight: float = 0.0

    def add(self, value: float, weight: float) -> None:
        self.total += value * weight
        self.weight += weight

    @property
    def mean(self) -> float:
        return self.total / self.weight if self.weight else float("nan")


def _correct(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def train_epoch(model: BilateralNet, uniform: DataLoader, reverse: DataLoader, optimizer, alpha: float,
                device: torch.device, epoch: int) -> dict[str, float]:
    model.train()
    for loader in (uniform, reverse):
        loader.sampler.set_epoch(epoch)
    loss_m, acc_m, acc_c, acc_r = _Meter(), _Meter(), _Meter(), _Meter()
    batches = tqdm(zip(uniform, reverse), total=len(uniform), desc=f"epoch {epoch + 1}", disable=None, leave=False)
    for step, ((x_c, y_c), (x_r, y_r)) in enumerate(batches):
        x_c, y_c = x_c.to(device, non_blocking=True), y_c.to(device, non_blocking=True)
        x_r, y_r = x_r.to(device, non_blocking=True), y_r.to(device, non_blocking=True)
        logits_c, logits_r = model.branch_logits(x_c, x_r)
        z = mix_logits(logits_c, logits_r, alpha)
        loss = bilateral_loss(z, y_c, y_r, alpha)
        _check_finite(loss, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(y_c)
        loss_m.add(loss.item(), n)
        # BBN's training accuracy: alpha-weighted hits of z on both labels.
        acc_m.add(alpha * _correct(z, y_c) + (1 - alpha) * _correct(z, y_r), n)
        acc_c.add(_correct(logits_c, y_c), n)
        acc_r.add(_correct(logits_r, y_r), n)
    return {"train_loss": loss_m.mean, "train_acc": acc_m.mean,
            "train_acc_conventional": acc_c.mean, "train_acc_rebalancing": acc_r.mean}


def train_epoch_single(model: BilateralNet, loader: DataLoader, optimizer, loss_fn, device: torch.device,
                       epoch: int) -> dict[str, float]:
    """One epoch of a single-branch baseline: the conventional branch, one sampler, one loss."""
    model.train()
    loader.sampler.set_epoch(epoch)
    loss_m, acc_m = _Meter(), _Meter()
    for step, (x, y) in enumerate(tqdm(loader, desc=f"epoch {epoch + 1}", disable=None, leave=False)):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model.conventional(x)
        loss = loss_fn(logits, y)
        _check_finite(loss, epoch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_m.add(loss.item(), len(y))
        acc_m.add(_correct(logits, y), len(y))
    # the same columns as BBN's rows, so learning curves of both kinds compare in one table
    return {"train_loss": loss_m.mean, "train_acc": acc_m.mean, "train_acc_conventional": acc_m.mean,
            "train_acc_rebalancing": float("nan")}


def _check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise BBNError(f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                       "lower train.lr")


@torch.inference_mode()
def predict(model: BilateralNet, loader: DataLoader, device: torch.device, alpha: float = 0.5,
            desc: str = "predict", tta_flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(logits, targets) of every item in ``loader``'s order, both branches seeing each image.

    ``tta_flip`` averages the logits of each image and its horizontal mirror.
    """
    model.eval()
    logits, targets = [], []
    for x, y in tqdm(loader, desc=desc, disable=None, leave=False):
        x = x.to(device, non_blocking=True)
        z = model(x, alpha=alpha)
        if tta_flip:
            z = (z + model(x.flip(-1), alpha=alpha)) / 2
        logits.append(z.float().cpu())
        targets.append(torch.as_tensor(y))
    if not logits:
        return np.zeros((0, model.spec.num_classes), np.float32), np.zeros(0, np.int64)
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def validate(model: BilateralNet, loader: DataLoader | None, device: torch.device, alpha: float) -> dict:
    if loader is None or len(loader.dataset) == 0:
        return {"val_loss": float("nan"), "val_acc": float("nan")}
    logits, y = predict(model, loader, device, alpha, desc="val")
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)).item()
    return {"val_loss": loss, "val_acc": float((logits.argmax(1) == y).mean())}


def inference_alpha(method: str, eval_alpha: float) -> float:
    """BBN mixes both branches at test time (``eval.alpha``); a baseline has only the conventional one."""
    return eval_alpha if method == "bbn" else 1.0


def fit(model: BilateralNet, loaders: dict[str, DataLoader], val: DataLoader | None, p: TrainParams,
        eval_alpha: float, device: torch.device, counts: torch.Tensor,
        on_epoch: Callable[[int, dict], None] = lambda epoch, row: None) -> list[dict]:
    """Train for ``p.epochs`` epochs; ``on_epoch(epoch, row)`` sees every epoch's numbers.

    ``loaders``: the 'uniform', 'reversed' and 'balanced' training loaders; ``counts``: training
    images per class (for the baselines' losses).
    """
    model.to(device)
    optimizer = make_optimizer(model, p)
    eval_alpha = inference_alpha(p.method, eval_alpha)
    history = []
    for epoch in range(p.epochs):
        start = time.perf_counter()
        lr = lr_at(epoch, p)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if p.method == "bbn":
            alpha = cumulative_alpha(epoch, p.tmax, p.alpha.schedule, p.alpha.value)
            row = {"epoch": epoch + 1, "alpha": alpha, "lr": lr}
            row |= train_epoch(model, loaders["uniform"], loaders["reversed"], optimizer, alpha, device, epoch)
        else:
            loss_fn = baselines.loss_for(p.method, p.baseline, counts, epoch)
            loader = loaders[baselines.sampler_for(p.method, epoch, p.baseline)]
            row = {"epoch": epoch + 1, "alpha": 1.0, "lr": lr}
            row |= train_epoch_single(model, loader, optimizer, loss_fn, device, epoch)
        row |= validate(model, val, device, eval_alpha)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        on_epoch(epoch, row)
    return history


def finite(row: dict) -> dict:
    """The entries of ``row`` that are finite numbers (NaN has no place in MLflow or DVC metrics)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}
