"""OS and tool metadata (`__MACOSX/`, AppleDouble `._*`, `.DS_Store`, `Thumbs.db`, ...) never becomes
data, at every dataset entry point: archives (zip, tar.gz), ImageFolder trees (also CIFAR's), iNat
trees, bbn-predict's folders. `tests/data/real-world/birds_macos.zip` is the reported instance: an
ImageFolder archive made on macOS (3 classes x 12 JPEGs plus a resource fork for each)."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from bbn.cli.predict import collect_images
from bbn.data.decode import is_os_metadata
from bbn.data.inat import find_json, load_images
from bbn.sources.datasets import fetch_dataset
from bbn.sources.extract import safe_extract
from tests.helpers import dataspec, jpeg

BIRDS = Path(__file__).parent / "data" / "real-world" / "birds_macos.zip"
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # a resource fork's header, not an image
DEBRIS = {".DS_Store": b"\x00\x00\x00\x01Bud1", "Thumbs.db": b"\xd0\xcf\x11\xe0", "desktop.ini": b"[.ShellClassInfo]",
          ".Spotlight-V100/Store-V2/x.jpg": APPLEDOUBLE, ".Trashes/501/old.jpg": APPLEDOUBLE,
          "__MACOSX/birds/cat/._0000.jpg": APPLEDOUBLE}


@pytest.mark.parametrize("path, meta", [
    ("__MACOSX/birds/a/._0.jpg", True), ("birds/a/._0.jpg", True), ("a/.DS_Store", True), ("Thumbs.db", True),
    ("x\\desktop.ini", True), (".Spotlight-V100/a.jpg", True), (".Trashes/1/a.jpg", True),
    ("birds/a/0.jpg", False), ("a/.hidden.jpg", False), ("NA/x_._y.jpg", False)])
def test_is_os_metadata(path, meta):
    assert is_os_metadata(path) is meta


def _birds_tree(root: Path) -> Path:
    """birds_macos.zip extracted as-is (resource forks and all), plus the debris other systems leave."""
    with zipfile.ZipFile(BIRDS) as z:
        z.extractall(root)
    for rel, data in DEBRIS.items():
        for base in (root, root / "birds", root / "birds" / "bird"):
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(data)
    (root / "birds" / "airplane" / "._0000.jpg").write_bytes(APPLEDOUBLE)  # AppleDouble beside the image
    return root


def _imagefolder(tmp_path: Path, source: Path, name: str = "imagefolder", **kw) -> dict:
    out = tmp_path / "raw"
    p = dataspec(name=name, source=str(source), test_per_class=2, **kw)
    fetch_dataset(p, out, tmp_path / "downloads")
    return {s: json.loads((out / f"{s}.json").read_text()) for s in ("train", "val", "test")}


def _check_birds(docs: dict) -> None:
    assert [c["name"] for c in docs["train"]["categories"]] == ["airplane", "bird", "cat"]
    names = [im["file_name"] for d in docs.values() for im in d["images"]]
    assert len(names) == 36 and not any(is_os_metadata(n) for n in names)


def test_macos_zip_gives_three_classes_and_36_images(tmp_path):
    _check_birds(_imagefolder(tmp_path, BIRDS))


def test_folder_with_debris_of_every_system(tmp_path):
    _check_birds(_imagefolder(tmp_path, _birds_tree(tmp_path / "src")))


def test_tar_archive_with_debris(tmp_path):
    tree = _birds_tree(tmp_path / "src")
    archive = tmp_path / "birds.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for f in sorted(tree.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(tree)))
    _check_birds(_imagefolder(tmp_path, archive))


def test_safe_extract_skips_metadata_but_still_checks_it(tmp_path):
    out = tmp_path / "x"
    safe_extract(BIRDS, out)
    assert sorted(p.name for p in out.iterdir()) == ["birds"]
    assert len(list(out.rglob("*.jpg"))) == 36
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("__MACOSX/../../escape.jpg", b"x")
    with pytest.raises(Exception, match="unsafe member"):
        safe_extract(evil, tmp_path / "y")


def test_cifar_imagefolder_path_ignores_metadata(tmp_path):
    src = tmp_path / "cifar10"
    for split, n in (("train", (6, 4, 3)), ("test", (2, 2, 2))):
        for c, k in zip(("airplane", "bird", "cat"), n):
            (src / split / c).mkdir(parents=True)
            for i in range(k):
                (src / split / c / f"{i}.jpg").write_bytes(jpeg(i))
                (src / split / c / f"._{i}.jpg").write_bytes(APPLEDOUBLE)
    (src / "train" / ".DS_Store").write_bytes(DEBRIS[".DS_Store"])
    shutil.copytree(src / "train" / "cat", src / "__MACOSX" / "train" / "cat")
    docs = _imagefolder(tmp_path, src, name="cifar10_lt", n_max=6, imbalance_ratio=2.0)
    assert [c["name"] for c in docs["train"]["categories"]] == ["airplane", "bird", "cat"]
    assert len(docs["train"]["images"]) == 6 + 4 + 3 and len(docs["test"]["images"]) == 6


def test_inat_tree_links_no_metadata(tmp_path):
    src = tmp_path / "inat"
    (src / "train_val2019" / "0").mkdir(parents=True)
    (src / "test2019").mkdir()
    cats = [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]
    images = [{"id": i, "file_name": f"train_val2019/0/{i}.jpg"} for i in range(2)]
    for im in images:
        (src / im["file_name"]).write_bytes(jpeg(im["id"]))
    (src / "test2019" / "t.jpg").write_bytes(jpeg(9))
    ann = [{"id": i, "image_id": i, "category_id": i} for i in range(2)]
    for split in ("train", "val"):
        (src / f"{split}2019.json").write_text(json.dumps({"images": images, "annotations": ann, "categories": cats}))
    (src / "test2019.json").write_text(json.dumps({"images": [{"id": 5, "file_name": "test2019/t.jpg"}],
                                                   "categories": cats}))
    for rel in ("._train2019.json", "__MACOSX/train2019.json", "train_val2019/0/._0.jpg", "Thumbs.db",
                "train_val2019/.DS_Store"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(APPLEDOUBLE)
    out = tmp_path / "raw"
    fetch_dataset(dataspec(name="inat2019", source=str(src)), out, tmp_path / "downloads")
    linked = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert not any(is_os_metadata(p) for p in linked) and "train_val2019/0/0.jpg" in linked
    assert len(load_images(find_json(out, "train"))) == 2


def test_predict_folders_skip_metadata(tmp_path):
    tree = _birds_tree(tmp_path / "src")
    found = collect_images([str(tree)])
    assert len(found) == 36 and not any(is_os_metadata(Path(p).relative_to(tree)) for p in found)


def test_zip_listing_of_the_instance():
    """The instance really carries the resource forks (so the tests above test something)."""
    with zipfile.ZipFile(BIRDS) as z:
        names = z.namelist()
    assert sum(n.startswith("__MACOSX/") for n in names) == 36 and len(names) == 72
