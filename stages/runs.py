"""The stages' MLflow glue: the store at the project root, run names, descriptions and tags from
params, git and DVC, the datasets of a run, and which run a stage's results belong to.

A run's params are params.yaml as it was when the run's results were made. Results made under other
params (``dvc exp run -S eval.tta_flip=true`` after DVC restored train from its run cache; a
resumed training whose params changed in between) go to a new run, linked by a tag to the run
they continue: ``bbn.training_run_id`` (evaluation of an earlier training run's model) or
``bbn.resumed_from`` (training resumed from an earlier run's state).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import yaml

from bbn.files import read_csv, sqlite_uri
from bbn.methods import method
from bbn.tracking import Tracker
from bbn.tracking.datasets import file_digest, log_inputs, split_input
from bbn.tracking.experiment import ui_link
from bbn.tracking.resumption import RunStart
from bbn.tracking.resumption import differing as params_differing
from stages.params import Params, flatten, validate
from stages.paths import FINAL_RUN, MLFLOW_ARTIFACTS, MLFLOW_DB, MLFLOW_LOCK, ROOT, SPLIT, resolve_uri

# Stage logs are read by people: MLflow's INFO lines ("Validating input example ...") and its artifact
# progress bars (glued into one long line in a log) off, its warnings kept. A user's own setting wins.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "pillow", "dvc", "mlflow")
DESCRIPTION = ("BBN (Bilateral-Branch Network) for long-tailed image classification: one run per training, "
               "params = params.yaml, made by the bbn-pipeline DVC stages (README, section MLflow).")
TRAINING_RUN = "bbn.training_run_id"


def store_uri(tracking) -> str:
    """``tracking.uri`` (relative paths against the project root), or the sqlite store at the project
    root (also from DVC's temporary copies)."""
    return resolve_uri(tracking.uri) if tracking.uri else sqlite_uri(MLFLOW_DB)


def tracker(tracking, run_id: str | None = None, enabled: bool = True) -> Tracker:
    """A Tracker on the project's store (params section ``tracking``)."""
    return Tracker(store_uri(tracking), tracking.experiment, run_id, enabled, artifacts=MLFLOW_ARTIFACTS,
                   lock=MLFLOW_LOCK, description=DESCRIPTION)


def run_link(run: Tracker) -> str:
    """Where to see ``run`` in ``mlflow ui`` (its model-training view); '' without a run or while the
    store is away (nothing is queued for it: a link is no logging)."""
    if not run.available or not run.run_id:
        return ""
    try:
        return ui_link(run.client.get_run(run.run_id).info.experiment_id, run.run_id)
    except Exception:  # the store went away just now: the log line goes without a link
        return ""


def training_run_id(path: Path = FINAL_RUN) -> str | None:
    """The MLflow run of the model evaluate reads (``models/final_run.json``, written by the
    classifier stage: the training run, or with ``classifier.method`` its own run that logged the
    re-trained model); ``path`` ``RUN``: the training run (written by the train stage)."""
    try:
        return json.loads(Path(path).read_text())["run_id"] or None
    except (OSError, ValueError, KeyError):
        return None


def exp_name() -> str | None:
    """The DVC experiment's name when DVC runs the stage for ``dvc exp run``."""
    return os.environ.get("DVC_EXP_NAME") or None


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
        return out.stdout if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def git_revision() -> str:
    return _git("rev-parse", "HEAD").strip() or "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            out[f"version.{name}"] = "absent"
    return out


def run_tags() -> dict[str, str]:
    return {"git_revision": git_revision(), "dvc_exp_name": exp_name() or "", "dvc_root": str(ROOT),
            "version.python": platform.python_version()} | package_versions()


def recipe(params: Params) -> str:
    """The recipe the params came from ('' when none is recorded)."""
    return str(getattr(params, "recipe", "") or "")


def run_name(params: Params) -> str:
    """What distinguishes the run: ``bbn-r32-32px-tmax40-seed0`` (method, backbone, image size, T_max
    for a bilateral method, seed), also under ``dvc exp run``, whose random experiment name
    (``prize-zone``) goes to the tag ``dvc_exp_name`` and the description instead."""
    t = params.train
    parts = [t.method, params.model.backbone.replace("resnet", "r"), f"{t.image_size}px"]
    if method(t.method).bilateral:
        parts.append(f"tmax{t.tmax}")
    return "-".join(parts + [f"seed{t.seed}"])


def changed_params(params: Params) -> tuple[str, dict[str, tuple[object, object]]]:
    """(what the params are compared with, {key: (before, now)}): the committed params.yaml of HEAD,
    else the schema's defaults."""
    committed = _git("show", "HEAD:params.yaml")
    try:
        base, against = validate(yaml.safe_load(committed) or {}), "HEAD"
    except Exception:  # a committed params.yaml this schema rejects
        committed = ""
    if not committed:  # no git, no commit, no committed params.yaml
        base, against = Params(), "the defaults"
    old, new = flatten(base), flatten(params)
    return against, {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v and not k.startswith("tracking.")}


def describe(params: Params, extra: str = "") -> str:
    """The run's description: its recipe, the DVC experiment's name under ``dvc exp run`` and the
    params changed from the committed ones."""
    against, changed = changed_params(params)
    lines = [f"Recipe: {recipe(params) or 'none'}."] + ([f"DVC experiment: {exp_name()}."] if exp_name() else [])
    if changed:
        lines.append(f"Params changed from {against}: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
    else:
        lines.append(f"Params as in {against} ({git_revision()[:12]}).")
    return " ".join(lines + ([extra] if extra else []))


def differing(logged: dict[str, str], params: Params) -> list[str]:
    """The params whose value differs from (or is missing in) a run's logged params."""
    return params_differing(logged, flatten(params))


def dataset_name(params: Params) -> str:
    return f"{params.data.name}/{recipe(params)}" if recipe(params) else params.data.name


def evaluated_dataset(params: Params, source) -> tuple[str, str]:
    """(name, digest) of the test set's dataset input, as ``log_splits`` logs it ('' digest when unreadable)."""
    try:
        return dataset_name(params), file_digest(source)
    except OSError:
        return dataset_name(params), ""


def split_inputs(params: Params, splits: dict[str, tuple[pd.DataFrame, object]]) -> list:
    """``{context: (frame, source file)}`` as MLflow dataset inputs (bbn.tracking.datasets); none when
    a split file went missing (the run goes on without its dataset entries)."""
    try:
        return [split_input(frame, dataset_name(params), source, context) for context, (frame, source) in splits.items()]
    except OSError as exc:
        print(f"tracking: datasets not logged ({exc})")
        return []


def log_splits(run: Tracker, params: Params, splits: dict[str, tuple[pd.DataFrame, object]]) -> None:
    """Log ``{context: (frame, source file)}`` as the run's dataset inputs."""
    log_inputs(run, split_inputs(params, splits))


def result_run(params: Params, base: str | None, stage: str) -> tuple[Tracker, bool]:
    """(run, started) for a stage's results under ``params``: the run ``base`` (the training run)
    when its params are these, else a run linked to it by ``bbn.training_run_id`` whose params are
    these (found, or started now: ``started`` True, and the caller finishes it)."""
    run = tracker(params.tracking, base)
    logged = run.params()
    if logged is not None and not differing(logged, params):
        return run, False
    found = _linked_run(run, base, params) if base and run.client is not None else None
    if found:
        return tracker(params.tracking, found), False
    why = (f"params differ from the training run {base} ({', '.join(differing(logged, params)[:5])})"
           if logged is not None else f"training run {base or '(none)'} not found in the store")
    own = tracker(params.tracking)
    own.start(flatten(params), run_tags() | ({TRAINING_RUN: base} if base else {}) | {"bbn.stage": stage},
              run_name(params), describe(params, f"Results of the {stage} stage for the model of run {base}: {why}."))
    print(f"{stage}: {why}; results go to MLflow run {run_name(params)} ({own.run_id}, {TRAINING_RUN}={base})")
    if base:
        own.submit("link the trained model", lambda client, run_id: _link_model(client, run_id, base))
    return own, True


def _link_model(client, run_id: str, base: str) -> None:
    """The training run's logged model as a model input of ``run_id`` (MLflow's own link)."""
    from mlflow.entities import LoggedModelInput

    outputs = client.get_run(base).outputs
    models = [LoggedModelInput(m.model_id) for m in (outputs.model_outputs if outputs else [])]
    if models:
        client.log_inputs(run_id, models=models)


def _linked_run(run: Tracker, base: str, params: Params) -> str | None:
    """A run already linked to ``base`` whose params are ``params`` (an earlier evaluation)."""
    def _search(client, _):
        exp = client.get_experiment_by_name(run.experiment)
        found = client.search_runs([exp.experiment_id], f"tags.`{TRAINING_RUN}` = '{base}'", max_results=100)
        return next((r.info.run_id for r in found if not differing(r.data.params, params)), None)

    return run.submit("search linked runs", _search, needs_run=False)


def training_start(params: Params, device: object, world_size: int) -> RunStart:
    """A new training run's params, name, description, tags, resolved params file and datasets."""
    t = params.train
    return RunStart(flatten(params), run_name(params), describe(params), run_tags() | {
        "device": str(device), "world_size": str(world_size), "budget.epochs": str(t.epochs),
        "budget.image_size": str(t.image_size), "budget.max_steps": str(t.max_steps),
        "budget.pretrained": str(bool(params.model.pretrained))},
        {"params_resolved.yaml": yaml.safe_dump(params.model_dump(), sort_keys=False)},
        split_inputs(params, {name: (read_csv(SPLIT / f"{name}.csv"), SPLIT / f"{name}.csv")
                              for name in ("train", "val")}), params.tracking.system_metrics_interval)
