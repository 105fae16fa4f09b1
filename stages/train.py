"""Stage train: BBN on the train split, validated on the val split (params: model, train).

Over several devices it re-starts itself under torchrun (bbn.train.distributed). Rank 0 saves a resume
state after every epoch (bbn.train.resume); an interrupted run continues there (bbn.tracking.resumption).
"""

import os

import pandas as pd
import torch
from torch.distributed.elastic.multiprocessing.errors import record

from bbn.data.loading import eval_loader
from bbn.data.prepare import DIGESTS, prepared_path
from bbn.data.transforms import preprocessing
from bbn.files import read_csv, write_json
from bbn.methods import method
from bbn.model.checkpoint import Checkpoint
from bbn.model.inference import resolve_device
from bbn.model.inputs import profile as input_profile
from bbn.model.network import build_model
from bbn.model.pretrained import load_pretrained
from bbn.sources.download import md5sum
from bbn.tracking import Tracker
from bbn.tracking.resumption import training_run
from bbn.train.distributed import Dist, launch_argv
from bbn.train.inputs import split_datasets, training_batches
from bbn.train.loop import finite, fit, seed_everything
from bbn.train.outputs import epoch_line, write_curve_and_metrics
from bbn.train.resume import Snapshot, TrainingKey, start_state, training_key
from stages.checkpoints import KEEP_NEWEST, MAX_AGE_DAYS, recorded
from stages.deps import code_files
from stages.params import flatten, load_params
from stages.paths import CHECKPOINTS, METRICS, MODEL, PLOTS, PREPARED, RUN, SPLIT, resolve
from stages.runner import run
from stages.runs import run_link, run_name, tracker, training_start
from stages.specs import input_spec, launch_spec, model_spec, train_spec

# library arguments and the params keys that set them (error messages name the key)
KEYS = {"device": "train.device", "sync_bn": "train.sync_bn", "method": "train.method",
        "pretrained": "model.pretrained", "pretrained_md5": "model.pretrained_md5",
        "antialias": "model.antialias", "accumulate": "train.accumulate", "shortcut": "model.shortcut",
        "classifier": "model.classifier", "init": "model.init", "in_memory": "train.in_memory"}


def _resume_key(params) -> TrainingKey:
    """The params, code and data (``data.*``, split lists, prepared images' content) of this training."""
    split = [SPLIT / name for name in ("classes.csv", "train.csv", "val.csv")]
    paths = [*read_csv(split[1])["path"], *read_csv(split[2])["path"]]
    return training_key(flatten(params), code_files("stages.train"), split, paths, [prepared_path(p) for p in paths],
                        PREPARED / DIGESTS)


@record  # under torchrun: the failing rank's traceback goes into the job's error summary
def main() -> None:
    params = load_params()
    argv = launch_argv(launch_spec(params.train), "stages.train")
    if argv:  # become torchrun, which starts this stage once per device
        os.execv(argv[0], argv)
    dist, device = Dist.from_env(resolve_device(params.train.device))
    try:
        train(params, dist, device)
    finally:
        dist.close()


def _data(params, dist: Dist, device: torch.device):
    """(classes table, training set, validation set, training loaders, validation loader or None)."""
    t = params.train
    classes = read_csv(SPLIT / "classes.csv")
    index = dict(zip(classes["category_id"], classes["index"]))
    pre = preprocessing(t.augment, t.normalize, params.data.name)
    train_set, val_set = split_datasets(read_csv(SPLIT / "train.csv"), read_csv(SPLIT / "val.csv"), index,
                                        t.image_size, pre, t.hflip, t.crop_padding)
    readers = len(method(t.method).samplers(0, t.baseline.defer_epoch))  # loaders read at once (BBN: 2)
    loaders = training_batches(input_spec(t, pre, readers), train_set, dist, device)
    val = eval_loader(val_set, 0, t.num_workers, device) if len(val_set) else None
    return classes, train_set, val_set, loaders, val


