"""bbn.train.inputs: the one choice of the training input path, by its spec."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from torch.utils.data import DataLoader

from bbn.data.inmemory import DeviceBatches
from bbn.data.loading import ImageList
from bbn.data.transforms import NORMALIZE, train_transform
from bbn.errors import ArgError
from bbn.train.distributed import Dist
from bbn.train.inputs import InputSpec, training_batches
from tests.helpers import jpeg

CPU = torch.device("cpu")
SPEC = InputSpec(image_size=16, augment="cifar", mean=NORMALIZE["cifar"][0], std=NORMALIZE["cifar"][1],
                 crop_padding=2, hflip=True, batch_size=4, seed=0, accumulate=1, drop_last=True, num_workers="auto",
                 in_memory="auto", in_memory_max_gb=1.0, gpu_decode=False, deterministic=False, readers=2)


@pytest.fixture
def images(tmp_path) -> ImageList:
    paths = []
    for i in range(12):
        paths.append(str(tmp_path / f"{i}.jpg"))
        (tmp_path / f"{i}.jpg").write_bytes(jpeg(i, 16))
    return ImageList(paths, [i % 3 for i in range(12)], train_transform(16, "cifar", True, *NORMALIZE["cifar"], 2), 16)


def test_small_data_goes_in_memory_large_data_to_workers_sharing_the_cpus(images, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    small = training_batches(SPEC, images, Dist(), CPU)
    assert isinstance(small["uniform"], DeviceBatches)  # 12 images of 16 px: far below 1 GiB
    large = training_batches(replace(SPEC, in_memory_max_gb=0.0), images, Dist(), CPU)
    assert isinstance(large["uniform"], DataLoader) and large["uniform"].num_workers == 4  # 8 CPUs, 2 readers
    single = training_batches(replace(SPEC, in_memory="off", readers=1), images, Dist(), CPU)
    assert single["uniform"].num_workers == 8 and single["uniform"].persistent_workers
    x, y = next(iter(training_batches(replace(SPEC, in_memory="off", num_workers=0), images, Dist(), CPU)["uniform"]))
    assert x.shape == (4, 3, 16, 16) and len(y) == 4


def test_too_few_images_for_one_step_is_one_line_naming_the_knob(images):
    with pytest.raises(ArgError, match="12 training images are too few for 1 process") as caught:
        training_batches(replace(SPEC, batch_size=16), images, Dist(), CPU)
    assert caught.value.arg == "accumulate"
    with pytest.raises(ArgError) as caught:
        training_batches(replace(SPEC, in_memory="sometimes"), images, Dist(), CPU)
    assert caught.value.arg == "in_memory"
