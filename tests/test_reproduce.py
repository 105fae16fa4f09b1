"""bench/reproduce.py: the queued plan holds every row of the equal-budget table with its seeds, init
and scaled schedules; the table keys runs by row and takes the evaluation from the right run."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bbn.errors import BBNError
from bench import equal_budget, reproduce
from stages.recipe import resolve

MANY = {"BBN (official init)", "BBN (fan-out init)", "CE", "CE + cRT", "MiSLAS"}
ONE = {"LDAM-DRW", "Mixup", "Manifold Mixup", "Manifold Mixup (two samplers)"}


def test_plan_has_every_row_with_its_seeds_inits_and_classifier_epochs():
    runs = reproduce.plan("/data/cifar10-jpg.tar.gz", 12, [0, 1, 2], [0], "exp")
    got = [(row.name, seed) for row, _, seed in runs]
    assert sorted(got) == sorted([(n, s) for n in MANY for s in (0, 1, 2)] + [(n, 0) for n in ONE])
    assert {n for n, s in got[:9]} == MANY | ONE  # seed 0 of every row first: a stopped queue stays even
    params = {(row.name, seed): resolve(row.recipe, sets, {}) for row, sets, seed in runs}
    assert {params[n, 0]["model"]["init"] for n in MANY | ONE if n != "BBN (fan-out init)"} == {"official"}
    assert params["BBN (fan-out init)", 2]["model"]["init"] == "fan_out"
    assert params["BBN (fan-out init)", 2]["recipe"] == "cifar10_lt_bbn"
    for name, method in (("CE + cRT", "crt"), ("MiSLAS", "mislas")):
        c = params[name, 1]["classifier"]
        assert (c["method"], c["epochs"], c["seed"], params[name, 1]["train"]["seed"]) == (method, 1, 1, 1)
    assert params["CE", 0]["classifier"]["method"] == "none"
    mislas = params["MiSLAS", 0]["train"]
    assert (mislas["epochs"], mislas["lr_steps"], mislas["method"]) == (12, [10, 11], "mixup")
    assert {p["data"]["imbalance_ratio"] for p in params.values()} == {100}
    assert {p["tracking"]["experiment"] for p in params.values()} == {"exp"}
    full = dict(s.split("=", 1) for s in reproduce.scaled("cifar10_lt_mislas", 200))
    assert (full["train.lr_steps"], full["classifier.epochs"]) == ("[160,180]", "10")  # the published recipe
    assert "classifier.epochs" not in dict(s.split("=", 1) for s in reproduce.scaled("cifar10_lt_ce", 12))
    assert [reproduce.classifier_epochs(10, e) for e in (1, 12, 30, 100, 200)] == [1, 1, 2, 5, 10]


def test_plan_scales_the_schedule_shape():
    runs = reproduce.plan("/data/cifar10-jpg.tar.gz", 50, [0], [0], "exp")
    params = {row.name: resolve(row.recipe, sets, {}) for row, sets, _ in runs}
    bbn, ldam = params["BBN (official init)"]["train"], params["LDAM-DRW"]["train"]
    assert (bbn["epochs"], bbn["lr_steps"], bbn["tmax"], bbn["warmup_epochs"]) == (50, [30, 40], 50, 1)
    assert (ldam["lr_steps"], ldam["baseline"]["defer_epoch"]) == ([40, 45], 40)
    full = dict(s.split("=", 1) for s in reproduce.scaled("cifar10_lt_bbn", 200))
    assert full["train.lr_steps"] == "[120,160]" and full["train.tmax"] == "200"
    tiny = reproduce.plan("", 1, [0], [], "e", smoke=True)
    assert [row.name for row, _, _ in tiny] == ["BBN (official init)", "CE + cRT"]
    smoke = resolve("cifar10_lt_ce_crt", tiny[-1][1], {})
    assert smoke["data"]["name"] == "digits" and smoke["classifier"]["epochs"] == 1


def _run(recipe, seed, top1, *, init="official", method="none", stage=None, epochs=12, status="FINISHED", t=0):
    run = {"run_id": f"{recipe}-{init}-{seed}-{stage}-{t}", "status": status, "start_time": t,
           "params.recipe": recipe, "params.model.init": init, "params.classifier.method": method,
           "params.classifier.epochs": "1", "params.train.lr_steps": "[7, 10]" if "bbn" in recipe else "[10, 11]",
           "params.train.seed": str(seed), "params.train.epochs": str(epochs),
           "params.train.image_size": "32", "params.train.batch_size": "128", "params.data.imbalance_ratio": "100",
           "params.data.seed": "0", "params.split.val_fraction": "0.05", "tags.bbn.stage": stage,
           "tags.val_split": "holdout-longtailed"}
    if top1 is not None:
        run |= {"metrics.test_top1_acc": top1, "metrics.test_many_acc": 0.9, "metrics.test_medium_acc": 0.5,
                "metrics.test_few_acc": 0.2, "metrics.many_classes": 3.0, "metrics.medium_classes": 4.0,
                "metrics.few_classes": 3.0}
    return run


def _fake_runs() -> pd.DataFrame:
    runs = []
    for seed, (off, fan, ce, crt, mislas) in enumerate([(.70, .60, .50, .55, .80), (.72, .61, .52, .56, .81),
                                                        (.71, .62, .51, .57, .82)]):
        runs += [_run("cifar10_lt_bbn", seed, off, t=1), _run("cifar10_lt_bbn", seed, fan, init="fan_out", t=1),
                 _run("cifar10_lt_ce", seed, ce, t=1),
                 # a classifier recipe: its training run (even with test numbers) is not the row's run
                 _run("cifar10_lt_ce_crt", seed, 0.05, method="crt"),
                 _run("cifar10_lt_ce_crt", seed, crt, method="crt", stage="classifier", t=2),
                 _run("cifar10_lt_mislas", seed, None, method="mislas"),
                 _run("cifar10_lt_mislas", seed, mislas, method="mislas", stage="classifier", t=2)]
    return pd.DataFrame(runs + [
        _run("cifar10_lt_ce", 0, 0.99, t=0),  # seed 0 of CE finished twice: the newest (0.50) counts
        _run("cifar10_lt_bbn", 3, 0.01, epochs=30),  # another budget
        _run("cifar10_lt_bbn", 4, 0.01, status="FAILED"),
        _run("cifar10_lt_bbn", 5, 0.01, init=None),  # an old run without model.init: neither BBN row
        _run("cifar10_lt_ldam_drw", 0, 0.46),
        _run("cifar10_lt_ldam_drw", 1, 0.01, stage="classifier"),  # a classifier run of a recipe without one
    ])


def test_table_keys_rows_and_takes_classifier_runs_for_classifier_recipes():
    text, summary, used = equal_budget.table(_fake_runs(), 12)
    rows = summary.set_index("row")
    assert dict(rows["n"]) == {"BBN (official init)": 3, "BBN (fan-out init)": 3, "CE": 3, "CE + cRT": 3,
                               "MiSLAS": 3, "LDAM-DRW": 1}
    means = rows["test_top1_acc_mean"].round(4).to_dict()
    assert means == {"BBN (official init)": 0.71, "BBN (fan-out init)": 0.61, "CE": 0.51, "CE + cRT": 0.56,
                     "MiSLAS": 0.81, "LDAM-DRW": 0.46}
    assert set(used.loc[used["params.row"] == "CE + cRT", "tags.bbn.stage"]) == {"classifier"}
    assert list(summary["row"]) == [r.name for r in equal_budget.ROWS if r.name in means]  # the ROWS order
    assert ("| BBN (official init) | `cifar10_lt_bbn` | official | [7, 10] | – | 3 (0, 1, 2) | 71.00 ± 1.00 | 90.00 ± 0.00 "
            "| 50.00 ± 0.00 | 20.00 ± 0.00 | 79.82 |") in text
    assert "| BBN (fan-out init) | `cifar10_lt_bbn` | fan_out | [7, 10] | – | 3 (0, 1, 2) | 61.00 ± 1.00 |" in text
    assert "| CE + cRT | `cifar10_lt_ce_crt` | official | [10, 11] | 1 | 3 (0, 1, 2) | 56.00 ± 1.00 |" in text
    assert "| MiSLAS |" in text and "| 82.50 |" in text
    assert "| LDAM-DRW | `cifar10_lt_ldam_drw` | official | [10, 11] | – | 1 (0) | 46.00 |" in text
    assert "| Mixup | `cifar10_lt_mixup` | official | – | – | 0 (not run yet) | – |" in text and "| 73.06 |" in text
    # Welch: t = 0.10 / sqrt(2 x 0.01² / 3) = 12.25 with 4 degrees of freedom; the t(4) CDF in closed form
    t = 0.10 / math.sqrt(2 * 0.01**2 / 3)
    cdf = 0.5 + 3 / 8 * t / math.sqrt(1 + t * t / 4) * (1 - t * t / (12 * (1 + t * t / 4)))
    init = "- the init: BBN (official init) − BBN (fan-out init) top-1 +10.00 points, Welch's t-test"
    assert f"{init} over the seeds p = {2 * (1 - cdf):.3g}: beyond the seed spread" in text
    assert "| BBN (official init) | `cifar10_lt_bbn` | official | [7, 10] |" in text
    assert "- cRT vs CE: CE + cRT − CE top-1 +5.00 points" in text
    head = equal_budget.header(used, summary, 12, "a CPU", "cpu")
    assert "12 training epoch(s)" in head and "= 1 epoch(s)" in head and "hold-out of 0.05" in head and "3/4/3 classes" in head


def test_init_verdict_says_when_within_the_spread():
    runs = _fake_runs()
    fan = (runs["params.model.init"] == "fan_out") & (runs["params.train.seed"] == "0")
    runs.loc[fan, "metrics.test_top1_acc"] = 0.80  # fan-out now 0.80 / 0.61 / 0.62: std 0.11 > gap
    text, _, _ = equal_budget.table(runs, 12)
    assert "- the init: BBN (official init) − BBN (fan-out init) top-1 +3.33 points" in text
    assert "NOT beyond the seed spread" in text.split("- the init")[1].splitlines()[0]  # p = 0.64
    with pytest.raises(BBNError, match="at 7 epoch"):
        equal_budget.table(runs, 7)


def test_table_from_the_store_reads_the_stage_tag(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("r", artifact_location=str(tmp_path / "art"))
    for run in _fake_runs().to_dict("records")[:7]:  # seed 0 of the five multi-seed rows
        mlrun = client.create_run(exp, tags={"bbn.stage": run["tags.bbn.stage"]} if run["tags.bbn.stage"] else {})
        for k, v in run.items():
            if k.startswith("params.") and v is not None:
                client.log_param(mlrun.info.run_id, k.removeprefix("params."), v)
            elif k.startswith("metrics.") and v == v:
                client.log_metric(mlrun.info.run_id, k.removeprefix("metrics."), v)
        client.set_terminated(mlrun.info.run_id)
    text, summary = reproduce.table("r", uri, 12, "a test host")
    assert dict(summary.set_index("row")["n"]) == {"BBN (official init)": 1, "BBN (fan-out init)": 1, "CE": 1,
                                                   "CE + cRT": 1, "MiSLAS": 1}
    assert "| CE + cRT | `cifar10_lt_ce_crt` | official | [10, 11] | 1 | 1 (0) | 55.00 |" in text
    assert "a test host" in text and "not decidable yet" in text


def test_smoke_mode_is_tiny():
    args = reproduce.parse_args(["--smoke"])
    assert (args.epochs, args.seeds, args.single_seeds) == (1, [0], []) and args.experiment.endswith("_smoke")
    assert reproduce.parse_args([]).epochs == 12
    with pytest.raises(BBNError, match="no MLflow store"):
        reproduce.table("none", "sqlite:////nonexistent/mlflow.db", 12)


def test_a_later_sitting_queues_only_what_has_not_finished(monkeypatch):
    planned = reproduce.plan("/data/cifar10-jpg.tar.gz", 12, [0, 1, 2], [0], "exp")
    monkeypatch.setattr(reproduce, "load_runs", lambda uri, experiment, tags: _fake_runs())
    todo = reproduce.remaining(planned, "exp", "sqlite:///x.db", 12)
    left = {(row.name, seed) for row, _, seed in todo}
    done = {(row.name, seed) for row, _, seed in planned} - left
    # every seed of the five many-seed rows and LDAM-DRW seed 0 finished; Mixup & co. did not
    assert len(done) == 16 and "LDAM-DRW" in {name for name, _ in done}
    assert {name for name, _ in left} == {"Mixup", "Manifold Mixup", "Manifold Mixup (two samplers)"}
    monkeypatch.setattr(reproduce, "load_runs", lambda *a, **k: (_ for _ in ()).throw(BBNError("no store")))
    assert reproduce.remaining(planned, "exp", "sqlite:///x.db", 12) == planned
    empty = pd.DataFrame(columns=["run_id", "status", "start_time"])  # an experiment whose runs were deleted
    monkeypatch.setattr(reproduce, "load_runs", lambda *a, **k: empty)
    assert reproduce.remaining(planned, "exp", "sqlite:///x.db", 12) == planned
