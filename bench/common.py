"""What the bench's jobs share (``bench/workloads.py`` and the jobs in ``images.py``, ``input_paths.py``,
``pipeline.py``): the ``Work`` a job returns, timing, the model and the random data of the torch jobs."""

from __future__ import annotations

import contextlib
import functools
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

NUM_CLASSES, ALPHA, LR = 10, 0.75, 0.05


@dataclass
class Work:
    run: Callable[[], float]  # one timed repetition -> the row's figure
    finish: Callable[[], dict] = field(default=lambda: {})  # release resources, extra facts


def peak_rss_mib() -> float:
    """Peak resident set of this process or of its largest waited-for child (ru_maxrss is KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, child) / 1024


# ---------------------------------------------------------------- helpers shared by the torch jobs


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn: Callable[[], object]) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def autocast(spec: dict):
    """torch.autocast for ``--amp`` (our side only), else a no-op context."""
    import torch
    if spec["amp"] == "off":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[spec["amp"]]
    return torch.autocast(torch.device(spec["device"]).type, dtype=dtype)


def collate(batch, channels_last: bool):
    import torch
    from torch.utils.data import default_collate
    x, y = default_collate(batch)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def random_data(n: int, px: int, seed: int):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, px, px, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


def bbn_loaders(n: int, spec: dict):
    """The uniform and the 'reversed' loader over the same pre-generated random images.

    Both use ``UniformSampler`` (different seeds): the bench times the step, not the sampling.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from bbn.data.samplers import UniformSampler
    ds = TensorDataset(*random_data(n, spec["px"], seed=0))
    batch = functools.partial(collate, channels_last=spec["channels_last"])
    return tuple(DataLoader(ds, batch_size=spec["batch"], sampler=UniformSampler(n, seed=s), drop_last=True,
                            collate_fn=batch) for s in (0, 1))


def shortcut_option() -> dict:
    """``shortcut="pad"`` (option A, the official ResNet-32's) when ``ModelSpec`` has that field,
    else nothing (this build's 1x1-conv shortcuts)."""
    from dataclasses import fields

    from bbn.model.network import ModelSpec
    return {"shortcut": "pad"} if "shortcut" in {f.name for f in fields(ModelSpec)} else {}


def make_model(spec: dict, antialias: str):
    import torch

    from bbn.model.network import ModelSpec, build_model
    backbone = spec.get("backbone", "resnet32")
    extra = shortcut_option() if backbone == "resnet32" else {}
    model = build_model(ModelSpec(backbone, NUM_CLASSES, antialias, **extra)).to(spec["device"])
    if spec["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    if spec.get("compile"):  # our side only (``--compile``): as bbn.train.speed.prepare_model
        for part in (model.trunk, model.cb_block, model.rb_block):
            part.compile()
    return model


def our_epoch(spec: dict, training, device):
    """Our epoch (``bbn.train.loop.train_epoch`` with BBN's bilateral step); --amp / --channels-last
    through ``Speed`` (fp16 then gets its GradScaler)."""
    from bbn.train.speed import Speed
    speed = Speed(amp=spec["amp"], channels_last=spec["channels_last"])
    scaler, step = speed.scaler(device), training.bilateral_step(ALPHA)
    return lambda model, loaders, opt, number: training.train_epoch(
        model, list(loaders), step, opt, device, number, speed=speed, scaler=scaler)
