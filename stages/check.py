"""Stage check: every image of every split decoded once; the unreadable ones listed (no params).

Its list, ``data/stats/unreadable.csv``, keeps those images out of the split, training and
evaluation. It is a stage of its own so that the slow full decode runs once per dataset, not again
when a statistics param changes.
"""

import pandas as pd

from bbn.data.imagecheck import find_unreadable
from bbn.data.inat import find_json, load_categories, load_images, require_two_classes
from bbn.files import write_csv
from stages.paths import RAW, STATS
from stages.runner import run


def main() -> None:
    train_json = find_json(RAW, "train")
    sets = {"train": load_images(train_json), "val": load_images(find_json(RAW, "val")),
            "test": load_images(find_json(RAW, "test"), labelled=False)}
    categories = load_categories(train_json)
    listed = categories.loc[categories["id"].isin(sets["train"]["category_id"]), "name"]
    require_two_classes(train_json, listed.tolist())  # as the ImageFolder source checks its folders
    images = pd.concat([f.assign(split=s) for s, f in sets.items()], ignore_index=True)
    unreadable = find_unreadable(images)
    write_csv(STATS / "unreadable.csv", unreadable)
    for row in unreadable.itertuples():
        print(f"check: unreadable {row.split} image {row.image_id}: {row.path}: {row.reason} (excluded)")
    print(f"check: {len(images)} images, {len(unreadable)} unreadable")


if __name__ == "__main__":
    run(main)
