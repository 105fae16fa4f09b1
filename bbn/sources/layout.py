"""Writing any dataset in the iNaturalist 2019 layout that the later stages read.

``<root>/train.json``, ``val.json``, ``test.json`` (COCO-like: images, annotations, categories;
a test set without labels has no annotations) and the image files they name, relative to ``<root>``.
Image files that already exist on disk are hard-linked, never copied (a symbolic link where a
hard link is impossible, e.g. across file systems); decoded arrays (CIFAR's pickles) are written as
lossless PNG.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bbn.files import named


@dataclass(frozen=True)
class Record:
    """One image: where it goes (``file_name``), its label (-1: none) and where it comes from."""

    file_name: str
    category_id: int
    src: Path | None = None
    pixels: np.ndarray | None = None  # H x W x 3 uint8, written as PNG


def link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to the file ``src`` names; a symbolic ``src`` is followed first (``os.link``
    would link the symbolic link itself, which a relative target leaves dangling in ``dst``)."""
    real = Path(src).resolve()
    try:
        os.link(real, dst)
    except OSError:  # another file system, or links not allowed: point at it instead
        os.symlink(real, dst)


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _materialise(root: Path, records: list[Record], desc: str) -> None:
    for r in tqdm(records, desc=desc, unit="img", disable=None, leave=False):
        dst = root / r.file_name
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if r.pixels is not None:
                dst.write_bytes(png_bytes(r.pixels))
            else:
                link(r.src, dst)
        except OSError as exc:  # a full disk's write error names no file
            raise named(exc, dst) from exc


def write_dataset(root: str | Path, categories: list[dict], splits: dict[str, list[Record]],
                  description: str) -> None:
    """Write every split's images and JSON under ``root``; image ids run 0.. across the splits."""
    root = Path(root)
    next_id = 0
    for split, records in splits.items():
        _materialise(root, records, f"write {split}")
        images, annotations = [], []
        for r in records:
            images.append({"id": next_id, "file_name": r.file_name})
            if r.category_id >= 0:
                annotations.append({"id": next_id, "image_id": next_id, "category_id": int(r.category_id)})
            next_id += 1
        doc = {"info": {"description": f"{description}, {split}"}, "images": images, "categories": categories}
        if annotations or not records:  # an unlabelled test set has none; an empty split is labelled
            doc["annotations"] = annotations
        (root / f"{split}.json").write_text(json.dumps(doc))
