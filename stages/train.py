"""Stage train: BBN on the train split, validated on the val split (params: model, train).

With ``train.nproc_per_node`` x ``train.nnodes`` > 1 the stage re-starts itself under torchrun, one
process per device (bbn.distributed). After every epoch rank 0 saves a resume state under
``<DVC_ROOT>/checkpoints/``; a run of the same params and data that was interrupted continues
from there, in the same MLflow run.
"""

import os
from pathlib import Path

import pandas as pd
import torch
import yaml
from torch.distributed.elastic.multiprocessing.errors import record

import bbn
from bbn.baselines import head_for
from bbn.checkpoint import ResumeState, resume_key, save_checkpoint
from bbn.cli import run
from bbn.config import flatten, load_params
from bbn.data import ImageList, eval_loader, eval_transform, train_loaders, train_transform
from bbn.distributed import Dist, launch_argv
from bbn.errors import BBNError
from bbn.io import atomic_path, project_root, write_json
from bbn.network import ModelSpec, build_model
from bbn.prepare import prepared_path
from bbn.pretrained import load_pretrained
from bbn.tracking import Tracker, run_tags
from bbn.training import finite, fit, resolve_device, seed_everything
from stages.paths import METRICS, MODEL, PLOTS, RUN, SPLIT

# a resumed run may move device, worker count or rendezvous host; everything else must match
NOT_IN_KEY = {"train.device", "train.num_workers", "train.rdzv_endpoint", "train.rdzv_id"}
CODE = sorted(Path(bbn.__file__).parent.glob("*.py")) + [Path(__file__)]


def _dataset(frame: pd.DataFrame, index: dict, transform, size: int) -> ImageList:
    """The images' prepared copies (data/prepared), labelled by class index."""
    return ImageList(frame["path"].map(prepared_path), frame["category_id"].map(index).tolist(), transform, size)


def _resume_key(params) -> str:
    chosen = {k: v for k, v in flatten(params).items()
              if k.split(".")[0] in ("model", "train", "prepare") and k not in NOT_IN_KEY}
    split = [SPLIT / name for name in ("classes.csv", "train.csv", "val.csv")]
    return resume_key(chosen | {"eval.alpha": params.eval.alpha}, split + CODE)


@record  # under torchrun: the failing rank's traceback goes into the job's error summary
def main() -> None:
    params = load_params()
    argv = launch_argv(params.train, "stages.train")
    if argv:  # become torchrun, which starts this stage once per device
        os.execv(argv[0], argv)
    dist, device = Dist.from_env(resolve_device(params.train.device))
    try:
        train(params, dist, device)
    finally:
        dist.close()


def train(params, dist: Dist, device: torch.device) -> None:
    t, m = params.train, params.model
    seed_everything(t.seed)
    classes = pd.read_csv(SPLIT / "classes.csv")
    index = dict(zip(classes["category_id"], classes["index"]))
    train_set = _dataset(pd.read_csv(SPLIT / "train.csv"), index,
                         train_transform(t.image_size, t.crop_padding, t.hflip), t.image_size)
    val_set = _dataset(pd.read_csv(SPLIT / "val.csv"), index, eval_transform(t.image_size), t.image_size)
    loaders = train_loaders(train_set, t.batch_size, t.num_workers, t.seed, dist.rank, dist.world_size,
                            t.accumulate, persistent=not t.deterministic)
    if not len(loaders["uniform"]):
        raise BBNError(f"train.accumulate: {len(train_set)} training images are too few for {dist.world_size} "
                       f"process(es) x {t.accumulate} micro-batches of at least 2 images")
    val = eval_loader(val_set, params.eval.batch_size, t.num_workers, device) if len(val_set) else None
    spec = ModelSpec(m.backbone, len(classes), m.antialias, m.blur_filter, head_for(t.method))
    model = build_model(spec)
    if m.pretrained and dist.main:  # DDP copies rank 0's weights to the others: one download, not one per rank
        print(load_pretrained(model, m.pretrained, m.pretrained_md5))

    # rank 0 keeps the resume state (on node 0's disk) and hands it to the other ranks
    saved = ResumeState(project_root() / "checkpoints", _resume_key(params)) if dist.main else None
    resume = dist.share(saved.load(model) if saved else None)
    if resume and not dist.main:
        model.load_state_dict(resume["model"])
    tracker = Tracker(params.tracking, run_id=resume and resume["run_id"] or None, enabled=dist.main)
    _open_run(tracker, params, resume, saved, device, dist)

    def on_epoch(epoch: int, row: dict, state: dict) -> None:
        if not dist.main:
            return
        saved.save(model, state, tracker.run_id)
        tracker.log_metrics(finite(row), step=epoch + 1)
        print(f"epoch {epoch + 1}/{t.epochs}  alpha {row['alpha']:.3f}  lr {row['lr']:.4g}  "
              f"loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  val_acc {row['val_acc']:.4f}  "
              f"{row['seconds']:.1f}s", flush=True)

    try:
        counts = torch.tensor(classes["train_count"].tolist())
        history = fit(model, loaders, val, t, params.eval.alpha, device, counts, on_epoch, dist, resume)
    except BaseException:
        tracker.finish("FAILED")
        raise
    if dist.main:
        write_outputs(params, model, classes, history, tracker)
        saved.finish()  # the result is DVC's to keep now
    dist.barrier()


def _open_run(tracker: Tracker, params, resume: dict | None, saved, device, dist: Dist) -> None:
    """Continue the interrupted run's MLflow run, or start one (with its epochs so far, if resuming)."""
    t = params.train
    if saved and not saved.enabled:
        print(f"train: another run of this training holds {saved.path}; this one keeps no resume state")
    if resume and tracker.reopen():
        print(f"train: resuming after epoch {resume['epoch']} from {saved.path}, MLflow run {tracker.run_id}")
        return
    tracker.start(flatten(params), run_tags() | {
        "device": str(device), "world_size": str(dist.world_size), "budget.epochs": str(t.epochs),
        "budget.image_size": str(t.image_size), "budget.pretrained": str(bool(params.model.pretrained))})
    tracker.log_text(yaml.safe_dump(params.model_dump(), sort_keys=False), "params_resolved.yaml")
    if resume and dist.main:
        print(f"train: resuming after epoch {resume['epoch']} from {saved.path} in a new MLflow run")
        for row in resume["history"]:
            tracker.log_metrics(finite(row), step=int(row["epoch"]))


def write_outputs(params, model, classes: pd.DataFrame, history: list[dict], tracker: Tracker) -> None:
    t = params.train
    curve = pd.DataFrame(history)
    save_checkpoint(MODEL, model, t.image_size, classes["category_id"], classes["name"], t.epochs, t.method,
                    t.alpha.model_dump())
    with atomic_path(PLOTS / "learning_curve.csv") as tmp:
        curve.to_csv(tmp, index=False)
    last = history[-1]
    write_json(METRICS / "train.json", finite({
        "train_loss": last["train_loss"], "train_acc": last["train_acc"], "val_loss": last["val_loss"],
        "val_acc": last["val_acc"], "best_val_acc": curve["val_acc"].max(),
        "train_minutes": curve["seconds"].sum() / 60}))
    write_json(RUN, {"run_id": tracker.run_id, "tracking_uri": tracker.uri})
    tracker.log_artifact(PLOTS / "learning_curve.csv", "plots")
    tracker.finish()
    print(f"train: {t.epochs} epochs, val acc {last['val_acc']:.4f}, run {tracker.run_id}")


if __name__ == "__main__":
    run(main)
