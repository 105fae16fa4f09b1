"""The bilateral-branch network (Zhou et al., BBN, CVPR 2020) on an anti-aliased ResNet.

One ResNet trunk is shared by both branches; only its last residual block is duplicated into a
conventional-learning block (fed by the uniform sampler) and a re-balancing block (fed by the
reversed sampler). Each branch ends in global average pooling (f_c, f_r); the classifier mixes them
with the cumulative-learning weight alpha, in one of two equivalent forms (``classifier``):

    separate  z = alpha * W_c f_c + (1 - alpha) * W_r f_r          (the paper's eq. 2; two linear heads)
    official  z = W [2 alpha f_c ; 2 (1 - alpha) f_r] + b          (Megvii-Nanjing/BBN lib/core/combiner.py
              bbn_mix: one FC with bias over the concatenation; at test W [f_c ; f_r] + b, i.e. alpha 0.5)

``official`` is ``separate`` with W_c = 2 W[:, :d], W_r = 2 W[:, d:] and one bias shared by both
branches (instead of alpha b_c + (1 - alpha) b_r): the logits are twice the scale at equal weights.

ResNet-32 shortcuts (``shortcut``): ``conv`` is He et al.'s option B (1x1 conv + BN where the shape
changes), ``pad`` option A (stride-2 subsampling and zero channels, no parameters), the official
CIFAR ResNet-32 of BBN and LDAM-DRW (lib/backbone/resnet_cifar.py). ResNet-50 has option B only.

The backbone is built from timm's residual blocks (its ``aa_layer`` hook places BlurPool after the
stride-1 conv + ReLU of every strided block); ``bbn.model.blurpool`` adds the blurred shortcuts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, Bottleneck, ResNet, make_blocks
from torch import nn

from bbn import vocab
from bbn.errors import ArgError
from bbn.model.blurpool import BlurPool, blur_shortcuts, blurpool_layer


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network from a checkpoint."""

    backbone: str
    num_classes: int
    antialias: str = "full"  # off | stem | full
    blur_filter: int = 3
    head: str = "linear"  # linear | cosine (LDAM's normalised classifier) | sigmoid (linear, bias -log(C-1))
    shortcut: str = "conv"  # conv (option B: 1x1 conv + BN) | pad (option A: parameter-free; ResNet-32 only)
    classifier: str = "separate"  # separate (two heads, paper's eq.) | official (one FC over 2 cat(a f_c, (1-a) f_r))
    init: str = "fan_out"  # fan_out (Kaiming normal, fan-out) | official (the official code's: see _init_weights)

    def to_dict(self) -> dict:
        return asdict(self)


STEM_POOL = {"resnet32": False, "resnet50": True}  # whether the backbone subsamples with a stem max-pool


def antialias_sites(backbone: str, antialias: str) -> tuple[bool, bool]:
    """Where to blur before subsampling (Zhang 2019): (stem max-pool, residual blocks and shortcuts).
    ``antialias``: 'off', 'stem' or 'full'; ``ArgError('antialias')`` for 'stem' on a backbone
    without a stem max-pool (CIFAR ResNet-32) and for unknown values."""
    if antialias not in vocab.ANTIALIAS:
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
    blur = antialias_sites(spec.backbone, spec.antialias)[1]
    if spec.shortcut == "pad":
        for block in trunk.modules():
            if getattr(block, "downsample", None) is not None:
                conv = block.downsample[0]
                block.downsample = PadShortcut(conv.out_channels - conv.in_channels, spec.blur_filter if blur else 0)
    elif blur:
        blur_shortcuts(trunk, spec.blur_filter)
    return trunk, last, 64


def resnet50_trunk(spec: ModelSpec) -> tuple[nn.Sequential, nn.Module, int]:
    """ImageNet ResNet-50 (bottlenecks [3, 4, 6, 3]) with torchvision/timm parameter names.

    Anti-aliasing as in Zhang's antialiased ResNets: the stem max-pool becomes dense max-pool +
    blur-subsample (``stem`` and ``full``); with ``full`` also every strided 3x3 conv (stride-1 conv,
    ReLU, blur-subsample) and every downsampling shortcut (blur-subsample, then the 1x1 conv).
    """
    stem, blocks = antialias_sites(spec.backbone, spec.antialias)
    if spec.shortcut != "conv":
        raise ArgError("shortcut", f"{spec.shortcut!r}: resnet50 has 1x1 conv shortcuts only (conv)")
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


