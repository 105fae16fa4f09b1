"""Stage train: BBN on the train split, validated on the val split (params: model, train).

With ``train.nproc_per_node`` x ``train.nnodes`` > 1 the stage re-starts itself under torchrun, one
process per device (bbn.train.distributed). After every epoch rank 0 saves a resume state under
``<DVC_ROOT>/checkpoints/`` (stages.paths.CHECKPOINTS); a run of the same params and data that was interrupted continues
from there, in the same MLflow run.
"""

import os

import pandas as pd
import torch
import yaml
from torch.distributed.elastic.multiprocessing.errors import record

from bbn.data.loading import ImageList, eval_loader
from bbn.data.prepare import DIGESTS, prepared_path
from bbn.data.transforms import eval_transform, preprocessing, test_resize, train_transform
from bbn.files import read_csv, write_csv, write_json
from bbn.methods import method
from bbn.model.checkpoint import save_checkpoint
from bbn.model.inference import resolve_device
from bbn.model.inputs import profile as input_profile
from bbn.model.network import ModelSpec, build_model
from bbn.model.pretrained import load_pretrained
from bbn.sources.download import md5sum
from bbn.tracking import Tracker
from bbn.train.distributed import Dist, launch_argv
from bbn.train.inputs import training_batches
from bbn.train.loop import finite, fit, seed_everything
from bbn.train.resume import ResumeState, TrainingKey, content_digest, data_changed
from stages.checkpoints import prune_states, recorded
from stages.deps import code_files
from stages.params import flatten, load_params
from stages.paths import CHECKPOINTS, METRICS, MODEL, PLOTS, PREPARED, RUN, SPLIT, resolve
from stages.runner import run
from stages.runs import RESUMED_FROM, describe, differing, log_splits, run_link, run_name, run_tags, tracker
from stages.specs import input_spec, launch_spec, train_spec

# a resumed run may move device, worker count or rendezvous host; everything else must match
NOT_IN_KEY = {"train.device", "train.num_workers", "train.rdzv_endpoint", "train.rdzv_id"}
# library arguments and the params keys that set them (error messages name the key)
KEYS = {"device": "train.device", "sync_bn": "train.sync_bn", "method": "train.method",
        "pretrained": "model.pretrained", "pretrained_md5": "model.pretrained_md5",
        "antialias": "model.antialias", "accumulate": "train.accumulate", "shortcut": "model.shortcut",
        "classifier": "model.classifier", "init": "model.init", "in_memory": "train.in_memory"}


def _dataset(frame: pd.DataFrame, index: dict, transform, size: int) -> ImageList:
    """The images' prepared copies (data/prepared), labelled by class index."""
    return ImageList(frame["path"].map(prepared_path), frame["category_id"].map(index).tolist(), transform, size)


def _resume_key(params) -> TrainingKey:
    """The params, code and data (``data.*``, split lists, prepared images' content) of this training."""
    flat = flatten(params)
    chosen = {k: v for k, v in flat.items() if k.split(".")[0] in ("model", "train", "prepare") and k not in NOT_IN_KEY}
    split = [SPLIT / name for name in ("classes.csv", "train.csv", "val.csv")]
    paths = [*read_csv(split[1])["path"], *read_csv(split[2])["path"]]
    content = content_digest(paths, [prepared_path(p) for p in paths], PREPARED / DIGESTS)
    return TrainingKey.of(chosen, code_files("stages.train"), {k: v for k, v in flat.items() if k.startswith("data.")},
                          split, content)


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
    decode = test_resize(t.image_size, pre["augment"])
    train_set = _dataset(read_csv(SPLIT / "train.csv"), index, train_transform(
        t.image_size, pre["augment"], t.hflip, pre["mean"], pre["std"], t.crop_padding), decode)
    val_set = _dataset(read_csv(SPLIT / "val.csv"), index,
                       eval_transform(t.image_size, pre["augment"], pre["mean"], pre["std"]), decode)
    loaders = training_batches(input_spec(t, pre, 2 if method(t.method).bilateral else 1), train_set, dist, device)
    val = eval_loader(val_set, 0, t.num_workers, device) if len(val_set) else None
    return classes, train_set, val_set, loaders, val


