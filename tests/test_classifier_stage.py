"""The classifier stage through DVC: every method after one tiny BBN training (train not rerun), the
re-trained model evaluated and loaded as any checkpoint, a single-branch method and its refusal."""

from __future__ import annotations

import filecmp
import json
import re
import sys

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from bbn.data.prepare import prepared_path
from bbn.evaluate.predictions import predict_frame
from bbn.files import read_csv
from bbn.model import inference
from bbn.model.checkpoint import load_checkpoint
from tests.helpers import one_error_line, prepared_repo, set_params, sh

pytestmark = pytest.mark.pipeline


def ran(out) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", out.stdout)


def exp_run(repo, *sets: str):
    return sh(repo, "dvc", "exp", "run", *[a for s in sets for a in ("-S", s)])


def _check_run(repo, name: str, branch: str, trained: str):
    """The stage's numbers, the loadable model with its branch fixed, its own run linked to training."""
    summary = json.loads((repo / "metrics/classifier.json").read_text())
    assert ("classifier_tau" in summary) == (name == "tau_norm") and summary, (name, summary)
    _, ckpt = load_checkpoint(repo / "models/final.pt", torch.device("cpu"))
    assert inference.test_alpha(ckpt, 0.3) == {"conventional": 1.0, "reversed": 0.0, "both": 0.5}[branch]
    run = json.loads((repo / "models/final_run.json").read_text())["run_id"]
    got = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}").get_run(run)
    assert run != trained and got.data.tags["bbn.training_run_id"] == trained
    assert got.data.params["classifier.method"] == name
    return got


@pytest.mark.timeout(1200)
def test_each_method_reruns_only_the_classifier_stage_and_what_follows(tmp_path, monkeypatch):
    repo = prepared_repo(tmp_path / "cls", {"train": {"epochs": 1, "lr_steps": [1]},
                                        "classifier": {"epochs": 1, "batch_size": 32}})
    assert "classifier" in ran(exp_run(repo))  # method none: the trained model as is
    assert filecmp.cmp(repo / "models/model.pt", repo / "models/final.pt", shallow=False)
    assert filecmp.cmp(repo / "models/mlflow_run.json", repo / "models/final_run.json", shallow=False)
    trained = json.loads((repo / "models/mlflow_run.json").read_text())["run_id"]
    before = (repo / "metrics/eval.json").read_text()
    # through DVC once: only the classifier stage and what follows rerun, evaluate scores the new model
    out = exp_run(repo, "classifier.method=crt", "classifier.branch=both")
    assert "train" not in ran(out) and {"classifier", "evaluate"} <= set(ran(out)), out.stdout
    assert (repo / "metrics/eval.json").read_text() != before
    crt = _check_run(repo, "crt", "both", trained)
    assert "test_top1_error" in crt.data.metrics  # evaluate logged into the classifier's run
    # what evaluate saved is what the loaded final model predicts when asked for eval alpha 0.3
    monkeypatch.chdir(repo)
    model, ckpt = load_checkpoint(repo / "models/final.pt", torch.device("cpu"))  # the project's loader
    frame = read_csv("data/split/val.csv")
    logits, _ = predict_frame(model, ckpt, frame.assign(path=frame["path"].map(prepared_path)), "val", 64, 0,
                              inference.test_alpha(ckpt, 0.3), False, torch.device("cpu"))
    assert np.allclose(logits, np.load("predictions/val.npz")["logits"], atol=1e-4)
    # the other methods as the stage's own process (the same code DVC runs; a dvc exp run each costs ~40 s)
    for name, branch in [("lws", "conventional"), ("tau_norm", "reversed"), ("mislas", "both")]:
        set_params(repo, {"classifier": {"method": name, "branch": branch, "shift_bn": name == "mislas"}})
        sh(repo, sys.executable, "-m", "stages.classifier")
        _check_run(repo, name, branch, trained)

    # a single-branch method's network (its checkpoint says ce): only the conventional branch is allowed
    ckpt = torch.load("models/model.pt", weights_only=True) | {"method": "ce"}
    torch.save(ckpt, "models/model.pt")
    set_params(repo, {"classifier": {"method": "crt", "branch": "both"}})
    proc = sh(repo, sys.executable, "-m", "stages.classifier", check=False)
    assert "classifier.branch" in one_error_line(proc) and "conventional" in one_error_line(proc)
