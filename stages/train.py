"""Stage train: BBN on the train split, validated on the val split (params: model, train)."""

import time

import pandas as pd
import torch
import yaml

from bbn.baselines import head_for
from bbn.checkpoint import save_checkpoint
from bbn.cli import run
from bbn.config import flatten, load_params
from bbn.data import ImageList, eval_loader, eval_transform, train_loaders, train_transform
from bbn.io import atomic_path, write_json
from bbn.network import ModelSpec, build_model
from bbn.prepare import prepared_path
from bbn.pretrained import load_pretrained
from bbn.tracking import Tracker, run_tags
from bbn.training import finite, fit, resolve_device, seed_everything
from stages.paths import METRICS, MODEL, PLOTS, RUN, SPLIT


def _dataset(frame: pd.DataFrame, index: dict, transform, size: int) -> ImageList:
    """The images' prepared copies (data/prepared), labelled by class index."""
    return ImageList(frame["path"].map(prepared_path), frame["category_id"].map(index).tolist(), transform, size)


def main() -> None:
    params = load_params()
    t, m = params.train, params.model
    device = resolve_device(t.device)
    seed_everything(t.seed)
    classes = pd.read_csv(SPLIT / "classes.csv")
    index = dict(zip(classes["category_id"], classes["index"]))
    train_set = _dataset(pd.read_csv(SPLIT / "train.csv"), index,
                         train_transform(t.image_size, t.crop_padding, t.hflip), t.image_size)
    val_set = _dataset(pd.read_csv(SPLIT / "val.csv"), index, eval_transform(t.image_size), t.image_size)
    loaders = train_loaders(train_set, t.batch_size, t.num_workers, t.seed)
    val = eval_loader(val_set, params.eval.batch_size, t.num_workers, device) if len(val_set) else None
    spec = ModelSpec(m.backbone, len(classes), m.antialias, m.blur_filter, head_for(t.method))
    model = build_model(spec)
    if m.pretrained:
        print(load_pretrained(model, m.pretrained, m.pretrained_md5))

    tracker = Tracker(params.tracking)
    tracker.start(flatten(params), run_tags() | {"device": str(device), "budget.epochs": str(t.epochs),
                                                 "budget.image_size": str(t.image_size),
                                                 "budget.pretrained": str(bool(m.pretrained))})
    tracker.log_text(yaml.safe_dump(params.model_dump(), sort_keys=False), "params_resolved.yaml")

    def on_epoch(epoch: int, row: dict) -> None:
        tracker.log_metrics(finite(row), step=epoch + 1)
        print(f"epoch {epoch + 1}/{t.epochs}  alpha {row['alpha']:.3f}  lr {row['lr']:.4g}  "
              f"loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  val_acc {row['val_acc']:.4f}  "
              f"{row['seconds']:.1f}s", flush=True)

    start = time.perf_counter()
    try:
        counts = torch.tensor(classes["train_count"].tolist())
        history = fit(model, loaders, val, t, params.eval.alpha, device, counts, on_epoch=on_epoch)
    except BaseException:
        tracker.finish("FAILED")
        raise
    curve = pd.DataFrame(history)
    save_checkpoint(MODEL, model, t.image_size, classes["category_id"], classes["name"], t.epochs, t.method)
    with atomic_path(PLOTS / "learning_curve.csv") as tmp:
        curve.to_csv(tmp, index=False)
    last = history[-1]
    write_json(METRICS / "train.json", finite({
        "train_loss": last["train_loss"], "train_acc": last["train_acc"], "val_loss": last["val_loss"],
        "val_acc": last["val_acc"], "best_val_acc": curve["val_acc"].max(),
        "train_minutes": (time.perf_counter() - start) / 60}))
    write_json(RUN, {"run_id": tracker.run_id, "tracking_uri": tracker.uri})
    tracker.log_artifact(PLOTS / "learning_curve.csv", "plots")
    tracker.finish()
    print(f"train: {t.epochs} epochs, val acc {last['val_acc']:.4f}, run {tracker.run_id}")


if __name__ == "__main__":
    run(main)
