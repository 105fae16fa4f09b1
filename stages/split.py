"""Stage split: seeded stratified train/val split of the training pool (params: split, check, data.name).

``split.use_official_val: auto`` (the default) validates on the dataset's own val set where it has
one: iNaturalist's official val set (balanced, what papers and Kaggle report), and the user's own
``val/`` (``valid/``, ``validation/``) folder of an ImageFolder tree; otherwise on a hold-out of the
training pool. ``data/split/split.json`` records which (``val_split``), for evaluate and the reports.
Byte-identical copies (``data/stats/duplicates.csv``) stay on one side of the hold-out; a test image
with a copy among the training images stops the stage when ``check.allow_test_duplicates`` is false.
"""

import pandas as pd

from bbn.data.duplicates import copies_of_test_images
from bbn.data.imagecheck import drop_unreadable
from bbn.data.inat import find_json, load_categories, load_images
from bbn.data.split import check_every_class_trains, stratified_split, val_split_kind
from bbn.errors import BBNError
from bbn.files import atomic_path, read_csv, write_json
from stages.params import load_params
from stages.paths import RAW, SPLIT, STATS
from stages.runner import run


def official_val(use_official_val, dataset: str, has_val: bool = False) -> bool:
    """``auto``: true for inat* (their val set is the one results are compared on) and for a dataset
    whose own val set is not empty other than digits (an ImageFolder tree's ``val/`` folder)."""
    if use_official_val != "auto":
        return bool(use_official_val)
    return dataset.startswith("inat") or (has_val and dataset != "digits")


def _copies(frame: pd.DataFrame, duplicates: pd.DataFrame) -> pd.Series:
    """Per row of ``frame`` the sha256 of its bytes where it has a copy, else its own path."""
    digest = dict(zip(duplicates["path"], duplicates["sha256"]))
    return pd.Series([digest.get(p, p) for p in frame["path"]], index=frame.index)


def _check_test_copies(duplicates: pd.DataFrame, used: pd.DataFrame, allowed: bool) -> None:
    leaked = copies_of_test_images(duplicates, used["path"])
    if len(leaked) and not allowed:
        raise BBNError(f"split: {len(leaked)} test image(s) have a byte-identical copy among the training images, "
                       f"e.g. {leaked['path'].iloc[0]} (all listed in {STATS / 'duplicates.csv'}); remove the copies, "
                       "or set check.allow_test_duplicates: true to go on (they are counted in metrics/stats.json)")


def main() -> None:
    params = load_params()
    p = params.split
    train_json = find_json(RAW, "train")
    unreadable = read_csv(STATS / "unreadable.csv")  # listed by the check stage, never trained on
    duplicates = read_csv(STATS / "duplicates.csv")
    pool, categories = drop_unreadable(load_images(train_json), unreadable), load_categories(train_json)
    own_val = drop_unreadable(load_images(find_json(RAW, "val")), unreadable)
    official = official_val(p.use_official_val, params.data.name, len(own_val) > 0)
    if official:
        train, val = pool, own_val
    else:
        train, val = stratified_split(pool, p.val_fraction, p.seed, _copies(pool, duplicates))
        if len(own_val) and params.data.name != "digits":
            print(f"split: the dataset's own val set ({len(own_val)} images) is not used "
                  "(split.use_official_val: false); set it to auto or true to validate on it")
    _check_test_copies(duplicates, pd.concat([train, val]), params.check.allow_test_duplicates)
    check_every_class_trains(categories.rename(columns={"id": "category_id"}), train)
    classes = categories[["id", "name"]].rename(columns={"id": "category_id"})
    classes["train_count"] = classes["category_id"].map(train["category_id"].value_counts()).fillna(0).astype(int)
    for name, frame in [("train", train), ("val", val), ("classes", classes)]:
        with atomic_path(SPLIT / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=name == "classes", index_label="index")
    write_json(SPLIT / "split.json", {"val_split": val_split_kind(official, classes["train_count"])})
    source = "the dataset's own val set" if official else "held out"
    print(f"split: {len(train)} train, {len(val)} val images ({source}), {len(classes)} classes "
          f"({len(unreadable)} unreadable images left out)")


if __name__ == "__main__":
    run(main)