def train(params, dist: Dist, device: torch.device) -> None:
    t, m = params.train, params.model
    seed_everything(t.seed)
    classes, train_set, val_set, loaders, val = _data(params, dist, device)
    model = build_model(model_spec(params, len(classes)))
    if m.pretrained and dist.main:  # DDP copies rank 0's weights to the others: one download, not one per rank
        print(load_pretrained(model, resolve(m.pretrained), m.pretrained_md5))

    # rank 0 keeps the resume state (on node 0's disk) and hands it to the other ranks
    saved = start_state(CHECKPOINTS, _resume_key(params), KEEP_NEWEST, MAX_AGE_DAYS, recorded) if dist.main else None
    resume = dist.share(saved.load(model) if saved else None)
    if resume and not dist.main:
        model.load_state_dict(resume.model)
    mlrun = tracker(params.tracking, enabled=False)
    if dist.main:
        mlrun = training_run(lambda run_id: tracker(params.tracking, run_id), training_start(params, device,
                             dist.world_size), resume.run_id if resume else "", resume and resume.history, str(saved.path))

    def on_epoch(epoch: int, row: dict, snapshot: Snapshot) -> None:
        if not dist.main:
            return
        if device.type == "cuda":  # what one run needs: how many fit on one GPU (README, many runs per GPU)
            row["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        snapshot.run_id = mlrun.run_id or ""
        saved.save(snapshot)
        mlrun.log_metrics(finite(row), step=epoch)  # 1-based, as the log, the curve and lr_steps count
        print(epoch_line(epoch, t.epochs, row), flush=True)

    try:
        counts = torch.tensor(classes["train_count"].tolist())
        history = fit(model, loaders, val, train_spec(t), device, counts, on_epoch, dist, resume)
        if dist.main:  # a full disk while writing the outputs fails the run too; the rerun writes them
            write_outputs(params, model, classes, history, mlrun, val_set.paths[:2] or train_set.paths[:2])
    except BaseException:
        mlrun.finish("FAILED")
        raise
    if dist.main:
        saved.finish(md5sum(MODEL))  # kept until DVC has recorded the outputs (stages.checkpoints)
    dist.barrier()


def write_outputs(params, model, classes: pd.DataFrame, history: list[dict], tracker: Tracker,
                  example: list[str]) -> None:
    """The DVC outputs (model, learning curve, final numbers without wall-clock times, so a rerun
    with the same results leaves them unchanged), then the MLflow run's (minutes, model) and its end."""
    t = params.train
    Checkpoint.of(model, t.image_size, classes["category_id"], classes["name"], len(history), method=t.method,
                  alpha=t.alpha.model_dump(), preprocess=preprocessing(t.augment, t.normalize, params.data.name),
                  prepare=params.prepare.model_dump(),  # bbn-predict repeats the prepare step
                  inputs=input_profile(read_csv(SPLIT / "train.csv")["path"].tolist())).save(MODEL)  # warns: unlike
    minutes = write_curve_and_metrics(history, PLOTS / "learning_curve.csv", METRICS / "train.json")
    tracker.log_metrics({"train_minutes": minutes})
    tracker.log_artifact(PLOTS / "learning_curve.csv", "plots")
    model_uri = None
    if params.tracking.log_model:
        from bbn.tracking.model import log_model  # imports mlflow.pyfunc: only when logging a model

        model_uri = log_model(tracker, MODEL, example, params.tracking.register, run_name(params), t.epochs)
    link = run_link(tracker)
    tracker.finish()
    write_json(RUN, {"run_id": tracker.run_id, "tracking_uri": tracker.uri,  # after finish: a late-created run has its id
                     "model_uri": model_uri})  # models:/m-…: the README's MLflow snippet loads it
    bound = f" (train.max_steps {t.max_steps}: {sum(int(r['steps']) for r in history)} steps)" if t.max_steps else ""
    print(f"train: {len(history)} epochs{bound} in {minutes:.2f} min, val accuracy {100 * history[-1]['val_acc']:.1f} %; "
          f"MLflow run {run_name(params)} ({tracker.run_id}){f', in mlflow ui: {link}' if link else ''}")


if __name__ == "__main__":
    run(main, KEYS)
