"""Stage train: BBN on the train split, validated on the val split (params: model, train).

With ``train.nproc_per_node`` x ``train.nnodes`` > 1 the stage re-starts itself under torchrun, one
process per device (bbn.distributed). After every epoch rank 0 saves a resume state under
``<DVC_ROOT>/checkpoints/`` (stages.paths.CHECKPOINTS); a run of the same params and data that was interrupted continues
from there, in the same MLflow run.
"""

import os

import pandas as pd
import torch
import yaml
from torch.distributed.elastic.multiprocessing.errors import record

from bbn.data.batch_augment import DeviceAugment
from bbn.data.inmemory import ImageBank, bank_bytes, choose_in_memory, decoded_batches, train_batches
from bbn.data.loading import MEAN, STD, ImageList, eval_loader, eval_transform, train_loaders, train_transform
from bbn.data.prepare import prepared_path
from bbn.errors import ArgError
from bbn.files import write_csv, write_json
from bbn.methods import method
from bbn.model.checkpoint import save_checkpoint
from bbn.model.inference import resolve_device
from bbn.model.network import ModelSpec, build_model
from bbn.model.pretrained import load_pretrained
from bbn.tracking import Tracker
from bbn.train.distributed import Dist, launch_argv
from bbn.train.loop import finite, fit, seed_everything
from bbn.train.resume import ResumeState, resume_key
from stages.deps import code_files
from stages.params import flatten, load_params
from stages.paths import CHECKPOINTS, METRICS, MODEL, PLOTS, RUN, SPLIT, resolve
from stages.runner import run
from stages.runs import exp_name, run_tags, tracker

# a resumed run may move device, worker count or rendezvous host; everything else must match
NOT_IN_KEY = {"train.device", "train.num_workers", "train.rdzv_endpoint", "train.rdzv_id"}
# library arguments and the params keys that set them (error messages name the key)
KEYS = {"device": "train.device", "sync_bn": "train.sync_bn", "method": "train.method",
        "pretrained": "model.pretrained", "pretrained_md5": "model.pretrained_md5",
        "antialias": "model.antialias", "accumulate": "train.accumulate", "in_memory": "train.in_memory"}


def _dataset(frame: pd.DataFrame, index: dict, transform, size: int) -> ImageList:
    """The images' prepared copies (data/prepared), labelled by class index."""
    return ImageList(frame["path"].map(prepared_path), frame["category_id"].map(index).tolist(), transform, size)


def _train_loaders(t, train_set: ImageList, dist: Dist, device: torch.device) -> dict:
    """The DataLoaders; or with ``train.in_memory`` the same samplers' batches from images decoded
    once onto ``device`` and augmented there; or with ``train.gpu_decode`` (images not in memory)
    decoded and augmented there batch by batch (bbn.data.inmemory)."""
    nbytes = bank_bytes(train_set.paths, t.image_size, square=True)
    augment = DeviceAugment("cifar", t.image_size, t.crop_padding, t.hflip, mean=MEAN, std=STD)
    batching = (t.batch_size, t.seed, dist.rank, dist.world_size, t.accumulate)
    if choose_in_memory(t.in_memory, nbytes, t.in_memory_max_gb):
        bank = ImageBank.from_files(train_set.paths, train_set.targets, t.image_size, True, device, t.gpu_decode)
        if dist.main:
            print(f"train: {len(bank)} training images in memory on {device} ({bank.nbytes / 2**20:.1f} MiB)")
        return train_batches(bank, augment, *batching)
    if t.gpu_decode:
        return decoded_batches(train_set.paths, train_set.targets, augment, t.image_size, True, device, True,
                               t.batch_size, t.num_workers, *batching[1:])
    return train_loaders(train_set, t.batch_size, t.num_workers, t.seed, dist.rank, dist.world_size,
                         t.accumulate, persistent=not t.deterministic)


def _resume_key(params) -> str:
    chosen = {k: v for k, v in flatten(params).items()
              if k.split(".")[0] in ("model", "train", "prepare") and k not in NOT_IN_KEY}
    split = [SPLIT / name for name in ("classes.csv", "train.csv", "val.csv")]
    return resume_key(chosen, split + code_files("stages.train"))


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
    loaders = _train_loaders(t, train_set, dist, device)
    if not len(loaders["uniform"]):
        raise ArgError("accumulate", f"{len(train_set)} training images are too few for {dist.world_size} "
                       f"process(es) x {t.accumulate} micro-batches of at least 2 images")
    val = eval_loader(val_set, 0, t.num_workers, device) if len(val_set) else None
    model = build_model(ModelSpec(m.backbone, len(classes), m.antialias, m.blur_filter, method(t.method).head))
    if m.pretrained and dist.main:  # DDP copies rank 0's weights to the others: one download, not one per rank
        print(load_pretrained(model, resolve(m.pretrained), m.pretrained_md5))

    # rank 0 keeps the resume state (on node 0's disk) and hands it to the other ranks
    saved = ResumeState(CHECKPOINTS, _resume_key(params)) if dist.main else None
    resume = dist.share(saved.load(model) if saved else None)
    if resume and not dist.main:
        model.load_state_dict(resume["model"])
    mlrun = tracker(params.tracking, run_id=resume and resume["run_id"] or None, enabled=dist.main)
    _open_run(mlrun, params, resume, saved, device, dist)

    def on_epoch(epoch: int, row: dict, state: dict) -> None:
        if not dist.main:
            return
        if device.type == "cuda":  # what one run needs: how many fit on one GPU (README, many runs per GPU)
            row["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        saved.save(model, state, mlrun.run_id)
        mlrun.log_metrics(finite(row), step=epoch + 1)
        print(f"epoch {epoch + 1}/{t.epochs}  alpha {row['alpha']:.3f}  lr {row['lr']:.4g}  "
              f"loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  val_acc {row['val_acc']:.4f}  "
              f"{row['seconds']:.1f}s", flush=True)

    try:
        counts = torch.tensor(classes["train_count"].tolist())
        history = fit(model, loaders, val, t, device, counts, on_epoch, dist, resume)
    except BaseException:
        mlrun.finish("FAILED")
        raise
    if dist.main:
        write_outputs(params, model, classes, history, mlrun)
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
    tracker.start(flatten(params), run_name=exp_name(), tags=run_tags() | {
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
    write_csv(PLOTS / "learning_curve.csv", curve)
    last = history[-1]
    write_json(METRICS / "train.json", finite({
        "train_loss": last["train_loss"], "train_acc": last["train_acc"], "val_loss": last["val_loss"],
        "val_acc": last["val_acc"], "best_val_acc": curve["val_acc"].max(),
        "train_minutes": curve["seconds"].sum() / 60,
        "max_memory_gib": curve.get("max_memory_gib", pd.Series(dtype=float)).max()}))
    write_json(RUN, {"run_id": tracker.run_id, "tracking_uri": tracker.uri})
    tracker.log_artifact(PLOTS / "learning_curve.csv", "plots")
    tracker.finish()
    print(f"train: {t.epochs} epochs, val acc {last['val_acc']:.4f}, run {tracker.run_id}")


if __name__ == "__main__":
    run(main, KEYS)
