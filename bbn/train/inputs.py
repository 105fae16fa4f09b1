"""Where training batches come from: the one decision between the three input paths.

* in memory (``bbn.data.inmemory``): the training images decoded once onto the device, batches
  gathered and augmented there: small datasets (CIFAR-LT, the embedded digits);
* decoded on the device batch by batch (``gpu_decode``: nvJPEG; the CPU fallback elsewhere);
* DataLoader workers (``bbn.data.loading``): decoding and augmentation on the CPUs, ``num_workers``
  auto: every CPU this process may use, shared by the loaders that read at once (the workload of
  iNaturalist: a GPU needs every core; README "Training on iNaturalist 2019").

Every path draws from the same samplers with the same seeds and applies the same augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from bbn.data.batch_augment import DeviceAugment
from bbn.data.inmemory import ImageBank, bank_bytes, choose_in_memory, decoded_batches, train_batches
from bbn.data.loading import ImageList, train_loaders
from bbn.data.prepare import prepared_path
from bbn.data.transforms import eval_transform, test_resize, train_transform
from bbn.errors import ArgError
from bbn.train.distributed import Dist


@dataclass(frozen=True)
class InputSpec:
    """The training input's arguments; ``augment``, ``mean`` and ``std`` resolved
    (``bbn.data.transforms.preprocessing``)."""

    image_size: int  # px, the side of a training crop
    augment: str  # cifar | inception
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int  # px of zero padding of the cifar crop
    hflip: bool
    batch_size: int  # images per sampler and process
    seed: int
    accumulate: int  # micro-batches per optimizer step
    drop_last: bool
    num_workers: int | str  # a count, or auto
    in_memory: str  # auto | on | off
    in_memory_max_gb: float  # auto: in memory up to this many GiB of decoded images
    gpu_decode: bool
    deterministic: bool  # DataLoader workers restarted every epoch
    readers: int  # samplers read at once: 2 for BBN (uniform + reversed), 1 for a baseline


def training_batches(spec: InputSpec, train_set: ImageList, dist: Dist, device: torch.device) -> dict:
    """The 'uniform', 'reversed' and 'balanced' batch iterables of this process, from the input path
    ``spec`` chooses (module docstring). Raises ``ArgError('accumulate')`` when the training images
    are too few for one optimizer step of every process, ``ArgError('in_memory')`` for a bad mode."""
    square = spec.augment == "cifar"  # inception crops from the whole (resized) image
    side = spec.image_size if square else test_resize(spec.image_size, spec.augment)
    augment = DeviceAugment(spec.augment, spec.image_size, spec.crop_padding, spec.hflip, mean=list(spec.mean),
                            std=list(spec.std))
    where = dict(seed=spec.seed, rank=dist.rank, world_size=dist.world_size, accumulate=spec.accumulate,
                 drop_last=spec.drop_last)
    if choose_in_memory(spec.in_memory, bank_bytes(train_set.paths, side, square), spec.in_memory_max_gb):
        bank = ImageBank.from_files(train_set.paths, train_set.targets, side, square, device, spec.gpu_decode)
        if dist.main:
            print(f"train: {len(bank)} training images in memory on {device} ({bank.nbytes / 2**20:.1f} MiB)")
        batches = train_batches(bank, augment, spec.batch_size, **where)
    elif spec.gpu_decode:
        batches = decoded_batches(train_set.paths, train_set.targets, augment, side, square, device, gpu=True,
                                  batch_size=spec.batch_size, num_workers=spec.num_workers, share=spec.readers, **where)
    else:
        batches = train_loaders(train_set, spec.batch_size, spec.num_workers, persistent=not spec.deterministic,
                                share=spec.readers, **where)
    if not len(batches["uniform"]):
        raise ArgError("accumulate", f"{len(train_set)} training images are too few for {dist.world_size} "
                       f"process(es) x {spec.accumulate} micro-batches of {spec.batch_size} images"
                       f"{' (train.drop_last)' if spec.drop_last else ' (at least 2)'}")
    return batches


def split_datasets(train: pd.DataFrame, val: pd.DataFrame, index: dict, image_size: int, pre: dict, hflip: bool,
                   crop_padding: int) -> tuple[ImageList, ImageList]:
    """The training and validation images of a split (rows: path, category_id), read from their
    prepared copies (``bbn.data.prepare.prepared_path``) and labelled by class index (``index``:
    category_id -> index); training with the augmentation of ``pre`` (resolved ``preprocessing``:
    augment, mean, std), validation with its test transform, both decoded at the test resize."""
    decode = test_resize(image_size, pre["augment"])
    train_tf = train_transform(image_size, pre["augment"], hflip, pre["mean"], pre["std"], crop_padding)
    val_tf = eval_transform(image_size, pre["augment"], pre["mean"], pre["std"])
    return tuple(ImageList(frame["path"].map(prepared_path), frame["category_id"].map(index).tolist(), tf, decode)
                 for frame, tf in ((train, train_tf), (val, val_tf)))
