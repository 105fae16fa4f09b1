"""The losses: BBN's bilateral loss and those of the single-branch baselines, by registry name.

``loss_for(name, ...)`` builds the loss a ``bbn.methods.Method`` declares for one epoch (class-count
dependent terms computed once per epoch); ``LOSSES`` lists the names.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from bbn.data.stats import log_prior
from bbn.train.spec import BaselineSpec


def bilateral_loss(z: torch.Tensor, y_c: torch.Tensor, y_r: torch.Tensor, alpha: float) -> torch.Tensor:
    """``z`` mixes both branches; ``y_c`` labels the uniform batch, ``y_r`` the reversed batch."""
    return alpha * F.cross_entropy(z, y_c) + (1.0 - alpha) * F.cross_entropy(z, y_r)


# ---------------------------------------------------------------------------
# Standard long-tailed-recognition baselines.
# ``counts`` is always the number of training images per class (index = class).
# Every loss returns the batch mean as a 0-dim tensor.
# ---------------------------------------------------------------------------


def _counts(counts) -> torch.Tensor:
    """Class counts as a float64 tensor (float64 keeps beta ** n_c accurate for large n_c)."""
    return torch.as_tensor(counts, dtype=torch.float64).flatten()


def effective_number_weights(counts, beta: float) -> torch.Tensor:
    """Class-balanced weights w_c = (1 - beta) / (1 - beta ** n_c), rescaled to sum to C.

    Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.
    ``beta = 0`` gives all ones; beta -> 1 approaches inverse-frequency weighting.
    """
    n = _counts(counts)
    w = (1.0 - beta) / (1.0 - beta ** n)
    return (w * len(n) / w.sum()).float()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``w_y * -(1 - p_t) ** gamma * log p_t``.

    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    With ``gamma = 0`` and ``weight = None`` this is exactly ``F.cross_entropy``.
    When ``weight`` is given the result is the *plain* mean over the batch (as in the
    CB-Focal loss of Cui et al. 2019), not the weight-normalised mean that
    ``F.cross_entropy(weight=...)`` uses.
    """
    log_p = F.log_softmax(logits, dim=1)
    focal_log_p = (1.0 - log_p.exp()) ** gamma * log_p  # factor is exactly 1 when gamma == 0
    # nll_loss picks -focal_log_p[i, y_i]; going through it (as F.cross_entropy does) makes
    # gamma = 0 bit-identical to cross entropy.  With weights: sum of w_y * loss_i, over N.
    if weight is None:
        return F.nll_loss(focal_log_p, target)
    return F.nll_loss(focal_log_p, target, weight=weight.to(logits), reduction="sum") / len(target)


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cui et al.'s class-balanced focal loss (CVPR 2019, eq. 6 and their code,
    richardaecn/class-balanced-loss src/cifar_main.py ``focal_loss``): one sigmoid per class.

    With one-hot labels y (N, C), p = sigmoid(z) and the modulator (1 - p)^gamma for y = 1, p^gamma
    for y = 0 (computed as exp(-gamma * (y z + log(1 + exp(-z)))) for stability):
        loss = sum_{i,c} w_{y_i} * modulator_ic * BCE(z_ic, y_ic) / sum_{i,c} y_ic
    i.e. summed over batch x classes and divided by the number of positives (= N). Every class
    column of sample i, negatives included, carries the weight w_{y_i} of its label (``weight``
    (C,), e.g. ``effective_number_weights``; None = 1). ``logits`` (N, C), ``target`` (N,) ->
    0-dim tensor.
    """
    y = F.one_hot(target, logits.shape[1]).to(logits)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    modulator = torch.exp(-gamma * (y * logits + F.softplus(-logits))) if gamma else 1.0
    w = 1.0 if weight is None else weight.to(logits)[target][:, None]
    return (w * modulator * bce).sum() / y.sum()


def ldam_margins(counts, max_m: float = 0.5) -> torch.Tensor:
    """Per-class margins m_c proportional to n_c ** (-1/4), scaled so that max_c m_c = max_m.

    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
    NeurIPS 2019.  Rare classes get the largest margins.
    """
    m = _counts(counts) ** -0.25
    return (m * max_m / m.max()).float()


def ldam_loss(logits: torch.Tensor, target: torch.Tensor, margins: torch.Tensor, s: float = 1.0,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """LDAM loss: CE(s * (z - m_y * onehot(y)), y), with F.cross_entropy's weighted mean.

    Cao et al., NeurIPS 2019.  Only the true-class logit is reduced by its margin, then all
    logits are scaled by ``s`` (the official code uses s = 30 on normalised features).
    """
    onehot = F.one_hot(target, logits.shape[1]).to(logits)
    adjusted = logits - onehot * margins.to(logits)[target][:, None]
    return F.cross_entropy(s * adjusted, target, weight=None if weight is None else weight.to(logits))


def drw_weights(counts, epoch: int, defer_epoch: int, beta: float = 0.9999) -> torch.Tensor | None:
    """Deferred re-weighting: no weights before ``defer_epoch``, class-balanced weights from it on.

    Cao et al., NeurIPS 2019 (DRW schedule), with the weights of Cui et al., CVPR 2019.
    """
    return None if epoch < defer_epoch else effective_number_weights(counts, beta)


def logit_adjusted_loss(logits: torch.Tensor, target: torch.Tensor, log_prior: torch.Tensor,
                        tau: float = 1.0) -> torch.Tensor:
    """Logit-adjusted loss: CE(z + tau * log pi, y).

    Menon et al., "Long-Tail Learning via Logit Adjustment", ICLR 2021.
    """
    return F.cross_entropy(logits + tau * torch.as_tensor(log_prior).to(logits), target)


def balanced_softmax_loss(logits: torch.Tensor, target: torch.Tensor, counts) -> torch.Tensor:
    """Balanced softmax: CE(z + log n_c, y).

    Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition", NeurIPS 2020.
    Equal to ``logit_adjusted_loss`` with tau = 1 (the constant log sum n cancels in softmax).
    """
    return F.cross_entropy(logits + _counts(counts).log().to(logits), target)


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = ("ce", "ce_drw", "focal", "cb_focal", "cb_softmax_focal", "ldam_drw", "logit_adjust", "balanced_softmax")


def loss_for(name: str, b: BaselineSpec, counts, epoch: int) -> LossFn:
    """The single-branch loss ``name`` (one of ``LOSSES``) for ``epoch`` (0-based); ``b``: the
    baselines' knobs (``bbn.train.spec.BaselineSpec``); ``counts``
    (C,): training images per class. Returns ``loss(logits (N, C), target (N,)) -> 0-dim mean``."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if name == "ce":
        return F.cross_entropy
    if name == "ce_drw":
        weight = _float(drw_weights(counts, epoch, b.defer_epoch, b.cb_beta))
        return lambda z, y: F.cross_entropy(z, y, weight=_on(weight, z))
    if name == "focal":
        return lambda z, y: focal_loss(z, y, b.focal_gamma)
    if name in ("cb_focal", "cb_softmax_focal"):
        weight = _float(effective_number_weights(counts, b.cb_beta))
        focal = sigmoid_focal_loss if name == "cb_focal" else focal_loss
        return lambda z, y: focal(z, y, b.focal_gamma, weight=_on(weight, z))
    if name == "ldam_drw":
        margins = _float(ldam_margins(counts, b.ldam_max_m))
        weight = _float(drw_weights(counts, epoch, b.defer_epoch, b.cb_beta))
        return lambda z, y: ldam_loss(z, y, _on(margins, z), b.ldam_s, weight=_on(weight, z))
    if name == "logit_adjust":
        prior = _float(log_prior(counts.numpy()))
        return lambda z, y: logit_adjusted_loss(z, y, _on(prior, z), b.la_tau)
    if name == "balanced_softmax":
        return lambda z, y: balanced_softmax_loss(z, y, _on(_float(counts), z))
    raise ValueError(f"not a single-branch loss: {name!r}; choose from {LOSSES}")


def _float(t) -> torch.Tensor | None:
    return None if t is None else torch.as_tensor(t, dtype=torch.float32)


def _on(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.to(device=like.device, dtype=like.dtype)
