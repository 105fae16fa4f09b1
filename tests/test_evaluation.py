"""Evaluation: metrics against hand-computed values, the report files, and ``bbn-predict``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bbn.cli.predict import classify, collect_images, main
from bbn.data.stats import shot_group
from bbn.errors import BBNError
from bbn.evaluate.metrics import (
    classification_metrics,
    confused_classes,
    confused_pairs,
    expected_calibration_error,
    most_confused,
    nll,
    per_class_table,
    reliability_bins,
)
from bbn.evaluate.predictions import headline, predict_frame, write_report
from bbn.model.checkpoint import Checkpoint, load_checkpoint
from bbn.model.network import ModelSpec, build_model

# Four predictions over three classes; confidences avoid the 15-bin edges (k/15).
PROBS = np.array([[0.90, 0.05, 0.05],   # conf .90, right
                  [0.05, 0.90, 0.05],   # conf .90, wrong (label 0)
                  [0.25, 0.25, 0.50],   # conf .50, right
                  [0.55, 0.25, 0.20]])  # conf .55, right
LABELS = np.array([0, 0, 2, 0])


def test_ece_by_hand():
    # bins: {.90, .90} -> acc 1/2, conf .9; {.50} -> acc 1, conf .5; {.55} -> acc 1, conf .55
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.5) + 1 / 4 * abs(1 - 0.55)
    assert expected_calibration_error(PROBS, LABELS) == pytest.approx(0.4375)
    assert expected_calibration_error(PROBS, LABELS) == pytest.approx(expected)
    # one bin holds everything: ECE = |accuracy - mean confidence|
    assert expected_calibration_error(PROBS, LABELS, bins=1) == pytest.approx(abs(3 / 4 - (0.9 + 0.9 + 0.5 + 0.55) / 4))


def test_ece_is_zero_when_confidence_equals_accuracy():
    probs = np.tile([0.8, 0.1, 0.1], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)  # 80% right at 80% confidence
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(probs, np.ones(10, int)) == pytest.approx(0.8)


def test_reliability_bins_partition_and_edges():
    bins = reliability_bins(PROBS, LABELS)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    assert bins[0]["lo"] == 0.0 and bins[-1]["hi"] == 1.0
    full = [b for b in bins if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in full] == [(1, 1.0), (1, 1.0), (2, 0.5)]
    certain = reliability_bins(np.array([[1.0, 0.0]]), np.array([0]))
    assert certain[-1]["count"] == 1  # confidence 1.0 lands in the last bin, (14/15, 1]


def test_nll_by_hand():
    expected = -(math.log(0.9) + math.log(0.05) + math.log(0.5) + math.log(0.55)) / 4
    assert nll(np.log(PROBS), LABELS) == pytest.approx(expected)
    assert nll(np.log(PROBS) + 7.0, LABELS) == pytest.approx(expected)  # shift-invariant (log-softmax)


def test_macro_worst_and_shot_groups_on_a_constructed_profile():
    counts = np.array([500, 150, 60, 30, 10, 3])  # many: 0, 1; medium: 2, 3; few: 4, 5
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5])
    preds = np.array([0, 0, 1, 0, 2, 1, 1, 3, 4, 0, 0, 0])
    logits = np.eye(6)[preds] * 5.0
    m = classification_metrics(logits, labels, shot_group(counts, many_above=100, few_below=20))
    per_class = [1, 1 / 2, 1 / 3, 1, 1 / 2, 0]
    assert m["macro_acc"] == pytest.approx(sum(per_class) / 6)
    assert m["worst_class_acc"] == 0.0
    assert m["many_acc"] == pytest.approx(3 / 4) and m["medium_acc"] == pytest.approx(2 / 3)
    assert m["few_acc"] == pytest.approx(1 / 4)
    # the same predictions judged with other group thresholds move classes between groups
    m2 = classification_metrics(logits, labels, shot_group(counts, many_above=40, few_below=5))
    assert m2["many_acc"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3) and m2["few_acc"] == 0.0
    # an empty group has no accuracy (None), and says so through its size
    m3 = classification_metrics(logits, labels, shot_group(counts, many_above=2, few_below=1))
    assert m3["many_acc"] == pytest.approx(m["macro_acc"]) and m3["medium_acc"] is None and m3["few_acc"] is None


def test_headline_and_details():
    numbers = {"tta_flip": 0, "eval_alpha": 0.5, "many_classes": 3, "medium_classes": 0, "few_classes": 2,
               "val_top1_error": 0.3, "val_nll": 1.0, "test_top1_error": 0.2, "test_top5_error": 0.1,
               "test_macro_acc": 0.7, "test_many_acc": 0.9, "test_medium_acc": None, "test_few_acc": 0.4,
               "test_ece": 0.05, "test_nll": 0.8, "test_top1_acc": 0.8, "posthoc_tau": 1.0}
    head, details = headline(numbers, "test")
    assert list(head) == ["test_top1_error", "test_top5_error", "test_macro_acc", "test_many_acc",
                          "test_medium_acc", "test_few_acc", "test_ece", "many_classes", "medium_classes",
                          "few_classes"]
    assert head["test_medium_acc"] is None and head["medium_classes"] == 0
    assert set(head) | set(details) == set(numbers) and not set(head) & set(details)
    val_head, _ = headline(numbers, "val")  # no test labels (iNaturalist): the val split is the headline
    assert "val_top1_error" in val_head and "test_top1_error" not in val_head


def test_confusion_shows_every_class_when_there_are_few():
    """12 classes: all 12 in the confusion matrix (the top-20 cells once left a class out)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 10)
    pred = np.where(rng.random(120) < 0.8, labels, rng.integers(0, 12, 120))
    pred[labels == 11] = 11  # a class that is never confused
    logits = np.eye(12)[pred]
    names = [f"c{i}" for i in range(12)]
    assert list(most_confused(logits, labels, names).index) == names
    many = np.arange(30)  # more classes than k: the classes of the confused cells only
    assert confused_classes(np.eye(30)[np.where(many == 4, 9, many)], many, k=20) == [4, 9]


