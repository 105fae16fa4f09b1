"""End to end: real DVC and real MLflow on the tiny config, in a temporary copy of the repo."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from bbn.data.inat import load_images
from tests.helpers import make_repo, prepared_repo, sh, stage

pytestmark = pytest.mark.pipeline


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def runs(repo) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bbn")
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.fixture(scope="module")
def repro(tiny_repo):
    """The first ``dvc repro`` of the tiny pipeline (all six stages)."""
    return sh(tiny_repo, "dvc", "repro")


def test_repro_runs_every_stage(tiny_repo, repro):
    stages = ran(repro.stdout)
    assert sorted(stages) == sorted(["download", "check", "split", "stats", "prepare", "train", "classifier", "evaluate",
                                   "submit"])
    assert stages.index("split") < stages.index("stats") < stages.index("evaluate")  # groups from post-split counts
    for path in ["data/raw", "data/split/train.csv", "models/model.pt", "predictions/test.npz",
                 "submission.csv", "metrics/stats.json", "metrics/train.json", "metrics/eval.json",
                 "plots/class_distribution.png", "plots/learning_curve.png", "dvc.lock"]:
        assert (tiny_repo / path).exists(), path


def evaluation_numbers(repo) -> dict:
    """metrics/eval.json (the headline) and metrics/eval_details.json (the rest) together."""
    return {**json.loads((repo / "metrics/eval.json").read_text()),
            **json.loads((repo / "metrics/eval_details.json").read_text())}


def test_metrics_are_flat_and_complete(tiny_repo, repro):
    head = json.loads((tiny_repo / "metrics/eval.json").read_text())
    assert set(head) == {f"test_{k}" for k in ("top1_error", "top5_error", "macro_acc", "many_acc", "medium_acc",
                                                "few_acc", "ece")} | {"many_classes", "medium_classes", "few_classes",
                                                                      "val_split"}
    numbers = evaluation_numbers(tiny_repo)
    for split in ("val", "test"):
        for key in ("top1_error", "top5_error", "many_acc", "medium_acc", "few_acc", "nll"):
            assert f"{split}_{key}" in numbers
    assert all(not isinstance(v, (dict, list)) for v in numbers.values())
    assert 0.0 <= numbers["test_top1_error"] <= 1.0
    assert numbers["test_top5_error"] <= numbers["test_top1_error"]
    stats = json.loads((tiny_repo / "metrics/stats.json").read_text())
    sizes = {k: head[k] for k in ("many_classes", "medium_classes", "few_classes")}
    assert sizes == {k: stats[k] for k in sizes} and sum(sizes.values()) == stats["num_classes"]
    train, val = (pd.read_csv(tiny_repo / f"data/split/{s}.csv") for s in ("train", "val"))
    assert (stats["num_train_images"], stats["num_val_images"]) == (len(train), len(val)) and len(val) > 0
    shown = sh(tiny_repo, "dvc", "metrics", "show").stdout
    assert "test_top1_error" in shown and "imbalance_ratio" in shown and "test_nll" not in shown
    assert max(map(len, shown.splitlines())) < 450  # was ~1,000 characters a line (~420 with test_images_in_train)


def test_submission_has_one_valid_row_per_test_image(tiny_repo, repro):
    test = json.loads(next((tiny_repo / "data/raw").rglob("test.json")).read_text())
    sub = pd.read_csv(tiny_repo / "submission.csv", dtype=str)
    assert list(sub.columns) == ["id", "predicted"]
    assert sorted(sub["id"].astype(int)) == sorted(img["id"] for img in test["images"])
    known = {str(c["id"]) for c in test["categories"]}
    for row in sub["predicted"]:
        ids = row.split()
        assert 1 <= len(ids) <= 5 and len(set(ids)) == len(ids) and set(ids) <= known


def test_evaluation_outputs(tiny_repo, repro):
    numbers = evaluation_numbers(tiny_repo)
    for key in ("macro_acc", "worst_class_acc", "nll", "ece", "top1_acc"):
        assert f"test_{key}" in numbers
    assert numbers["tta_flip"] == 0
    classes = pd.read_csv(tiny_repo / "data/split/classes.csv")
    table = pd.read_csv(tiny_repo / "plots/per_class.csv")
    assert list(table["category_id"]) == list(classes["category_id"])
    assert list(table["train_count"]) == list(classes["train_count"])
    groups = pd.read_csv(tiny_repo / "data/stats/class_counts.csv").set_index("category_id")["group"]
    assert list(table["group"]) == list(groups[table["category_id"]])
    assert table["accuracy"].mean() == pytest.approx(numbers["test_macro_acc"], abs=1e-5)
    for name in ("val", "test"):
        saved = np.load(tiny_repo / f"predictions/{name}.npz")
        assert saved["logits"].shape == (len(saved["image_id"]), len(classes))
    test = np.load(tiny_repo / "predictions/test.npz")
    assert (test["logits"].argmax(1) != test["target"]).mean() == pytest.approx(numbers["test_top1_error"], abs=1e-5)


def test_predict_prints_the_evaluation_top1(tiny_repo, repro):
    """bbn-predict on 3 embedded test images agrees with the evaluate stage's saved predictions."""
    test = np.load(tiny_repo / "predictions/test.npz")
    expected = dict(zip(test["image_id"].tolist(), test["category_ids"][test["logits"].argmax(1)].tolist()))
    images = load_images(next((tiny_repo / "data/raw").rglob("test.json")), labelled=False)
    picked = images.iloc[[0, len(images) // 2, len(images) - 1]]
    out = sh(tiny_repo, sys.executable, "-m", "bbn.cli.predict", *picked["path"], "--out", "three.csv").stdout
    rows = [line.split() for line in out.splitlines()[1:4]]
    assert [r[0] for r in rows] == list(picked["path"])
    assert [int(r[1]) for r in rows] == [expected[i] for i in picked["image_id"]]
    assert pd.read_csv(tiny_repo / "three.csv")["category_id"].tolist() == [int(r[1]) for r in rows]


def test_second_repro_runs_only_the_dataset_check(tiny_repo, repro):
    """download always runs (always_changed: it checks the user's files in a second) and, the dataset
    being the same, leaves data/raw.json as it was: DVC runs nothing after it."""
    manifest = (tiny_repo / "data/raw.json").read_bytes()
    again = sh(tiny_repo, "dvc", "repro")
    assert ran(again.stdout) == ["download"] and "unchanged, reused" in again.stdout
    assert (tiny_repo / "data/raw.json").read_bytes() == manifest
    assert sh(tiny_repo, "dvc", "status").stdout.split() == ["download:", "always", "changed"]


def test_one_mlflow_run_with_dotted_params_and_artifacts(tiny_repo, repro):
    (run,) = runs(tiny_repo)
    assert run.data.params["train.tmax"] == "2"
    assert run.data.params["model.antialias"] == "full"
    assert "test_top1_error" in run.data.metrics and "alpha" in run.data.metrics
    assert run.data.tags["git_revision"] != "unknown"
    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_repo / 'mlflow.db'}")
    alphas = [m.value for m in client.get_metric_history(run.info.run_id, "alpha")]
    assert alphas == [1.0, 0.75]  # 1 - (T/2)^2 for T = 0, 1
    names = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"submission.csv", "plots/learning_curve.png", "plots/class_distribution.png"} <= names


