"""Malformed iNat JSON: the first stage that reads it (check) stops in one line naming the file and
the entry, and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import make_repo, one_error_line, stage

pytestmark = pytest.mark.pipeline  # the train stage / download stage as processes


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("json") / "repo")
    assert stage(repo, "download").returncode == 0
    return repo


def _drop_annotations(doc):
    del doc["annotations"]


def _unknown_category(doc):
    doc["annotations"][3]["category_id"] = 99


def _missing_file(doc):
    doc["images"][2]["file_name"] = "train_val/0/gone.jpg"


@pytest.mark.parametrize("damage, words", [
    (_drop_annotations, "train.json: missing 'annotations' list"),
    (_unknown_category, "train.json: annotations[3]: unknown category_id 99"),
    (_missing_file, "train.json: images[2]"),
])
def test_malformed_json_fails_in_one_line_without_outputs(downloaded, damage, words):
    path = downloaded / "data/raw/digits/train.json"
    original = path.read_text()
    metrics_before = (downloaded / "metrics/stats.json").read_text()
    doc = json.loads(original)
    damage(doc)
    path.write_text(json.dumps(doc))
    try:
        line = one_error_line(stage(downloaded, "check"))  # the first stage that reads the JSON
    finally:
        path.write_text(original)
    assert words in line and str(Path("data/raw/digits/train.json")) in line
    assert not (downloaded / "data/stats").exists()
    assert (downloaded / "metrics/stats.json").read_text() == metrics_before
