"""The training step's speed options: AMP, the channels_last memory format, the single trunk pass and
torch.compile (README "Speed"; bench/README.md for what each measured)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from bbn.model.network import BilateralNet
from bbn.train.spec import TrainSpec


@dataclass(frozen=True)
class Speed:
    """Speed options of the training step (all off here; the pipeline turns ``channels_last`` on by
    default, see README for what each trades)."""

    amp: str = "off"  # off | bf16 | fp16: autocast of the forward pass (fp16 with a GradScaler)
    channels_last: bool = False  # NHWC tensors: faster convolutions on most GPUs and oneDNN CPUs
    single_pass: bool = False  # one trunk call over both batches (BatchNorm statistics pooled)

    @classmethod
    def of(cls, p: TrainSpec) -> "Speed":
        return cls(p.amp, p.channels_last, p.single_pass)

    def autocast(self, device: torch.device):
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype, enabled=self.amp != "off")

    def to(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = x.to(device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")


def prepare_model(model: BilateralNet, p: TrainSpec, device: torch.device) -> BilateralNet:
    """Device, memory format and (in place, names unchanged) torch.compile of the heavy parts."""
    model.to(device)
    if p.channels_last:
        model.to(memory_format=torch.channels_last)
    if p.compile:
        # BBN_COMPILE_BACKEND (e.g. aot_eager) traces without generating code: for debugging, and
        # for CPU tests, where inductor's C++ build of a ResNet takes minutes.
        backend = os.environ.get("BBN_COMPILE_BACKEND", "inductor")
        for part in (model.trunk, model.cb_block, model.rb_block):
            part.compile(backend=backend)
    return model
