"""The BBN training loop, readable in one sitting.

Per epoch T: alpha = cumulative_alpha(T); for each pair of batches (uniform x_c, y_c) and
(reversed x_r, y_r): logits of both branches, z = alpha*W_c f_c + (1-alpha)*W_r f_r,
loss = alpha*CE(z, y_c) + (1-alpha)*CE(z, y_r), one SGD step. Then validation on the val split.
"""

from __future__ import annotations

import math
import os
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


@dataclass(frozen=True)
class Speed:
    """Opt-in speed options (all off by default; see README for what each trades)."""

    amp: str = "off"  # off | bf16 | fp16: autocast of the forward pass (fp16 with a GradScaler)
    channels_last: bool = False  # NHWC tensors: faster convolutions on most GPUs and oneDNN CPUs
    single_pass: bool = False  # one trunk call over both batches (BatchNorm statistics pooled)

    @classmethod
    def of(cls, p: TrainParams) -> "Speed":
        return cls(p.amp, p.channels_last, p.single_pass)

    def autocast(self, device: torch.device):
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype, enabled=self.amp != "off")

    def to(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = x.to(device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")


def _step(loss: torch.Tensor, optimizer, scaler: torch.amp.GradScaler | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def prepare_model(model: BilateralNet, p: TrainParams, device: torch.device) -> BilateralNet:
    """Device, memory format and (in place, names unchanged) torch.compile of the heavy parts."""
    model.to(device)
    if p.channels_last:
        model.to(memory_format=torch.channels_last)
    if p.compile:
        # BBN_COMPILE_BACKEND (e.g. aot_eager) traces without generating code: for debugging, and
        # for CPU tests, where inductor's C++ build of a ResNet takes minutes.
        backend = os.environ.get("BBN_COMPILE_BACKEND", "inductor")
        for part in (model.trunk, model.cb_block, model.rb_block):
            part.compile(backend=backend)
    return model


def _correct(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


def train_epoch(model: BilateralNet, uniform: DataLoader, reverse: DataLoader, optimizer, alpha: float,
                device: torch.device, epoch: int, speed: Speed = Speed(),
                scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    model.train()
    for loader in (uniform, reverse):
        loader.sampler.set_epoch(epoch)
    loss_m, acc_m, acc_c, acc_r = _Meter(), _Meter(), _Meter(), _Meter()
    batches = tqdm(zip(uniform, reverse), total=len(uniform), desc=f"epoch {epoch + 1}", disable=None, leave=False)
    for step, ((x_c, y_c), (x_r, y_r)) in enumerate(batches):
        x_c, y_c = speed.to(x_c, device), y_c.to(device, non_blocking=True)
        x_r, y_r = speed.to(x_r, device), y_r.to(device, non_blocking=True)
        with speed.autocast(device):
            logits_c, logits_r = model.branch_logits(x_c, x_r, single_pass=speed.single_pass)
            z = mix_logits(logits_c, logits_r, alpha)
            loss = bilateral_loss(z.float(), y_c, y_r, alpha)
        _check_finite(loss, epoch, step)
        _step(loss, optimizer, scaler)
        n = len(y_c)
        loss_m.add(loss.item(), n)
        # BBN's training accuracy: alpha-weighted hits of z on both labels.
        acc_m.add(alpha * _correct(z, y_c) + (1 - alpha) * _correct(z, y_r), n)
        acc_c.add(_correct(logits_c, y_c), n)
        acc_r.add(_correct(logits_r, y_r), n)
    return {"train_loss": loss_m.mean, "train_acc": acc_m.mean,
            "train_acc_conventional": acc_c.mean, "train_acc_rebalancing": acc_r.mean}


def train_epoch_single(model: BilateralNet, loader: DataLoader, optimizer, loss_fn, device: torch.device,
                       epoch: int, speed: Speed = Speed(), scaler: torch.amp.GradScaler | None = None
                       ) -> dict[str, float]:
    """One epoch of a single-branch baseline: the conventional branch, one sampler, one loss."""
    model.train()
    loader.sampler.set_epoch(epoch)
    loss_m, acc_m = _Meter(), _Meter()
    for step, (x, y) in enumerate(tqdm(loader, desc=f"epoch {epoch + 1}", disable=None, leave=False)):
        x, y = speed.to(x, device), y.to(device, non_blocking=True)
        with speed.autocast(device):
            logits = model.conventional(x).float()
            loss = loss_fn(logits, y)
        _check_finite(loss, epoch, step)
        _step(loss, optimizer, scaler)
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
    prepare_model(model, p, device)
    optimizer = make_optimizer(model, p)
    speed = Speed.of(p)
    scaler = speed.scaler(device)
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
            row |= train_epoch(model, loaders["uniform"], loaders["reversed"], optimizer, alpha, device, epoch,
                               speed, scaler)
        else:
            loss_fn = baselines.loss_for(p.method, p.baseline, counts, epoch)
            loader = loaders[baselines.sampler_for(p.method, epoch, p.baseline)]
            row = {"epoch": epoch + 1, "alpha": 1.0, "lr": lr}
            row |= train_epoch_single(model, loader, optimizer, loss_fn, device, epoch, speed, scaler)
        row |= validate(model, val, device, eval_alpha)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        on_epoch(epoch, row)
    return history


def finite(row: dict) -> dict:
    """The entries of ``row`` that are finite numbers (NaN has no place in MLflow or DVC metrics)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}
