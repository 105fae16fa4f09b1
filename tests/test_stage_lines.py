"""What a person reads: the evaluate stage's headline in words, run names and descriptions under DVC."""

from __future__ import annotations

from stages.evaluate import in_words
from stages.params import Params
from stages.runs import describe, run_name


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
