"""Dataset checks in the first stage that reads the data: JSON paths confined to the dataset root,
and at least two classes, with the same message in every layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbn.data.inat import load_images
from bbn.errors import BBNError
from bbn.sources.datasets import fetch_dataset
from tests.helpers import dataspec, jpeg


def _inat(root: Path, file_names: list[str], categories=(0,), labels=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    images = [{"id": i, "file_name": f} for i, f in enumerate(file_names)]
    labels = labels or [0] * len(images)
    ann = [{"id": i, "image_id": i, "category_id": c} for i, c in enumerate(labels)]
    cats = [{"id": c, "name": f"class {c}"} for c in categories]
    for split, doc in (("train", {"images": images, "annotations": ann}), ("val", {"images": [], "annotations": []}),
                       ("test", {"images": []})):
        (root / f"{split}.json").write_text(json.dumps(doc | {"categories": cats}))
    for f in file_names:
        target = root / f
        if f and not Path(f).is_absolute() and ".." not in f and ":" not in f:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(jpeg(len(f)))
    return root / "train.json"


@pytest.mark.parametrize("bad", ["/etc/hostname", "../outside.jpg", "a/../../outside.jpg", "a\\..\\..\\x.jpg",
                                 "C:\\data\\x.jpg", ""])
def test_json_paths_confined_to_the_dataset_root(tmp_path, bad):
    (tmp_path / "outside.jpg").write_bytes(jpeg(1))  # exists: the old reader opened it
    train = _inat(tmp_path / "raw", ["a/0.jpg", bad])
    for check_files in (True, False):
        with pytest.raises(BBNError) as err:
            load_images(train, check_files=check_files)
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{train}: images[1] (id 1): file_name {bad!r}")
    assert len(load_images(_inat(tmp_path / "ok", ["a/0.jpg", "a/b/1.jpg"]))) == 2


def _one_class_message(where: str, err: BBNError) -> str:
    line = str(err)
    assert line.startswith(f"{where}: ") and "\n" not in line
    return line.removeprefix(f"{where}: ")


def _stats(tmp_path: Path, monkeypatch) -> BBNError:
    """The error of the first stage that reads the dataset's JSON (check)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("")
    from stages import check

    with pytest.raises(BBNError) as err:
        check.main()
    return err.value


def test_one_class_refused_alike_in_every_layout(tmp_path, monkeypatch):
    folder = tmp_path / "folder" / "birds"
    for i in range(6):
        (folder / "class 0").mkdir(parents=True, exist_ok=True)
        (folder / "class 0" / f"{i}.jpg").write_bytes(jpeg(i))
    with pytest.raises(BBNError) as err:
        fetch_dataset(dataspec(name="imagefolder", source=str(folder)), tmp_path / "raw1", tmp_path / "dl")
    from_folder = _one_class_message(str(folder), err.value)

    _inat(tmp_path / "json" / "data" / "raw", [f"a/{i}.jpg" for i in range(6)])
    from_json = _one_class_message("data/raw/train.json", _stats(tmp_path / "json", monkeypatch))
    assert from_folder == from_json == "only 1 class ('class 0') with training images; at least two classes are needed"

    # two categories declared, but every image in one: the same
    _inat(tmp_path / "json2" / "data" / "raw", [f"a/{i}.jpg" for i in range(6)], categories=(0, 1))
    assert _one_class_message("data/raw/train.json", _stats(tmp_path / "json2", monkeypatch)) == from_json
    assert not (tmp_path / "json2" / "data" / "stats").exists()  # nothing written
