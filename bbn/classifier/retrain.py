"""Re-training the classifier on the frozen network with class-balanced batches: cRT, LWS, MiSLAS stage 2.

* cRT (Kang et al., ICLR 2020; facebookresearch/classifier-balancing config/*/cls_crt.yaml,
  models/DotProductClassifier.py): a newly initialised linear classifier, plain cross-entropy.
* LWS (same; models/TauNormClassifier.py): the classifier kept and frozen, one learnable scale per
  class on its logits, z_i = s_i (w_i . f + b_i), s initialised to 1.
* MiSLAS stage 2 (Zhong et al., CVPR 2021; dvlab-research/MiSLAS train_stage2.py, methods.py):
  the trained classifier kept and trained at ``lr * lr_factor`` together with LWS scales at ``lr``,
  loss: label-aware smoothing (``bbn.classifier.smoothing``); with ``shift_bn`` the network's
  BatchNorm layers run in training mode on the batches (no gradient reaches any weight), so their
  running statistics move to the class-balanced data (MiSLAS: ``model.train()`` under ``no_grad``).

Batches: class-balanced sampling, a class uniformly, then an image uniformly within it
(``bbn.data.samplers.ClassBalancedSampler``, independent draws; both codes' ``ClassAwareSampler``
cycles through shuffled classes in runs of 4 images of one class instead), N draws per epoch for N
training images: both codes cut their sampler's C x N_max draws to about N / batch steps an epoch
(classifier-balancing ``run_networks.py`` ``epoch_steps = int(N / B)``, "instead of oversampled
data number"; MiSLAS ``train_stage2.py`` breaks after ``ceil(N / B)`` + 1 batches); here ceil(N / B)
batches, the last one partial. SGD with momentum and weight decay on
everything trained; per-epoch cosine lr, lr/2 (1 + cos(pi e / E)) for e = 0 .. E-1 (MiSLAS
``adjust_learning_rate``; classifier-balancing steps its CosineAnnealingLR before each epoch, e = 1 ..
E, so its last epoch trains at lr 0). The scaled classifier is written back into the network as
plain linear weights (s_i w_i, s_i b_i): the checkpoint keeps the project's network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from bbn.classifier.heads import branch_features, fresh_linear, read_linear, write_linear
from bbn.classifier.smoothing import label_aware_loss, smoothing_per_class
from bbn.classifier.spec import ClassifierSpec
from bbn.data.loading import ImageList, resolve_workers
from bbn.data.samplers import ClassBalancedSampler, StepBatches
from bbn.model.network import BilateralNet


def balanced_draws(targets) -> int:
    """Draws per epoch: the number of training images N (both codes' epoch of about N / batch steps,
    not their sampler's C x N_max; module docstring)."""
    return len(targets)


def balanced_loader(dataset: ImageList, batch_size: int, seed: int, num_workers: int | str) -> DataLoader:
    """Class-balanced batches of ``batch_size`` from ``dataset`` (``balanced_draws`` images an epoch,
    re-drawn per epoch by ``loader.batch_sampler.set_epoch``); the last partial batch is kept."""
    sampler = ClassBalancedSampler(dataset.targets, num_samples=balanced_draws(dataset.targets), seed=seed)
    return DataLoader(dataset, batch_sampler=StepBatches(sampler, batch_size), num_workers=resolve_workers(num_workers, 1),
                      pin_memory=torch.cuda.is_available())


def cosine_lr(lr: float, epoch: int, epochs: int) -> float:
    """lr of 0-based ``epoch`` of ``epochs``: lr/2 (1 + cos(pi epoch / epochs)) (MiSLAS)."""
    return 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))