def test_exp_run_tmax_reruns_only_training_and_logs_a_new_run(tiny_repo, repro):
    sh(tiny_repo, "git", "add", "-A")
    sh(tiny_repo, "git", "commit", "-q", "-m", "baseline")
    out = sh(tiny_repo, "dvc", "exp", "run", "-S", "train.tmax=5")
    assert ran(out.stdout) == ["download", "train", "classifier", "evaluate", "submit"]  # download: the second-long check
    assert "unchanged, reused" in out.stdout
    tmaxes = sorted(r.data.params["train.tmax"] for r in runs(tiny_repo))
    assert tmaxes == ["2", "5"]
    new = next(r for r in runs(tiny_repo) if r.data.params["train.tmax"] == "5")
    assert new.data.tags["dvc_exp_name"]  # DVC names the experiment; the run carries it
    assert yaml.safe_load((tiny_repo / "params.yaml").read_text())["train"]["tmax"] == 5
    # the DVC view of the two experiments: metrics diff and the declared plots
    diff = sh(tiny_repo, "dvc", "metrics", "diff", "HEAD", "--json").stdout
    changed = json.loads(diff)["metrics/eval.json"]
    assert "test_ece" in changed and changed["test_ece"]["diff"] != 0
    # the README's comparison table: only what differs between the two experiments
    header = sh(tiny_repo, "dvc", "exp", "show", "--only-changed", "--md").stdout.splitlines()[0]
    assert "train.tmax" in header and "test_ece" in header, header
    assert "train.batch_size" not in header and "num_classes" not in header, header
    narrow = sh(tiny_repo, "dvc", "exp", "show", "--only-changed", "--md", "--drop", "stats.*|train.device",
                "--keep", "test_top1_error").stdout.splitlines()[0]
    columns = {c.strip() for c in narrow.split("|")} - {""}
    assert "test_top1_error" in columns  # kept even where it did not change between the two runs
    assert columns - {"test_top1_error"} <= {c.strip() for c in header.split("|")}, (narrow, header)
    assert not any(c.startswith("stats.") or c == "train.device" for c in columns), narrow
    shown = sh(tiny_repo, "dvc", "plots", "show", "-o", "plots_html")
    assert shown.returncode == 0
    page = (tiny_repo / "plots_html/index.html").read_text()
    for title in ("Per-class accuracy vs training images", "Reliability", "long_tail", "confusion.png",
                  "Confusion among the most confused classes"):
        assert title in page, title
    # bench/bbn_probe.py on the experiment: its α = 0.5 row is the experiment's own evaluation, and
    # the probes (other α, cRT on the frozen trunk) write nothing into the project's store
    before = len(runs(tiny_repo))
    probe = sh(tiny_repo, sys.executable, "bench/bbn_probe.py", "--repo", str(tiny_repo), "--exp",
               new.data.tags["dvc_exp_name"], "--alphas", "1,0.5").stdout
    rows = {line.split(" | ")[0].strip("| "): line for line in probe.splitlines() if line.startswith("| ")}
    own = 100 * (1 - json.loads((tiny_repo / "metrics/eval.json").read_text())["test_top1_error"])
    assert rows["test-time α = 0.5"].split(" | ")[1] == f"{own:.1f}", probe
    assert {"test-time α = 1", "cRT on the frozen trunk (1 epoch), α = 0.5"} < set(rows), probe
    assert len(runs(tiny_repo)) == before and not sh(tiny_repo, "git", "worktree", "list").stdout.count("\n") > 1


