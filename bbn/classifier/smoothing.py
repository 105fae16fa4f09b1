"""Label-aware smoothing (Zhong et al., "Improving Calibration for Long-Tailed Recognition", CVPR 2021).

Class y, with N_y training images, is smoothed by eps_y between ``tail`` (the class with fewest
images, N_K) and ``head`` (the class with most, N_1), along u_y = (N_y - N_K) / (N_1 - N_K) in [0, 1]
(dvlab-research/MiSLAS methods.py ``LabelAwareSmoothing``; its configs use the default ``concave``):

    concave  eps_y = tail + (head - tail) * sin(pi/2 * u_y)
    linear   eps_y = tail + (head - tail) * u_y
    convex   eps_y = head + (head - tail) * sin(3pi/2 + pi/2 * u_y)     (= tail at u 0, head at u 1)

The loss of an image of class y is (1 - eps_y) * (-log p_y) + eps_y * mean_j(-log p_j): cross-entropy
against the target q = (1 - eps_y) onehot(y) + eps_y / C (every class, y included, gets eps_y / C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bbn.errors import ArgError


def smoothing_per_class(counts, head: float, tail: float, shape: str = "concave") -> torch.Tensor:
    """eps (C,) float32 for training-image ``counts`` (C,) (module docstring). All classes equally
    large (N_1 = N_K): every class is the head class, eps = ``head``. ``ArgError('smooth_shape')``."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    span = float(n.max() - n.min())
    u = (n - n.min()) / span if span > 0 else torch.ones_like(n)
    if shape == "concave":
        eps = tail + (head - tail) * torch.sin(u * math.pi / 2)
    elif shape == "linear":
        eps = tail + (head - tail) * u
    elif shape == "convex":
        eps = head + (head - tail) * torch.sin(1.5 * math.pi + u * math.pi / 2)
    else:
        raise ArgError("smooth_shape", f"{shape!r}: choose concave, linear or convex")
    return eps.float()


def smoothed_targets(y: torch.Tensor, eps: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The target distributions q (N, C) of labels ``y`` (N,) under per-class smoothing ``eps`` (C,)."""
    e = eps.to(y.device)[y].unsqueeze(1)
    return (1 - e) * F.one_hot(y, num_classes).float() + e / num_classes


def label_aware_loss(logits: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of (1 - eps_y) * NLL + eps_y * mean_j(-log p_j); ``logits`` (N, C)."""
    logp = F.log_softmax(logits.float(), dim=1)
    e = eps.to(logits.device)[y]
    nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1)
    return ((1 - e) * nll - e * logp.mean(dim=1)).mean()