class ScaledLinear(nn.Module):
    """z = s * (f V^T + c): (N, D) -> (N, C). ``train_weights``: V and c learn; ``scales``: s learns
    (else stays 1)."""

    def __init__(self, v: torch.Tensor, c: torch.Tensor, train_weights: bool, scales: bool):
        super().__init__()
        self.weight = nn.Parameter(v.clone(), requires_grad=train_weights)
        self.bias = nn.Parameter(c.clone(), requires_grad=train_weights)
        self.scales = nn.Parameter(torch.ones(len(c)), requires_grad=scales)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.linear(f, self.weight, self.bias) * self.scales

    def baked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(s V, s c): the same logits as one linear map."""
        with torch.no_grad():
            return self.scales[:, None] * self.weight, self.scales * self.bias


def stage_head(model: BilateralNet, spec: ClassifierSpec, width: int) -> ScaledLinear:
    """The trained part: cRT a fresh classifier; LWS the network's, frozen, with scales; MiSLAS both."""
    if spec.method == "crt":
        v, c = fresh_linear(width, model.spec.num_classes)
    else:
        v, c = read_linear(model, spec.branch)
    return ScaledLinear(v, c, train_weights=spec.method != "lws", scales=spec.method != "crt")


def optimizer(head: ScaledLinear, spec: ClassifierSpec) -> torch.optim.SGD:
    """SGD over the trained tensors; each group's ``factor`` times the epoch's lr is its lr
    (MiSLAS: the classifier x ``lr_factor``, the scales x 1)."""
    weights = [p for p in (head.weight, head.bias) if p.requires_grad]
    factor = spec.lr_factor if spec.method == "mislas" else 1.0
    groups = [{"params": weights, "factor": factor}] if weights else []
    groups += [{"params": [head.scales], "factor": 1.0}] if head.scales.requires_grad else []
    return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


def set_modes(model: BilateralNet, shift_bn: bool) -> None:
    """The frozen network in eval mode; with ``shift_bn`` its BatchNorm layers in training mode."""
    model.eval()
    if shift_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()


def train_epoch(model: BilateralNet, head: ScaledLinear, batches, opt, loss_fn, spec: ClassifierSpec,
                device: torch.device) -> dict:
    """One pass over ``batches`` ((x, y) pairs); {'train_loss', 'train_acc'} averaged over images."""
    set_modes(model, spec.shift_bn)
    total, loss_sum, correct = 0, 0.0, 0
    for x, y in tqdm(batches, desc="classifier", disable=None, leave=False):
        x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device)
        with torch.no_grad():
            f = branch_features(model, x, spec.branch)
        z = head(f)
        loss = loss_fn(z, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += len(y)
        loss_sum += loss.item() * len(y)
        correct += int((z.argmax(1) == y).sum())
    return {"train_loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1)}


def retrain(model: BilateralNet, spec: ClassifierSpec, batches, counts, device: torch.device,
            on_epoch=None) -> list[dict]:
    """Re-train ``spec.branch``'s classifier of ``model`` in place (module docstring) on ``batches``
    (re-iterable (x, y) batches; ``set_epoch`` called on a DataLoader's batch sampler), ``counts``
    (C,) training images per class (MiSLAS's smoothing). Returns one row per epoch (epoch 1-based,
    lr, train_loss, train_acc), each also passed to ``on_epoch``. Only the classifier changes,
    and with ``shift_bn`` the BatchNorm running statistics."""
    model.requires_grad_(False)
    width = model.cb_fc.weight.shape[1] if model.spec.classifier == "separate" else model.fc.weight.shape[1] // 2
    head = stage_head(model, spec, 2 * width if spec.branch == "both" else width).to(device)
    opt = optimizer(head, spec)
    eps = smoothing_per_class(counts, spec.smooth_head, spec.smooth_tail, spec.smooth_shape)
    loss_fn = (lambda z, y: label_aware_loss(z, y, eps)) if spec.method == "mislas" else F.cross_entropy
    history = []
    for epoch in range(spec.epochs):
        lr = cosine_lr(spec.lr, epoch, spec.epochs)
        for group in opt.param_groups:
            group["lr"] = lr * group["factor"]
        sampler = getattr(batches, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        row = {"epoch": epoch + 1, "lr": lr} | train_epoch(model, head, batches, opt, loss_fn, spec, device)
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    write_linear(model, spec.branch, *head.baked())
    model.eval()
    return history
