"""The real workload's knobs: ``train.num_workers: auto`` and ``train.max_steps`` (issue 23)."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bbn.data.loading import ImageList, eval_loader, resolve_workers, train_loaders
from bbn.data.samplers import UniformSampler
from bbn.errors import ArgError
from bbn.model.network import ModelSpec, build_model
from bbn.train.loop import fit
from stages.params import TrainParams


@pytest.fixture
def cpus(monkeypatch):
    """Pretend this process may use 16 CPUs, on a node of one process."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    return monkeypatch


def test_auto_workers_share_the_cpus_among_the_loaders_reading_at_once(cpus):
    assert resolve_workers("auto") == 16  # evaluation: one loader
    assert resolve_workers("auto", share=2) == 8  # BBN: uniform and reversed read side by side
    assert resolve_workers(-1, share=2) == 8  # the old spelling
    cpus.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun, 4 GPUs on this node
    assert resolve_workers("auto", share=2) == 2
    cpus.setenv("LOCAL_WORLD_SIZE", "64")
    assert resolve_workers("auto", share=2) == 1  # never 0: the main process must not decode
    assert resolve_workers(3, share=2) == 3  # a count is taken as given
    with pytest.raises(ArgError, match="num_workers"):
        resolve_workers("many")


def test_auto_is_the_default_and_the_schema_reads_it():
    assert TrainParams().num_workers == "auto"
    assert TrainParams(num_workers=0).num_workers == 0
    with pytest.raises(ValueError):
        TrainParams(num_workers=-2)


def test_loaders_built_with_auto_are_persistent_prefetching_and_split_by_method(cpus):
    images = ImageList(["a.jpg"] * 8, [0, 1] * 4, transform=None)
    bbn = train_loaders(images, 4, "auto", seed=0, share=2)
    ce = train_loaders(images, 4, "auto", seed=0, share=1)
    assert bbn["uniform"].num_workers == bbn["reversed"].num_workers == 8
    assert ce["uniform"].num_workers == 16
    loader = bbn["uniform"]
    assert loader.persistent_workers and loader.prefetch_factor == 4
    assert loader.pin_memory == torch.cuda.is_available()
    assert eval_loader(images, 0, "auto", torch.device("cpu")).num_workers == 16
    assert train_loaders(images, 4, 0, seed=0)["uniform"].num_workers == 0  # in the main process


def _fit(max_steps: int, epochs: int = 3, resume: dict | None = None):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 4, (64,))
    data = TensorDataset(x, y)
    loaders = {k: DataLoader(data, batch_size=8, sampler=UniformSampler(64, seed=1)) for k in ("uniform", "reversed")}
    model = build_model(ModelSpec("resnet32", 4, "off"))
    p = TrainParams(epochs=epochs, tmax=epochs, warmup_epochs=0, lr_steps=[99], max_steps=max_steps,
                    channels_last=False)
    seen = []
    history = fit(model, loaders, None, p, torch.device("cpu"), torch.ones(4),
                  on_epoch=lambda epoch, row, state: seen.append((epoch, row["steps"])), resume=resume)
    return history, seen


def test_max_steps_bounds_the_whole_run_and_ends_the_epoch_in_progress():
    history, seen = _fit(max_steps=11)  # 8 steps an epoch: all of epoch 1, 3 steps of epoch 2
    assert seen == [(1, 8), (2, 3)]
    assert [row["epoch"] for row in history] == [1, 2]
    history, seen = _fit(max_steps=0)  # no bound: every epoch whole
    assert seen == [(1, 8), (2, 8), (3, 8)]


def test_max_steps_counts_the_steps_of_a_resumed_run():
    first, _ = _fit(max_steps=0, epochs=1)  # one whole epoch done (8 steps) before an interruption
    model = build_model(ModelSpec("resnet32", 4, "off"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = {"history": first, "optimizer": optimizer.state_dict(),
             "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict()}
    _, seen = _fit(max_steps=12, resume=state)
    assert seen == [(2, 4)]  # 12 in all: 8 before, 4 now
    _, seen = _fit(max_steps=8, resume=state)
    assert seen == []  # the bound was reached before the interruption