class PadShortcut(nn.Module):
    """Option-A shortcut (He et al. 2016; the official CIFAR ResNet-32 of BBN and LDAM-DRW): the
    input subsampled by 2 (``x[:, :, ::2, ::2]``; with ``blur_filter`` > 0 blurred first, Zhang 2019)
    and ``extra`` zero channels, half before and half after. No parameters.
    (N, C, H, W) -> (N, C + extra, ceil(H/2), ceil(W/2))."""

    def __init__(self, extra: int, blur_filter: int = 0):
        super().__init__()
        self.extra = extra
        self.blur = BlurPool(None, filt_size=blur_filter, stride=2) if blur_filter else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blur(x) if self.blur is not None else x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


BACKBONES = {"resnet32": resnet32_trunk, "resnet50": resnet50_trunk}  # keys: vocab.BACKBONES (tested)
# The block that becomes the two branches, under its name in a plain (torchvision/timm) ResNet.
LAST_BLOCK = {"resnet32": "layer3.4.", "resnet50": "layer4.2."}
CLASSIFIERS = vocab.CLASSIFIERS


class BilateralNet(nn.Module):
    """Shared trunk, two branch blocks, the classifier (two heads or the official one FC); logits
    mixed by alpha. Raises ``ArgError('shortcut')`` for ``pad`` on ResNet-50 and
    ``ArgError('classifier')`` for an unknown classifier or ``official`` with a cosine head."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if spec.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {spec.backbone!r}; choose from {sorted(BACKBONES)}")
        if spec.shortcut not in vocab.SHORTCUTS:
            raise ArgError("shortcut", f"{spec.shortcut!r} is not one of conv, pad")
        if spec.classifier not in CLASSIFIERS or (spec.classifier == "official" and spec.head == "cosine"):
            raise ArgError("classifier", f"{spec.classifier!r}: choose separate or official (official is a "
                           "linear head; LDAM's cosine classifier needs separate)")
        self.spec = spec
        self.trunk, block, width = BACKBONES[spec.backbone](spec)
        self.cb_block = block  # conventional learning branch (uniform sampler)
        self.rb_block = copy.deepcopy(block)  # re-balancing branch (reversed sampler)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        if spec.classifier == "official":
            self.fc = nn.Linear(2 * width, spec.num_classes)
        else:
            head = CosineLinear if spec.head == "cosine" else nn.Linear
            self.cb_fc = head(width, spec.num_classes)
            self.rb_fc = head(width, spec.num_classes)
        _init_weights(self, spec.init, spec.backbone)
        if spec.head == "sigmoid":  # Cui et al.'s prior for sigmoid losses: p = 1/C per class at the start
            for fc in (m for m in self.modules() if isinstance(m, nn.Linear)):
                nn.init.constant_(fc.bias, -math.log(max(spec.num_classes - 1, 1)))

    def features(self, x_c: torch.Tensor, x_r: torch.Tensor | None = None, single_pass: bool = False):
        """(f_c, f_r), each (N, d): pooled features of both branches. With ``x_r`` None both branches
        see ``x_c`` through one trunk pass.

        In training the two batches go through the trunk separately, so each keeps its own
        BatchNorm batch statistics as in the official implementation. ``single_pass`` sends them
        through together (one larger, faster call) at the price of BatchNorm statistics pooled
        over both batches.
        """
        if x_r is not None and single_pass:
            h_c, h_r = self.trunk(torch.cat([x_c, x_r])).split([len(x_c), len(x_r)])
        else:
            h_c = self.trunk(x_c)
            h_r = h_c if x_r is None else self.trunk(x_r)
        return self.pool(self.cb_block(h_c)), self.pool(self.rb_block(h_r))

    def classify(self, f_c: torch.Tensor, f_r: torch.Tensor, alpha: float) -> torch.Tensor:
        """Logits (N, C) of the features mixed by ``alpha`` (the module docstring's two forms)."""
        if self.spec.classifier == "official":
            return self.fc(2.0 * torch.cat([alpha * f_c, (1.0 - alpha) * f_r], dim=1))
        return mix_logits(*self.heads(f_c, f_r), alpha)

    def heads(self, f_c: torch.Tensor, f_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_c f_c, W_r f_r), the logits at alpha 1 and at alpha 0 (``official``: 2 W[:, :d] f_c + b and
        2 W[:, d:] f_r + b). Both classifiers are affine in alpha, so ``mix_logits`` of the pair is
        ``classify`` at any alpha; each branch's logits depend on its own features only."""
        if self.spec.classifier == "official":
            d = f_c.shape[1]
            return (F.linear(2.0 * f_c, self.fc.weight[:, :d], self.fc.bias),
                    F.linear(2.0 * f_r, self.fc.weight[:, d:], self.fc.bias))
        return self.cb_fc(f_c), self.rb_fc(f_r)

    def branch_logits(self, x_c: torch.Tensor, x_r: torch.Tensor | None = None, single_pass: bool = False):
        """(W_c f_c, W_r f_r) of the two batches (``features``, ``heads``); the training step mixes
        them with ``mix_logits``."""
        return self.heads(*self.features(x_c, x_r, single_pass))

    def conventional(self, x: torch.Tensor) -> torch.Tensor:
        """The conventional branch alone: a plain ResNet, what the single-branch baselines train."""
        return self.conventional_head(self.pool(self.cb_block(self.trunk(x))))

    def conventional_head(self, f_c: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) of the conventional branch's pooled features f_c (N, d)."""
        if self.spec.classifier == "official":  # fc(2 cat(f_c, 0)) without computing f_r
            return F.linear(2.0 * f_c, self.fc.weight[:, :f_c.shape[1]], self.fc.bias)
        return self.cb_fc(f_c)

    def forward(self, x: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
        """Inference: both branches see the same image; ``alpha`` 0.5 weighs them equally."""
        if alpha == 1.0:  # nothing of the re-balancing branch is used: skip its compute
            return self.conventional(x)
        return self.classify(*self.features(x), alpha)


class CosineLinear(nn.Module):
    """Cosine classifier (LDAM's ``NormedLinear``, kaidic/LDAM-DRW models/resnet_cifar.py): logits =
    normalised features . normalised class vectors, (N, in) -> (N, out) in [-1, 1].

    The weight has ``nn.Linear``'s shape (out, in) so the parameter names match the linear head.
    Initialised as the reference: uniform(-1, 1), then every class vector (row) scaled to unit
    norm. The forward pass normalises anyway, but the gradient of a direction shrinks as 1/||w||:
    at unit norm the angular steps are the reference's, not ||w||^2 times smaller.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        weight = torch.empty(out_features, in_features).uniform_(-1, 1)
        self.weight = nn.Parameter(weight / weight.norm(dim=1, keepdim=True))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f, dim=1) @ F.normalize(self.weight, dim=1).t()


def mix_logits(logits_c: torch.Tensor, logits_r: torch.Tensor, alpha: float) -> torch.Tensor:
    """z = alpha * W_c f_c + (1 - alpha) * W_r f_r."""
    return alpha * logits_c + (1.0 - alpha) * logits_r


INITS = vocab.INITS


def _init_weights(model: nn.Module, init: str = "fan_out", backbone: str = "resnet32") -> None:
    """Convolutions: ``fan_out``: Kaiming normal, std sqrt(2 / (out_channels * k * k)) (torchvision's
    and timm's ResNets); ``official``: the official BBN code's, which differs by backbone: ResNet-32
    (Megvii-Nanjing/BBN lib/backbone/resnet_cifar.py ``_weights_init``, as LDAM-DRW's) Kaiming
    normal with fan-in, std sqrt(2 / (in_channels * k * k)), 2.3x larger in the stem; ResNet-50
    (lib/backbone/resnet.py, no init of its own) PyTorch's default, Kaiming uniform with a = sqrt(5).
    BatchNorm: weight 1, bias 0. Heads keep PyTorch's default (both BBN codes build the classifier
    outside the backbone; LDAM-DRW's and MiSLAS's resnet_cifar.py also give their Linear Kaiming
    fan-in: README, item 4). ``ArgError('init')`` for another ``init``."""
    if init not in INITS:
        raise ArgError("init", f"{init!r}: choose {' or '.join(INITS)}")
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and init == "fan_out":
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Conv2d) and backbone == "resnet32":
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.Conv2d):
            m.reset_parameters()
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(spec: ModelSpec) -> BilateralNet:
    return BilateralNet(spec)
