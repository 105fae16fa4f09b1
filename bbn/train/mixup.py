"""The mixup family's training step, on the conventional branch (a plain ResNet), as rows of BBN's
Table 1 (Zhou et al. 2020):

* ``input`` (Mixup, Zhang et al. 2018): lam ~ Beta(a, a) per step; the batch's images are mixed in
  pairs with a random permutation of it, x~ = lam x + (1 - lam) x[perm];
* ``manifold`` (Manifold Mixup, Verma et al. 2019): the same, at a layer drawn uniformly per step
  among the input and the outputs of the trunk's stages (``BilateralNet.mixing_layers``);
* ``manifold`` with two batches (the ``two`` sampler, BBN's "Manifold Mixup (two samplers)"): the
  i-th image of the uniform batch mixed with the i-th of the reversed batch.

Loss: lam CE(z, y_a) + (1 - lam) CE(z, y_b), y_b the labels of the partners. The training accuracy
is the same weighting of hits: lam [argmax z = y_a] + (1 - lam) [argmax z = y_b] (what agrees with
the mixed target; the val accuracy of the learning curve is on unmixed images, as for every method).
lam, the layer and the permutation come from the epoch-seeded numpy and torch generators, so a
resumed run replays them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def draw(beta: float, layers: int, manifold: bool, rng=np.random) -> tuple[float, int]:
    """(lam ~ Beta(beta, beta), the layer to mix at: 0 for Mixup, uniform in 0..``layers`` for
    Manifold Mixup). ``beta`` 0 gives lam 1 (no mixing)."""
    lam = float(rng.beta(beta, beta)) if beta > 0 else 1.0
    return lam, int(rng.randint(0, layers + 1)) if manifold else 0


def mixed_loss(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """lam CE(z, y_a) + (1 - lam) CE(z, y_b); z (N, C) logits, y (N,) class indices; a 0-dim mean."""
    return lam * F.cross_entropy(z, y_a) + (1.0 - lam) * F.cross_entropy(z, y_b)


def mixed_hits(z: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> float:
    """The training accuracy of a mixed batch: lam-weighted hits on both labels."""
    pred = z.argmax(1)
    return lam * (pred == y_a).float().mean().item() + (1.0 - lam) * (pred == y_b).float().mean().item()


def mixup_step(mixing: str, beta: float):
    """A training step (``bbn.train.loop.Step``) of the mixup family: ``mixing`` 'input' or
    'manifold', ``beta`` the Beta distribution's parameter (1 on CIFAR in BBN's Table 1). With one
    batch its images are paired by a random permutation; with two (uniform, reversed) i-th with i-th."""
    if mixing not in ("input", "manifold"):
        raise ValueError(f"unknown mixing {mixing!r}: input or manifold")

    def step(forward: nn.Module, batches: list) -> tuple[torch.Tensor, dict[str, float]]:
        net = getattr(forward, "module", forward).net  # Branches, or Branches in DDP
        lam, layer = draw(beta, net.mixing_layers, mixing == "manifold")
        (x, y_a), *second = batches
        if second:
            ((other, y_b),) = second
            perm = None
        else:
            other, perm = None, torch.randperm(len(y_a), device=y_a.device)
            y_b = y_a[perm]
        z = forward(x, other, mix={"layer": layer, "lam": lam, "perm": perm}).float()
        return mixed_loss(z, y_a, y_b, lam), {"train_acc": mixed_hits(z, y_a, y_b, lam),
                                              "train_acc_conventional": mixed_hits(z, y_a, y_b, lam)}
    return step
