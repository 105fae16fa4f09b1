"""The bilateral-branch network (Zhou et al., BBN, CVPR 2020) on an anti-aliased ResNet.

One ResNet trunk is shared by both branches; only its last residual block is duplicated into a
conventional-learning block (fed by the uniform sampler) and a re-balancing block (fed by the
reversed sampler). Each branch ends in global average pooling (f_c, f_r) and its own classifier, and
the logits are mixed by the cumulative-learning weight alpha:

    z = alpha * W_c f_c + (1 - alpha) * W_r f_r

The backbone is built from timm's residual blocks (its ``aa_layer`` hook places BlurPool after the
stride-1 conv + ReLU of every strided block); ``bbn.blurpool`` adds the blurred shortcuts.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet, make_blocks
from torch import nn

from bbn.errors import ArgError
from bbn.model.blurpool import blur_shortcuts, blurpool_layer


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network from a checkpoint."""

    backbone: str
    num_classes: int
    antialias: str = "full"  # off | stem | full
    blur_filter: int = 3
    head: str = "linear"  # linear | cosine (LDAM's normalised classifier)

    def to_dict(self) -> dict:
        return asdict(self)


STEM_POOL = {"resnet32": False, "resnet50": True}  # whether the backbone subsamples with a stem max-pool


def antialias_sites(backbone: str, antialias: str) -> tuple[bool, bool]:
    """Where to blur before subsampling (Zhang 2019): (stem max-pool, residual blocks and shortcuts).
    ``antialias``: 'off', 'stem' or 'full'; ``ArgError('antialias')`` for 'stem' on a backbone
    without a stem max-pool (CIFAR ResNet-32) and for unknown values."""
    if antialias not in ("off", "stem", "full"):
        raise ArgError("antialias", f"{antialias!r} is not one of off, stem, full")
    if antialias == "stem" and not STEM_POOL[backbone]:
        raise ArgError("antialias", f"'stem' blurs the stem max-pool, which {backbone} does not have; use off or full")
    return antialias != "off" and STEM_POOL[backbone], antialias == "full"


def _aa_layer(spec: ModelSpec):
    """The blur layer for the residual blocks (only with ``antialias: full``)."""
    return blurpool_layer(spec.blur_filter) if antialias_sites(spec.backbone, spec.antialias)[1] else None


def resnet32_trunk(spec: ModelSpec) -> tuple[nn.Sequential, nn.Module, int]:
    """CIFAR ResNet-32 (He et al. 2016): 3x3 stem, 3 stages of 5 basic blocks, 16/32/64 channels.

    There is no stem subsampling in the CIFAR variant, so ``antialias: stem`` is refused.
    Returns (shared trunk, last residual block, feature width).
    """
    stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
    stages, _ = make_blocks((BasicBlock,) * 3, channels=(16, 32, 64), block_repeats=(5, 5, 5), inplanes=16,
                            norm_layer=nn.BatchNorm2d, act_layer=nn.ReLU, aa_layer=_aa_layer(spec))
    layers = dict(stages)
    last = layers["layer3"][-1]
    layers["layer3"] = layers["layer3"][:-1]
    trunk = nn.Sequential()
    trunk.add_module("stem", stem)
    for name, stage in layers.items():
        trunk.add_module(name, stage)
    if antialias_sites(spec.backbone, spec.antialias)[1]:
        blur_shortcuts(trunk, spec.blur_filter)
    return trunk, last, 64


