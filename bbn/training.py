"""The BBN training loop, readable in one sitting.

Per epoch T: alpha = cumulative_alpha(T); for each pair of batches (uniform x_c, y_c) and
(reversed x_r, y_r): logits of both branches, z = alpha*W_c f_c + (1-alpha)*W_r f_r,
loss = alpha*CE(z, y_c) + (1-alpha)*CE(z, y_r), one SGD step. Then validation on the val split.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from bbn import baselines
from bbn.alpha import cumulative_alpha
from bbn.config import TrainParams
from bbn.distributed import Dist, effective_lr, wrap
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


def lr_at(epoch: int, p: TrainParams, world_size: int = 1) -> float:
    """Linear warm-up, then multiply by lr_factor at each epoch listed in lr_steps; the peak is
    ``train.lr`` scaled for the global batch by ``train.lr_scaling`` (``effective_lr``)."""
    peak = effective_lr(p, world_size)
    if epoch < p.warmup_epochs:
        return peak * (epoch + 1) / p.warmup_epochs
    return peak * p.lr_factor ** sum(epoch >= s for s in p.lr_steps)


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

    @staticmethod
    def global_means(meters: list["_Meter"], dist: Dist) -> list[float]:
        """The meters' means over every rank's images (one all-reduce)."""
        sums = dist.sums([x for m in meters for x in (m.total, m.weight)])
        return [t / w if w else float("nan") for t, w in zip(sums[::2], sums[1::2])]


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


class Branches(nn.Module):
    """The training forward as one module call, so DistributedDataParallel sees it: both branches
    (BBN) or, with no re-balancing batch, the conventional branch alone (the baselines)."""

    def __init__(self, net: BilateralNet):
        super().__init__()
        self.net = net

    def forward(self, x_c: torch.Tensor, x_r: torch.Tensor | None = None, single_pass: bool = False):
        if x_r is None:
            return self.net.conventional(x_c)
        return self.net.branch_logits(x_c, x_r, single_pass=single_pass)


class _Steps:
    """Optimizer steps over micro-batches: ``accumulate`` backward passes per step (DDP's gradient
    all-reduce only on the last of them), each loss scaled by 1/accumulate."""

    def __init__(self, model: nn.Module, optimizer, scaler: torch.amp.GradScaler | None, accumulate: int):
        self.model, self.optimizer, self.scaler, self.accumulate = model, optimizer, scaler, accumulate
        self.scaling = scaler is not None and scaler.is_enabled()
        self.count = 0  # optimizer steps taken

    def context(self, micro: int):
        """Around forward and backward of micro-batch ``micro``: no gradient sync before the last."""
        last = micro % self.accumulate == self.accumulate - 1
        no_sync = getattr(self.model, "no_sync", None)
        return contextlib.nullcontext() if last or no_sync is None else no_sync()

    def backward(self, loss: torch.Tensor, micro: int) -> None:
        if micro % self.accumulate == 0:
            self.optimizer.zero_grad(set_to_none=True)
        loss = loss / self.accumulate
        (self.scaler.scale(loss) if self.scaling else loss).backward()
        if micro % self.accumulate == self.accumulate - 1:
            if self.scaling:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.count += 1


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    sampler = getattr(loader.batch_sampler, "set_epoch", None) and loader.batch_sampler
    (sampler or loader.sampler).set_epoch(epoch)


def _forward_module(model: nn.Module) -> nn.Module:
    return Branches(model) if isinstance(model, BilateralNet) else model


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


def train_epoch(model: nn.Module, uniform: DataLoader, reverse: DataLoader, optimizer, alpha: float,
                device: torch.device, epoch: int, speed: Speed = Speed(),
                scaler: torch.amp.GradScaler | None = None, accumulate: int = 1, dist: Dist = Dist()
                ) -> dict[str, float]:
    """One BBN epoch. ``model``: the network, or its ``Branches`` in DDP."""
    forward = _forward_module(model)
    forward.train()
    for loader in (uniform, reverse):
        _set_epoch(loader, epoch)
    steps = _Steps(forward, optimizer, scaler, accumulate)
    loss_m, acc_m, acc_c, acc_r = _Meter(), _Meter(), _Meter(), _Meter()
    batches = tqdm(zip(uniform, reverse), total=len(uniform), desc=f"epoch {epoch + 1}",
                   disable=None if dist.main else True, leave=False)
    for micro, ((x_c, y_c), (x_r, y_r)) in enumerate(batches):
        x_c, y_c = speed.to(x_c, device), y_c.to(device, non_blocking=True)
        x_r, y_r = speed.to(x_r, device), y_r.to(device, non_blocking=True)
        with steps.context(micro):
            with speed.autocast(device):
                logits_c, logits_r = forward(x_c, x_r, single_pass=speed.single_pass)
                z = mix_logits(logits_c, logits_r, alpha)
                loss = bilateral_loss(z.float(), y_c, y_r, alpha)
            _check_finite(loss, epoch, micro // accumulate)
            steps.backward(loss, micro)
        n = len(y_c)
        loss_m.add(loss.item(), n)
        # BBN's training accuracy: alpha-weighted hits of z on both labels.
        acc_m.add(alpha * _correct(z, y_c) + (1 - alpha) * _correct(z, y_r), n)
        acc_c.add(_correct(logits_c, y_c), n)
        acc_r.add(_correct(logits_r, y_r), n)
    loss, acc, acc_c, acc_r = _Meter.global_means([loss_m, acc_m, acc_c, acc_r], dist)
    return {"train_loss": loss, "train_acc": acc, "train_acc_conventional": acc_c, "train_acc_rebalancing": acc_r,
            "steps": steps.count}


def train_epoch_single(model: nn.Module, loader: DataLoader, optimizer, loss_fn, device: torch.device,
                       epoch: int, speed: Speed = Speed(), scaler: torch.amp.GradScaler | None = None,
                       accumulate: int = 1, dist: Dist = Dist()) -> dict[str, float]:
    """One epoch of a single-branch baseline: the conventional branch, one sampler, one loss."""
    forward = _forward_module(model)
    forward.train()
    _set_epoch(loader, epoch)
    steps = _Steps(forward, optimizer, scaler, accumulate)
    loss_m, acc_m = _Meter(), _Meter()
    batches = tqdm(loader, desc=f"epoch {epoch + 1}", disable=None if dist.main else True, leave=False)
    for micro, (x, y) in enumerate(batches):
        x, y = speed.to(x, device), y.to(device, non_blocking=True)
        with steps.context(micro):
            with speed.autocast(device):
                logits = forward(x).float()
                loss = loss_fn(logits, y)
            _check_finite(loss, epoch, micro // accumulate)
            steps.backward(loss, micro)
        loss_m.add(loss.item(), len(y))
        acc_m.add(_correct(logits, y), len(y))
    loss, acc = _Meter.global_means([loss_m, acc_m], dist)
    # the same columns as BBN's rows, so learning curves of both kinds compare in one table
    return {"train_loss": loss, "train_acc": acc, "train_acc_conventional": acc, "train_acc_rebalancing": float("nan"),
            "steps": steps.count}


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


def inference_alpha(method: str, eval_alpha: float, alpha: dict | None = None) -> float:
    """The branch weight at test time. BBN with a cumulative schedule: ``eval.alpha`` (0.5 mixes both
    branches equally). BBN with alpha fixed (``alpha``: train.alpha as a dict): that same value, since
    a branch trained with weight 0 never received a gradient. A baseline: its conventional branch (1)."""
    if method != "bbn":
        return 1.0
    if alpha and alpha.get("schedule") == "fixed":
        return float(alpha["value"])
    return eval_alpha


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The RNG seed of one rank's epoch: every epoch starts from a known state, so a resumed run
    replays the epochs after its checkpoint as an uninterrupted one would (no RNG state to save).
    Exactly so with ``train.deterministic``, which also restarts DataLoader workers every epoch;
    persistent workers otherwise keep the RNG state they started with."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def fit(model: BilateralNet, loaders: dict[str, DataLoader], val: DataLoader | None, p: TrainParams,
        eval_alpha: float, device: torch.device, counts: torch.Tensor,
        on_epoch: Callable[[int, dict, dict], None] = lambda epoch, row, state: None,
        dist: Dist = Dist(), resume: dict | None = None) -> list[dict]:
    """Train for ``p.epochs`` epochs; ``on_epoch(epoch, row, state)`` sees every epoch's numbers and
    the state to checkpoint (optimizer, scaler, history).

    ``loaders``: the 'uniform', 'reversed' and 'balanced' training loaders; ``counts``: training
    images per class (for the baselines' losses). ``resume``: such a state; training continues after
    its last epoch (the model's weights are the caller's to restore). Only rank 0 validates.
    """
    if p.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS refuses deterministic mode without it
        torch.use_deterministic_algorithms(True)
    prepare_model(model, p, device)
    if p.sync_bn and dist.enabled and device.type == "cpu":
        raise BBNError("params.yaml: train.sync_bn: SyncBatchNorm needs GPUs (PyTorch has no CPU version)")
    forward = wrap(Branches(model), dist, device, p.sync_bn, unused_parameters=p.method != "bbn")
    optimizer = make_optimizer(model, p)
    speed = Speed.of(p)
    scaler = speed.scaler(device)
    history = []
    if resume:
        optimizer.load_state_dict(resume["optimizer"])
        scaler.load_state_dict(resume["scaler"])
        history = list(resume["history"])
    eval_alpha = inference_alpha(p.method, eval_alpha, p.alpha.model_dump())
    for epoch in range(len(history), p.epochs):
        seed_everything(epoch_seed(p.seed, dist.rank, epoch))
        start = time.perf_counter()
        lr = lr_at(epoch, p, dist.world_size)
        for group in optimizer.param_groups:
            group["lr"] = lr
        common = dict(speed=speed, scaler=scaler, accumulate=p.accumulate, dist=dist)
        if p.method == "bbn":
            alpha = cumulative_alpha(epoch, p.tmax, p.alpha.schedule, p.alpha.value)
            row = {"epoch": epoch + 1, "alpha": alpha, "lr": lr}
            row |= train_epoch(forward, loaders["uniform"], loaders["reversed"], optimizer, alpha, device, epoch,
                               **common)
        else:
            loss_fn = baselines.loss_for(p.method, p.baseline, counts, epoch)
            loader = loaders[baselines.sampler_for(p.method, epoch, p.baseline)]
            row = {"epoch": epoch + 1, "alpha": 1.0, "lr": lr}
            row |= train_epoch_single(forward, loader, optimizer, loss_fn, device, epoch, **common)
        row |= validate(model, val if dist.main else None, device, eval_alpha)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        on_epoch(epoch, row, {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                              "history": history})
    return history


def finite(row: dict) -> dict:
    """The entries of ``row`` that are finite numbers (NaN has no place in MLflow or DVC metrics)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}
