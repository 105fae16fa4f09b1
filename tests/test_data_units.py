"""Unit tests of config, stats, metrics, split, embedded data, iNat JSON, submission, io."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bbn.data.inat import load_categories, load_images
from bbn.data.split import stratified_split
from bbn.data.stats import class_table, group_sizes, shot_group, shot_thresholds, summary
from bbn.errors import BBNError
from bbn.evaluate.metrics import classification_metrics, per_class_accuracy, topk_error
from bbn.evaluate.submission import validate_submission, write_submission
from bbn.files import atomic_path
from bbn.sources.embedded import build_archive
from bbn.sources.longtail import longtail_counts
from tests.helpers import dataspec

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- stats
def test_shot_group_boundaries():
    got = shot_group(np.array([101, 100, 20, 19, 0]), many_above=100, few_below=20)
    assert list(got) == ["many", "medium", "medium", "few", "few"]


def test_class_table_and_summary():
    classes = pd.DataFrame({"category_id": [0, 1, 2, 3, 4], "name": list("abcde"),
                            "train_count": [150, 50, 5, 0, 10]})  # category 3 has no image
    table = class_table(classes, many_above=100, few_below=20)
    assert list(table["category_id"]) == [0, 1, 4, 2, 3]
    assert list(table["train_count"]) == [150, 50, 10, 5, 0]
    assert list(table["group"]) == ["many", "medium", "few", "few", "few"]
    assert list(table["rank"]) == [1, 2, 3, 4, 5] and list(table["name"]) == list("abecd")
    s = summary(table)
    assert s["num_classes"] == 5 and s["num_train_images"] == 215
    assert s["imbalance_ratio"] == pytest.approx(30.0)  # 150 / 5, empty class ignored
    assert (s["many_classes"], s["medium_classes"], s["few_classes"]) == (1, 1, 3)


def test_tercile_groups_when_every_class_is_large():
    """12 plant-seedling-like classes, all > 100 images: the fixed rule puts all in many-shot
    (medium and few empty); terciles give 4 / 4 / 4, and the sizes always add up to the classes."""
    counts = np.array([460, 390, 350, 300, 280, 260, 250, 230, 220, 200, 180, 150])
    fixed = shot_group(counts, *shot_thresholds(counts, "fixed", 100, 20))
    assert group_sizes(fixed) == {"many_classes": 12, "medium_classes": 0, "few_classes": 0}
    many_above, few_below = shot_thresholds(counts, "terciles", 100, 20)
    assert (many_above, few_below) == (280, 230)  # many: > 5th largest, few: < 5th smallest
    groups = shot_group(counts, many_above, few_below)
    assert group_sizes(groups) == {"many_classes": 4, "medium_classes": 4, "few_classes": 4}
    assert list(groups[:4]) == ["many"] * 4 and list(groups[-4:]) == ["few"] * 4
    tied = np.array([120, 120, 120, 120, 130, 110])  # ties at a boundary stay together, in medium
    assert group_sizes(shot_group(tied, *shot_thresholds(tied, "terciles", 0, 0))) == {
        "many_classes": 1, "medium_classes": 4, "few_classes": 1}
    assert set(shot_group([5, 9], *shot_thresholds([5, 9], "terciles", 0, 0))) == {"medium"}
    with pytest.raises(ValueError, match="quartiles"):
        shot_thresholds(counts, "quartiles", 100, 20)


# --------------------------------------------------------------------------------------- metrics
def _logits(orders: list[list[int]], num_classes: int) -> np.ndarray:
    """One row per sample; class orders[i][0] scores highest, then orders[i][1], ..."""
    out = np.zeros((len(orders), num_classes))
    for i, order in enumerate(orders):
        out[i, order] = num_classes - np.arange(len(order))
    return out


def test_topk_error_and_per_class_accuracy():
    logits = _logits([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [2, 0, 1, 3, 5, 4], [1, 2, 3, 4, 5, 0]], 6)
    labels = np.array([0, 5, 5, 0])  # ranked 1st, 1st, 5th, 6th
    assert topk_error(logits, labels, 1) == pytest.approx(2 / 4)
    assert topk_error(logits, labels, 5) == pytest.approx(1 / 4)
    assert topk_error(logits, labels, 6) == pytest.approx(0.0)
    pred = np.array([0, 0, 1, 2, 2, 2])
    labels = np.array([0, 1, 1, 2, 2, 0])
    acc = per_class_accuracy(pred, labels, 4)
    assert acc[:3] == pytest.approx([1 / 2, 1 / 2, 1.0]) and np.isnan(acc[3])


def _predictions(preds: list[int], num_classes: int) -> np.ndarray:
    return _logits([[p] + [c for c in range(num_classes) if c != p] for p in preds], num_classes)


def test_classification_metrics_groups():
    counts = np.array([500, 150, 60, 30, 10, 3])  # many: 0, 1; medium: 2, 3; few: 4, 5
    labels = [0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5]
    preds = [0, 0, 1, 0, 2, 1, 1, 3, 4, 0, 0, 0]
    m = classification_metrics(_predictions(preds, 6), np.array(labels), shot_group(counts, 100, 20))
    assert m["top1_acc"] == pytest.approx(6 / 12) and m["top1_error"] == pytest.approx(6 / 12)
    assert m["many_acc"] == pytest.approx((1 + 1 / 2) / 2)
    assert m["medium_acc"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["few_acc"] == pytest.approx((1 / 2 + 0) / 2)


def test_classification_metrics_empty_group():
    counts = np.array([500, 150, 10, 5, 3, 2])  # no medium-shot class
    labels = [0, 1, 2, 3, 4, 5]
    m = classification_metrics(_predictions([0, 0, 2, 3, 0, 0], 6), np.array(labels), shot_group(counts, 100, 20))
    assert m["medium_acc"] is None
    assert m["many_acc"] == pytest.approx(0.5) and m["few_acc"] == pytest.approx(0.5)
    assert m["top5_error"] <= m["top1_error"]


# ----------------------------------------------------------------------------------------- split
def _pool(sizes: list[int]) -> pd.DataFrame:
    cats = [c for c, n in enumerate(sizes) for _ in range(n)]
    return pd.DataFrame({"image_id": np.arange(len(cats)) * 3 + 7, "category_id": cats})


def test_stratified_split():
    sizes = [40, 20, 10, 5, 2, 2, 1]
    pool = _pool(sizes)
    train, val = stratified_split(pool, 0.2, seed=0)
    again, val_again = stratified_split(pool, 0.2, seed=0)
    for a, b in ((train, again), (val, val_again)):
        pd.testing.assert_frame_equal(a, b)
    assert not set(train["image_id"]) & set(val["image_id"])
    assert set(train["image_id"]) | set(val["image_id"]) == set(pool["image_id"])
    assert len(train) + len(val) == len(pool)
    assert set(train["category_id"]) == set(range(len(sizes)))  # incl. the classes of size 1 and 2
    assert 6 not in set(val["category_id"])  # the single image stays in train
    per_class = val["category_id"].value_counts()
    for c, n in enumerate(sizes[:4]):
        assert abs(per_class.get(c, 0) - 0.2 * n) <= 1
    other, _ = stratified_split(pool, 0.2, seed=1)
    assert set(other["image_id"]) != set(train["image_id"])


def test_split_small_val_keeps_every_class():
    pool = _pool([2] * 30)  # n_val = 6 < 30 classes: the unstratified branch
    for seed in range(20):
        train, _ = stratified_split(pool, 0.1, seed=seed)
        assert train["category_id"].nunique() == 30


# -------------------------------------------------------------------------------------- embedded
def test_longtail_counts():
    for n_max, ir, c in [(140, 20, 10), (1000, 100, 7), (20, 5, 2), (50, 3.5, 13)]:
        counts = longtail_counts(n_max, ir, c)
        assert len(counts) == c and counts[0] == n_max
        assert all(a >= b for a, b in zip(counts, counts[1:]))
        for i, n in enumerate(counts):  # n_i = floor(n_max * IR^(-i/(C-1)))
            exact = n_max / ir ** (i / (c - 1))
            assert n <= exact + 1e-9 < n + 1
    assert longtail_counts(20, 5, 2) == [20, 4]
    assert longtail_counts(9, 5, 1) == [9]


def test_build_archive_reproducible(tmp_path):
    p = dataspec(n_max=20, imbalance_ratio=5, test_per_class=3, val_per_class=1, image_px=16)
    a, md5_a = build_archive(p, tmp_path / "a")
    b, md5_b = build_archive(p, tmp_path / "b")
    data = a.read_bytes()
    assert data == b.read_bytes() and md5_a == md5_b == hashlib.md5(data).hexdigest()
    assert Path(str(a) + ".md5").read_text().split() == [md5_a, a.name]
    with tarfile.open(a) as tar:
        train = json.load(tar.extractfile("digits/train.json"))
        test = json.load(tar.extractfile("digits/test.json"))
    per_class = pd.Series([x["category_id"] for x in train["annotations"]]).value_counts().sort_index()
    assert list(per_class) == longtail_counts(20, 5, 10)
    assert len(test["images"]) == 3 * 10


# ------------------------------------------------------------------------------------------ inat
def _doc(annotations=True) -> dict:
    doc = {"images": [{"id": 1, "file_name": "img/1.jpg"}, {"id": 2, "file_name": "img/2.jpg"}],
           "categories": [{"id": 0, "name": "zero"}, {"id": 5, "name": "five"}]}
    if annotations:
        doc["annotations"] = [{"image_id": 1, "category_id": 5}, {"image_id": 2, "category_id": 0}]
    return doc


def _write(tmp_path: Path, doc, name: str = "train.json", files=("1.jpg", "2.jpg")) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    for f in files:
        (tmp_path / "img" / f).write_bytes(b"jpg")
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_load_images_ok(tmp_path):
    out = load_images(_write(tmp_path, _doc()))
    assert list(out["image_id"]) == [1, 2] and list(out["category_id"]) == [5, 0]
    assert Path(out["path"][0]) == tmp_path / "img/1.jpg"
    cats = load_categories(tmp_path / "train.json")
    assert list(cats["id"]) == [0, 5] and list(cats["name"]) == ["zero", "five"]
    test = load_images(_write(tmp_path, _doc(annotations=False), name="test.json"), labelled=False)
    assert list(test["image_id"]) == [1, 2] and list(test["category_id"]) == [-1, -1]


def test_inat_malformed_json(tmp_path):
    path = _write(tmp_path, '{"images": [', name="bad.json")
    for load in (load_images, load_categories):
        with pytest.raises(BBNError, match=r"bad\.json.*JSON"):
            load(path)


def _unknown_category() -> dict:
    doc = _doc()
    doc["annotations"][1]["category_id"] = 99
    return doc


@pytest.mark.parametrize("doc, files, pattern", [
    (_doc(annotations=False), ("1.jpg", "2.jpg"), r"train\.json: missing 'annotations'"),
    (_unknown_category(), ("1.jpg", "2.jpg"), r"train\.json: annotations\[1\]: unknown category_id 99"),
    (_doc(), ("1.jpg",), r"train\.json: images\[1\] \(id 2\): file .*2\.jpg is missing"),
], ids=["no-annotations", "unknown-category", "missing-file"])
def test_inat_errors(tmp_path, doc, files, pattern):
    with pytest.raises(BBNError, match=pattern):
        load_images(_write(tmp_path, doc, files=files), labelled=True)


# ------------------------------------------------------------------------------------ submission
def test_write_submission(tmp_path):
    ids, cats = [10, 11, 12], np.array([100, 101, 102, 103, 104, 105, 106])
    logits = np.random.default_rng(0).normal(size=(3, 7))
    target = tmp_path / "sub.csv"
    write_submission(target, ids, logits, cats, k=5)
    lines = target.read_text().splitlines()
    assert lines[0] == "id,predicted" and len(lines) == 4
    for line, i, row in zip(lines[1:], ids, logits):
        best = sorted(range(7), key=lambda c: -row[c])[:5]
        assert line == f"{i}," + " ".join(str(cats[c]) for c in best)
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]


@pytest.mark.parametrize("rows, problem", [
    ([(1, "7"), (2, "8")], "missing"),
    ([(1, "7"), (2, "8"), (3, "7"), (3, "8")], "duplicate"),
    ([(1, "7"), (2, "8"), (3, "42")], "unknown category"),
    ([(1, "7"), (2, "7 8 9 10 11 12"), (3, "8")], "1-5"),
])
def test_validate_submission_rejects(rows, problem):
    cats = [7, 8, 9, 10, 11, 12]
    validate_submission(pd.DataFrame([(1, "7"), (2, "8 9"), (3, "12")], columns=["id", "predicted"]),
                        [1, 2, 3], cats)
    with pytest.raises(BBNError, match=problem):
        validate_submission(pd.DataFrame(rows, columns=["id", "predicted"]), [1, 2, 3], cats)


# ---------------------------------------------------------------------------------------- atomic
def test_atomic_path(tmp_path):
    target = tmp_path / "out.txt"
    _killed_write(target)
    assert list(tmp_path.iterdir()) == []  # no temp file, no target
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]
    _killed_write(target)
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]  # old file kept


def _killed_write(target: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")

