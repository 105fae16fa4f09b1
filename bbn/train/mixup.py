"""The mixup family's training step, on the conventional branch (a plain ResNet), as rows of BBN's
Table 1 (Zhou et al. 2020):

* ``input`` (Mixup, Zhang et al. 2018): lam ~ Beta(a, a) per step; the batch's images are mixed in
  pairs with a random permutation of it, x~ = lam x + (1 - lam) x[perm];
* ``manifold`` (Manifold Mixup, Verma et al. 2019): the same, at a layer drawn uniformly per step
  among the input and the outputs of the trunk's stages (``mixing_layers``);
* ``manifold`` with two batches (the ``two`` sampler, BBN's "Manifold Mixup (two samplers)"): the
  i-th image of the uniform batch mixed with the i-th of the reversed batch.

Loss: lam CE(z, y_a) + (1 - lam) CE(z, y_b), y_b the labels of the partners. The training accuracy
is the same weighting of hits: lam [argmax z = y_a] + (1 - lam) [argmax z = y_b] (what agrees with
the mixed target; the val accuracy of the learning curve is on unmixed images, as for every method).
lam and the layer come from a generator seeded by (seed, epoch), the permutation from the epoch-seeded
torch generator, so a resumed run replays them. The layers are the input and the output of every
trunk stage, the last one included (Verma et al. mixed at the input or after the first two residual
stages on CIFAR: the last stage here adds one choice of four).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mixing_layers(net) -> int:
    """How many places Manifold Mixup may mix at besides the input: the trunk's stages."""
    return sum(name.startswith("layer") for name, _ in net.trunk.named_children())


def mixed_conventional(net, x: torch.Tensor, layer: int, lam: float, perm: torch.Tensor | None = None,
                       other: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (N, C) of ``net``'s conventional branch for a batch mixed at ``layer`` (0: the images,
    Mixup; k: the output of the trunk's k-th stage, 1..``mixing_layers``): h = lam h(x) + (1 - lam)
    h(x)[perm], or with ``other`` (a second batch of x's shape) lam h(x) + (1 - lam) h(other), each
    batch through the trunk on its own until then. ValueError for another layer, or perm and other."""
    def mix(a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return lam * a + (1.0 - lam) * (a[perm] if b is None else b)

    if not 0 <= layer <= mixing_layers(net) or (perm is None) == (other is None):
        raise ValueError(f"layer {layer} (0 .. {mixing_layers(net)}) with a perm or another batch, not both")
    h, g = (mix(x, other), None) if layer == 0 else (x, other)
    stage = 0
    for name, module in net.trunk.named_children():
        h, g = module(h), (None if g is None else module(g))
        stage += name.startswith("layer")
        if name.startswith("layer") and stage == layer:
            h, g = mix(h, g), None
    return net.conventional_head(net.pool(net.cb_block(h)))


def draw(beta: float, layers: int, manifold: bool, rng) -> tuple[float, int]:
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


def mixup_step(mixing: str, beta: float, rng):
    """A training step (``bbn.train.loop.Step``) of the mixup family: ``mixing`` 'input' or
    'manifold', ``beta`` the Beta distribution's parameter (1 on CIFAR in BBN's Table 1). With one
    batch its images are paired by a random permutation; with two (uniform, reversed) i-th with i-th.
    ``rng`` (a numpy ``RandomState``) draws lam and the layer: seeded alike on every process, so all
    ranks mix at the same layer and make the same BatchNorm calls (SyncBatchNorm's collectives)."""
    if mixing not in ("input", "manifold"):
        raise ValueError(f"unknown mixing {mixing!r}: input or manifold")

    def step(forward: nn.Module, batches: list) -> tuple[torch.Tensor, dict[str, float]]:
        net = getattr(forward, "module", forward).net  # Branches, or Branches in DDP
        lam, layer = draw(beta, mixing_layers(net), mixing == "manifold", rng)
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
