"""Fault injection in the train stage: SIGKILL and resume, NaN loss, an unusable MLflow store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import env, prepared_repo, set_params, sh

RESUMABLE = {"train": {"epochs": 4, "tmax": 4, "lr_steps": [3], "deterministic": True, "crop_padding": 2}}

pytestmark = pytest.mark.pipeline  # the train stage / download stage as processes


def _train(repo: Path, extra_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo, env=env() | (extra_env or {}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _state(repo: Path) -> list[Path]:
    return list((repo / "checkpoints").glob("train-*.pt"))


def _outputs(repo: Path) -> tuple[dict, pd.DataFrame, str]:
    weights = torch.load(repo / "models" / "model.pt", weights_only=True)["state_dict"]
    curve = pd.read_csv(repo / "plots" / "learning_curve.csv")  # no wall-clock column: comparable as a whole
    return weights, curve, (repo / "metrics" / "train.json").read_text()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return prepared_repo(tmp_path_factory.mktemp("resume") / "bbn", RESUMABLE)


def test_sigkill_mid_training_then_dvc_repro_resumes_bit_identical(repo):
    # the reference runs outside DVC, so DVC's run cache cannot restore train without running it
    proc = _train(repo)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    reference = _outputs(repo)
    [done] = _state(repo)  # kept, marked complete, until DVC records the outputs (this run was outside DVC)
    assert json.loads(done.with_suffix(".json").read_text())["complete"]
    for f in (repo / "checkpoints").iterdir():  # so that the run below trains (and is killed) again
        f.unlink()
    (repo / "models" / "model.pt").unlink()

    dvc = subprocess.Popen(["dvc", "repro", "train"], cwd=repo, env=env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not any(torch.load(p, weights_only=True)["epoch"] >= 2 for p in _state(repo) if p.stat().st_size):
        assert dvc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 3
    os.killpg(dvc.pid, signal.SIGKILL)  # dvc and the stage under it, as a preempted machine would
    dvc.wait()
    assert not (repo / "models" / "model.pt").exists()
    [state] = _state(repo)
    killed_run = torch.load(state, weights_only=True)["run_id"]

    resumed = sh(repo, "dvc", "repro", "train")
    assert "resuming after epoch 2" in resumed.stdout or "resuming after epoch 3" in resumed.stdout, resumed.stdout
    assert f"MLflow run {killed_run}" in resumed.stdout  # the same MLflow run continues
    weights, curve, metrics = _outputs(repo)
    assert all(torch.equal(weights[k], reference[0][k]) for k in weights)  # bit-identical on the CPU
    pd.testing.assert_frame_equal(curve, reference[1])
    assert metrics == reference[2]  # metrics/train.json holds no wall-clock time
    with sqlite3.connect(repo / "mlflow.db") as db:
        steps = db.execute("select step from metrics where run_uuid=? and key='train_loss' order by step",
                           (killed_run,)).fetchall()
        status = db.execute("select status from runs where run_uuid=?", (killed_run,)).fetchone()[0]
    assert [s for (s,) in steps] == [1, 2, 3, 4] and status == "FINISHED"
    assert "train" not in sh(repo, "dvc", "status", "train").stdout  # DVC records the resumed run as done
    [done] = _state(repo)  # DVC has recorded the outputs now: the prune rule deletes the state
    assert "outputs recorded" in sh(repo, sys.executable, "-m", "stages.checkpoints").stdout
    sh(repo, sys.executable, "-m", "stages.checkpoints", "--prune")
    assert not _state(repo) and not list((repo / "checkpoints").iterdir())


def test_nan_loss_stops_with_epoch_and_step_keeping_last_good_state(repo, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(
        "import bbn.train.loop as t\n"
        "real = t.bilateral_loss\n"
        "calls = []\n"
        "def poisoned(z, y_c, y_r, alpha):\n"
        "    calls.append(1)\n"
        "    loss = real(z, y_c, y_r, alpha)\n"
        "    return loss * float('nan') if len(calls) == 7 else loss\n"  # epoch 2 (5 full steps per epoch)
        "t.bilateral_loss = poisoned\n")
    set_params(repo, {"train": {"seed": 1}})  # another training: starts afresh
    (repo / "models" / "model.pt").unlink(missing_ok=True)
    proc = _train(repo, {"PYTHONPATH": f"{tmp_path}{os.pathsep}{env()['PYTHONPATH']}"})
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: training diverged: loss is nan at epoch 2, step 2; lower the learning rate"]
    assert not (repo / "models" / "model.pt").exists()
    [state] = _state(repo)
    assert torch.load(state, weights_only=True)["epoch"] == 1  # the last good epoch is kept
    state.unlink()


def test_unusable_mlflow_store_does_not_stop_training(repo):
    (repo / "not_a_dir").write_text("a file where the store's folder should be\n")
    set_params(repo, {"train": {"seed": 2, "epochs": 2}, "tracking": {"uri": f"sqlite:///{repo}/not_a_dir/mlflow.db"}})
    (repo / "metrics" / "train.json").unlink(missing_ok=True)
    proc = _train(repo)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert err.count("MLflow store") == 1 and "continuing without tracking" in err  # warned once
    assert "val_acc" in (repo / "metrics" / "train.json").read_text()
    assert len(pd.read_csv(repo / "plots" / "learning_curve.csv")) == 2
    # later, with a store that works: the run is re-logged from those files
    relog = sh(repo, sys.executable, "-m", "stages.relog", "--uri", f"sqlite:///{repo}/later.db")
    run_id = relog.stdout.split()[-1]
    with sqlite3.connect(repo / "later.db") as db:
        steps = db.execute("select step from metrics where run_uuid=? and key='val_acc' order by step",
                           (run_id,)).fetchall()
        params = dict(db.execute("select key, value from params where run_uuid=?", (run_id,)).fetchall())
    assert [s for (s,) in steps] == [0, 1, 2]  # epochs 1, 2 and the final metrics/train.json (step 0)
    assert params["train.seed"] == "2" and params["train.epochs"] == "2"


def test_killed_after_the_last_epoch_before_dvc_recorded_reruns_no_epoch(repo):
    """The stage finished (outputs written) but DVC died before recording them: the rerun DVC starts
    writes the same outputs again from the complete resume state instead of training every epoch."""
    for f in (repo / "checkpoints").iterdir():
        f.unlink()
    set_params(repo, {"train": {"seed": 3, "epochs": 2}, "tracking": {"uri": ""}})
    proc = _train(repo)  # as under DVC, which is then killed before it writes dvc.lock
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    first = _outputs(repo)
    rerun = sh(repo, "dvc", "repro", "train")  # params changed since dvc.lock: DVC runs the stage again
    assert "writing them again without training" in rerun.stdout, rerun.stdout
    assert "epoch 1/2" not in rerun.stdout and "epoch 2/2" not in rerun.stdout
    weights, curve, metrics = _outputs(repo)
    assert all(torch.equal(weights[k], first[0][k]) for k in weights)
    pd.testing.assert_frame_equal(curve, first[1])
    assert metrics == first[2]
    assert "train" not in sh(repo, "dvc", "status", "train").stdout
    sh(repo, sys.executable, "-m", "stages.checkpoints", "--prune")  # recorded now: deleted
    assert not _state(repo)
