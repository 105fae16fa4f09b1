"""Stage check: every image of every split decoded once; the unreadable ones listed (no params).

Its list, ``data/stats/unreadable.csv``, keeps those images out of the split, training and
evaluation. It is a stage of its own so that the slow full decode runs once per dataset, not again
when a statistics param changes.
"""

import pandas as pd

from bbn.data.imagecheck import find_unreadable
from bbn.data.inat import find_json, load_images
from bbn.files import atomic_path
from stages.paths import RAW, STATS
from stages.runner import run


def main() -> None:
    sets = {"train": load_images(find_json(RAW, "train")), "val": load_images(find_json(RAW, "val")),
            "test": load_images(find_json(RAW, "test"), labelled=False)}
    images = pd.concat([f.assign(split=s) for s, f in sets.items()], ignore_index=True)
    unreadable = find_unreadable(images)
    with atomic_path(STATS / "unreadable.csv", suffix=".csv") as tmp:
        unreadable.to_csv(tmp, index=False)
    for row in unreadable.itertuples():
        print(f"check: unreadable {row.split} image {row.image_id}: {row.path}: {row.reason} (excluded)")
    print(f"check: {len(images)} images, {len(unreadable)} unreadable")


if __name__ == "__main__":
    run(main)
