"""Jobs of the ``inmemory`` section: the in-memory input path against the DataLoader path.

Both sides read the same CIFAR-10-LT JPEGs (``bench/cifar_lt.py``, written by the parent under
``spec["root"]``), draw with the same samplers (uniform + reversed, batch ``spec["batch"]``) and apply
the same augmentation (pad-4 crop + flip, then normalisation):

* ours: ``bbn.data.inmemory`` (images decoded once before timing; batches gathered and augmented on
  the device);
* reference: ``bbn.data.loading.train_loaders`` over ``ImageList`` (decode + torchvision transforms
  per image, ``spec["workers"]`` DataLoader workers; 0: in the process, the pipeline's default).

``data``: images/s of the input alone (no model), batches moved to the device as the loop does.
``epoch``: images/s of BBN training steps (``bbn.train.loop.train_epoch``, ResNet-32) fed by each path,
over the first ``spec["steps"]`` steps of an epoch.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from bench.common import Work, make_model, our_epoch, timed

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class First:
    """The first ``steps`` batches of a loader, with the loader's ``len`` and ``batch_sampler``."""

    def __init__(self, loader, steps: int):
        self.loader, self.steps, self.batch_sampler = loader, steps, loader.batch_sampler

    def __len__(self) -> int:
        return min(self.steps, len(self.loader)) if self.steps else len(self.loader)

    def __iter__(self):
        return itertools.islice(iter(self.loader), len(self))


def listing(root: Path) -> tuple[list[str], list[int]]:
    from bench.cifar_lt import CLASSES
    paths = sorted(root.glob("train/*/*.jpg"))
    return [str(p) for p in paths], [CLASSES.index(p.parent.name) for p in paths]


def loaders(spec: dict) -> list:
    """[uniform, reversed] batches of the side's input path."""
    import torch

    from bbn.data.batch_augment import DeviceAugment
    from bbn.data.inmemory import ImageBank, train_batches
    from bbn.data.loading import ImageList, train_loaders
    from bbn.data.transforms import train_transform
    paths, targets = listing(Path(spec["root"]))
    device, px, batch = torch.device(spec["device"]), spec["px"], spec["batch"]
    if spec["impl"] == "ours":
        bank = ImageBank.from_files(paths, targets, px, True, device)
        augment = DeviceAugment("cifar", px, 4, True, mean=CIFAR_MEAN, std=CIFAR_STD)
        found = train_batches(bank, augment, batch, seed=0)
    else:
        transform = train_transform(px, "cifar", True, CIFAR_MEAN, CIFAR_STD, padding=4)
        found = train_loaders(ImageList(paths, targets, transform, px), batch, spec["workers"], seed=0)
    return [First(found["uniform"], spec["steps"]), First(found["reversed"], spec["steps"])]


def data(spec: dict) -> Work:
    """Images/s of the input path alone: an epoch's uniform and reversed batches on the device."""
    import torch
    device = torch.device(spec["device"])
    pair, epochs = loaders(spec), itertools.count()

    def one_pass() -> int:
        n, epoch = 0, next(epochs)
        for loader in pair:
            loader.batch_sampler.set_epoch(epoch)
        for (xa, ya), (xb, yb) in zip(*pair):
            xa, xb = xa.to(device, non_blocking=True), xb.to(device, non_blocking=True)
            n += len(ya) + len(yb)
        return n

    images = one_pass()  # warm-up (DataLoader workers start)
    return Work(lambda: images / timed(device, one_pass))


def epoch(spec: dict) -> Work:
    """Images/s of BBN steps fed by the side's input path (the model and step are ours on both)."""
    from types import SimpleNamespace

    import torch

    import bbn.train.loop as training
    device = torch.device(spec["device"])
    net = make_model(spec, "off")
    opt = training.make_optimizer(net, SimpleNamespace(lr=0.1, momentum=0.9, weight_decay=2e-4, nesterov=True))
    step, pair, numbers = our_epoch(spec, training, device), loaders(spec), itertools.count()
    step(net, pair, opt, next(numbers))  # warm-up
    images = 2 * spec["batch"] * len(pair[0])
    return Work(lambda: images / timed(device, lambda: step(net, pair, opt, next(numbers))))
