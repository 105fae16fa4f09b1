"""Stage check: every image of every split decoded and hashed once; the unreadable ones and the
byte-identical copies listed (no params).

Its lists keep unreadable images out of the split, training and evaluation
(``data/stats/unreadable.csv``, with the reason: also "unsupported format (.heic)") and copies on one
side of every split (``data/stats/duplicates.csv``: sha256, split, image_id, path of every image whose
bytes another image shares). It is a stage of its own so that the slow full decode runs once per
dataset, not again when a statistics param changes.
"""

import pandas as pd

from bbn.data.duplicates import conflicting_labels, copies_of_test_images, duplicate_rows
from bbn.data.imagecheck import UNSUPPORTED, inspect_images, unreadable_rows
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
    images = inspect_images(pd.concat([f.assign(split=s) for s, f in sets.items()], ignore_index=True))
    unreadable, duplicates = unreadable_rows(images), duplicate_rows(images)
    write_csv(STATS / "unreadable.csv", unreadable)
    write_csv(STATS / "duplicates.csv", duplicates)
    for row in unreadable.itertuples():
        print(f"check: unreadable {row.split} image {row.image_id}: {row.path}: {row.reason} (excluded)")
    unsupported = int(unreadable["reason"].str.startswith(UNSUPPORTED).sum())
    leaked, mixed = copies_of_test_images(duplicates), conflicting_labels(duplicates)
    for row in mixed.drop_duplicates("sha256").itertuples():
        labels = sorted(set(mixed.loc[mixed["sha256"] == row.sha256, "category_id"]))
        print(f"check: warning: byte-identical copies of {row.path} are labelled with categories {labels}")
    print(f"check: {len(images)} images, {len(unreadable)} unreadable ({unsupported} of an unsupported format), "
          f"{len(duplicates)} in {duplicates['sha256'].nunique()} sets of byte-identical copies "
          f"({mixed['sha256'].nunique()} labelled with different categories), "
          f"{len(leaked)} test image(s) with a copy among the training images")


if __name__ == "__main__":
    run(main)
