"""The training loop, readable in one sitting: one loop for every method, a step per method.

Per epoch (counted from 1, as the official code, the log and the learning curve count them): the
method (``bbn.methods``) names the loaders and the step. BBN: alpha = cumulative_alpha(epoch); for
each pair of batches (uniform x_c, y_c) and (reversed x_r, y_r): logits of both branches,
z = alpha*W_c f_c + (1-alpha)*W_r f_r, loss = alpha*CE(z, y_c) + (1-alpha)*CE(z, y_r) (Zhou et al. 2020, eq. 3),
one SGD step. A baseline: one loader, its loss on the conventional branch.
Then validation on the val split.
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
from torch import nn
from torch.utils.data import DataLoader

from bbn.errors import ArgError, BBNError
from bbn.methods import method
from bbn.model.inference import validate
from bbn.model.network import BilateralNet, mix_logits
from bbn.train.distributed import Dist, effective_lr, wrap
from bbn.train.losses import LossFn, bilateral_loss, loss_for
from bbn.train.mixup import mixed_conventional, mixup_step
from bbn.train.progress import epoch_progress
from bbn.train.resume import Snapshot
from bbn.train.schedules import cumulative_alpha, lr_at
from bbn.train.spec import TrainSpec
from bbn.train.speed import Speed, prepare_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, p: TrainSpec) -> torch.optim.SGD:
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


class Branches(nn.Module):
    """The training forward as one module call, so DistributedDataParallel sees it: both branches
    (BBN) or, with no re-balancing batch, the conventional branch alone (the baselines)."""

    def __init__(self, net: BilateralNet):
        super().__init__()
        self.net = net

    def forward(self, x_c: torch.Tensor, x_r: torch.Tensor | None = None, single_pass: bool = False,
                mix: dict | None = None):
        if mix is not None:  # the mixup family: the conventional branch on mixed inputs (bbn.train.mixup)
            return mixed_conventional(self.net, x_c, other=x_r, **mix)
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


def _correct(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


Step = Callable[[nn.Module, list], tuple[torch.Tensor, dict[str, float]]]


def bilateral_step(alpha: float, single_pass: bool = False) -> Step:
    """BBN's step (Zhou et al. 2020, eq. 3): z = alpha W_c f_c + (1 - alpha) W_r f_r on the uniform
    batch (x_c, y_c) and the reversed batch (x_r, y_r); loss alpha CE(z, y_c) + (1 - alpha) CE(z, y_r).
    The training accuracy is BBN's: alpha-weighted hits of z on both labels."""
    def step(forward: nn.Module, batches: list) -> tuple[torch.Tensor, dict[str, float]]:
        (x_c, y_c), (x_r, y_r) = batches
        logits_c, logits_r = forward(x_c, x_r, single_pass=single_pass)
        z = mix_logits(logits_c, logits_r, alpha)
        loss = bilateral_loss(z.float(), y_c, y_r, alpha)
        return loss, {"train_acc": alpha * _correct(z, y_c) + (1 - alpha) * _correct(z, y_r),
                      "train_acc_conventional": _correct(logits_c, y_c),
                      "train_acc_rebalancing": _correct(logits_r, y_r)}
    return step


def single_step(loss_fn: LossFn) -> Step:
    """A single-branch baseline's step: the conventional branch, one batch, one loss."""
    def step(forward: nn.Module, batches: list) -> tuple[torch.Tensor, dict[str, float]]:
        ((x, y),) = batches
        logits = forward(x).float()
        acc = _correct(logits, y)
        return loss_fn(logits, y), {"train_acc": acc, "train_acc_conventional": acc}
    return step


ROW = ("train_loss", "train_acc", "train_acc_conventional", "train_acc_rebalancing")