def test_exp_run_eval_batch_size_reruns_only_evaluation(tiny_repo, repro):
    """eval.* are no train params: a pure speed setting of evaluation never retrains the model."""
    sh(tiny_repo, "git", "add", "-A")
    sh(tiny_repo, "git", "commit", "-q", "-m", "before eval.batch_size")
    out = sh(tiny_repo, "dvc", "exp", "run", "-S", "eval.batch_size=32")
    assert "train" not in ran(out.stdout) and "evaluate" in ran(out.stdout), out.stdout


def test_stem_antialias_on_resnet32_is_a_params_error(tmp_path):
    repo = prepared_repo(tmp_path / "stem", {"model": {"antialias": "stem"}})
    proc = stage(repo, "train")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and errors == [
        "error: params.yaml: model.antialias: 'stem' blurs the stem max-pool, which resnet32 does not have; "
        "use off or full"], proc.stderr
    assert not (repo / "models/model.pt").exists()


@pytest.mark.parametrize("section, key, value, words", [
    ("train", "tmaxx", 3, "train.tmaxx: unknown key"),
    ("train", "batch_size", "many", "train.batch_size"),
    ("train", "tmax", 0, "train.tmax"),
    ("train", "batch_size", 0, "train.batch_size"),
    ("model", "antialias", "sometimes", "model.antialias"),
    ("train", "image_size", 64, "train.image_size: 64 exceeds prepare.short_side 32"),
    ("train", "lr_scaling", "square", "train.lr_scaling"),
    ("train", "nnodes", 2, "train.rdzv_endpoint: needed when train.nnodes > 1"),
    ("train", "rdzv_endpoint", "node0", "train.rdzv_endpoint"),
])
def test_bad_params_fail_at_stage_start_naming_the_key(tmp_path, section, key, value, words):
    repo = make_repo(tmp_path / "bad", {section: {key: value}})
    proc = stage(repo, "download")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and words in errors[0], proc.stderr
    assert not (repo / "data").exists()  # failed before any work
