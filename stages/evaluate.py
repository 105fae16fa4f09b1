"""Stage evaluate: metrics on the val split and the test set, predictions and plots (params: eval)."""

import pandas as pd

from bbn.data.imagecheck import drop_unreadable
from bbn.data.inat import find_json, load_images
from bbn.data.prepare import prepared_path
from bbn.evaluate import plots
from bbn.evaluate.predictions import (
    labelled,
    metrics_for,
    posthoc_metrics,
    predict_frame,
    save_predictions,
    write_report,
)
from bbn.files import write_json
from bbn.model.checkpoint import load_checkpoint
from bbn.model.inference import resolve_device, test_alpha
from stages.params import load_params
from stages.paths import METRICS, MODEL, PLOTS, PREDICTIONS, RAW, SPLIT, STATS
from stages.runner import run
from stages.runs import log_splits, result_run, training_run_id

REPORT_PLOTS = ("per_class_accuracy.png", "reliability.png", "confusion.png")


def main() -> None:
    params = load_params()
    e, s = params.eval, params.stats
    device = resolve_device(params.train.device)
    model, ckpt = load_checkpoint(MODEL, device)
    classes = pd.read_csv(SPLIT / "classes.csv")
    test_json = find_json(RAW, "test")
    sets = {"val": (pd.read_csv(SPLIT / "val.csv"), f"{SPLIT}/val.csv"),
            "test": (drop_unreadable(load_images(test_json, labelled=False), pd.read_csv(STATS / "unreadable.csv")),
                     str(test_json))}
    alpha = test_alpha(ckpt, e.alpha)
    numbers, outputs, reported = {"tta_flip": int(e.tta_flip), "eval_alpha": alpha}, {}, None
    for name, (frame, source) in sets.items():
        prepared = frame.assign(path=frame["path"].map(prepared_path))  # the prepare stage's copies
        logits, y = predict_frame(model, ckpt, prepared, source, e.batch_size, params.train.num_workers,
                                  alpha, e.tta_flip, device)
        save_predictions(PREDICTIONS / f"{name}.npz", frame["image_id"], logits, y, ckpt["category_ids"])
        outputs[name] = (logits, y)
        if labelled(y):  # the iNat test set has no public labels: then val is what we can report
            numbers |= metrics_for(logits, y, classes["train_count"], s.many_above, s.few_below, name)
            reported = (logits, y)
    numbers |= posthoc_metrics(outputs["val"], outputs["test"], classes["train_count"], s.many_above, s.few_below)
    write_json(METRICS / "eval.json", numbers)
    if reported is not None:
        write_report(*reported, classes, PLOTS)
    plots.learning_curves(pd.read_csv(PLOTS / "learning_curve.csv"), PLOTS / "learning_curve.png")

    track(params, numbers, sets)
    shown = {k: v for k, v in numbers.items() if "top1_error" in k}
    print(f"evaluate: {shown}")


def track(params, numbers: dict, sets: dict) -> None:
    """The numbers and plots into the MLflow run whose params are these (stages.runs.result_run),
    with the evaluated splits as its dataset inputs."""
    mlrun, started = result_run(params, training_run_id(), "evaluate")
    own = {"train": (pd.read_csv(SPLIT / "train.csv"), SPLIT / "train.csv"), "val": sets["val"]} if started else {}
    log_splits(mlrun, params, own | {"test": sets["test"]})  # the training run has train and val already
    mlrun.log_metrics({k: v for k, v in numbers.items() if v is not None})
    for png in ("learning_curve.png", "class_distribution.png") + REPORT_PLOTS:
        mlrun.log_artifact(PLOTS / png, "plots")
    mlrun.log_artifact(PLOTS / "per_class.csv")
    if started:
        mlrun.finish()
    else:
        mlrun.close()


if __name__ == "__main__":
    run(main, {"device": "train.device"})
