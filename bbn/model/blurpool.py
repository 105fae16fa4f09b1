"""Anti-aliased subsampling (Zhang, "Making Convolutional Networks Shift-Invariant Again", 2019).

Every subsampling becomes "low-pass, then subsample": a binomial blur applied with stride 2.
timm's ``BlurPool2d`` does the blur; this module adds what the networks here need on top of it:
reflect padding that does not crash on maps too small to reflect (CIFAR's 8x8 stage, ResNet-50 at
small image sizes), and a 1x1 shortcut convolution that blurs first while keeping torchvision's
parameter names (so ImageNet weights still load by name).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import BlurPool2d
from torch import nn


class BlurPool(BlurPool2d):
    """Binomial blur + stride-2 subsampling; reflect padding, replicate where the map is too small."""

    def __init__(self, channels: int | None = None, filt_size: int = 3, stride: int = 2, **kwargs):
        super().__init__(channels, filt_size=filt_size, stride=stride, **kwargs)
        # Zhang's padding: (f-1)//2 before, f//2 after. timm pads symmetrically, which for an even
        # filter yields one output too many (32 -> 17); odd filters are unchanged.
        before, after = (filt_size - 1) // 2, filt_size // 2
        self.padding = [before, after, before, after]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Reflect padding needs pad < size; on tiny maps replicate is the closest border rule.
        mode = self.pad_mode if min(x.shape[-2:]) > max(self.padding) else "replicate"
        x = F.pad(x, self.padding, mode=mode)
        weight = self.filt if self.channels is not None else self.filt.expand(x.shape[1], 1, -1, -1)
        return F.conv2d(x, weight, stride=self.stride, groups=x.shape[1])


class BlurConv2d(nn.Conv2d):
    """A strided shortcut conv made shift-robust: blur-subsample, then the conv at stride 1.

    Subclassing ``nn.Conv2d`` keeps the parameter names (``downsample.0.weight``) unchanged.
    """

    def __init__(self, conv: nn.Conv2d, filt_size: int):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, stride=1,
                         padding=conv.padding, bias=conv.bias is not None)
        self.load_state_dict(conv.state_dict())
        self.blur = BlurPool(conv.in_channels, filt_size=filt_size, stride=conv.stride[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.blur(x))


def blur_shortcuts(module: nn.Module, filt_size: int) -> None:
    """Replace every strided 1x1 shortcut conv (``downsample[0]``) below ``module`` in place."""
    for block in module.modules():
        down = getattr(block, "downsample", None)
        if isinstance(down, nn.Sequential) and isinstance(down[0], nn.Conv2d) and down[0].stride[0] > 1:
            down[0] = BlurConv2d(down[0], filt_size)


def blurpool_layer(filt_size: int) -> type[BlurPool]:
    """A BlurPool class with the filter size bound, for timm's ``aa_layer`` hook (it wants a class)."""

    class _BlurPool(BlurPool):
        def __init__(self, channels: int | None = None, stride: int = 2, **kwargs):
            super().__init__(channels, filt_size=filt_size, stride=stride, **kwargs)

    _BlurPool.__name__ = f"BlurPool{filt_size}"
    return _BlurPool
