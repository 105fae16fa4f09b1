"""bench/reproduce.py: the queued plan scales the recipes' schedules, the table reads the store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from bbn.errors import BBNError
from bench import reproduce
from stages.recipe import resolve


def test_plan_scales_the_schedule_shape_and_validates():
    runs = reproduce.plan("/data/cifar10-jpg.tar.gz", 50, [0, 1, 2], [0], "exp")
    assert [(r, s) for r, _, s in runs] == [("cifar10_lt_bbn", 0), ("cifar10_lt_ce", 0), ("cifar10_lt_bbn", 1),
                                            ("cifar10_lt_ce", 1), ("cifar10_lt_bbn", 2), ("cifar10_lt_ce", 2),
                                            ("cifar10_lt_ldam_drw", 0)]
    params = {r: resolve(r, sets, {}) for r, sets, _ in runs}
    bbn, ldam = params["cifar10_lt_bbn"]["train"], params["cifar10_lt_ldam_drw"]["train"]
    assert (bbn["epochs"], bbn["lr_steps"], bbn["tmax"], bbn["warmup_epochs"]) == (50, [30, 40], 50, 1)
    assert (ldam["lr_steps"], ldam["baseline"]["defer_epoch"]) == ([40, 45], 40)
    assert params["cifar10_lt_ce"]["data"]["imbalance_ratio"] == 100
    full = dict(s.split("=", 1) for s in reproduce.scaled("cifar10_lt_bbn", 200))
    assert full["train.lr_steps"] == "[120,160]" and full["train.tmax"] == "200"  # the published recipe
    tiny = resolve("cifar10_lt_ldam_drw", reproduce.plan("", 1, [0], [0], "e", smoke=True)[-1][1], {})
    assert tiny["train"]["lr_steps"] == [1, 2] and tiny["data"]["name"] == "digits"


def _log(client, exp, recipe, seed, top1, few):
    run = client.create_run(exp)
    for k, v in {"recipe": recipe, "train.seed": seed, "train.epochs": 30, "train.image_size": 32}.items():
        client.log_param(run.info.run_id, k, v)
    for k, v in {"test_top1_acc": top1, "test_many_acc": 0.9, "test_medium_acc": 0.5, "test_few_acc": few}.items():
        client.log_metric(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id)


def test_table_beside_the_paper_with_the_verdict(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("r", artifact_location=str(tmp_path / "art"))
    for seed, (b, c) in enumerate([(0.70, 0.60), (0.72, 0.61), (0.71, 0.62)]):
        _log(client, exp, "cifar10_lt_bbn", seed, b, 0.5)
        _log(client, exp, "cifar10_lt_ce", seed, c, 0.2)
    text, summary = reproduce.table("r", uri)
    assert "| BBN | 3 | 71.00 ± 1.00 | 90.00 ± 0.00 | 50.00 ± 0.00 | 50.00 ± 0.00 | 79.82 |" in text
    assert "| CE | 3 | 61.00 ± 1.00 |" in text and "Budget: 30 epoch(s)" in text
    assert "+10.00 points" in text and "ahead beyond the spread" in text and "few-shot above" in text
    _log(client, exp, "cifar10_lt_ce", 3, 0.75, 0.6)  # CE now overlaps BBN: the verdict must say so
    text, _ = reproduce.table("r", uri)
    assert "NOT ahead beyond the spread" in text


def test_smoke_mode_is_tiny():
    args = reproduce.parse_args(["--smoke"])
    assert (args.epochs, args.seeds, args.ldam_seeds) == (1, [0], []) and args.experiment.endswith("_smoke")
    with pytest.raises(BBNError, match="no MLflow store"):
        reproduce.table("none", "sqlite:////nonexistent/mlflow.db")
