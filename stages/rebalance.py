"""The classifier stage's work for a method other than none (``stages.classifier``): the re-balanced
classifier (``bbn.classifier.rebalance``), its MLflow run, ``models/final.pt`` and its numbers. A
module of its own so that the default, method none, starts no torch, model or MLflow import."""

from dataclasses import replace

from bbn.classifier.heads import test_alpha_record
from bbn.classifier.rebalance import rebalance
from bbn.classifier.retrain import balanced_loader
from bbn.classifier.spec import ClassifierSpec, check
from bbn.data.loading import eval_loader
from bbn.data.prepare import prepared_path
from bbn.data.transforms import preprocessing
from bbn.files import read_csv, write_json
from bbn.methods import method
from bbn.model.checkpoint import Checkpoint, load_checkpoint
from bbn.model.inference import resolve_device
from bbn.train.inputs import split_datasets
from bbn.train.loop import finite
from stages.params import flatten
from stages.paths import FINAL_MODEL, FINAL_RUN, METRICS, MODEL, RUN, SPLIT
from stages.runs import TRAINING_RUN, describe, run_link, run_name, run_tags, tracker, training_run_id
from stages.specs import to_spec


def data(params, ckpt: Checkpoint, spec, device):
    """(class-balanced training batches or None, val batches or None, training images per class)."""
    t = params.train
    classes = read_csv(SPLIT / "classes.csv").sort_values("index")
    index = dict(zip(classes["category_id"], classes["index"]))
    pre = ckpt.preprocess or preprocessing(t.augment, t.normalize, params.data.name)
    # the training augmentation (both codes re-train on their training transforms); val: the test transform
    train_set, val_set = split_datasets(read_csv(SPLIT / "train.csv"), read_csv(SPLIT / "val.csv"), index,
                                        ckpt.image_size, pre, t.hflip, t.crop_padding)
    batches = balanced_loader(train_set, spec.batch_size, spec.seed, t.num_workers) if spec.trains else None
    val = None
    if spec.method == "tau_norm" and len(val_set):
        val = eval_loader(val_set, params.eval.batch_size, t.num_workers, device)
    return batches, val, classes["train_count"].tolist()


def rebalance_stage(params) -> None:
    """A method other than none: the re-balanced classifier, its MLflow run and outputs."""
    spec = to_spec(ClassifierSpec, params.classifier)
    device = resolve_device(params.train.device)
    model, ckpt = load_checkpoint(MODEL, device)
    bilateral = method(ckpt.method).bilateral
    check(spec, bilateral, ckpt.spec.head)  # before any loader or MLflow run (the schema checks it too)
    batches, val, counts = data(params, ckpt, spec, device)
    base = training_run_id(RUN)
    mlrun = tracker(params.tracking)
    mlrun.start(flatten(params), run_tags() | ({TRAINING_RUN: base} if base else {}) | {"bbn.stage": "classifier"},
                f"{run_name(params)}-{spec.method}",
                describe(params, f"Classifier stage ({spec.method}, {spec.branch}) on the model of run {base}."))

    def on_epoch(row: dict) -> None:
        mlrun.log_metrics({f"classifier_{k}": v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        print(f"classifier epoch {row['epoch']}/{spec.epochs}  lr {row['lr']:.4g}  loss {row['train_loss']:.4f}  "
              f"acc {row['train_acc']:.4f}", flush=True)

    try:
        model, summary = rebalance(model, spec, bilateral, batches, val, counts, device, on_epoch)
        alpha = test_alpha_record(spec.branch) if bilateral else ckpt.alpha  # the branch(es) re-trained
        replace(ckpt, spec=model.spec, state_dict=model.state_dict(), alpha=alpha).save(FINAL_MODEL)
        numbers = finite({f"classifier_{k}": v for k, v in summary.items() if v is not None})
        write_json(METRICS / "classifier.json", numbers)
        mlrun.log_metrics(numbers)
        model_uri = log(params, mlrun, spec)
    except BaseException:
        mlrun.finish("FAILED")
        raise
    link = run_link(mlrun)
    mlrun.finish()
    write_json(FINAL_RUN, {"run_id": mlrun.run_id, "tracking_uri": mlrun.uri, "model_uri": model_uri})
    print(f"classifier: {spec.method} on the {spec.branch} branch: "
          f"{', '.join(f'{k} {v:.4g}' for k, v in numbers.items())}; MLflow run {mlrun.run_id}"
          f"{f', in mlflow ui: {link}' if link else ''}")


def log(params, mlrun, spec) -> str | None:
    """The new model as the run's pyfunc model (``tracking.log_model``); its URI or None."""
    if not params.tracking.log_model:
        return None
    from bbn.tracking.model import log_model  # imports mlflow.pyfunc: only when logging a model

    example = read_csv(SPLIT / "val.csv")["path"].map(prepared_path).tolist()[:2] or \
        read_csv(SPLIT / "train.csv")["path"].map(prepared_path).tolist()[:2]
    return log_model(mlrun, FINAL_MODEL, example, params.tracking.register, f"{run_name(params)}-{spec.method}",
                     spec.epochs)
