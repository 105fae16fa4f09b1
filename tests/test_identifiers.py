"""Identifiers come back exactly as written: class names `NA`, `None`, `001`, `nan`, `True` (and image
ids) through every CSV the stages exchange, into the checkpoint and bbn-predict's output."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from bbn.files import read_csv, write_csv
from bbn.model.checkpoint import Checkpoint
from tests.helpers import jpeg, make_repo, sh, stage

NAMES = ["001", "NA", "None", "True", "nan"]  # sorted: the ImageFolder class order


def test_read_csv_keeps_identifiers(tmp_path):
    path = tmp_path / "x.csv"
    write_csv(path, pd.DataFrame({"image_id": ["001", "7", "NA"], "name": ["NA", "None", "nan"],
                                  "path": ["a/True.jpg", "null", ""], "count": [1.5, float("nan"), 3]}))
    frame = read_csv(path)
    assert frame["image_id"].tolist() == ["001", "7", "NA"] and frame["name"].tolist() == ["NA", "None", "nan"]
    assert frame["path"].tolist() == ["a/True.jpg", "null", ""]
    assert frame["count"].iloc[0] == 1.5 and pd.isna(frame["count"].iloc[1])
    write_csv(path, pd.DataFrame({"image_id": [3, 10, 0], "name": ["a", "b", "c"]}))
    assert read_csv(path)["image_id"].tolist() == [3, 10, 0]  # integer ids (iNat's) stay integers
    assert str(read_csv(path)["image_id"].dtype) == "int64"


@pytest.mark.pipeline
def test_class_names_survive_the_pipeline_and_predict(tmp_path):
    src = tmp_path / "src"
    for c, name in enumerate(NAMES):
        (src / name).mkdir(parents=True)
        for i in range(8):
            (src / name / f"{i}.jpg").write_bytes(jpeg(100 * c + i, 16))
    repo = make_repo(tmp_path / "repo", {"data": {"name": "imagefolder", "source": str(src), "test_per_class": 2},
                                         "train": {"epochs": 1, "lr_steps": [1], "tmax": 1}})
    for name in ("download", "check", "split", "stats", "prepare", "train"):
        proc = stage(repo, name)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
    assert read_csv(repo / "data/split/classes.csv")["name"].tolist() == NAMES
    assert pd.read_csv(repo / "data/split/classes.csv", dtype=str, keep_default_na=False)["name"].tolist() == NAMES
    assert Checkpoint.load(repo / "models/model.pt").names == NAMES
    sh(repo, sys.executable, "-m", "bbn.cli.predict", str(src), "--out", "p.csv", "--top-k", "2")
    names = pd.read_csv(repo / "p.csv", dtype=str, keep_default_na=False)["name"]
    assert len(names) == 40 and set(names) <= set(NAMES)
