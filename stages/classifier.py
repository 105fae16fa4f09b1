"""Stage classifier: the decoupled classifier on the trained network (params: classifier).

Reads the train stage's ``models/model.pt`` and writes ``models/final.pt``, the model evaluate
reads, with ``models/final_run.json`` naming the MLflow run that logged it. ``classifier.method``
none (the default) copies both files byte for byte, so evaluate's inputs and the default metrics
do not change; DVC outputs must exist, and a copy keeps evaluate's one input whatever the method.
Otherwise ``bbn.classifier.rebalance`` re-trains or re-scales the classifier of
``classifier.branch`` on the prepared training images (the training augmentation, class-balanced
batches) or chooses tau on the val split, in an MLflow run of its own (params: all of params.yaml,
tag ``bbn.training_run_id``: the training run), which logs the new model; evaluate then logs into it.
"""

import shutil

from bbn.files import atomic_path, write_json
from stages.params import load_params
from stages.paths import FINAL_MODEL, FINAL_RUN, METRICS, MODEL, RUN
from stages.runner import run

KEYS = {"method": "classifier.method", "branch": "classifier.branch", "smooth_shape": "classifier.smooth_shape",
        "tau_grid": "classifier.tau_grid", "device": "train.device", "num_workers": "train.num_workers"}


def copy(src, dst) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def passthrough() -> None:
    """Method none: the trained model and its run, byte for byte; no classifier numbers."""
    copy(MODEL, FINAL_MODEL)
    copy(RUN, FINAL_RUN)
    write_json(METRICS / "classifier.json", {})
    print(f"classifier: method none: {FINAL_MODEL} is the trained model")


def main() -> None:
    params = load_params()
    if params.classifier.method == "none":
        return passthrough()
    from stages.rebalance import rebalance_stage  # torch, the model, MLflow: only when a method re-balances

    rebalance_stage(params)


if __name__ == "__main__":
    run(main, KEYS)
