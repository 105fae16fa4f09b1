"""Stage split: seeded stratified train/val split of the training pool (params: split, data.name).

``split.use_official_val: auto`` (the default) validates on the dataset's own val set for the
iNaturalist datasets (balanced, what papers and Kaggle report) and on a hold-out of the training pool
otherwise. ``data/split/split.json`` records which (``val_split``), for evaluate and the reports.
"""


from bbn.data.imagecheck import drop_unreadable
from bbn.data.inat import find_json, load_categories, load_images
from bbn.data.split import check_every_class_trains, stratified_split, val_split_kind
from bbn.files import atomic_path, read_csv, write_json
from stages.params import load_params
from stages.paths import RAW, SPLIT, STATS
from stages.runner import run


def official_val(use_official_val, dataset: str) -> bool:
    """``auto``: true for inat* (their val set is the one results are compared on)."""
    return dataset.startswith("inat") if use_official_val == "auto" else bool(use_official_val)


def main() -> None:
    params = load_params()
    p, official = params.split, official_val(params.split.use_official_val, params.data.name)
    train_json = find_json(RAW, "train")
    unreadable = read_csv(STATS / "unreadable.csv")  # listed by the stats stage, never trained on
    pool, categories = drop_unreadable(load_images(train_json), unreadable), load_categories(train_json)
    if official:
        train, val = pool, drop_unreadable(load_images(find_json(RAW, "val")), unreadable)
    else:
        train, val = stratified_split(pool, p.val_fraction, p.seed)
    check_every_class_trains(categories.rename(columns={"id": "category_id"}), train)
    classes = categories[["id", "name"]].rename(columns={"id": "category_id"})
    classes["train_count"] = classes["category_id"].map(train["category_id"].value_counts()).astype(int)
    for name, frame in [("train", train), ("val", val), ("classes", classes)]:
        with atomic_path(SPLIT / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=name == "classes", index_label="index")
    write_json(SPLIT / "split.json", {"val_split": val_split_kind(official, classes["train_count"])})
    print(f"split: {len(train)} train, {len(val)} val images, {len(classes)} classes "
          f"({len(unreadable)} unreadable images left out)")


if __name__ == "__main__":
    run(main)