def test_per_class_table_and_most_confused():
    labels = np.array([0, 0, 0, 1, 2, 2])
    logits = np.eye(3)[[1, 1, 0, 1, 0, 2]]
    table = per_class_table(logits, labels, ["a", "b", "c"], [10, 20, 30], [5, 3, 1])
    assert list(table["eval_images"]) == [3, 1, 2]
    assert table["accuracy"].tolist() == pytest.approx([1 / 3, 1.0, 0.5])
    top = most_confused(logits, labels, ["a", "b", "c"], k=1)  # a -> b twice: only a and b shown
    assert list(top.index) == ["a", "b"] and top.to_numpy().tolist() == [[1, 2], [0, 1]]
    assert list(most_confused(logits, labels, ["a", "b", "c"], k=5).index) == ["a", "b", "c"]
    pairs = confused_pairs(logits, labels, ["a", "b", "c"], k=1)  # the samples among a and b
    assert pairs.values.tolist() == [["a", "b"], ["a", "b"], ["a", "a"], ["b", "b"]]


def test_write_report_files(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 40)
    logits = rng.normal(size=(40, 4)) + 3 * np.eye(4)[labels]
    classes = pd.DataFrame({"category_id": [3, 5, 8, 9], "name": list("wxyz"), "train_count": [50, 20, 5, 1],
                            "group": ["many", "medium", "few", "few"]})
    write_report(logits, labels, classes, tmp_path)
    table = pd.read_csv(tmp_path / "per_class.csv")
    assert list(table["category_id"]) == [3, 5, 8, 9] and table["eval_images"].sum() == 40
    assert list(table["group"]) == ["many", "medium", "few", "few"]
    assert pd.read_csv(tmp_path / "reliability.csv")["count"].sum() == 40
    assert len(pd.read_csv(tmp_path / "confusion.csv").columns) == 2
    for png in ("per_class_accuracy.png", "reliability.png", "confusion.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ predict
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small untrained checkpoint and six images (two unreadable files beside them)."""
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet32", 3, "full", 3))
    Checkpoint.of(model, 16, [7, 11, 13], ["ant", "bee", "cicada"], epochs=1).save(root / "model.pt")
    rng = np.random.default_rng(0)
    (root / "imgs/sub").mkdir(parents=True)
    for i in range(6):
        folder = root / "imgs" / ("sub" if i % 2 else "")
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (root / "imgs/notes.txt").write_text("not an image list")  # folders take image suffixes only
    (root / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return root


def test_collect_images(model_dir):
    imgs = model_dir / "imgs"
    found = collect_images([str(imgs)])
    assert len(found) == 6 and found == sorted(found)
    listing = model_dir / "list.txt"
    listing.write_text("imgs/0.png\n\n" + str(imgs / "sub/1.png") + "\n")
    assert collect_images([str(listing)]) == [str(model_dir / "imgs/0.png"), str(imgs / "sub/1.png")]
    listing.write_text("imgs/0.png\nimgs/nope.png\n")
    with pytest.raises(BBNError, match=r"list.txt:2: imgs/nope.png"):
        collect_images([str(listing)])
    with pytest.raises(BBNError, match="missing: no such file"):
        collect_images([str(model_dir / "missing")])


def test_classify_matches_evaluation_path(model_dir):
    paths = collect_images([str(model_dir / "imgs")])
    table = classify(model_dir / "model.pt", paths, top_k=2, batch_size=4, device="cpu")
    model, ckpt = load_checkpoint(model_dir / "model.pt", torch.device("cpu"))
    logits, _ = predict_frame(model, ckpt, pd.DataFrame({"path": paths, "category_id": -1}), "x", 64, 0,
                              0.5, False, torch.device("cpu"))
    ids = np.array([7, 11, 13])
    assert table["category_id"].tolist() == ids[logits.argmax(1)].tolist()
    assert set(table["name"]) <= {"ant", "bee", "cicada"}
    top = table["top2_probabilities"].str.split().apply(lambda p: [float(v) for v in p])
    assert all(a >= b for a, b in top) and table["probability"].tolist() == pytest.approx([t[0] for t in top], abs=1e-6)
    assert all(s.split()[0] == str(c) for s, c in zip(table["top2_category_ids"], table["category_id"]))


def test_predict_cli_writes_csv_and_fails_clearly(model_dir, capsys):
    out = model_dir / "out.csv"
    main([str(model_dir / "imgs"), "--checkpoint", str(model_dir / "model.pt"), "--out", str(out), "--device", "cpu"])
    table = pd.read_csv(out)
    assert len(table) == 6 and list(table.columns[:4]) == ["path", "category_id", "name", "probability"]
    assert "6 images classified" in capsys.readouterr().out
    with pytest.raises(BBNError, match=r"broken.jpg: cannot read image"):
        main([str(model_dir / "broken.jpg"), "--checkpoint", str(model_dir / "model.pt"), "--out", str(out)])
    with pytest.raises(BBNError, match=r"imgs/0.png: not a checkpoint"):
        main([str(model_dir / "broken.jpg"), "--checkpoint", str(model_dir / "imgs/0.png")])
    assert len(pd.read_csv(out)) == 6  # the failed runs left the earlier CSV as it was
