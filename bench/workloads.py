"""The measuring side: one subprocess per benchmark side, driven message by message by ``bench/run.py``.

Protocol (a multiprocessing Pipe): the worker sets up its job (model, data, warm-up) and sends
``{"ready": True}``, then answers each ``"run"`` with ``{"value": <figure>}`` (one timed repetition)
and ``"quit"`` with ``{"rss_mib": ..., **facts}``. What libraries print goes to a log file that the
parent shows on failure. Both sides of a row are alive at once but only one computes at a time, so
the repetitions interleave A B A B ...

Workers are forked from a fork server that has imported torch, timm and bbn once (``PRELOAD``):
each still is its own process with its own peak RSS, but starts in well under a second instead of
re-importing everything (several seconds each on a busy 2-core machine).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

PRELOAD = ["torch", "torchvision", "timm", "PIL.Image", "bbn.train.loop", "bbn.data.loading", "bbn.data.prepare",
           "bbn.data.inmemory", "bench.reference"]
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


def _collate(batch, channels_last: bool):
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
    collate = functools.partial(_collate, channels_last=spec["channels_last"])
    return tuple(DataLoader(ds, batch_size=spec["batch"], sampler=UniformSampler(n, seed=s), drop_last=True,
                            collate_fn=collate) for s in (0, 1))


def shortcut_option() -> dict:
    """``shortcut="pad"`` (option A, the official ResNet-32's) when ``ModelSpec`` has that field,
    else nothing (this build's 1x1-conv shortcuts)."""
    from dataclasses import fields

    from bbn.model.network import ModelSpec
    return {"shortcut": "pad"} if "shortcut" in {f.name for f in fields(ModelSpec)} else {}


def _model(spec: dict, antialias: str):
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


# ---------------------------------------------------------------- jobs


def _our_step(spec: dict, training, device):
    """Our epoch (``bbn.train.loop.train_epoch`` with BBN's bilateral step); --amp / --channels-last
    through ``Speed`` (fp16 then gets its GradScaler)."""
    from bbn.train.speed import Speed
    speed = Speed(amp=spec["amp"], channels_last=spec["channels_last"])
    scaler, step = speed.scaler(device), training.bilateral_step(ALPHA)
    return lambda model, loaders, opt, number: training.train_epoch(
        model, list(loaders), step, opt, device, number, speed=speed, scaler=scaler)


def train(spec: dict) -> Work:
    """BBN training steps: ours (``bbn.train.loop.train_epoch``) or the official two-pass recipe."""
    from types import SimpleNamespace

    import torch

    import bbn.train.loop as training
    from bench import reference
    device = torch.device(spec["device"])
    ours = spec["impl"] == "ours"
    net = _model(spec, spec["antialias"])
    if ours:
        model, opt = net, training.make_optimizer(
            net, SimpleNamespace(lr=LR, momentum=0.9, weight_decay=2e-4, nesterov=True))
    else:
        model = reference.OfficialBBN(net).to(device)
        opt = reference.make_optimizer(model, LR)

    ours_step = _our_step(spec, training, device)

    def epoch(loaders, number: int) -> None:
        if ours:
            ours_step(model, loaders, opt, number)
        else:
            reference.train_epoch(model, loaders[0], loaders[1], opt, ALPHA, device)

    epoch(bbn_loaders(spec["warmup"] * spec["batch"], spec), 0)
    loaders, numbers = bbn_loaders(spec["steps"] * spec["batch"], spec), itertools.count(1)
    images = 2 * spec["batch"] * spec["steps"]  # uniform + reversed batch
    return Work(lambda: images / timed(device, lambda: epoch(loaders, next(numbers))))


def evaluate(spec: dict) -> Work:
    """Inference: ``bbn.model.inference.predict`` (``eval.batch_size`` 0: chosen by device) or a plain no_grad loop (batch 32)."""
    import torch
    from torch.utils.data import DataLoader, Subset, TensorDataset

    from bbn.data.loading import eval_loader
    from bbn.model.inference import predict
    from bench import reference
    device = torch.device(spec["device"])
    model = _model(spec, "full")
    data = TensorDataset(*random_data(spec["n"], spec["px"], seed=2))

    def job(ds) -> None:
        if spec["impl"] == "ours":
            loader = eval_loader(ds, 0, 0, device)
            loader.collate_fn = functools.partial(_collate, channels_last=spec["channels_last"])
            with autocast(spec):
                predict(model, loader, device, 0.5, "bench")
        else:
            reference.predict(model, DataLoader(ds, batch_size=32), device)

    job(Subset(data, range(min(256, spec["n"]))))  # warm-up
    return Work(lambda: spec["n"] / timed(device, lambda: job(data)))


def _kinds() -> dict[str, Callable[[dict], Work]]:
    from bench import images, input_paths, pipeline
    return {"train": train, "eval": evaluate, "load": images.load, "prepare": images.prepare,
            "pipeline": pipeline.pipeline, "input": input_paths.data, "input_epoch": input_paths.epoch}


def serve(conn, spec: dict, log_path: str) -> None:
    """The worker's main loop (see the module docstring); ``conn`` is its end of a Pipe."""
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(log, 1)  # whatever libraries or child processes print goes to the log
    os.dup2(log, 2)
    if spec["kind"] != "pipeline":
        import torch
        torch.set_num_threads(spec["threads"])
    work = _kinds()[spec["kind"]](spec)
    conn.send({"ready": True})
    while conn.recv() == "run":
        conn.send({"value": work.run()})
    info = work.finish()
    conn.send({"rss_mib": peak_rss_mib(), **info})
