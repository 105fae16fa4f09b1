"""The embedded default dataset: scikit-learn's real handwritten digits, long-tailed, iNat layout.

It is packed as a ``.tar.gz`` with an md5 sidecar, exactly like a dataset mirror, so the download
stage runs the same code (fetch -> verify checksum -> safe extract) offline as for iNaturalist.

Layout inside the archive (the iNaturalist 2019 one, COCO-like JSON):
    digits/train_val/<category>/<image id>.jpg   training pool and "official" val images
    digits/test/<image id>.jpg                   balanced held-out test images (no label in path)
    digits/train.json, digits/val.json, digits/test.json
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from bbn.errors import ArgError
from bbn.sources.longtail import longtail_counts
from bbn.sources.spec import DataSpec

ROOT = "digits"


def _render(pixels: np.ndarray, size: int) -> bytes:
    """An 8x8 digit (0..16 ink) as a size x size RGB JPEG, dark ink on white paper."""
    grey = (255 - pixels.reshape(8, 8) * (255 / 16)).round().astype(np.uint8)
    img = Image.fromarray(grey, mode="L").resize((size, size), Image.BICUBIC).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _assign(labels: np.ndarray, p: DataSpec) -> dict[str, list[int]]:
    """Pick, per class, the test, val and long-tailed training indices (seeded)."""
    rng = np.random.default_rng(p.seed)
    classes = np.unique(labels)
    held_out = p.test_per_class + p.val_per_class
    n_max = p.n_max or int((labels == classes[0]).sum()) - held_out  # 0: all that class 0 has left
    wanted = longtail_counts(n_max, p.imbalance_ratio, len(classes))
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c, n_train in zip(classes, wanted):
        idx = rng.permutation(np.flatnonzero(labels == c))
        spare = len(idx) - held_out
        if n_train > spare or n_train < 1:
            raise ArgError("n_max", f"class {c} has {spare} images left after test/val, "
                           f"the profile asks for {n_train}")
        out["test"] += idx[: p.test_per_class].tolist()
        out["val"] += idx[p.test_per_class : p.test_per_class + p.val_per_class].tolist()
        out["train"] += idx[p.test_per_class + p.val_per_class :][:n_train].tolist()
    return out


def _coco(split: str, ids: list[int], labels: np.ndarray, categories: list[dict], px: int) -> tuple[dict, dict]:
    """The split's JSON document and its {file_name: image index} map."""
    folder = "test" if split == "test" else "train_val"
    images, annotations, files = [], [], {}
    for i in sorted(ids):
        name = f"{ROOT}/{folder}/{i:05d}.jpg" if split == "test" else f"{ROOT}/{folder}/{labels[i]}/{i:05d}.jpg"
        images.append({"id": int(i), "file_name": name.removeprefix(f"{ROOT}/"), "width": px, "height": px})
        annotations.append({"id": int(i), "image_id": int(i), "category_id": int(labels[i])})
        files[name] = i
    doc = {"info": {"description": f"embedded long-tailed digits, {split}"}, "images": images,
           "annotations": annotations, "categories": categories}
    return doc, files


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def build_archive(p: DataSpec, out_dir: str | Path) -> tuple[Path, str]:
    """Write ``digits.tar.gz`` (byte-reproducible for the same params) and its md5 sidecar."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target
    categories = [{"id": int(c), "name": f"digit {c}", "kingdom": "Digits",
                   "supercategory": "even" if c % 2 == 0 else "odd"} for c in np.unique(labels)]
    out = Path(out_dir) / "digits.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for split, ids in _assign(labels, p).items():
            doc, files = _coco(split, ids, labels, categories, p.image_px)
            for name, i in files.items():
                _add(tar, name, _render(digits.data[i], p.image_px))
            _add(tar, f"{ROOT}/{split}.json", json.dumps(doc).encode())
    md5 = hashlib.md5(out.read_bytes()).hexdigest()
    Path(str(out) + ".md5").write_text(f"{md5}  {out.name}\n")
    return out, md5
