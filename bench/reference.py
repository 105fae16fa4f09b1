"""The reference side of every benchmark row: the plain way each job is usually written.

* Training: BBN's official two-pass recipe (github.com/Megvii-Nanjing/BBN, ``lib/core/combiner.py``
  ``bbn_mix``, ``lib/net/network.py``, ``lib/core/function.py`` ``train_model``): each branch runs
  its own trunk pass, the pooled features are concatenated as
  ``mixed = 2 * cat(mix * f_a, (1 - mix) * f_b)`` and one classifier ``Linear(2 * width, C)`` sees them;
  loss = mix * CE(out, y_a) + (1 - mix) * CE(out, y_b); SGD (momentum 0.9, Nesterov, weight decay 2e-4).
  It runs on the very ResNet modules of ``bbn.model.network`` (trunk, both branch blocks, pooling), so
  only the step differs from ours.
* Evaluation: ``model.eval()``, ``torch.no_grad()``, batch 32, ``model(x)``.
* Data loading: ``torchvision.datasets.ImageFolder`` on the originals (PIL, full decode) with
  RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize.
* One-time prepare: full decode, resize, re-encode (no reduced-size JPEG decoding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from bbn.model.network import BilateralNet

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Official BBN optimiser settings (configs/*.yaml and lib/utils/utils.py get_optimizer).
MOMENTUM, WEIGHT_DECAY, NESTEROV = 0.9, 2e-4, True


class OfficialBBN(nn.Module):
    """BBN's ``Network``: ``feature_cb`` / ``feature_rb`` pick the branch block, ``classifier_flag``
    applies the single classifier to the concatenated 2 x width features."""

    def __init__(self, net: BilateralNet):
        super().__init__()
        self.trunk, self.cb_block, self.rb_block, self.pool = net.trunk, net.cb_block, net.rb_block, net.pool
        self.classifier = nn.Linear(2 * net.cb_fc.in_features, net.spec.num_classes)

    def forward(self, x, feature_cb: bool = False, feature_rb: bool = False, classifier_flag: bool = False):
        if classifier_flag:
            return self.classifier(x)
        block = self.cb_block if feature_cb else self.rb_block
        return self.pool(block(self.trunk(x)))


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
                           nesterov=NESTEROV)


def _accuracy(output: np.ndarray, label: np.ndarray) -> float:
    return float((output == label).sum()) / label.shape[0]


def bbn_mix(model: OfficialBBN, criterion, image_a, label_a, image_b, label_b, mix: float, device):
    """``Combiner.bbn_mix``: loss and accuracy of one pair of batches."""
    image_a, image_b = image_a.to(device), image_b.to(device)
    label_a, label_b = label_a.to(device), label_b.to(device)
    feature_a, feature_b = model(image_a, feature_cb=True), model(image_b, feature_rb=True)
    mixed_feature = 2 * torch.cat((mix * feature_a, (1 - mix) * feature_b), dim=1)
    output = model(mixed_feature, classifier_flag=True)
    loss = mix * criterion(output, label_a) + (1 - mix) * criterion(output, label_b)
    now_result = torch.argmax(torch.softmax(output, dim=1), 1)
    now_acc = (mix * _accuracy(now_result.cpu().numpy(), label_a.cpu().numpy())
               + (1 - mix) * _accuracy(now_result.cpu().numpy(), label_b.cpu().numpy()))
    return loss, now_acc


def train_epoch(model: OfficialBBN, uniform: DataLoader, reverse: DataLoader, optimizer, mix: float,
                device: torch.device) -> dict[str, float]:
    """``train_model``'s loop; the reversed batch comes from a second loader instead of ``meta``."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    total_loss = total_acc = count = 0.0
    for (image_a, label_a), (image_b, label_b) in zip(uniform, reverse):
        loss, now_acc = bbn_mix(model, criterion, image_a, label_a, image_b, label_b, mix, device)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        cnt = label_a.shape[0]
        total_loss += loss.data.item() * cnt
        total_acc += now_acc * cnt
        count += cnt
    return {"loss": total_loss / count, "acc": total_acc / count}


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device) -> np.ndarray:
    """The plain evaluation loop: eval mode, no_grad, ``model(x)`` with its default alpha."""
    model.eval()
    outputs = [model(x.to(device)).cpu() for x, _ in loader]
    return torch.cat(outputs).numpy()


def image_folder(root: str | Path):
    """torchvision's ImageFolder with the usual ImageNet training transforms (PIL, full decode)."""
    from torchvision import datasets
    from torchvision import transforms as T
    transform = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(MEAN, STD)])
    return datasets.ImageFolder(str(root), transform=transform)


def prepare_naive(sources: list[str], targets: list[str], short_side: int, quality: int) -> None:
    """Shrink every image to ``short_side`` the plain way: full decode, bicubic resize, save."""
    for src, dst in zip(sources, targets):
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = short_side / min(w, h)
            img = img.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
            img.save(dst, format="JPEG", quality=quality)
