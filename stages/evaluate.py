"""Stage evaluate: metrics on the val split and the test set, predictions and plots (params: eval)."""

import json

import pandas as pd

from bbn.data.duplicates import copies_of_test_images
from bbn.data.imagecheck import drop_unreadable
from bbn.data.inat import find_json, load_images
from bbn.data.prepare import prepared_path
from bbn.data.stats import group_sizes
from bbn.errors import BBNError
from bbn.evaluate import plots
from bbn.evaluate.predictions import (
    headline,
    labelled,
    metrics_for,
    posthoc_metrics,
    predict_frame,
    save_predictions,
    write_report,
)
from bbn.files import read_csv, write_json
from bbn.model.checkpoint import load_checkpoint
from bbn.model.inference import resolve_device, test_alpha
from stages.params import load_params
from stages.paths import FINAL_MODEL, METRICS, PLOTS, PREDICTIONS, RAW, SPLIT, STATS
from stages.runner import run
from stages.runs import evaluated_dataset, log_splits, result_run, training_run_id

REPORT_PLOTS = ("per_class_accuracy.png", "reliability.png", "confusion.png")


def shot_groups(classes: pd.DataFrame) -> pd.Series:
    """Each class's shot group as the stats stage computed it (data/stats/class_counts.csv), in model order."""
    table = read_csv(STATS / "class_counts.csv")
    groups = classes["category_id"].map(dict(zip(table["category_id"], table["group"])))
    if groups.isna().any():
        raise BBNError(f"{STATS / 'class_counts.csv'}: no shot group for category "
                       f"{classes['category_id'][groups.isna()].iloc[0]} (rerun the stats stage)")
    return groups


def main() -> None:
    params = load_params()
    e = params.eval
    device = resolve_device(params.train.device)
    model, ckpt = load_checkpoint(FINAL_MODEL, device)  # the classifier stage's
    classes = read_csv(SPLIT / "classes.csv")
    classes["group"] = shot_groups(classes)
    test_json = find_json(RAW, "test")
    sets = {"val": (read_csv(SPLIT / "val.csv"), f"{SPLIT}/val.csv"),
            "test": (drop_unreadable(load_images(test_json, labelled=False), read_csv(STATS / "unreadable.csv")),
                     str(test_json))}
    alpha = test_alpha(ckpt, e.alpha)
    numbers, outputs, reported = {"tta_flip": int(e.tta_flip), "eval_alpha": alpha}, {}, None
    # official | holdout-longtailed | holdout-balanced: what the val_ numbers are worth (stages/split.py)
    val_split = json.loads((SPLIT / "split.json").read_text())["val_split"]
    numbers |= group_sizes(classes["group"])
    for name, (frame, source) in sets.items():
        prepared = frame.assign(path=frame["path"].map(prepared_path))  # the prepare stage's copies
        logits, y = predict_frame(model, ckpt, prepared, source, e.batch_size, params.train.num_workers,
                                  alpha, e.tta_flip, device)
        save_predictions(PREDICTIONS / f"{name}.npz", frame["image_id"], logits, y, ckpt.category_ids)
        outputs[name] = (logits, y)
        if labelled(y):  # the iNat test set has no public labels: then val is what we can report
            numbers |= metrics_for(logits, y, classes["group"], name)
            reported = name
    numbers |= posthoc_metrics(outputs["val"], outputs["test"], classes["train_count"], classes["group"])
    used = [*read_csv(SPLIT / "train.csv")["path"], *read_csv(SPLIT / "val.csv")["path"]]
    numbers["test_images_in_train"] = len(copies_of_test_images(read_csv(STATS / "duplicates.csv"), used))
    head, details = headline(numbers, reported or "test")
    write_json(METRICS / "eval.json", head | {"val_split": val_split})
    write_json(METRICS / "eval_details.json", details)
    if reported is not None:
        write_report(*outputs[reported], classes, PLOTS)
    plots.learning_curves(read_csv(PLOTS / "learning_curve.csv"), PLOTS / "learning_curve.png")

    track(params, numbers, head, sets, {"val_split": val_split})
    split = reported or "test"
    print(f"evaluate: {in_words(head, split, len(sets[split][0]))} (val split: {val_split})")


def in_words(head: dict, split: str, images: int) -> str:
    """The headline as one line: ``test top-1 error 3.3 % (top-5 0.0 %) on 300 images; macro accuracy
    96.7 %; many / medium / few-shot 100.0 / 99.3 / 92.5 % over 1 / 5 / 4 classes; ECE 0.029``."""
    pct = lambda k: "n/a" if head.get(f"{split}_{k}") is None else f"{100 * head[f'{split}_{k}']:.1f}"
    groups = ("many", "medium", "few")
    return (f"{split} top-1 error {pct('top1_error')} % (top-5 {pct('top5_error')} %) on {images} images; "
            f"macro accuracy {pct('macro_acc')} %; many / medium / few-shot "
            f"{' / '.join(pct(f'{g}_acc') for g in groups)} % over "
            f"{' / '.join(str(head.get(f'{g}_classes', 0)) for g in groups)} classes; "
            f"ECE {'n/a' if head.get(f'{split}_ece') is None else format(head[f'{split}_ece'], '.3f')}")


def track(params, numbers: dict, head: dict, sets: dict, tags: dict) -> None:
    """The numbers, ``tags`` and plots into the MLflow run whose params are these
    (stages.runs.result_run), with the evaluated splits as its dataset inputs; the headline
    numbers (``head``) also onto the training run's logged model, tied to the test dataset."""
    from bbn.tracking.model import log_model_metrics  # imports mlflow.pyfunc: only here

    base = training_run_id()
    mlrun, started = result_run(params, base, "evaluate")
    own = {"train": (read_csv(SPLIT / "train.csv"), SPLIT / "train.csv"), "val": sets["val"]} if started else {}
    log_splits(mlrun, params, own | {"test": sets["test"]})  # the training run has train and val already
    mlrun.log_metrics({k: v for k, v in numbers.items() if v is not None})
    log_model_metrics(mlrun, base, {k: v for k, v in head.items() if isinstance(v, (int, float)) and v is not None},
                      evaluated_dataset(params, sets["test"][1]))
    mlrun.set_tags(tags)
    for png in ("learning_curve.png", "class_distribution.png") + REPORT_PLOTS:
        mlrun.log_artifact(PLOTS / png, "plots")
    mlrun.log_artifact(PLOTS / "per_class.csv")
    if started:
        mlrun.finish()
    else:
        mlrun.close()


if __name__ == "__main__":
    run(main, {"device": "train.device"})
