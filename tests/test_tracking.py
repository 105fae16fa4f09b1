"""MLflow as its users expect it, after one tiny pipeline run in ONE repo (CI time): the experiment
kind, datasets, a model that predicts, run names, system metrics; wall-clock out of metrics/; results
attributed to runs whose params match them; a store that goes away mid-training."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bbn.data.inat import load_images
from tests.helpers import env, make_repo, set_params, sh, stage

pytestmark = pytest.mark.pipeline

TRACKING = {"tracking": {"system_metrics_interval": 1, "register": "bbn-tiny", "log_model": True}}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The tiny pipeline after one ``dvc repro``, committed."""
    repo = make_repo(tmp_path_factory.mktemp("tracking") / "bbn", TRACKING)
    sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "first run")
    return repo


def _client(repo: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def _training_run(repo: Path):
    return _client(repo).get_run(json.loads((repo / "models/mlflow_run.json").read_text())["run_id"])


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_the_run_is_what_an_mlflow_user_expects(repo):
    client, run = _client(repo), _training_run(repo)
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development" and exp.tags["mlflow.note.content"]
    assert run.info.run_name == "bbn-r32-16px-tmax2-seed0"
    assert "Recipe:" in run.data.tags["mlflow.note.content"]
    # datasets: train / val / test with the split files' digests and row counts
    inputs = {[t.value for t in d.tags if t.key == "mlflow.data.context"][0]: d.dataset
              for d in run.inputs.dataset_inputs}
    test_json = next((repo / "data/raw").rglob("test.json"))
    files = {"train": repo / "data/split/train.csv", "val": repo / "data/split/val.csv", "test": test_json}
    assert set(inputs) == set(files)
    for context, path in files.items():
        assert inputs[context].digest == _md5(path) and inputs[context].name == "digits"
        rows = len(pd.read_csv(path)) if path.suffix == ".csv" else len(json.loads(path.read_text())["images"])
        assert json.loads(inputs[context].profile)["num_rows"] == rows
    # system metrics, and wall-clock in MLflow but not in the DVC metrics
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics)
    assert run.data.metrics["train_minutes"] > 0
    assert "train_minutes" not in json.loads((repo / "metrics/train.json").read_text())
    assert "seconds" not in pd.read_csv(repo / "plots/learning_curve.csv").columns
    # the model: same bytes as models/model.pt, registered, and it classifies like the evaluate stage
    (output,) = run.outputs.model_outputs
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{output.model_id}"))
    assert _md5(next(local.rglob("model.pt"))) == _md5(repo / "models/model.pt")
    (version,) = client.search_model_versions("name='bbn-tiny'")
    assert version.run_id == run.info.run_id
    # named after the run, its URI in models/mlflow_run.json (the README's snippet), the test metrics on it
    logged = mlflow.get_logged_model(output.model_id)
    assert logged.name == run.info.run_name
    assert json.loads((repo / "models/mlflow_run.json").read_text())["model_uri"] == f"models:/{output.model_id}"
    on_model = {m.key: m for m in logged.metrics or []}
    head = json.loads((repo / "metrics/eval.json").read_text())
    assert on_model["test_top1_error"].value == pytest.approx(head["test_top1_error"], abs=1e-6)
    assert on_model["test_top1_error"].dataset_name == "digits" and on_model["test_top1_error"].dataset_digest
    last = pd.read_csv(repo / "plots/learning_curve.csv").iloc[-1]  # and the last epoch's training numbers
    assert on_model["val_acc"].value == pytest.approx(last["val_acc"], abs=1e-6) and on_model["val_acc"].step == 2
    model = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image"]
    saved = np.load(repo / "predictions/test.npz")
    expected = dict(zip(saved["image_id"].tolist(), saved["category_ids"][saved["logits"].argmax(1)].tolist()))
    images = load_images(test_json, labelled=False).iloc[[0, -1]]
    frame = pd.DataFrame({"image": [Path(p).read_bytes() for p in images["path"]]})
    got = model.predict(frame, params={"alpha": 0.5, "tta_flip": False})
    assert got["category_id"].tolist() == [expected[i] for i in images["image_id"]]
    assert ((got["probability"] > 0) & (got["probability"] <= 1)).all()


def test_an_identical_rerun_leaves_the_committed_metrics_unchanged(repo):
    out = sh(repo, "dvc", "repro", "-f")
    assert "Running stage 'train'" in out.stdout
    assert sh(repo, "git", "status", "--porcelain", "metrics", "plots/learning_curve.csv").stdout == ""
    assert "train: 2 epochs in " in out.stdout  # the wall-clock time is in the stage log instead
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "second run")


