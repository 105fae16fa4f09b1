"""Which augmentation and normalisation a dataset trains with, and the test resize: plain numbers,
no torch, so the params schema can check them without loading the image stack
(``bbn.data.transforms`` builds the transforms from them)."""

from __future__ import annotations

from bbn.vocab import NORMALIZATIONS

CENTRE_FRACTION = 0.875  # inception test: centre crop of 87.5 % of the resized short side
NORMALIZE = {
    # ImageNet statistics (torchvision; BBN's iNaturalist configs)
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # CIFAR statistics as BBN and LDAM-DRW use them (lib/dataset/imbalance_cifar.py)
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}
assert tuple(NORMALIZE) == NORMALIZATIONS
CIFAR_DATASETS = ("cifar10_lt", "cifar100_lt")


def default_augment(dataset: str) -> str:
    """``auto``: ``cifar`` for the small-image datasets (CIFAR-LT, the embedded digits), ``inception``
    for photos (iNaturalist, ImageFolder)."""
    return "cifar" if dataset in CIFAR_DATASETS or dataset == "digits" else "inception"


def default_normalize(dataset: str) -> str:
    """``auto``: CIFAR statistics for CIFAR-LT, ImageNet statistics otherwise (digits included)."""
    return "cifar" if dataset in CIFAR_DATASETS else "imagenet"


def preprocessing(augment: str, normalize: str, dataset: str) -> dict:
    """{'augment', 'mean', 'std'} with ``auto`` resolved for ``dataset``: what a checkpoint carries so
    that evaluation and prediction use the training's test transform."""
    augment = default_augment(dataset) if augment == "auto" else augment
    mean, std = NORMALIZE[default_normalize(dataset) if normalize == "auto" else normalize]
    return {"augment": augment, "mean": list(mean), "std": list(std)}


def test_resize(size: int, augment: str) -> int:
    """Short side the test transform resizes to before its centre crop of ``size``."""
    return int(size / CENTRE_FRACTION) if augment == "inception" else size