def train(params, dist: Dist, device: torch.device) -> None:
    t, m = params.train, params.model
    seed_everything(t.seed)
    classes, train_set, val_set, loaders, val = _data(params, dist, device)
    model = build_model(ModelSpec(m.backbone, len(classes), m.antialias, m.blur_filter, method(t.method).head,
                                  m.shortcut, m.classifier, m.init))
    if m.pretrained and dist.main:  # DDP copies rank 0's weights to the others: one download, not one per rank
        print(load_pretrained(model, resolve(m.pretrained), m.pretrained_md5))

    # rank 0 keeps the resume state (on node 0's disk) and hands it to the other ranks
    saved = _resume_state(params) if dist.main else None
    resume = dist.share(saved.load(model) if saved else None)
    if resume and not dist.main:
        model.load_state_dict(resume["model"])
    mlrun = _open_run(params, resume, saved, device, dist)

    def on_epoch(epoch: int, row: dict, state: dict) -> None:
        if not dist.main:
            return
        if device.type == "cuda":  # what one run needs: how many fit on one GPU (README, many runs per GPU)
            row["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        saved.save(model, state, mlrun.run_id)
        mlrun.log_metrics(finite(row), step=epoch)  # 1-based, as the log, the curve and lr_steps count
        print(f"epoch {epoch}/{t.epochs}  alpha {row['alpha']:.3f}  lr {row['lr']:.4g}  "
              f"loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  val_acc {row['val_acc']:.4f}  "
              f"{row['seconds']:.1f}s", flush=True)

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


def _resume_state(params) -> ResumeState:
    """This training's resume state, after pruning the others (``stages.checkpoints``). A complete
    state whose outputs DVC recorded means a forced rerun: it is deleted and training starts afresh."""
    key = _resume_key(params)
    saved = ResumeState(CHECKPOINTS, key.key, key.meta())
    if saved.enabled and not saved.path.exists() and (why := data_changed(CHECKPOINTS, key)):
        print(why)
    for path in prune_states(saved.path):
        print(f"train: deleted resume state {path.name} (stages.checkpoints rule)")
    info = saved.info
    if info.get("complete") and recorded(info.get("outputs_md5", "")):
        saved.discard()
    elif info.get("complete"):
        print(f"train: all {info['epoch']} epochs were done by an earlier run whose outputs were not "
              f"recorded ({saved.path.name}); writing them again without training")
    return saved


def _open_run(params, resume: dict | None, saved, device, dist: Dist) -> Tracker:
    """Continue the interrupted run's MLflow run when its params are still these; else start one
    (with the epochs so far, if resuming), linked to the interrupted one (``bbn.resumed_from``)."""
    mlrun = tracker(params.tracking, run_id=resume and resume["run_id"] or None, enabled=dist.main)
    if not dist.main:
        return mlrun
    if saved and not saved.enabled:
        print(f"train: another run of this training holds {saved.path}; this one keeps no resume state")
    old, logged = mlrun.run_id, mlrun.params() if resume else None
    changed = differing(logged, params) if logged is not None else []
    if resume and logged is not None and not changed and mlrun.reopen():
        print(f"train: resuming after epoch {resume['epoch']} from {saved.path}, MLflow run {mlrun.run_id}")
        steps = mlrun.logged_steps("train_loss") or set()  # a kill between saving the state and logging
        for row in (r for r in resume["history"] if int(r["epoch"]) not in steps):
            mlrun.log_metrics(finite(row), step=int(row["epoch"]))
        mlrun.start_system_metrics(params.tracking.system_metrics_interval)
        return mlrun
    if not changed:
        _start_run(mlrun, params, device, dist, {})
    else:  # its params would lie: a new run, linked both ways, and the old one ends
        interrupted, mlrun = mlrun, tracker(params.tracking)
        _start_run(mlrun, params, device, dist, {RESUMED_FROM: old})
        print(f"train: params changed since MLflow run {old} was interrupted ({', '.join(changed)}); "
              f"resuming in a new run {mlrun.run_id} ({RESUMED_FROM}={old})")
        interrupted.set_tags({"bbn.resumed_in": mlrun.run_id or "a run whose bbn.resumed_from is this one"})
        interrupted.finish("KILLED")
    if resume:
        print(f"train: resuming after epoch {resume['epoch']} from {saved.path} in a new MLflow run {mlrun.run_id}")
        for row in resume["history"]:
            mlrun.log_metrics(finite(row), step=int(row["epoch"]))
    return mlrun


def _start_run(mlrun: Tracker, params, device, dist: Dist, link: dict) -> None:
    """A new MLflow run: params, tags, name, description, datasets, system metrics."""
    t = params.train
    mlrun.start(flatten(params), run_name=run_name(params), description=describe(params), tags=run_tags() | link | {
        "device": str(device), "world_size": str(dist.world_size), "budget.epochs": str(t.epochs),
        "budget.image_size": str(t.image_size), "budget.max_steps": str(t.max_steps),
        "budget.pretrained": str(bool(params.model.pretrained))})
    mlrun.log_text(yaml.safe_dump(params.model_dump(), sort_keys=False), "params_resolved.yaml")
    log_splits(mlrun, params, {name: (pd.read_csv(SPLIT / f"{name}.csv"), SPLIT / f"{name}.csv")
                               for name in ("train", "val")})
    mlrun.start_system_metrics(params.tracking.system_metrics_interval)


def write_outputs(params, model, classes: pd.DataFrame, history: list[dict], tracker: Tracker,
                  example: list[str]) -> None:
    """The DVC outputs (model, learning curve, final numbers without wall-clock times, so a rerun
    with the same results leaves them unchanged), then the MLflow run's (minutes, model) and its end."""
    t = params.train
    curve = pd.DataFrame(history)
    save_checkpoint(MODEL, model, t.image_size, classes["category_id"], classes["name"], len(history), t.method,
                    t.alpha.model_dump(), preprocessing(t.augment, t.normalize, params.data.name),
                    params.prepare.model_dump(),  # bbn-predict repeats the prepare step
                    input_profile(read_csv(SPLIT / "train.csv")["path"].tolist()))  # and warns about unlike images
    write_csv(PLOTS / "learning_curve.csv", curve.drop(columns="seconds", errors="ignore"))
    last = history[-1]
    write_json(METRICS / "train.json", finite({
        "train_loss": last["train_loss"], "train_acc": last["train_acc"], "val_loss": last["val_loss"],
        "val_acc": last["val_acc"], "best_val_acc": curve["val_acc"].max(),
        "max_memory_gib": curve.get("max_memory_gib", pd.Series(dtype=float)).max()}))
    minutes = curve["seconds"].sum() / 60
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
    bound = f" (train.max_steps {t.max_steps}: {int(curve['steps'].sum())} steps)" if t.max_steps else ""
    print(f"train: {len(history)} epochs{bound} in {minutes:.2f} min, val accuracy {100 * last['val_acc']:.1f} %; "
          f"MLflow run {run_name(params)} ({tracker.run_id}){f', in mlflow ui: {link}' if link else ''}")


if __name__ == "__main__":
    run(main, KEYS)
