"""bbn.cli.report (bbn-report) against a real MLflow sqlite store: grouping, mean ± std, val_ fallback, files, errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bbn.cli.report import main, select, summarise, varying_params
from bbn.errors import BBNError
from bbn.tracking.runs import load_runs

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["test_top1_error", "test_many_acc", "test_medium_acc", "test_few_acc"]

# (tmax, method, seed, status, metrics): two seeds of bbn/60, one bbn/180, two ce/60 with val only,
# plus a FAILED run and a FINISHED run without metrics that would each add a group if not ignored.
RUNS = [
    ("60", "bbn", "0", "FINISHED", {"test_top1_error": 0.20, "test_many_acc": 0.90, "test_medium_acc": 0.80,
                                    "test_few_acc": 0.50, "train_seconds": 10.0}),
    ("60", "bbn", "1", "FINISHED", {"test_top1_error": 0.24, "test_many_acc": 0.92, "test_medium_acc": 0.78,
                                    "test_few_acc": 0.46, "train_seconds": 14.0}),
    ("180", "bbn", "0", "FINISHED", {"test_top1_error": 0.30, "test_many_acc": 0.85, "test_medium_acc": 0.70,
                                     "test_few_acc": 0.40}),
    ("60", "ce", "0", "FINISHED", {"val_top1_error": 0.40, "val_many_acc": 0.95, "val_medium_acc": 0.60,
                                   "val_few_acc": 0.20}),
    ("60", "ce", "1", "FINISHED", {"val_top1_error": 0.44, "val_many_acc": 0.97, "val_medium_acc": 0.58,
                                   "val_few_acc": 0.16}),
    ("180", "ce", "0", "FAILED", {"test_top1_error": 0.10}),
    ("999", "bbn", "0", "FINISHED", {}),
]
SQRT2 = math.sqrt(2)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One fresh store per module: creating the sqlite schema takes seconds."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bbn", artifact_location=(folder / "mlartifacts").as_uri())
    for i, (tmax, method, seed, status, metrics) in enumerate(RUNS):
        run_id = client.create_run(exp, start_time=1_700_000_000_000 + 1000 * i).info.run_id
        params = {"train.tmax": tmax, "train.method": method, "train.seed": seed, "data.seed": seed,
                  "data.image_size": "32", "tracking.uri": f"run{i}", "tracking.experiment": "bbn"}
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                         metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
        client.set_terminated(run_id, status)
    plants = client.create_experiment("plants", artifact_location=(folder / "mlartifacts").as_uri())
    for method, err, many in (("bbn", 0.1, 0.9), ("ce", 0.2, 0.8)):  # every class > 100 images
        run_id = client.create_run(plants).info.run_id
        metrics = {"test_top1_error": err, "test_many_acc": many, "many_classes": 12, "medium_classes": 0,
                   "few_classes": 0}
        client.log_batch(run_id, params=[Param("train.method", method)],
                         metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
        client.set_terminated(run_id, "FINISHED")
    return uri


@pytest.fixture(scope="module")
def runs(store) -> pd.DataFrame:
    return select(load_runs(store, "bbn"), METRICS, explicit=True, last=None)[0]


def args(store: str, out: Path, *extra: str) -> list[str]:
    return ["--tracking-uri", store, "--out", str(out), *extra]


def test_selects_finished_runs_with_metrics_and_groups_by_what_varies(runs):
    assert len(runs) == 5
    assert varying_params(runs.dropna(axis=1, how="all")) == ["train.method", "train.tmax"]


def test_summarise_mean_std_by_hand_with_val_fallback(runs):
    s = summarise(runs, ["train.method", "train.tmax"], METRICS).set_index(["train.method", "train.tmax"])
    assert list(s.index) == [("bbn", "60"), ("bbn", "180"), ("ce", "60")]  # numeric order of tmax
    assert list(s["n"]) == [2, 2 - 1, 2]
    bbn60, bbn180, ce60 = s.loc[("bbn", "60")], s.loc[("bbn", "180")], s.loc[("ce", "60")]
    assert bbn60["test_top1_error_mean"] == pytest.approx(0.22)
    assert bbn60["test_top1_error_std"] == pytest.approx(0.04 / SQRT2)  # sample std of 0.20, 0.24
    assert bbn60["test_few_acc_std"] == pytest.approx(0.04 / SQRT2)
    assert bbn180["test_top1_error_mean"] == pytest.approx(0.30) and math.isnan(bbn180["test_top1_error_std"])
    assert ce60["test_top1_error_mean"] == pytest.approx(0.42)
    assert ce60["test_top1_error_source"] == "val_top1_error"
    assert bbn60["test_top1_error_source"] == "test_top1_error"


def test_summarise_is_pure_and_marks_mixed_sources():
    runs = pd.DataFrame({"params.m": ["a", "a", "b"], "metrics.test_acc": [0.5, None, 0.7],
                         "metrics.val_acc": [None, 0.7, None], "metrics.loss": [1.0, 3.0, None]})
    s = summarise(runs, ["m"], ["test_acc", "loss"])
    assert s["test_acc_mean"].tolist() == pytest.approx([0.6, 0.7])
    assert s["test_acc_source"].tolist() == ["test_acc+val_acc", "test_acc"]
    assert s["loss_n"].tolist() == [2, 0]
    one = summarise(runs, [], ["test_acc"])
    assert one["n"].tolist() == [3] and one["test_acc_mean"].iloc[0] == pytest.approx(1.9 / 3)


def test_main_writes_markdown_png_csv(store, tmp_path, capsys):
    main(args(store, tmp_path / "rep", "--metrics", *METRICS, "train_seconds"))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"Store `{store}`, experiment `bbn`: 5 runs in 3 groups by train.method, train.tmax" in md
    assert ("| train.method | train.tmax | n | test_top1_error (%) | test_many_acc (%) | test_medium_acc (%) "
            "| test_few_acc (%) | train_seconds |") in md
    assert "| bbn | 60 | 2 | 22.00 ± 2.83 | 91.00 ± 1.41 | 79.00 ± 1.41 | 48.00 ± 2.83 | 12 ± 2.828 |" in md
    assert "| bbn | 180 | 1 | 30.00 | 85.00 | 70.00 | 40.00 | – |" in md
    assert ("| ce | 60 | 2 | 42.00 ± 2.83 (val) | 96.00 ± 1.41 (val) | 59.00 ± 1.41 (val) "
            "| 18.00 ± 2.83 (val) | – |") in md
    assert "| bbn | 60 | 2 | 22.00 ± 2.83 |" in capsys.readouterr().out
    assert (tmp_path / "rep" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = pd.read_csv(tmp_path / "rep" / "report.csv")
    assert csv["test_top1_error_mean"].tolist() == pytest.approx([0.22, 0.30, 0.42])
    assert not list((tmp_path / "rep").glob(".*.tmp"))  # atomic writes leave no temporaries


def test_explicit_group_by_filter_and_last(store, tmp_path):
    main(args(store, tmp_path / "a", "--group-by", "train.method"))
    md = (tmp_path / "a" / "report.md").read_text()
    assert "| bbn | 3 | 24.67 ± 5.03 |" in md  # 0.20, 0.24, 0.30
    main(args(store, tmp_path / "b", "--filter", "params.`train.method` = 'ce'", "--group-by"))
    assert "| 2 | 42.00 ± 2.83 (val) |" in (tmp_path / "b" / "report.md").read_text()
    main(args(store, tmp_path / "c", "--last", "1"))  # the newest usable run: ce/60 seed 1
    assert "| 1 | 44.00 (val) |" in (tmp_path / "c" / "report.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--group-by", "train.tmaxx"], "unknown --group-by param 'train.tmaxx'"),
    (["--experiment", "nope"], "no experiment 'nope'"),
    (["--metrics", "test_top5_error"], "metric 'test_top5_error' or val_top5_error is logged by none"),
    (["--filter", "params.`train.tmax` = '999'"], "no FINISHED run has any of the metrics"),
    (["--filter", "params.`train.tmax` = '7'"], "no FINISHED runs match"),
])
def test_errors_name_the_problem(store, tmp_path, extra, message):
    with pytest.raises(BBNError, match=message.replace("(", r"\(")) as err:
        main(args(store, tmp_path, *extra))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "report.md").exists()


def test_cli_exits_1_with_one_line(store, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bbn.cli.report", *args(store, tmp_path, "--group-by", "nope")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown --group-by param 'nope'")


def test_group_sizes_beside_accuracies_and_empty_groups_said_so(store, tmp_path, capsys):
    """Every class large (12 plant species > 100 images): medium and few are empty; the report keeps
    their columns and says so instead of dropping them without a word."""
    main(args(store, tmp_path / "plants", "--experiment", "plants"))
    table = (tmp_path / "plants/report.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| train.method"))
    assert "test_medium_acc (%)" in header and "test_few_acc (%)" in header
    bbn = next(line for line in table.splitlines() if line.startswith("| bbn"))
    assert bbn.count("empty group (0 classes)") == 2 and "90.00 (12 classes)" in bbn
    assert "Not shown" not in table
    main(args(store, tmp_path / "old", "--group-by", "train.method"))  # runs without group sizes
    text = (tmp_path / "old/report.md").read_text()
    assert "classes)" not in text.split("Mean ±")[0]


def test_one_class_is_singular_and_an_all_zero_panel_has_no_negative_ticks(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from bbn.cli import report

    summary = pd.DataFrame({"train.method": ["bbn", "ce"], "n": [1, 1],
                            "test_many_acc_mean": [0.0, 0.0], "test_many_acc_std": [float("nan")] * 2,
                            "test_many_acc_n": [1, 1], "test_many_acc_source": ["test_many_acc"] * 2,
                            "test_many_acc_classes": ["1", "1/2"]})
    assert report.cell(summary.iloc[0], "test_many_acc") == "0.00 (1 class)"
    assert report.cell(summary.iloc[1], "test_many_acc") == "0.00 (1/2 classes)"
    seen = {}
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, *a, **k):
        seen["xlim"] = fig.axes[0].get_xlim()
        seen["ticks"] = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t]
        return real(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    report.plot(summary, ["train.method"], ["test_many_acc"], tmp_path / "zero.png")
    assert seen["xlim"] == (0.0, 100.0) and min(seen["ticks"]) >= 0
