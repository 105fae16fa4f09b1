"""Real datasets: iNaturalist archives over HTTP, CIFAR-LT, ImageFolder, corrupt and malformed data."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bbn.errors import BBNError
from bbn.sources.datasets import fetch_dataset
from bbn.sources.download import md5sum
from bbn.sources.longtail import longtail_counts
from tests.helpers import ROOT, FileServer, cifar10_python, dataspec, inat2019, jpeg, make_repo, md5s, one_error_line, sh, stage

SHARED_CIFAR = ROOT.parent / "shared/data/cifar10-jpg.tar.gz"
# ------------------------------------------------------------------------------------- iNaturalist
@pytest.mark.pipeline
def test_inat2019_over_http_through_dvc_with_an_interrupted_download(tmp_path):
    files = inat2019()
    half = len(files["train_val2019.tar.gz"]) // 2
    with FileServer(files, cut={"train_val2019.tar.gz": half}) as server:
        repo = make_repo(tmp_path / "inat", {"data": {"name": "inat2019", "mirror": server.url, "md5": md5s(files)}})
        out = sh(repo, "dvc", "repro", "stats")
    assert [n for n in ("download", "check", "split", "stats") if f"Running stage '{n}'" in out.stdout] == [
        "download", "check", "split", "stats"]
    assert ("train_val2019.tar.gz", f"bytes={half}-") in server.requests  # resumed where it broke
    assert sum(1 for path, _ in server.requests if path == "train_val2019.tar.gz") == 2
    stats = json.loads((repo / "metrics/stats.json").read_text())
    train, val = pd.read_csv(repo / "data/split/train.csv"), pd.read_csv(repo / "data/split/val.csv")
    # the images the model trains on (14 in the pool, minus the val hold-out), and the hold-out itself
    assert (stats["num_classes"], stats["num_train_images"], stats["num_val_images"], stats["num_test_images"]) == (
        3, len(train), len(val), 4)
    assert len(train) == 14 and len(val) == 3
    counts = train["category_id"].value_counts()
    assert stats["imbalance_ratio"] == pytest.approx(counts.max() / counts.min()) and stats["unreadable_images"] == 0
    supers = pd.read_csv(repo / "data/stats/super_counts.csv")
    kingdom = supers[supers["level"] == "kingdom"].set_index("value")
    assert kingdom.loc["Animalia", "classes"] == 2 and kingdom.loc["Animalia", "images"] + kingdom.loc[
        "Plantae", "images"] == len(train)
    assert set(supers["level"]) >= {"kingdom", "genus", "class"}
    assert train["category_id"].nunique() == 3
    assert "up to date" in sh(repo, "dvc", "status", "stats").stdout


@pytest.mark.pipeline
def test_inat_md5_mismatch_leaves_nothing_that_looks_valid(tmp_path):
    files = inat2019()
    sums = md5s(files) | {"test2019.tar.gz": "0" * 32}
    with FileServer(files) as server:
        repo = make_repo(tmp_path / "md5", {"data": {"name": "inat2019", "mirror": server.url, "md5": sums}})
        line = one_error_line(stage(repo, "download"))
    assert "test2019.tar.gz: md5 mismatch" in line and "0" * 32 in line
    downloads = repo / "data/downloads"
    assert not (downloads / "test2019.tar.gz").exists() and not (downloads / "test2019.tar.gz.part").exists()
    # the other archives were fetched in parallel and cancelled: each is either complete and
    # verified under its final name, or a resumable .part that never looks valid
    for name in files:
        if (downloads / name).exists() and name != "test2019.tar.gz":
            assert md5sum(downloads / name) == sums[name]
    assert not (repo / "data/raw").exists() and not list((repo / "data").glob(".raw.*"))


@pytest.mark.pipeline
def test_inat_archive_with_a_parent_path_member_is_rejected(tmp_path):
    files = inat2019(evil=True)
    with FileServer(files) as server:
        repo = make_repo(tmp_path / "evil", {"data": {"name": "inat2019", "mirror": server.url, "md5": md5s(files)}})
        line = one_error_line(stage(repo, "download"))
    assert "unsafe member '../evil'" in line and "nothing extracted" in line
    assert not (repo / "data/raw").exists() and not (repo / "data/evil").exists() and not (repo / "evil").exists()


def test_inat_missing_checksum_is_asked_for(tmp_path):
    with pytest.raises(BBNError, match=r"^md5: no checksum known for .*train_val2017"):
        fetch_dataset(dataspec(name="inat2017", md5={"x.tar.gz": "0" * 32}), tmp_path / "out", tmp_path / "dl")


def test_inat_source_archives_used_in_place_and_extracted_tree_hard_linked(tmp_path):
    files = inat2019()
    archives = tmp_path / "archives"
    archives.mkdir()
    for name, data in files.items():
        (archives / name).write_bytes(data)
    p = dataspec(name="inat2019", source=str(archives), md5=md5s(files))
    fetch_dataset(p, tmp_path / "a", tmp_path / "dl")
    assert not list((tmp_path / "dl").rglob("*.tar.gz"))  # verified where they lie: not copied
    first = tmp_path / "a/train_val2019/Animalia/0/0000.jpg"
    assert first.read_bytes() == jpeg(0) and (tmp_path / "a/test2019.json").exists()
    assert first.stat().st_nlink == 2  # a link into the one extracted copy under dl/extracted
    # an extracted tree as source: every file hard-linked, not copied
    fetch_dataset(dataspec(name="inat2019", source=str(tmp_path / "a")), tmp_path / "b", tmp_path / "dl")
    linked = tmp_path / "b/train_val2019/Animalia/0/0000.jpg"
    assert linked.stat().st_ino == first.stat().st_ino
    assert json.loads((tmp_path / "b/train2019.json").read_text()) == json.loads((tmp_path / "a/train2019.json").read_text())


# ------------------------------------------------------------------------------------------ CIFAR
def test_cifar10_lt_from_the_python_tarball_over_http(tmp_path):
    archive, batches = cifar10_python()
    name = "cifar-10-python.tar.gz"
    with FileServer({name: archive}) as server:
        p = dataspec(name="cifar10_lt", mirror=server.url, md5={name: hashlib.md5(archive).hexdigest()},
                       imbalance_ratio=10, seed=3)
        info = fetch_dataset(p, tmp_path / "raw", tmp_path / "dl")
    train = json.loads((tmp_path / "raw/train.json").read_text())
    counts = pd.Series([a["category_id"] for a in train["annotations"]]).value_counts().sort_index()
    assert counts.tolist() == longtail_counts(20, 10, 10) and info["longtail_images"] == sum(counts)
    test = json.loads((tmp_path / "raw/test.json").read_text())
    assert len(test["images"]) == 40 and {c["name"] for c in test["categories"]} >= {"airplane", "truck"}
    # pixels survive exactly (PNG): image 7 of the concatenated training batches
    x = np.concatenate([b[b"data"] for k, b in batches.items() if k != "test_batch"]).reshape(-1, 3, 32, 32)
    kept = [im["file_name"] for im in train["images"]]
    some = next(f for f in kept if f.endswith(".png"))
    index = int(Path(some).stem)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "raw" / some)), x[index].transpose(1, 2, 0))
    assert (tmp_path / "raw/longtail_index.txt").read_text().split() == kept


def test_cifar_reader_refuses_code_in_a_pickle(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    archive, _ = cifar10_python(meta=pickle.dumps(Evil(), protocol=2))
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(archive)
    with pytest.raises(BBNError, match=r"batches.meta: cannot read \(refused to load (posix|os)\.system\)"):
        fetch_dataset(dataspec(name="cifar10_lt", source=str(path)), tmp_path / "raw", tmp_path / "dl")
    assert not marker.exists()


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason=f"{SHARED_CIFAR} not on this machine")
def test_cifar10_lt_ir100_from_the_jpeg_tree_is_exact_and_reproducible(tmp_path):
    p = dataspec(name="cifar10_lt", source=str(SHARED_CIFAR), imbalance_ratio=100, seed=0)
    first = fetch_dataset(p, tmp_path / "a", tmp_path / "dl")
    train = json.loads((tmp_path / "a/train.json").read_text())
    counts = pd.Series([a["category_id"] for a in train["annotations"]]).value_counts().sort_index()
    assert counts.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50] and counts.sum() == 12406
    names = [c["name"] for c in train["categories"]]
    assert names[0] == "airplane" and names[-1] == "truck"
    test = json.loads((tmp_path / "a/test.json").read_text())
    assert pd.Series([a["category_id"] for a in test["annotations"]]).value_counts().tolist() == [1000] * 10
    again = fetch_dataset(p, tmp_path / "b", tmp_path / "dl")
    assert again["longtail_index_sha256"] == first["longtail_index_sha256"]
    other = fetch_dataset(dataspec(name="cifar10_lt", source=str(SHARED_CIFAR), imbalance_ratio=100, seed=1),
                    tmp_path / "c", tmp_path / "dl")
    assert other["longtail_index_sha256"] != first["longtail_index_sha256"]


# ------------------------------------------------------------------------------------ ImageFolder
def imagefolder_tree(root: Path) -> Path:
    """Two classes, a labelled test/ folder, and three unusable files among the training images."""
    for c, n in (("cat", 14), ("dog", 6)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            (root / c / f"{c}{i}.jpg").write_bytes(jpeg(i + 100 * ("cat", "dog").index(c), 16))
    for c in ("cat", "dog"):
        (root / "test" / c).mkdir(parents=True)
        for i in range(3):
            (root / "test" / c / f"t{i}.jpg").write_bytes(jpeg(1000 + i, 16))
    good = (root / "cat/cat0.jpg").read_bytes()
    (root / "cat/truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "dog/empty.jpg").write_bytes(b"")
    (root / "dog/notes.jpg").write_text("not a picture")
    return root


@pytest.mark.pipeline
def test_imagefolder_corrupt_images_are_listed_and_never_trained_on(tmp_path):
    src = imagefolder_tree(tmp_path / "src")
    repo = make_repo(tmp_path / "repo", {"data": {"name": "imagefolder", "source": str(src)}})
    sh(repo, "dvc", "repro", "train", "stats")  # stats is beside train now (after split), not before it
    bad = pd.read_csv(repo / "data/stats/unreadable.csv")
    assert sorted(Path(p).name for p in bad["path"]) == ["empty.jpg", "notes.jpg", "truncated.jpg"]
    assert set(bad["reason"]) == {"empty file", "not an image"} | {r for r in bad["reason"] if r.startswith("cannot decode")}
    assert json.loads((repo / "metrics/stats.json").read_text())["unreadable_images"] == 3
    used = pd.concat([pd.read_csv(repo / f"data/split/{s}.csv") for s in ("train", "val")])
    assert len(used) == 20 and not set(used["path"]) & set(bad["path"])
    assert (repo / "models/model.pt").exists()
    raw = repo / "data/raw/imagefolder/train/cat/cat1.jpg"
    assert raw.read_bytes() == (src / "cat/cat1.jpg").read_bytes()


@pytest.mark.pipeline
def test_a_class_left_without_training_images_stops_the_split(tmp_path):
    src = imagefolder_tree(tmp_path / "src")
    for f in (src / "dog").glob("*.jpg"):
        f.write_bytes(b"")  # every dog training image unreadable
    repo = make_repo(tmp_path / "repo", {"data": {"name": "imagefolder", "source": str(src)}})
    sh(repo, "dvc", "repro", "check")
    proc = stage(repo, "split")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: split: category 1 has no training image after the split (check the data, or lower split.val_fraction)"]
    assert not (repo / "data/split").exists()


def test_imagefolder_without_test_folder_holds_out_a_test_set(tmp_path):
    src = imagefolder_tree(tmp_path / "src")
    (src / "test/cat/t0.jpg").unlink()
    for f in (src / "test").rglob("*.jpg"):
        f.unlink()
    for d in sorted((src / "test").rglob("*"), reverse=True):
        d.rmdir()
    (src / "test").rmdir()
    fetch_dataset(dataspec(name="imagefolder", source=str(src), test_per_class=2, longtail_subsample=True,
                       imbalance_ratio=2), tmp_path / "raw", tmp_path / "dl")
    train = json.loads((tmp_path / "raw/train.json").read_text())
    test = json.loads((tmp_path / "raw/test.json").read_text())
    assert len(test["images"]) == 4  # 2 per class
    counts = pd.Series([a["category_id"] for a in train["annotations"]]).value_counts().sort_index().tolist()
    assert counts == longtail_counts(15 - 2, 2, 2)  # cat: 15 files minus 2 held out = head class
    assert not {im["file_name"] for im in train["images"]} & {im["file_name"] for im in test["images"]}


def test_imagefolder_needs_a_source(tmp_path):
    with pytest.raises(BBNError, match="^source: required"):
        fetch_dataset(dataspec(name="imagefolder"), tmp_path / "raw", tmp_path / "dl")
    with pytest.raises(BBNError, match="^source: .*nowhere not found"):
        fetch_dataset(dataspec(name="imagefolder", source=str(tmp_path / "nowhere")), tmp_path / "raw", tmp_path / "dl")
