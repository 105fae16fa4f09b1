"""The standard long-tail baselines, on the same backbone, data, schedule and evaluation as BBN.

Each trains the conventional branch alone (a plain ResNet: ``BilateralNet.conventional``) with
one sampler and one loss, both possibly switched at ``baseline.defer_epoch``:

    method            sampler (before / from defer_epoch)   loss
    ce                uniform                               cross-entropy
    ce_rs             class-balanced                        cross-entropy
    ce_drs            uniform / class-balanced              cross-entropy (Cao et al. 2019)
    ce_drw            uniform                               CE / CE weighted by effective numbers
    focal             uniform                               focal (Lin et al. 2017)
    cb_focal          uniform                               focal weighted by effective numbers (Cui et al. 2019)
    ldam_drw          uniform                               LDAM, cosine classifier, DRW weights (Cao et al. 2019)
    logit_adjust      uniform                               logit-adjusted CE (Menon et al. 2021)
    balanced_softmax  uniform                               balanced softmax (Ren et al. 2020)

At test time they use the conventional branch alone (alpha = 1).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from bbn import losses
from bbn.config import BaselineParams

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sampler_for(method: str, epoch: int, b: BaselineParams) -> str:
    """'uniform' or 'balanced': which training loader feeds this epoch."""
    if method == "ce_rs" or (method == "ce_drs" and epoch >= b.defer_epoch):
        return "balanced"
    return "uniform"


def head_for(method: str) -> str:
    return "cosine" if method == "ldam_drw" else "linear"


def loss_for(method: str, b: BaselineParams, counts: torch.Tensor, epoch: int) -> LossFn:
    """The loss of ``method`` at ``epoch`` (class-count dependent terms computed once per epoch)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if method in ("ce", "ce_rs", "ce_drs"):
        return F.cross_entropy
    if method == "ce_drw":
        weight = _float(losses.drw_weights(counts, epoch, b.defer_epoch, b.cb_beta))
        return lambda z, y: F.cross_entropy(z, y, weight=_on(weight, z))
    if method == "focal":
        return lambda z, y: losses.focal_loss(z, y, b.focal_gamma)
    if method == "cb_focal":
        weight = _float(losses.effective_number_weights(counts, b.cb_beta))
        return lambda z, y: losses.focal_loss(z, y, b.focal_gamma, weight=_on(weight, z))
    if method == "ldam_drw":
        margins = _float(losses.ldam_margins(counts, b.ldam_max_m))
        weight = _float(losses.drw_weights(counts, epoch, b.defer_epoch, b.cb_beta))
        return lambda z, y: losses.ldam_loss(z, y, _on(margins, z), b.ldam_s, weight=_on(weight, z))
    if method == "logit_adjust":
        prior = _float(losses.log_prior(counts))
        return lambda z, y: losses.logit_adjusted_loss(z, y, _on(prior, z), b.la_tau)
    if method == "balanced_softmax":
        return lambda z, y: losses.balanced_softmax_loss(z, y, _on(_float(counts), z))
    raise ValueError(f"not a baseline: {method!r}")


def _float(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else torch.as_tensor(t, dtype=torch.float32)


def _on(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.to(device=like.device, dtype=like.dtype)
