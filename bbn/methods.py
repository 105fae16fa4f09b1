"""The training methods: one registry entry per ``train.method``, the only place that tells them apart.

Each entry declares whether the method is bilateral (BBN: two branches fed by the uniform and the
reversed sampler, mixed by the cumulative-learning alpha), which sampler feeds a single-branch
method in each epoch, its loss (a key of ``bbn.train.losses.LOSSES``), its classifier head and its
branch weight at test time. Single-branch baselines train the conventional branch alone (a plain
ResNet, ``BilateralNet.conventional``):

    method            sampler (before / from defer_epoch)   loss
    bbn               uniform + reversed                    bilateral CE (Zhou et al. 2020, eq. 3)
    ce                uniform                               cross-entropy
    ce_rs             class-balanced                        cross-entropy
    ce_drs            uniform / class-balanced              cross-entropy (Cao et al. 2019)
    ce_drw            uniform                               CE / CE weighted by effective numbers
    focal             uniform                               focal (Lin et al. 2017)
    cb_focal          uniform                               sigmoid focal weighted by effective numbers (Cui et al. 2019)
    cb_softmax_focal  uniform                               softmax focal weighted by effective numbers
    ldam_drw          uniform                               LDAM, cosine classifier, DRW weights (Cao et al. 2019)
    logit_adjust      uniform                               logit-adjusted CE (Menon et al. 2021)
    balanced_softmax  uniform                               balanced softmax (Ren et al. 2020)
    mixup             uniform                               CE on images mixed in pairs (Zhang et al. 2018)
    manifold_mixup    uniform                               CE, mixed at the input or a stage output (Verma et al. 2019)
    manifold_mixup_two_samplers  uniform x reversed         CE, a uniform image mixed with a reversed one (Zhou et al. 2020)

This module imports nothing heavy: the params schema, training and inference all read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One training method. ``sampler``: 'uniform', 'balanced' or 'deferred' (uniform, then
    class-balanced from ``defer_epoch``); ignored for a bilateral method, which always draws one
    uniform and one reversed batch per step."""

    loss: str
    bilateral: bool = False
    sampler: str = "uniform"  # uniform | balanced | deferred | two (one uniform and one reversed batch)
    head: str = "linear"  # linear | cosine (LDAM's normalised classifier) | sigmoid (bias -log(C-1))
    mixing: str = ""  # the mixup family (bbn.train.mixup): input | manifold; '' = none

    def samplers(self, epoch: int, defer_epoch: int) -> tuple[str, ...]:
        """The training loaders that feed ``epoch`` (0-based), zipped batch by batch."""
        if self.bilateral or self.sampler == "two":
            return ("uniform", "reversed")
        if self.sampler == "balanced" or (self.sampler == "deferred" and epoch >= defer_epoch):
            return ("balanced",)
        return ("uniform",)

    def test_alpha(self, schedule: str, value: float, eval_alpha: float) -> float:
        """The branch weight at test time. Bilateral with a cumulative schedule: ``eval_alpha`` (0.5
        weighs both branches equally, as the paper tests). Bilateral with alpha fixed: that value,
        since a branch trained with weight 0 never received a gradient. Single-branch: 1 (the
        conventional branch alone)."""
        if not self.bilateral:
            return 1.0
        return float(value) if schedule == "fixed" else float(eval_alpha)


METHODS: dict[str, Method] = {
    "bbn": Method("bilateral", bilateral=True),
    "ce": Method("ce"),
    "ce_rs": Method("ce", sampler="balanced"),
    "ce_drs": Method("ce", sampler="deferred"),
    "ce_drw": Method("ce_drw"),
    "focal": Method("focal"),
    "cb_focal": Method("cb_focal", head="sigmoid"),  # Cui et al.: sigmoid, bias initialised to -log(C-1)
    "cb_softmax_focal": Method("cb_softmax_focal"),
    "ldam_drw": Method("ldam_drw", head="cosine"),
    "logit_adjust": Method("logit_adjust"),
    "balanced_softmax": Method("balanced_softmax"),
    "mixup": Method("ce", mixing="input"),  # Zhang et al. 2018
    "manifold_mixup": Method("ce", mixing="manifold"),  # Verma et al. 2019
    "manifold_mixup_two_samplers": Method("ce", mixing="manifold", sampler="two"),  # BBN's Table 1 row
}


def method(name: str) -> Method:
    """The registry entry of ``name``; ``ArgError('method')`` names the known methods."""
    from bbn.errors import ArgError

    if name not in METHODS:
        raise ArgError("method", f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def check_rebalancing(bilateral: bool, head: str, classifier: str, branch: str) -> None:
    """Whether the classifier stage's ``classifier`` method on features ``branch`` fits a network
    trained by a method that is ``bilateral`` (or not) with classifier ``head``: ``ArgError('branch')``
    for a branch other than conventional after a single-branch method (only its conventional branch
    was trained), ``ArgError('method')`` for lws / tau_norm / mislas on a cosine classifier (LDAM's
    normalises its class vectors in the forward pass, so rescaling them changes nothing; cRT
    replaces it with a linear one). The params schema asks before training, the stage again."""
    from bbn.errors import ArgError

    if not bilateral and branch != "conventional":
        raise ArgError("branch", f"{branch!r}: a single-branch method trains the conventional branch "
                       "only; use conventional (reversed and both are for BBN)")
    if head == "cosine" and classifier in ("lws", "tau_norm", "mislas"):
        raise ArgError("method", f"{classifier}: the network has a cosine classifier (ldam_drw), which "
                       "normalises its class vectors; use crt (a new linear classifier)")

