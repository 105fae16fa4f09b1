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
from tests.helpers import make_repo, one_error_line, set_params, sh

pytestmark = pytest.mark.pipeline


def ran(out) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", out.stdout)


def exp_run(repo, *sets: str):
    return sh(repo, "dvc", "exp", "run", *[a for s in sets for a in ("-S", s)])


@pytest.mark.timeout(1200)
def test_each_method_reruns_only_the_classifier_stage_and_what_follows(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "cls", {"train": {"epochs": 1, "lr_steps": [1]},
                                        "classifier": {"epochs": 1, "batch_size": 32}})
    assert "classifier" in ran(exp_run(repo))  # method none: the trained model as is
    assert filecmp.cmp(repo / "models/model.pt", repo / "models/final.pt", shallow=False)
    assert filecmp.cmp(repo / "models/mlflow_run.json", repo / "models/final_run.json", shallow=False)
    trained = json.loads((repo / "models/mlflow_run.json").read_text())["run_id"]
    before = (repo / "metrics/eval.json").read_text()
    cases = [("crt", "both"), ("lws", "conventional"), ("tau_norm", "reversed"), ("mislas", "both")]
    for name, branch in cases:
        out = exp_run(repo, f"classifier.method={name}", f"classifier.branch={branch}",
                      f"classifier.shift_bn={str(name == 'mislas').lower()}")
        assert "train" not in ran(out) and {"classifier", "evaluate"} <= set(ran(out)), (name, out.stdout)
        summary = json.loads((repo / "metrics/classifier.json").read_text())
        assert ("classifier_tau" in summary) == (name == "tau_norm") and summary, (name, summary)
        model, ckpt = load_checkpoint(repo / "models/final.pt", torch.device("cpu"))  # the project's loader
        assert inference.test_alpha(ckpt, 0.3) == {"conventional": 1.0, "reversed": 0.0, "both": 0.5}[branch]
        assert (repo / "metrics/eval.json").read_text() != before, name  # evaluate scored the new model
        run = json.loads((repo / "models/final_run.json").read_text())["run_id"]
        client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
        got = client.get_run(run)
        assert run != trained and got.data.tags["bbn.training_run_id"] == trained
        assert got.data.params["classifier.method"] == name and "test_top1_error" in got.data.metrics
    # what evaluate saved is what the loaded final model predicts when asked for eval alpha 0.3
    monkeypatch.chdir(repo)
    frame = read_csv("data/split/val.csv")
    logits, _ = predict_frame(model, ckpt, frame.assign(path=frame["path"].map(prepared_path)), "val", 64, 0,
                              inference.test_alpha(ckpt, 0.3), False, torch.device("cpu"))
    assert np.allclose(logits, np.load("predictions/val.npz")["logits"], atol=1e-4)

    # a single-branch method's network (its checkpoint says ce): only the conventional branch is allowed
    ckpt = torch.load("models/model.pt", weights_only=True) | {"method": "ce"}
    torch.save(ckpt, "models/model.pt")
    set_params(repo, {"classifier": {"method": "crt", "branch": "both"}})
    proc = sh(repo, sys.executable, "-m", "stages.classifier", check=False)
    assert "classifier.branch" in one_error_line(proc) and "conventional" in one_error_line(proc)
