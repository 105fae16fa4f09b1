"""What the training library takes: small frozen dataclasses, built from the validated params by the
train stage (``stages.params.train_spec``), never the params sections themselves. The defaults and
the validation live in the params schema; here every field is required and documented once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlphaSpec:
    """Cumulative learning's alpha (``bbn.train.schedules.cumulative_alpha``)."""

    schedule: str  # parabolic (BBN: 1 - (T/T_max)^2) | linear | cosine | fixed
    value: float  # alpha when ``schedule`` is fixed, in [0, 1]


@dataclass(frozen=True)
class BaselineSpec:
    """The knobs of the single-branch baselines' samplers and losses (``bbn.train.losses``)."""

    defer_epoch: int  # DRW / DRS: re-weighting or re-sampling from epoch defer_epoch + 1
    focal_gamma: float  # focal / CB-focal: gamma
    cb_beta: float  # effective-number weights (Cui et al. 2019): beta in [0, 1)
    la_tau: float  # logit adjustment: tau
    ldam_max_m: float  # LDAM: largest margin
    ldam_s: float  # LDAM: logit scale of the cosine classifier
    mixup_alpha: float  # the mixup family: lam ~ Beta(mixup_alpha, mixup_alpha)


@dataclass(frozen=True)
class TrainSpec:
    """One training run's arguments (``bbn.train.loop.fit`` and what it calls). Epochs count from 1."""

    method: str  # a name of the registry, bbn.methods
    epochs: int
    lr: float  # peak learning rate for one process's batch (scaled by lr_scaling)
    momentum: float
    weight_decay: float
    nesterov: bool
    lr_steps: tuple[int, ...]  # the lr is multiplied by lr_factor after each of these epochs
    lr_factor: float
    warmup_epochs: int  # epochs 1..w ramp linearly from lr/3
    tmax: int  # T_max of cumulative learning
    val_alpha: float  # branch weight of validation during training
    alpha: AlphaSpec
    baseline: BaselineSpec
    seed: int
    amp: str  # off | bf16 | fp16
    channels_last: bool
    compile: bool
    single_pass: bool  # one trunk pass over both batches
    deterministic: bool
    accumulate: int  # micro-batches per optimizer step
    lr_scaling: str  # linear (with the global batch) | fixed
    sync_bn: bool
    max_steps: int  # > 0: stop after this many optimizer steps in all


@dataclass(frozen=True)
class LaunchSpec:
    """How many processes train, and where they meet (``bbn.train.distributed.launch_argv``)."""

    nproc_per_node: int
    nnodes: int
    rdzv_endpoint: str  # host:port of node 0 ('' on one node)
    rdzv_id: str
