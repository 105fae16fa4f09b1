"""The measuring side: one subprocess per benchmark side, driven message by message by ``bench/run.py``.

Protocol (a multiprocessing Pipe): the worker sets up its job (model, data, warm-up) and sends
``{"ready": True}``, then answers each ``"run"`` with ``{"value": <figure>}`` (one timed repetition)
and ``"quit"`` with ``{"rss_mib": ..., **facts}``. What libraries print goes to a log file that the
parent shows on failure. Both sides of a row are alive at once but only one computes at a time, so
the repetitions interleave A B A B ...

Workers are forked from a fork server that has imported torch, timm and bbn once (``PRELOAD``):
each still is its own process with its own peak RSS, but starts in well under a second instead of
re-importing everything (several seconds each on a busy 2-core machine).

The jobs: ``train`` and ``evaluate`` here, the others in ``images.py``, ``input_paths.py`` and
``pipeline.py``; what they share (``Work``, ``timed``, the model) is in ``bench/common.py``.
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import Callable

from bench import images, input_paths, pipeline
from bench.common import ALPHA, LR, Work, autocast, bbn_loaders, collate, make_model, our_epoch, peak_rss_mib, random_data, timed

PRELOAD = ["torch", "torchvision", "timm", "PIL.Image", "bbn.train.loop", "bbn.data.loading", "bbn.data.prepare",
           "bbn.data.inmemory", "bench.reference"]


def train(spec: dict) -> Work:
    """BBN training steps: ours (``bbn.train.loop.train_epoch``) or the official two-pass recipe."""
    from types import SimpleNamespace

    import torch

    import bbn.train.loop as training
    from bench import reference
    device = torch.device(spec["device"])
    ours = spec["impl"] == "ours"
    net = make_model(spec, spec["antialias"])
    if ours:
        model, opt = net, training.make_optimizer(
            net, SimpleNamespace(lr=LR, momentum=0.9, weight_decay=2e-4, nesterov=True))
    else:
        model = reference.OfficialBBN(net).to(device)
        opt = reference.make_optimizer(model, LR)

    ours_step = our_epoch(spec, training, device)

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
    model = make_model(spec, "full")
    data = TensorDataset(*random_data(spec["n"], spec["px"], seed=2))

    def job(ds) -> None:
        if spec["impl"] == "ours":
            loader = eval_loader(ds, 0, 0, device)
            loader.collate_fn = functools.partial(collate, channels_last=spec["channels_last"])
            with autocast(spec):
                predict(model, loader, device, 0.5, "bench")
        else:
            reference.predict(model, DataLoader(ds, batch_size=32), device)

    job(Subset(data, range(min(256, spec["n"]))))  # warm-up
    return Work(lambda: spec["n"] / timed(device, lambda: job(data)))


def _kinds() -> dict[str, Callable[[dict], Work]]:
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
