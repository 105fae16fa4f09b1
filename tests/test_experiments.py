"""Ablations and baselines: every method through the pipeline, and a queued parallel sweep."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from bbn.model.checkpoint import Checkpoint
from stages.params import METHODS
from tests.helpers import prepared_repo, read_params, sh, stage

pytestmark = pytest.mark.pipeline

EXPECTED = ("top1_error", "top5_error", "top1_acc", "macro_acc", "worst_class_acc", "nll", "ece",
            "many_acc", "medium_acc", "few_acc")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny repo whose data stages have run (train/evaluate then run per method)."""
    return prepared_repo(tmp_path_factory.mktemp("methods") / "repo",
                         {"train": {"epochs": 1, "lr_steps": [1]}, "tracking": {"experiment": "methods"}})


def _set_method(repo, method: str) -> None:
    params = read_params(repo / "params.yaml")
    params["train"]["method"] = method
    params["train"]["baseline"] = {"defer_epoch": 0}  # DRW / DRS switch on at once (before: plain CE)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_evaluates(prepared, method):
    _set_method(prepared, method)
    for name in ("train", "classifier", "evaluate", "submit"):
        proc = stage(prepared, name)
        assert proc.returncode == 0, proc.stderr
    numbers = {**json.loads((prepared / "metrics/eval.json").read_text()),
               **json.loads((prepared / "metrics/eval_details.json").read_text())}
    for key in EXPECTED:
        assert f"test_{key}" in numbers and f"val_{key}" in numbers, key
    assert 0.0 <= numbers["test_top1_error"] <= 1.0
    assert numbers["eval_alpha"] == (0.5 if method == "bbn" else 1.0)
    assert "posthoc_tau" in numbers and "test_posthoc_top1_error" in numbers
    ckpt = Checkpoint.load(prepared / "models/model.pt")
    assert ckpt.method == method
    assert ckpt.spec.head == {"ldam_drw": "cosine", "cb_focal": "sigmoid"}.get(method, "linear")


def _queue_idle(repo) -> bool:
    status = sh(repo, "dvc", "queue", "status").stdout
    return not any(word in status for word in ("Queued", "Running"))


def test_queued_sweep_reuses_the_data_and_runs_in_parallel_into_one_store(tmp_path):
    repo = prepared_repo(tmp_path / "sweep", {"train": {"epochs": 1, "lr_steps": [1]}})
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "data stages run")
    assert not (repo / "mlflow.db").exists()  # a fresh store: the runs race to create it
    sh(repo, "dvc", "exp", "run", "--queue", "-S", "train.tmax=3,4")
    sh(repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.time() + 600
    while not _queue_idle(repo):
        assert time.time() < deadline, sh(repo, "dvc", "queue", "status").stdout
        time.sleep(3)
    status = sh(repo, "dvc", "queue", "status").stdout
    failed = [line.split()[0] for line in status.splitlines() if "Failed" in line]
    assert not failed, status + sh(repo, "dvc", "queue", "logs", failed[0], check=False).stdout[-3000:]
    tasks = [line.split()[0] for line in status.splitlines() if "Success" in line]
    assert len(tasks) == 2, status
    for task in tasks:  # the workspace's dataset: the fresh copy links to it, DVC restores the data stages
        log = sh(repo, "dvc", "queue", "logs", task).stdout
        assert "download: digits unchanged, reused" in log, log
        assert not re.findall(r"Running stage '(check|split|stats|prepare)'", log), log
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("bbn").experiment_id])
    assert sorted(r.data.params["train.tmax"] for r in runs) == ["3", "4"]
    for run in runs:
        assert run.info.status == "FINISHED" and "test_top1_error" in run.data.metrics
        assert run.data.tags["dvc_exp_name"] and run.data.tags["version.torch"]
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"params_resolved.yaml", "submission.csv"}
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    assert shown  # DVC lists the experiments too
