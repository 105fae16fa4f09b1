"""Issue 26, dataset content: the one dataset walk (hidden files and folders, links, image suffixes),
the user's own val folder, exact duplicates and train/test leakage, annotation integrity.

The shared cases of tests/data/real-world-3/ (README there) are run through the real download, check,
split and stats code in-process (`_stages`), in a folder laid out as the project."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from bbn.cli.predict import collect_images
from bbn.data.imagecheck import check_image
from bbn.data.inat import load_images
from bbn.errors import BBNError
from bbn.files import read_csv
from bbn.sources.datasets import fetch_dataset
from bbn.sources.walk import image_files
from tests.helpers import ROOT, TINY, dataspec, jpeg, merge, read_params

CASES = Path(__file__).parent / "data" / "real-world-3"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)  # an iPhone photo's start, no JPEG


def _stages(tmp: Path, source: Path, capsys, *names: str, **params) -> str:
    """Build data/raw from ``source`` (data.name imagefolder, TINY params) in ``tmp`` and run the stages
    ``names`` in-process there; their printed lines."""
    from stages import check, split, stats

    p = merge(merge(read_params(ROOT / "params.yaml"), TINY), {"data": {"name": "imagefolder", "source": str(source)}})
    p = merge(p, params)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    fetch_dataset(dataspec(**p["data"]), tmp / "data" / "raw", tmp / "downloads")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        for name in names:
            {"check": check, "split": split, "stats": stats}[name].main()
    finally:
        os.chdir(cwd)
    return capsys.readouterr().out


def _raw_names(tmp: Path, split: str) -> list[str]:
    return [im["file_name"] for im in json.loads((tmp / "data" / "raw" / f"{split}.json").read_text())["images"]]


# -- hidden files and folders, duplicates ------------------------------------------------------------

def test_hidden_copies_are_no_data_and_no_test_image_has_a_copy_in_train(tmp_path, capsys):
    out = _stages(tmp_path, CASES / "hidden_subfolders_duplicates" / "tree", capsys, "check", "split", "stats")
    assert "check: 14 images, 0 unreadable" in out and "0 in 0 sets of byte-identical copies (0 labelled" in out
    assert "0 test image(s) with a copy among the training images" in out
    names = _raw_names(tmp_path, "train") + _raw_names(tmp_path, "test")
    assert len(names) == 14 and not any("/." in n for n in names)
    assert json.loads((tmp_path / "metrics" / "stats.json").read_text())["test_images_in_train"] == 0


def _leaky_tree(root: Path) -> Path:
    """train/{cat,dog} x 6 and test/{cat,dog} x 2, test/cat/t0.jpg a copy of train/cat/0.jpg."""
    for split, n in (("train", 6), ("test", 2)):
        for c, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                (root / split / name / f"{split[:2]}{i}.jpg").write_bytes(jpeg(100 * c + i + 50 * (split == "test")))
    shutil.copy(root / "train" / "cat" / "tr0.jpg", root / "test" / "cat" / "te0.jpg")
    return root


def test_a_planted_test_copy_is_listed_counted_and_can_stop_the_split(tmp_path, capsys):
    tree = _leaky_tree(tmp_path / "tree")
    repo = tmp_path / "repo"
    out = _stages(repo, tree, capsys, "check", "split", "stats")
    assert "2 in 1 sets of byte-identical copies (0 labelled with different categories), 1 test image(s) with a " \
        "copy among the training images" in out
    dup = read_csv(repo / "data" / "stats" / "duplicates.csv")
    assert sorted(dup["split"]) == ["test", "train"] and dup["sha256"].nunique() == 1
    assert json.loads((repo / "metrics" / "stats.json").read_text())["test_images_in_train"] == 1
    with pytest.raises(BBNError, match=r"1 test image\(s\) have a byte-identical copy .*te0.jpg.*allow_test_dup"):
        _stages(tmp_path / "strict", tree, capsys, "check", "split", check={"allow_test_duplicates": False})


def test_copies_in_two_class_folders_are_named(tmp_path, capsys):
    tree = _leaky_tree(tmp_path / "tree")
    shutil.copy(tree / "train" / "cat" / "tr1.jpg", tree / "train" / "dog" / "tr9.jpg")
    out = _stages(tmp_path / "repo", tree, capsys, "check")
    assert "check: warning: byte-identical copies of " in out and "are labelled with categories [0, 1]" in out
    assert "(1 labelled with different categories)" in out


@pytest.mark.parametrize("seed", range(4))
def test_the_test_hold_out_keeps_copies_on_one_side(tmp_path, capsys, seed):
    """Every image of the tree has a copy under another name: whichever side one goes, its copy follows."""
    for c, name in enumerate(("cat", "dog")):
        (tmp_path / "tree" / name).mkdir(parents=True)
        for i in range(8):
            for copy in ("a", "b"):
                (tmp_path / "tree" / name / f"{i}{copy}.jpg").write_bytes(jpeg(10 * c + i))
    repo = tmp_path / "repo"
    out = _stages(repo, tmp_path / "tree", capsys, "check", "split",
                  data={"test_per_class": 3, "seed": seed}, split={"val_fraction": 0.3, "seed": seed})
    assert "0 test image(s) with a copy among the training images" in out
    test = {Path(n).stem[:-1] for n in _raw_names(repo, "test") if "cat" in n}
    assert len(_raw_names(repo, "test")) == 12 and len(test) == 3  # 3 of each class's 8 images, with their copies
    train, val = (read_csv(repo / "data" / "split" / f"{s}.csv") for s in ("train", "val"))
    stems = [{(Path(p).parent.name, Path(p).stem[:-1]) for p in f["path"]} for f in (train, val)]
    assert len(val) and not stems[0] & stems[1]  # no copy on both sides of the val hold-out either


# -- image suffixes ------------------------------------------------------------------------------------

def test_jfif_and_heic_are_used_or_listed_never_dropped(tmp_path, capsys):
    tree = tmp_path / "tree"
    shutil.copytree(CASES / "unlisted_image_suffixes" / "tree", tree)
    (tree / "b" / "iphone.HEIC").write_bytes(HEIC)  # a real HEIC, which this Pillow cannot read
    (tree / "a" / "old.jpe").write_bytes(jpeg(77))
    out = _stages(tmp_path / "repo", tree, capsys, "check", data={"test_per_class": 2})
    names = _raw_names(tmp_path / "repo", "train") + _raw_names(tmp_path / "repo", "test")
    assert {Path(n).name for n in names} >= {"web.jfif", "phone.heic", "iphone.HEIC", "old.jpe"}
    assert "check: 26 images, 1 unreadable (1 of an unsupported format)" in out
    bad = read_csv(tmp_path / "repo" / "data" / "stats" / "unreadable.csv")
    assert bad["path"].str.endswith("iphone.HEIC").all() and bad["reason"].tolist() == ["unsupported format (.heic)"]
    assert check_image(str(tree / "b" / "web.jfif")) == ""


# -- the user's own val split -----------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["val", "valid", "validation"])
def test_the_users_val_folder_is_the_val_split(tmp_path, capsys, folder):
    tree = tmp_path / "tree"
    shutil.copytree(CASES / "val_folder_ignored" / "tree", tree)
    if folder != "val":
        (tree / "val").rename(tree / folder)
    out = _stages(tmp_path / "repo", tree, capsys, "check", "split")
    assert "split: 14 train, 14 val images (the dataset's own val set)" in out
    val = read_csv(tmp_path / "repo" / "data" / "split" / "val.csv")
    assert all(f"/val/{c}/" in p for p, c in zip(val["path"], val["category_id"].map({0: "cat", 1: "dog"})))
    assert json.loads((tmp_path / "repo" / "data" / "split" / "split.json").read_text())["val_split"] == "official"


def test_a_val_folder_not_used_says_so(tmp_path, capsys):
    out = _stages(tmp_path / "repo", CASES / "val_folder_ignored" / "tree", capsys, "check", "split",
                  split={"use_official_val": False})
    assert "the dataset's own val set (14 images) is not used (split.use_official_val: false)" in out


# -- links -------------------------------------------------------------------------------------------

def test_links_to_folders_and_files_are_followed(tmp_path, capsys):
    store, tree = tmp_path / "store", tmp_path / "tree"
    for name in ("cat", "dog"):
        (store / name).mkdir(parents=True)
        (tree / name).mkdir(parents=True)
        for i in range(4):
            (store / name / f"{i}.jpg").write_bytes(jpeg(hash((name, i)) % 1000))
            os.symlink(os.path.relpath(store / name / f"{i}.jpg", tree / name), tree / name / f"{i}.jpg")
    (store / "more").mkdir()
    for i in range(3):
        (store / "more" / f"m{i}.jpg").write_bytes(jpeg(500 + i))
    os.symlink(store / "more", tree / "cat" / "more")  # a linked sub-folder inside a class
    repo = tmp_path / "repo"
    out = _stages(repo, tree, capsys, "check", data={"test_per_class": 1})
    assert "check: 11 images, 0 unreadable" in out
    raw = [p for p in (repo / "data" / "raw").rglob("*.jpg")]
    assert len(raw) == 11 and not any(p.is_symlink() for p in raw)  # the content, not dangling relative links


def test_a_dangling_link_or_a_loop_is_one_line(tmp_path):
    tree = tmp_path / "tree"
    for name in ("cat", "dog"):
        (tree / name).mkdir(parents=True)
        (tree / name / "0.jpg").write_bytes(jpeg(1))
    os.symlink(tmp_path / "gone.jpg", tree / "cat" / "1.jpg")
    with pytest.raises(BBNError, match=r"cat/1.jpg: symbolic link to .*gone.jpg, which does not exist"):
        image_files(tree)
    (tree / "cat" / "1.jpg").unlink()
    os.symlink(tree, tree / "dog" / "again")
    with pytest.raises(BBNError, match="dog/again: symbolic link loops back"):
        image_files(tree)


def test_predict_folders_use_the_same_walk(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(CASES / "hidden_subfolders_duplicates" / "tree", tree)
    (tree / "x.jfif").write_bytes(jpeg(3))
    found = collect_images([str(tree)])
    assert len(found) == 15 and not any("/." in p for p in found)


# -- annotations ---------------------------------------------------------------------------------------

def test_an_image_with_two_categories_is_one_line(tmp_path):
    train = CASES / "conflicting_labels" / "src" / "train2019.json"
    with pytest.raises(BBNError, match=r"train2019.json: image id 1000000000000 is annotated with different "
                                       r"category ids: 2500 \(annotations\[0\]\), 1000 \(annotations\[1\]\)"):
        load_images(train)


def _coco(tmp: Path, images: list, annotations: list) -> Path:
    for im in images:
        (tmp / im["file_name"]).write_bytes(jpeg(im["id"]))
    path = tmp / "train.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return path


def test_annotation_integrity(tmp_path):
    ims = [{"id": 1, "file_name": "x.jpg"}, {"id": 2, "file_name": "y.jpg"}]
    same_twice = [{"image_id": 1, "category_id": 1}, {"image_id": 1, "category_id": 1}, {"image_id": 2, "category_id": 2}]
    assert load_images(_coco(tmp_path, ims, same_twice))["category_id"].tolist() == [1, 2]  # identical repeats: fine
    with pytest.raises(BBNError, match=r"train.json: images: id 1 is given to 2 images: x.jpg, y.jpg"):
        load_images(_coco(tmp_path, [ims[0], {"id": 1, "file_name": "y.jpg"}], same_twice[:1]))
    with pytest.raises(BBNError, match=r"train.json: annotations\[2\]: image_id 7 \(category_id 2\) names no image"):
        load_images(_coco(tmp_path, ims, same_twice[:2] + [{"image_id": 7, "category_id": 2}]))


def test_the_report_warns_about_runs_tested_on_training_images():
    import pandas as pd

    from bbn.cli.report import leakage_note

    runs = pd.DataFrame({"run_id": ["r1", "r2"], "metrics.test_images_in_train": [0.0, 6.0]})
    assert "1 run (r2) were tested on images with a byte-identical copy" in leakage_note(runs)
    assert "up to 6" in leakage_note(runs)
    assert leakage_note(runs.iloc[:1]) == "" and leakage_note(pd.DataFrame({"run_id": ["r"]})) == ""


def test_cifar_and_inat_trees_use_the_same_walk(tmp_path):
    """The other entry points: a CIFAR ImageFolder tree with hidden copies, an iNat tree whose image
    folder is a link and which holds a hidden folder."""
    src = tmp_path / "cifar10"
    for split, n in (("train", (6, 4)), ("test", (2, 2))):
        for c, (name, k) in enumerate(zip(("airplane", "bird"), n)):
            (src / split / name / ".thumbnails").mkdir(parents=True)
            for i in range(k):
                (src / split / name / f"{i}.jpg").write_bytes(jpeg(100 * c + 10 * (split == "test") + i))
                (src / split / name / ".thumbnails" / f"{i}.jpg").write_bytes(jpeg(i))
    out = tmp_path / "raw"
    fetch_dataset(dataspec(name="cifar10_lt", source=str(src), n_max=6, imbalance_ratio=1.5), out, tmp_path / "dl")
    names = [im["file_name"] for s in ("train", "test") for im in json.loads((out / f"{s}.json").read_text())["images"]]
    assert len(names) == 6 + 4 + 4 and not any("/." in n for n in names)

    inat, images = tmp_path / "inat", tmp_path / "elsewhere"
    (images / "0").mkdir(parents=True)
    (images / ".cache").mkdir()
    for i in range(2):
        (images / "0" / f"{i}.jpg").write_bytes(jpeg(i))
        (images / ".cache" / f"{i}.jpg").write_bytes(jpeg(i))
    inat.mkdir()
    os.symlink(images, inat / "train_val2019")
    (inat / "test2019").mkdir()
    (inat / "test2019" / "t.jpg").write_bytes(jpeg(9))
    cats = [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]
    ims = [{"id": i, "file_name": f"train_val2019/0/{i}.jpg"} for i in range(2)]
    ann = [{"id": i, "image_id": i, "category_id": i} for i in range(2)]
    for split in ("train", "val"):
        (inat / f"{split}2019.json").write_text(json.dumps({"images": ims, "annotations": ann, "categories": cats}))
    (inat / "test2019.json").write_text(json.dumps({"images": [{"id": 5, "file_name": "test2019/t.jpg"}],
                                                    "categories": cats}))
    out = tmp_path / "inat_raw"
    fetch_dataset(dataspec(name="inat2019", source=str(inat)), out, tmp_path / "dl")
    linked = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    assert linked == ["test2019/t.jpg", "train_val2019/0/0.jpg", "train_val2019/0/1.jpg"]
    assert not any(p.is_symlink() for p in out.rglob("*"))
