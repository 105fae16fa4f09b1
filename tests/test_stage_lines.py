"""What a person reads: the evaluate stage's headline in words, run names and descriptions under DVC,
and a stage's log without MLflow's chatter."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from stages.evaluate import in_words
from stages.params import Params
from stages.runs import describe, run_name
from tests.helpers import env, prepared_repo, set_params


def test_evaluate_headline_is_one_line_in_words():
    head = {"test_top1_error": 0.033333, "test_top5_error": 0.0, "test_macro_acc": 0.966667, "test_many_acc": 1.0,
            "test_medium_acc": 0.993333, "test_few_acc": None, "test_ece": 0.029116,
            "many_classes": 1, "medium_classes": 5, "few_classes": 0}
    line = in_words(head, "test", 300)
    assert line == ("test top-1 error 3.3 % (top-5 0.0 %) on 300 images; macro accuracy 96.7 %; many / medium / "
                    "few-shot 100.0 / 99.3 / n/a % over 1 / 5 / 0 classes; ECE 0.029")
    assert "{" not in line and "\n" not in line


def test_run_name_is_descriptive_under_dvc_exp_run_and_the_exp_name_is_described(monkeypatch):
    params = Params()
    t = params.train
    plain = f"bbn-r32-{t.image_size}px-tmax{t.tmax}-seed{t.seed}"
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_name(params) == plain and "DVC experiment" not in describe(params)
    monkeypatch.setenv("DVC_EXP_NAME", "prize-zone")
    assert run_name(params) == plain
    assert "DVC experiment: prize-zone." in describe(params)


def test_run_link_opens_the_model_training_view_and_is_empty_without_a_store(tmp_path):
    from bbn.tracking import Tracker
    from stages.runs import run_link

    run = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "bbn")
    run_id = run.start({"train.tmax": 2}, {}, "bbn-r32-16px-tmax2-seed0")
    link = run_link(run)
    assert link.startswith("http://127.0.0.1:5000/#/experiments/") and link.endswith(
        f"/runs/{run_id}?workflowType=machine_learning"), link
    run.finish()
    assert run_link(Tracker("sqlite:///x.db", "bbn", enabled=False)) == ""


# a warning through MLflow's own logger, once the stage is done (MLflow has set its handler up by then)
PLANTED = """
import atexit, logging
atexit.register(lambda: logging.getLogger("mlflow.tracking").warning("planted warning"))
"""


@pytest.mark.pipeline
def test_a_stage_log_has_no_mlflow_info_lines_nor_progress_bars_but_its_warnings(tmp_path):
    """stages/runs.py turns MLflow's INFO lines and artifact progress bars off for the stages. The
    tests' environment (tests/helpers.py ``env``) turns the bars off itself, which would hide a
    regression: here the train stage, logging its model (MLflow then validates the input example:
    an INFO line, and a download bar of carriage returns), runs without MLFLOW_* settings. Its log
    must hold neither, and a warning of MLflow's still shows, in MLflow's format."""
    repo = prepared_repo(tmp_path / "bbn")
    set_params(repo, {"train": {"epochs": 1, "tmax": 1, "lr_steps": [1]}, "tracking": {"log_model": True}})
    (tmp_path / "planted").mkdir()
    (tmp_path / "planted" / "sitecustomize.py").write_text(PLANTED)
    e = {k: v for k, v in env().items() if not k.startswith("MLFLOW_")}
    e["PYTHONPATH"] = f"{tmp_path / 'planted'}:{e['PYTHONPATH']}"
    proc = subprocess.run([sys.executable, "-m", "stages.train"], cwd=repo, env=e, capture_output=True, text=True,
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert json.loads((repo / "models" / "mlflow_run.json").read_text())["model_uri"]  # the model was logged
    assert not re.search(r"\bINFO\b.*mlflow", log), log
    assert "\r" not in log and "Downloading artifacts" not in log, log
    assert re.search(r"^\S+ \S+ WARNING mlflow\.tracking: planted warning$", log, re.M), log
