"""Stage stats: class counts, imbalance ratio, shot groups, super-categories, unreadable images,
long-tail plot (params: stats)."""

import pandas as pd

from bbn.data.imagecheck import drop_unreadable, find_unreadable
from bbn.data.inat import find_json, load_categories, load_images, require_two_classes
from bbn.data.stats import class_counts, summary, super_counts
from bbn.evaluate import plots
from bbn.files import atomic_path, write_json
from stages.params import load_params
from stages.paths import METRICS, PLOTS, RAW, STATS
from stages.runner import run


def _csv(frame: pd.DataFrame, target) -> None:
    with atomic_path(target, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


def main() -> None:
    p = load_params().stats
    train_json = find_json(RAW, "train")
    sets = {"train": load_images(train_json), "val": load_images(find_json(RAW, "val")),
            "test": load_images(find_json(RAW, "test"), labelled=False)}
    categories = load_categories(train_json)
    listed = categories.loc[categories["id"].isin(sets["train"]["category_id"]), "name"]
    require_two_classes(train_json, listed.tolist())  # as the ImageFolder source checks its folders
    unreadable = find_unreadable(pd.concat([f.assign(split=s) for s, f in sets.items()], ignore_index=True))
    table = class_counts(drop_unreadable(sets["train"], unreadable), categories, p.many_above, p.few_below)
    numbers = summary(table)
    numbers["num_val_images"] = len(drop_unreadable(sets["val"], unreadable))
    numbers["num_test_images"] = len(drop_unreadable(sets["test"], unreadable))
    numbers["unreadable_images"] = len(unreadable)
    _csv(table, STATS / "class_counts.csv")
    _csv(super_counts(table, categories), STATS / "super_counts.csv")
    _csv(unreadable, STATS / "unreadable.csv")
    _csv(table[["rank", "count"]], PLOTS / "class_distribution.csv")
    plots.longtail(table, PLOTS / "class_distribution.png")
    write_json(METRICS / "stats.json", numbers)
    for row in unreadable.itertuples():
        print(f"stats: unreadable {row.split} image {row.image_id}: {row.path}: {row.reason} (excluded)")
    print(f"stats: {numbers['num_classes']} classes, {numbers['num_train_images']} images, "
          f"imbalance ratio {numbers['imbalance_ratio']:.1f}, {len(unreadable)} unreadable")


if __name__ == "__main__":
    run(main)
