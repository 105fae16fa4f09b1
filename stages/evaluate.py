"""Stage evaluate: metrics on the val split and the test set, predictions saved (params: eval)."""

import json

import numpy as np
import pandas as pd
import torch

from bbn import plots
from bbn.cli import run
from bbn.config import load_params
from bbn.data import ImageList, eval_loader, eval_transform
from bbn.errors import BBNError
from bbn.inat import find_json, load_images
from bbn.io import atomic_path, write_json
from bbn.metrics import classification_metrics
from bbn.network import ModelSpec, build_model
from bbn.tracking import Tracker
from bbn.training import predict, resolve_device
from stages.paths import METRICS, MODEL, PLOTS, PREDICTIONS, RAW, RUN, SPLIT


def _targets(frame: pd.DataFrame, index: dict, source: str) -> list[int]:
    unknown = frame.loc[~frame["category_id"].isin(index) & (frame["category_id"] != -1), "category_id"]
    if len(unknown):
        raise BBNError(f"{source}: category_id {unknown.iloc[0]} is not one of the model's classes")
    return frame["category_id"].map(index).fillna(-1).astype(int).tolist()


def main() -> None:
    params = load_params()
    device = resolve_device(params.train.device)
    ckpt = torch.load(MODEL, map_location="cpu", weights_only=True)
    model = build_model(ModelSpec(**ckpt["spec"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(device)
    classes = pd.read_csv(SPLIT / "classes.csv")
    index = dict(zip(classes["category_id"], classes["index"]))
    test_json = find_json(RAW, "test")
    sets = {"val": pd.read_csv(SPLIT / "val.csv"), "test": load_images(test_json, labelled=False)}
    numbers = {}
    for name, frame in sets.items():
        targets = _targets(frame, index, str(test_json) if name == "test" else f"{SPLIT}/val.csv")
        loader = eval_loader(ImageList(frame["path"], targets, eval_transform(ckpt["image_size"])),
                             params.eval.batch_size, params.train.num_workers)
        logits, y = predict(model, loader, device, params.eval.alpha, desc=name)
        with atomic_path(PREDICTIONS / f"{name}.npz", suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, image_id=frame["image_id"].to_numpy(), logits=logits, target=y,
                                category_ids=classes["category_id"].to_numpy())
        if len(y) and (y >= 0).all():  # the iNat test set has no public labels
            found = classification_metrics(logits, y, classes["train_count"].to_numpy(),
                                           params.stats.many_above, params.stats.few_below)
            numbers |= {f"{name}_{k}": None if v is None else round(v, 6) for k, v in found.items()}
    write_json(METRICS / "eval.json", numbers)
    plots.learning_curves(pd.read_csv(PLOTS / "learning_curve.csv"), PLOTS / "learning_curve.png")

    tracker = Tracker(params.tracking, json.loads(RUN.read_text())["run_id"])
    tracker.log_metrics({k: v for k, v in numbers.items() if v is not None})
    for png in ("learning_curve.png", "class_distribution.png"):
        tracker.log_artifact(PLOTS / png, "plots")
    shown = {k: round(v, 4) for k, v in numbers.items() if v is not None and "top1_error" in k}
    print(f"evaluate: {shown}")


if __name__ == "__main__":
    run(main)