def resnet50_trunk(spec: ModelSpec) -> tuple[nn.Sequential, nn.Module, int]:
    """ImageNet ResNet-50 (bottlenecks [3, 4, 6, 3]) with torchvision/timm parameter names.

    Anti-aliasing as in Zhang's antialiased ResNets: the stem max-pool becomes dense max-pool +
    blur-subsample (``stem`` and ``full``); with ``full`` also every strided 3x3 conv (stride-1 conv,
    ReLU, blur-subsample) and every downsampling shortcut (blur-subsample, then the 1x1 conv).
    """
    stem, blocks = antialias_sites(spec.backbone, spec.antialias)
    net = ResNet(Bottleneck, (3, 4, 6, 3), num_classes=0, aa_layer=_aa_layer(spec))
    if stem and not blocks:  # with blocks, timm's aa_layer already blurs the stem max-pool
        net.maxpool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                    blurpool_layer(spec.blur_filter)(64, stride=2))
    last = net.layer4[-1]
    net.layer4 = net.layer4[:-1]
    trunk = nn.Sequential()
    for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        trunk.add_module(name, getattr(net, name))
    if blocks:
        blur_shortcuts(trunk, spec.blur_filter)
    return trunk, last, 2048


BACKBONES = {"resnet32": resnet32_trunk, "resnet50": resnet50_trunk}
# The block that becomes the two branches, under its name in a plain (torchvision/timm) ResNet.
LAST_BLOCK = {"resnet32": "layer3.4.", "resnet50": "layer4.2."}


class BilateralNet(nn.Module):
    """Shared trunk, two branch blocks, two classifiers; logits mixed by alpha."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if spec.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {spec.backbone!r}; choose from {sorted(BACKBONES)}")
        self.spec = spec
        self.trunk, block, width = BACKBONES[spec.backbone](spec)
        self.cb_block = block  # conventional learning branch (uniform sampler)
        self.rb_block = copy.deepcopy(block)  # re-balancing branch (reversed sampler)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        head = CosineLinear if spec.head == "cosine" else nn.Linear
        self.cb_fc = head(width, spec.num_classes)
        self.rb_fc = head(width, spec.num_classes)
        _init_weights(self)

    def branch_logits(self, x_c: torch.Tensor, x_r: torch.Tensor | None = None, single_pass: bool = False):
        """(W_c f_c, W_r f_r). With ``x_r`` None both branches see ``x_c`` through one trunk pass.

        In training the two batches go through the trunk separately, so each keeps its own
        BatchNorm batch statistics as in the official implementation. ``single_pass`` sends them
        through together (one larger, faster call) at the price of BatchNorm statistics pooled
        over both batches.
        """
        if x_r is not None and single_pass:
            h_c, h_r = self.trunk(torch.cat([x_c, x_r])).split([len(x_c), len(x_r)])
            return self.cb_fc(self.pool(self.cb_block(h_c))), self.rb_fc(self.pool(self.rb_block(h_r)))
        h_c = self.trunk(x_c)
        h_r = h_c if x_r is None else self.trunk(x_r)
        f_c = self.pool(self.cb_block(h_c))
        f_r = self.pool(self.rb_block(h_r))
        return self.cb_fc(f_c), self.rb_fc(f_r)

    def conventional(self, x: torch.Tensor) -> torch.Tensor:
        """The conventional branch alone: a plain ResNet, what the single-branch baselines train."""
        return self.cb_fc(self.pool(self.cb_block(self.trunk(x))))

    def forward(self, x: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
        """Inference: both branches see the same image; ``alpha`` 0.5 weighs them equally."""
        if alpha == 1.0:  # nothing of the re-balancing branch is used: skip its compute
            return self.conventional(x)
        logits_c, logits_r = self.branch_logits(x)
        return mix_logits(logits_c, logits_r, alpha)


class CosineLinear(nn.Module):
    """Cosine classifier (LDAM's ``NormedLinear``): logits = normalised features . normalised weights.

    The weight has ``nn.Linear``'s shape (out, in) so the parameter names match the linear head.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-1, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(f, dim=1) @ nn.functional.normalize(self.weight, dim=1).t()


def mix_logits(logits_c: torch.Tensor, logits_r: torch.Tensor, alpha: float) -> torch.Tensor:
    """z = alpha * W_c f_c + (1 - alpha) * W_r f_r."""
    return alpha * logits_c + (1.0 - alpha) * logits_r


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(spec: ModelSpec) -> BilateralNet:
    return BilateralNet(spec)
