"""Stage stats: the training set's class counts, imbalance ratio and shot groups, super-categories,
the long-tail plot (params: stats).

It runs after the split, so every number is about the images the model trains on (the training
pool minus the validation hold-out, ``data/split/classes.csv`` ``train_count``), and the shot
groups it writes to ``data/stats/class_counts.csv`` are the ones evaluation reports.
"""

from bbn.data.duplicates import copies_of_test_images
from bbn.data.imagecheck import drop_unreadable
from bbn.data.inat import find_json, load_categories, load_images
from bbn.data.stats import class_table, shot_thresholds, summary, super_counts
from bbn.evaluate import plots
from bbn.files import read_csv, write_csv, write_json
from stages.params import load_params
from stages.paths import METRICS, PLOTS, RAW, SPLIT, STATS
from stages.runner import run


def _test_copies() -> int:
    """Test images with a byte-identical copy among the images trained or validated on."""
    used = [*read_csv(SPLIT / "train.csv")["path"], *read_csv(SPLIT / "val.csv")["path"]]
    return len(copies_of_test_images(read_csv(STATS / "duplicates.csv"), used))


def main() -> None:
    p = load_params().stats
    train_json = find_json(RAW, "train")
    classes = read_csv(SPLIT / "classes.csv")
    unreadable = read_csv(STATS / "unreadable.csv")
    many_above, few_below = shot_thresholds(classes["train_count"], p.groups, p.many_above, p.few_below)
    table = class_table(classes, many_above, few_below)
    numbers = summary(table) | {
        "num_val_images": len(read_csv(SPLIT / "val.csv")),  # the hold-out, or the official val set
        "num_test_images": len(drop_unreadable(load_images(find_json(RAW, "test"), labelled=False), unreadable)),
        "unreadable_images": len(unreadable), "test_images_in_train": _test_copies(),
        "many_above": many_above, "few_below": few_below}
    write_csv(STATS / "class_counts.csv", table)
    write_csv(STATS / "super_counts.csv", super_counts(table, load_categories(train_json)))
    write_csv(PLOTS / "class_distribution.csv", table[["rank", "train_count", "group"]])
    plots.longtail(table, PLOTS / "class_distribution.png")
    write_json(METRICS / "stats.json", numbers)
    print(f"stats: {numbers['num_classes']} classes, {numbers['num_train_images']} training images "
          f"(after the val hold-out), {numbers['num_val_images']} val, imbalance ratio "
          f"{numbers['imbalance_ratio']:.1f}, shot groups ({p.groups}: many > {many_above}, few < {few_below}) "
          f"{numbers['many_classes']}/{numbers['medium_classes']}/{numbers['few_classes']}, "
          f"{numbers['test_images_in_train']} test image(s) with a copy among the training images")


if __name__ == "__main__":
    run(main)
