"""Stage stats: class counts, imbalance ratio, shot groups, long-tail plot (params: stats)."""

from bbn import plots
from bbn.cli import run
from bbn.config import load_params
from bbn.inat import find_json, load_categories, load_images
from bbn.io import atomic_path, write_json
from bbn.stats import class_counts, summary
from stages.paths import METRICS, PLOTS, RAW, STATS


def main() -> None:
    p = load_params().stats
    train_json = find_json(RAW, "train")
    table = class_counts(load_images(train_json), load_categories(train_json), p.many_above, p.few_below)
    numbers = summary(table)
    numbers["num_val_images"] = len(load_images(find_json(RAW, "val"), check_files=False))
    numbers["num_test_images"] = len(load_images(find_json(RAW, "test"), labelled=False, check_files=False))
    with atomic_path(STATS / "class_counts.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(PLOTS / "class_distribution.csv") as tmp:
        table[["rank", "count"]].to_csv(tmp, index=False)
    plots.longtail(table, PLOTS / "class_distribution.png")
    write_json(METRICS / "stats.json", numbers)
    print(f"stats: {numbers['num_classes']} classes, {numbers['num_train_images']} images, "
          f"imbalance ratio {numbers['imbalance_ratio']:.1f}")


if __name__ == "__main__":
    run(main)