def train_epoch(model: nn.Module, loaders: list[DataLoader], step: Step, optimizer, device: torch.device,
                epoch: int, speed: Speed = Speed(), scaler: torch.amp.GradScaler | None = None,
                accumulate: int = 1, dist: Dist = Dist(), max_steps: int = 0) -> dict[str, float]:
    """One epoch over ``loaders`` zipped batch by batch (BBN: uniform and reversed; a baseline: one),
    ``step`` giving each micro-batch's loss and accuracies. ``model``: the network, or its
    ``Branches`` in DDP. Returns the epoch's means over every rank's images (NaN where a step
    reports nothing, e.g. the re-balancing branch of a baseline) and the optimizer steps taken.
    ``max_steps`` > 0 ends the epoch after that many optimizer steps (a smoke run on full data)."""
    forward = _forward_module(model)
    forward.train()
    for loader in loaders:
        _set_epoch(loader, epoch)
    steps = _Steps(forward, optimizer, scaler, accumulate)
    meters = {k: _Meter() for k in ROW}
    total = min(len(loaders[0]), max_steps * accumulate) if max_steps else len(loaders[0])
    progress = epoch_progress(total, f"epoch {epoch}", enabled=dist.main)
    for micro, pairs in enumerate(zip(*loaders)):
        if micro == total:
            break
        pairs = [(speed.to(x, device), y.to(device, non_blocking=True)) for x, y in pairs]
        with steps.context(micro):
            with speed.autocast(device):
                loss, accs = step(forward, pairs)
            _check_finite(loss, epoch, micro // accumulate)
            steps.backward(loss, micro)
        n = len(pairs[0][1])
        for k, v in {"train_loss": loss.item(), **accs}.items():
            meters[k].add(v, n)
        progress.update(n * len(pairs))
    progress.close()
    return dict(zip(ROW, _Meter.global_means(list(meters.values()), dist))) | {"steps": steps.count}


def _check_finite(loss: torch.Tensor, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise BBNError(f"training diverged: loss is {loss.item()} at epoch {epoch}, step {step + 1}; "
                       "lower the learning rate")


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The RNG seed of one rank's epoch: every epoch starts from a known state, so a resumed run
    replays the epochs after its checkpoint as an uninterrupted one would (no RNG state to save).
    Exactly so with ``train.deterministic``, which also restarts DataLoader workers every epoch;
    persistent workers otherwise keep the RNG state they started with."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


def epoch_step(p: TrainSpec, epoch: int, counts: torch.Tensor) -> tuple[float, tuple[str, ...], Step]:
    """(alpha, loader names, step) of 1-based ``epoch`` for the method ``p.method`` declares
    (``bbn.methods``): BBN's cumulative alpha and bilateral step, or a baseline's sampler and loss.
    The samplers and losses take the number of epochs done before this one, so ``defer_epoch`` d
    switches from epoch d + 1 on, as an lr step at d does (LDAM-DRW's 160: from the 161st epoch)."""
    m = method(p.method)
    done = epoch - 1
    names = m.samplers(done, p.baseline.defer_epoch)
    if m.mixing:  # lam and the mixing layer: one generator per epoch, the same on every rank
        rng = np.random.RandomState(epoch_seed(p.seed, 0, epoch) % 2**32)
        return 1.0, names, mixup_step(m.mixing, p.baseline.mixup_alpha, rng)
    if m.bilateral:
        alpha = cumulative_alpha(epoch, p.tmax, p.alpha.schedule, p.alpha.value)
        return alpha, names, bilateral_step(alpha, p.single_pass)
    return 1.0, names, single_step(loss_for(m.loss, p.baseline, counts, done))


def _set_up(model: BilateralNet, p: TrainSpec, device: torch.device, dist: Dist) -> None:
    """Deterministic kernels when asked, then ``prepare_model``; SyncBatchNorm only on GPUs."""
    if p.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS refuses deterministic mode without it
        torch.use_deterministic_algorithms(True)
    prepare_model(model, p, device)
    if p.sync_bn and dist.enabled and device.type == "cpu":
        raise ArgError("sync_bn", "SyncBatchNorm needs GPUs (PyTorch has no CPU version)")


def fit(model: BilateralNet, loaders: dict[str, DataLoader], val: DataLoader | None, p: TrainSpec, device: torch.device,
        counts: torch.Tensor, on_epoch: Callable[[int, dict, Snapshot], None] = lambda epoch, row, snapshot: None,
        dist: Dist = Dist(), resume: Snapshot | None = None) -> list[dict]:
    """Train for ``p.epochs`` epochs, or until ``p.max_steps`` optimizer steps in all when that is
    > 0 (the epoch in progress then ends early, is validated and is the last). ``on_epoch(epoch, row,
    snapshot)`` sees every epoch's number (1-based, as ``row['epoch']``), numbers and the state to
    save for resuming (``bbn.train.resume.Snapshot``, run_id unset).

    ``p``: the training arguments (``bbn.train.spec.TrainSpec``);
    ``loaders``: the 'uniform', 'reversed' and 'balanced' training loaders; ``counts`` (C,): training
    images per class (for the baselines' losses). ``resume``: such a snapshot; training continues
    after its last epoch (the model's weights are the caller's to restore). Only rank 0 validates.
    Raises ``ArgError('sync_bn')`` for SyncBatchNorm on CPUs, ``BBNError`` when the loss diverges.
    """
    _set_up(model, p, device, dist)
    m = method(p.method)
    forward = wrap(Branches(model), dist, device, p.sync_bn, unused_parameters=not m.bilateral)
    optimizer, speed = make_optimizer(model, p), Speed.of(p)
    scaler = speed.scaler(device)
    history = list(resume.history) if resume else []
    if resume:
        optimizer.load_state_dict(resume.optimizer)
        scaler.load_state_dict(resume.scaler)
    val_alpha = m.test_alpha(p.alpha.schedule, p.alpha.value, p.val_alpha)
    peak = effective_lr(p, dist.world_size)
    done = sum(int(row.get("steps", 0)) for row in history)  # optimizer steps so far (train.max_steps)
    for epoch in range(len(history) + 1, p.epochs + 1):
        if p.max_steps and done >= p.max_steps:
            break
        seed_everything(epoch_seed(p.seed, dist.rank, epoch))
        start = time.perf_counter()
        lr = lr_at(epoch, peak, p.warmup_epochs, p.lr_steps, p.lr_factor)
        for group in optimizer.param_groups:
            group["lr"] = lr
        alpha, names, step = epoch_step(p, epoch, counts)
        row = {"epoch": epoch, "alpha": alpha, "lr": lr}
        row |= train_epoch(forward, [loaders[n] for n in names], step, optimizer, device, epoch, speed, scaler,
                           p.accumulate, dist, p.max_steps - done if p.max_steps else 0)
        done += row["steps"]
        row |= validate(model, val if dist.main else None, device, val_alpha)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        on_epoch(epoch, row, Snapshot(model.state_dict(), optimizer.state_dict(), scaler.state_dict(), history))
    return history


def finite(row: dict) -> dict:
    """The entries of ``row`` that are finite numbers (NaN has no place in tracked metrics)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)}
