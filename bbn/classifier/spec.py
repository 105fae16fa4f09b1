"""The classifier stage's arguments (``ClassifierSpec``) and the check of a spec against the network.

Defaults are the released CIFAR stage-2 settings of MiSLAS (dvlab-research/MiSLAS
config/cifar10/cifar10_imb001_stage2_mislas.yaml: 10 epochs, batch 128, lr 0.1, classifier lr x 0.5,
momentum 0.9, weight decay 2e-4, smoothing 0.3 head / 0.0 tail, no BatchNorm shift) and the
tau grid of facebookresearch/classifier-balancing tau_norm.py (``np.linspace(0, 2, 21)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bbn import vocab
from bbn.errors import ArgError
from bbn.methods import check_rebalancing

TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))  # 0.0, 0.1, ..., 2.0


@dataclass(frozen=True)
class ClassifierSpec:
    """One classifier stage. ``method``: none | crt | lws | tau_norm | mislas; ``branch``: the
    features it re-balances, conventional (f_c), reversed (f_r) or both ([f_c ; f_r], BBN only).

    ``lr`` is the learning rate of what each method trains (cRT: the new classifier; LWS: the scales;
    MiSLAS: the scales, and the classifier at ``lr * lr_factor``), under a cosine schedule over
    ``epochs`` to 0. An epoch is N class-balanced draws for N training images (``bbn.classifier.retrain``).
    ``smooth_head`` / ``smooth_tail``: MiSLAS's label-aware smoothing of the most / least frequent
    class, ``smooth_shape`` the curve between them. ``shift_bn``: BatchNorm running statistics of the
    frozen network re-estimated on the class-balanced batches (MiSLAS's shift); otherwise the whole
    network stays bit-identical. ``tau_grid``: the tau-normalisation candidates, chosen on val.
    """

    method: str = "none"
    branch: str = "conventional"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    lr_factor: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 2e-4
    smooth_head: float = 0.3
    smooth_tail: float = 0.0
    smooth_shape: str = "concave"
    shift_bn: bool = False
    tau_grid: tuple[float, ...] = TAU_GRID
    seed: int = 0

    @property
    def trains(self) -> bool:
        """Whether the method runs training epochs (cRT, LWS, MiSLAS), not a closed form (tau_norm)."""
        return self.method in ("crt", "lws", "mislas")


def check(spec: ClassifierSpec, bilateral: bool, head: str) -> None:
    """Refuse what cannot work on this network, naming the argument: ``ArgError('branch')`` for a
    branch other than conventional on a single-branch method's network (only its conventional
    branch was trained) and ``ArgError('method')`` for an unknown method, or for lws / tau_norm /
    mislas on a cosine classifier (LDAM's), whose class vectors are normalised in the forward pass
    so rescaling them changes nothing a linear layer could hold; cRT replaces it with a linear one."""
    if spec.method not in vocab.CLASSIFIER_METHODS:
        raise ArgError("method", f"{spec.method!r}: choose from {', '.join(vocab.CLASSIFIER_METHODS)}")
    if spec.branch not in vocab.FEATURE_BRANCHES:
        raise ArgError("branch", f"{spec.branch!r}: choose from {', '.join(vocab.FEATURE_BRANCHES)}")
    if spec.smooth_shape not in vocab.SMOOTH_SHAPES:
        raise ArgError("smooth_shape", f"{spec.smooth_shape!r}: choose from {', '.join(vocab.SMOOTH_SHAPES)}")
    check_rebalancing(bilateral, head, spec.method, spec.branch)
    if spec.method == "tau_norm" and not spec.tau_grid:
        raise ArgError("tau_grid", "empty: give at least one tau")