def test_evaluation_under_other_params_gets_its_own_run_linked_to_training(repo, tmp_path):
    """``dvc exp run -S eval.tta_flip=true`` after ``dvc repro``: train is not rerun, and the new
    numbers go to a run whose params say tta_flip True, not into the training run."""
    client, trained = _client(repo), _training_run(repo)
    out = sh(repo, "dvc", "exp", "run", "-S", "eval.tta_flip=true")
    assert "Running stage 'train'" not in out.stdout and "Running stage 'evaluate'" in out.stdout
    assert _training_run(repo).info.run_id == trained.info.run_id  # the same model
    assert [m.value for m in client.get_metric_history(trained.info.run_id, "tta_flip")] == [0.0]
    linked = client.search_runs([trained.info.experiment_id], f"tags.`bbn.training_run_id` = '{trained.info.run_id}'")
    (run,) = linked  # evaluate and submit share it
    assert run.data.params["eval.tta_flip"] == "True" and run.data.metrics["tta_flip"] == 1.0
    assert run.info.status == "FINISHED" and "test_top1_error" in run.data.metrics
    # descriptive like any run; DVC's random experiment name as a tag and in the description
    assert run.info.run_name == "bbn-r32-16px-tmax2-seed0" and run.data.tags["dvc_exp_name"] != ""
    assert f"DVC experiment: {run.data.tags['dvc_exp_name']}." in run.data.tags["mlflow.note.content"]
    inputs = client.get_run(run.info.run_id).inputs  # search_runs leaves model inputs out
    assert [m.model_id for m in inputs.model_inputs] == [trained.outputs.model_outputs[0].model_id]
    assert "submission.csv" in {a.path for a in client.list_artifacts(run.info.run_id)}
    report = sh(repo, sys.executable, "-m", "bbn.cli.report", "--tracking-uri", f"sqlite:///{repo / 'mlflow.db'}",
                "--group-by", "eval.tta_flip", "--out", str(tmp_path))
    table = pd.read_csv(tmp_path / "report.csv")
    assert sorted(table["eval.tta_flip"].astype(str)) == ["False", "True"], report.stdout


def test_resumed_training_with_changed_params_goes_to_a_new_linked_run(repo, tmp_path):
    """Killed after epoch 1, eval.tta_flip changed (not part of the resume key), resumed: the first
    attempt's run keeps its params; the rest goes to a new run tagged bbn.resumed_from."""
    (tmp_path / "sitecustomize.py").write_text(
        "import os\nimport bbn.train.resume as r\nreal = r.ResumeState.save\n"
        "def save(self, *a, **k):\n    real(self, *a, **k)\n    os._exit(9)  # killed right after epoch 1\n"
        "r.ResumeState.save = save\n")
    set_params(repo, {"train": {"seed": 5}, "eval": {"tta_flip": False}})
    killed = subprocess.run([sys.executable, "-m", "stages.train"], cwd=repo, capture_output=True, text=True,
                            env=env() | {"PYTHONPATH": f"{tmp_path}{os.pathsep}{env()['PYTHONPATH']}"})
    assert killed.returncode == 9, killed.stderr[-2000:]
    (state,) = (repo / "checkpoints").glob("train-*.pt")
    import torch

    first = torch.load(state, weights_only=True)["run_id"]
    set_params(repo, {"eval": {"tta_flip": True}})
    resumed = stage(repo, "train")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"params changed since MLflow run {first} was interrupted (eval.tta_flip)" in resumed.stdout
    client, new = _client(repo), _training_run(repo)
    old = client.get_run(first)
    assert new.info.run_id != first and new.data.tags["bbn.resumed_from"] == first
    assert old.data.params["eval.tta_flip"] == "False" and new.data.params["eval.tta_flip"] == "True"
    assert old.info.status == "KILLED" and old.data.tags["bbn.resumed_in"] == new.info.run_id
    assert [m.step for m in client.get_metric_history(new.info.run_id, "train_loss")] == [1, 2]


def test_store_moved_away_mid_training_and_back(repo):
    """The store disappears after epoch 1 and is back after epoch 3: training finishes, warns once,
    and the run ends FINISHED with every epoch (before: AttributeError, or epoch 1 only)."""
    set_params(repo, {"train": {"seed": 6, "epochs": 4}})
    db, away = repo / "mlflow.db", repo / "mlflow.db.away"
    proc = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=repo, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    for line in proc.stdout:
        assert time.time() < deadline
        if line.startswith("epoch 1/4"):
            os.rename(db, away)
        if line.startswith("epoch 3/4"):
            os.rename(away, db)
    err = proc.stderr.read()
    assert proc.wait() == 0, err[-3000:]
    assert "Traceback" not in err and err.count("unavailable during") == 1 and "is back" in err
    run = _training_run(repo)
    assert run.info.status == "FINISHED" and run.outputs.model_outputs
    assert [m.step for m in _client(repo).get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3, 4]
