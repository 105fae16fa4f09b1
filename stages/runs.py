"""The stages' MLflow glue: the store at the project root, run tags from git and DVC, and the one
place that reads which MLflow run a trained model belongs to (``models/mlflow_run.json``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from bbn.tracking import Tracker
from stages.paths import MLFLOW_ARTIFACTS, MLFLOW_DB, MLFLOW_LOCK, ROOT, RUN, resolve_uri

PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "pillow", "dvc", "mlflow")


def store_uri(tracking) -> str:
    """``tracking.uri`` (relative paths against the project root), or the sqlite store at the project
    root (also from DVC's temporary copies)."""
    return resolve_uri(tracking.uri) if tracking.uri else f"sqlite:///{MLFLOW_DB}"


def tracker(tracking, run_id: str | None = None, enabled: bool = True) -> Tracker:
    """A Tracker on the project's store (params section ``tracking``)."""
    return Tracker(store_uri(tracking), tracking.experiment, run_id, enabled, artifacts=MLFLOW_ARTIFACTS,
                   lock=MLFLOW_LOCK)


def training_run_id() -> str | None:
    """The MLflow run of the model in ``models/`` (written by the train stage)."""
    try:
        return json.loads(RUN.read_text())["run_id"] or None
    except (OSError, ValueError, KeyError):
        return None


def exp_name() -> str | None:
    """The DVC experiment's name when DVC runs the stage for ``dvc exp run``."""
    return os.environ.get("DVC_EXP_NAME") or None


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


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
