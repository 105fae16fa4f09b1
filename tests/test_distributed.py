"""Data-parallel training under torchrun (gloo on CPU): the samplers' sharding, equivalence with one
process at the same global batch, and a failing rank stopping the job."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bbn.data.loading import train_loaders
from bbn.data.samplers import ReversedSampler, StepBatches, UniformSampler
from tests.helpers import env, prepared_repo, set_params

# Deterministic inputs (no crop, no flip), so only the sharding differs between the two runs;
# the last, partial step kept (train.drop_last false) so that its sharding is compared as well.
EXACT = {"train": {"crop_padding": 0, "hflip": False, "epochs": 2, "drop_last": False}}


@pytest.mark.parametrize("n,world,accumulate", [(94, 2, 1), (95, 2, 2), (64, 3, 1), (17, 2, 1), (40, 4, 2)])
def test_uniform_batches_cover_every_image_once_across_ranks(n, world, accumulate):
    ranks = [list(StepBatches(UniformSampler(n, seed=1), 4, world, r, accumulate)) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1  # every rank takes the same number of steps
    seen = [i for r in ranks for piece in r for i in piece]
    dropped = n - len(seen)
    assert len(set(seen)) == len(seen) and dropped < 2 * world * accumulate  # at most a tiny remainder
    assert min(len(piece) for r in ranks for piece in r) >= 2  # BatchNorm needs 2 per piece
    one = [i for piece in StepBatches(UniformSampler(n, seed=1), 4, 1, 0, world * accumulate) for i in piece]
    assert one == [i for step in zip(*[_steps(r, accumulate) for r in ranks]) for part in step for i in part]


def _steps(batches: list[list[int]], accumulate: int) -> list[list[int]]:
    return [sum(batches[i:i + accumulate], []) for i in range(0, len(batches), accumulate)]


def test_train_loaders_shard_the_epoch_and_draw_reversed_per_rank():
    labels = [0] * 60 + [1] * 20 + [2] * 6
    data = torch.utils.data.TensorDataset(torch.arange(len(labels)))
    data.targets = labels
    loaders = [train_loaders(data, 8, 0, seed=3, rank=r, world_size=2) for r in range(2)]
    for ls in loaders:
        for loader in ls.values():
            loader.batch_sampler.set_epoch(1)
    uniform = [i for ls in loaders for piece in ls["uniform"].batch_sampler for i in piece]
    assert sorted(uniform) == list(range(len(labels)))  # 86 = 5 steps of 16 + a last step of 6
    rev = [[i for piece in ls["reversed"].batch_sampler for i in piece] for ls in loaders]
    assert len(rev[0]) == len(rev[1]) == len(labels) // 2 and rev[0] != rev[1]  # independent per rank
    assert isinstance(loaders[1]["reversed"].batch_sampler.sampler, ReversedSampler)


def _run_train(repo: Path, overrides: dict, threads: str = "1") -> tuple[pd.DataFrame, dict, float]:
    set_params(repo, overrides)
    (repo / "models" / "model.pt").unlink(missing_ok=True)
    start = time.perf_counter()
    sh_env = {"OMP_NUM_THREADS": threads}  # torchrun gives each rank 1 thread; so must the single run
    proc = _sh(repo, sh_env, sys.executable, "-m", "stages.train")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    weights = torch.load(repo / "models" / "model.pt", weights_only=True)["state_dict"]
    return pd.read_csv(repo / "plots" / "learning_curve.csv"), weights, time.perf_counter() - start


def _sh(cwd: Path, extra: dict, *cmd: str):
    import subprocess
    return subprocess.run(cmd, cwd=cwd, env=env() | extra, capture_output=True, text=True, timeout=600)


def _runs(repo: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute("select run_uuid, status from runs").fetchall()


@pytest.fixture(scope="module")
def ddp_repo(tmp_path_factory) -> Path:
    return prepared_repo(tmp_path_factory.mktemp("ddp") / "bbn", EXACT)


@pytest.mark.pipeline
def test_two_processes_equal_one_process_with_accumulation(ddp_repo):
    """Baseline CE (one sampler, the same permutation): 2 ranks x batch 16 and 1 process x 2
    micro-batches of 16 take the same steps on the same images: weights equal to 1e-5."""
    two, w_two, _ = _run_train(ddp_repo, {"train": {"method": "ce", "nproc_per_node": 2, "accumulate": 1}})
    assert len(_runs(ddp_repo)) == 1 and _runs(ddp_repo)[0][1] == "FINISHED"  # rank 0 alone logs
    assert json.loads((ddp_repo / "models" / "mlflow_run.json").read_text())["run_id"] == _runs(ddp_repo)[0][0]
    [info] = (ddp_repo / "checkpoints").glob("train-*.json")  # kept, marked complete, until DVC records
    assert json.loads(info.read_text())["complete"]
    one, w_one, _ = _run_train(ddp_repo, {"train": {"method": "ce", "nproc_per_node": 1, "accumulate": 2}})
    assert list(two["steps"]) == list(one["steps"]) == [3, 3]  # 94 images: 2 steps of 32, one of 30
    assert np.allclose(two["train_loss"], one["train_loss"], atol=1e-5)
    assert max((w_two[k].double() - w_one[k].double()).abs().max().item()
               for k in w_one if "running" not in k and "num_batches" not in k) < 1e-5


@pytest.mark.pipeline
def test_bbn_two_processes_close_to_one(ddp_repo):
    """BBN: the reversed batches are drawn per rank (rank-specific seeds), so the runs differ by
    sampling only: same steps, losses within 0.1 (measured 0.0012)."""
    two, _, _ = _run_train(ddp_repo, {"train": {"method": "bbn", "nproc_per_node": 2, "accumulate": 1}})
    one, _, _ = _run_train(ddp_repo, {"train": {"method": "bbn", "nproc_per_node": 1, "accumulate": 2}})
    assert list(two["steps"]) == list(one["steps"])
    diff = np.abs(two["train_loss"].to_numpy() - one["train_loss"].to_numpy())
    print(f"BBN train loss, 2 ranks vs 1 process: {list(two['train_loss'])} vs {list(one['train_loss'])}")
    assert diff.max() < 0.1  # measured: 0 in epoch 1 (alpha 1), 0.0012 in epoch 2
    assert two["lr"].iloc[0] == one["lr"].iloc[0] == pytest.approx(2 * 0.05)  # linear scaling, x2


@pytest.mark.pipeline
def test_one_failing_rank_stops_the_job(ddp_repo, tmp_path):
    """Rank 1 raises in epoch 2: the job exits non-zero within seconds, its error shown, and no
    half-written file remains (rank 0's state of epoch 1 is complete)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import bbn.train.loop as t\n"
        "    real = t.train_epoch\n"
        "    def failing(*args, **kwargs):\n"
        "        if args[5] == 2:  # the 1-based epoch\n"
        "            raise RuntimeError('injected failure on rank 1')\n"
        "        return real(*args, **kwargs)\n"
        "    t.train_epoch = failing\n")
    set_params(ddp_repo, {"train": {"method": "bbn", "nproc_per_node": 2, "accumulate": 1}})
    (ddp_repo / "models" / "model.pt").unlink(missing_ok=True)
    shutil.rmtree(ddp_repo / "checkpoints", ignore_errors=True)  # an earlier complete state: no training
    path = f"{tmp_path}{os.pathsep}{env()['PYTHONPATH']}"
    proc = _sh(ddp_repo, {"PYTHONPATH": path}, sys.executable, "-m", "stages.train")
    failed_at = time.time()
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
    epoch_1 = [line for line in proc.stdout.splitlines() if line.startswith("epoch 1/2")]
    assert epoch_1 and not (ddp_repo / "models" / "model.pt").exists()
    state_written = max(p.stat().st_mtime for p in (ddp_repo / "checkpoints").glob("train-*.pt"))
    print(f"job exited {failed_at - state_written:.1f} s after rank 0 finished epoch 1")
    assert failed_at - state_written < 30  # epoch 2 up to the failure, then torchrun stops rank 0
    leftovers = [p for d in ("models", "checkpoints", "metrics", "plots") for p in (ddp_repo / d).glob(".*.tmp")]
    assert not leftovers
    [state] = (ddp_repo / "checkpoints").glob("train-*.pt")
    assert torch.load(state, weights_only=True)["epoch"] == 1
    # rerun without the fault: rank 0 reads the state and hands it to rank 1; both resume at epoch 2
    rerun = _sh(ddp_repo, {}, sys.executable, "-m", "stages.train")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming after epoch 1" in rerun.stdout and "epoch 1/2" not in rerun.stdout
    assert (ddp_repo / "models" / "model.pt").exists()
    assert json.loads(state.with_suffix(".json").read_text())["complete"]
