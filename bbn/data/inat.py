"""The iNaturalist annotation schema (COCO-like JSON), read and checked.

A file holds ``images`` ({id, file_name, ...}), ``annotations`` ({image_id, category_id}) and
``categories`` ({id, name, kingdom, ..., genus}). ``file_name`` is relative to the JSON's folder.
The test file has images and categories but no annotations (labels are private for the challenge);
where a test file does carry annotations (the embedded digits) evaluation uses them.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from bbn.data.decode import is_os_metadata
from bbn.errors import BBNError


def find_json(root: str | Path, prefix: str) -> Path:
    """The one ``<prefix>*.json`` in ``root`` or one folder below (``train2019.json``, ``digits/train.json``)."""
    root = Path(root)
    found = sorted(p for p in [*root.glob(f"{prefix}*.json"), *root.glob(f"*/{prefix}*.json")]
                   if not p.name.startswith(".") and not is_os_metadata(p.relative_to(root)))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise BBNError(f"{root}: expected one {prefix}*.json, found {what}: {[str(p) for p in found]}")
    return found[0]


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise BBNError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise BBNError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BBNError(f"{path}: expected a JSON object with images, annotations, categories")
    return doc


def _frame(path: Path, doc: dict, key: str, columns: list[str]) -> pd.DataFrame:
    rows = doc.get(key)
    if not isinstance(rows, list):
        raise BBNError(f"{path}: missing '{key}' list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(c not in row for c in columns):
            raise BBNError(f"{path}: {key}[{i}] lacks one of {columns}: {str(row)[:120]}")
    return pd.DataFrame(rows, columns=list(dict.fromkeys(columns + sorted({k for r in rows for k in r}))))


def load_categories(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    cats = _frame(path, _read(path), "categories", ["id", "name"])
    dup = cats["id"][cats["id"].duplicated()]
    if len(dup):
        raise BBNError(f"{path}: categories: duplicate id {dup.iloc[0]}")
    return cats.sort_values("id").reset_index(drop=True)


def load_images(path: str | Path, labelled: bool = True, check_files: bool = True) -> pd.DataFrame:
    """Images of one annotation file: columns image_id, path (from the repo root), category_id.

    ``labelled`` False accepts a file without annotations (category_id is then -1).
    """
    path = Path(path)
    doc = _read(path)
    images = _frame(path, doc, "images", ["id", "file_name"])
    cats = _frame(path, doc, "categories", ["id"])
    _check_unique_ids(path, images)
    _check_confined(path, images)
    out = pd.DataFrame({"image_id": images["id"], "path": [str(path.parent / f) for f in images["file_name"]]})
    if labelled or doc.get("annotations"):
        ann = _frame(path, doc, "annotations", ["image_id", "category_id"])
        _check_annotations(path, ann, set(images["id"]), set(cats["id"]))
        _check_one_label(path, ann)
        labels = ann.drop_duplicates("image_id").set_index("image_id")["category_id"]
        missing = out.loc[~out["image_id"].isin(labels.index), "image_id"]
        if len(missing):
            raise BBNError(f"{path}: image id {missing.iloc[0]} has no annotation")
        out["category_id"] = out["image_id"].map(labels).astype(int)
    else:
        out["category_id"] = -1
    if check_files:
        for i, p in enumerate(out["path"]):
            if not Path(p).is_file():
                raise BBNError(f"{path}: images[{i}] (id {out['image_id'][i]}): file {p} is missing")
    return out


def _check_unique_ids(path: Path, images: pd.DataFrame) -> None:
    """One entry per image id: two images under one id would take each other's labels."""
    dup = images["id"].duplicated(keep=False)
    if dup.any():
        first = images.loc[dup, "id"].iloc[0]
        names = images.loc[images["id"] == first, "file_name"].tolist()
        raise BBNError(f"{path}: images: id {first} is given to {len(names)} images: {', '.join(map(str, names[:3]))}")


def _check_one_label(path: Path, ann: pd.DataFrame) -> None:
    """One category per image (identical repeated annotations are accepted): otherwise which one
    counts would be an accident of the file's order."""
    per_image = ann.groupby("image_id", sort=False)["category_id"].nunique()
    if (per_image > 1).any():
        image = per_image.index[(per_image > 1).to_numpy().argmax()]
        rows = ann.index[ann["image_id"] == image].tolist()
        values = ", ".join(f"{ann['category_id'][i]} (annotations[{i}])" for i in rows[:4])
        raise BBNError(f"{path}: image id {image} is annotated with different category ids: {values}")


def _check_confined(path: Path, images: pd.DataFrame) -> None:
    """Every ``file_name`` a relative path that stays inside the JSON's folder (no absolute path,
    no drive, no ``..``): a dataset file must not make the pipeline read elsewhere."""
    for i, name in enumerate(images["file_name"]):
        rel = PurePosixPath(str(name).replace("\\", "/"))
        if not isinstance(name, str) or not name or rel.is_absolute() or PureWindowsPath(name).drive or ".." in rel.parts:
            raise BBNError(f"{path}: images[{i}] (id {images['id'].iloc[i]}): file_name {name!r} must be a relative "
                           f"path inside {path.parent} (no absolute path, no '..')")


def require_two_classes(where: str | Path, names: list[str]) -> None:
    """A classifier needs at least two classes with training images; the same message for every
    dataset layout (``names``: the classes that have training images)."""
    if len(names) < 2:
        found = f"only {len(names)} class ({names[0]!r})" if names else "no class"
        raise BBNError(f"{where}: {found} with training images; at least two classes are needed")


def _check_annotations(path: Path, ann: pd.DataFrame, image_ids: set, category_ids: set) -> None:
    bad_cat = ~ann["category_id"].isin(category_ids)
    if bad_cat.any():
        i = int(bad_cat.to_numpy().argmax())
        raise BBNError(f"{path}: annotations[{i}]: unknown category_id {ann['category_id'].iloc[i]}")
    bad_img = ~ann["image_id"].isin(image_ids)
    if bad_img.any():
        i = int(bad_img.to_numpy().argmax())
        raise BBNError(f"{path}: annotations[{i}]: image_id {ann['image_id'].iloc[i]} (category_id "
                       f"{ann['category_id'].iloc[i]}) names no image of the file's images list")
