"""MLflow tracking: one run per training run, in one sqlite store at the project root.

The store lives at ``<root>/mlflow.db`` (artifacts in ``<root>/mlartifacts``), where root is
``DVC_ROOT`` when DVC runs the stage. ``dvc exp run --queue/--temp`` runs in a temporary copy of the
repo that is deleted afterwards, but DVC_ROOT names the real root, so those runs are kept too.

Tracking never stops training: if the store cannot be reached or written, a warning is printed once
and the run goes on; everything logged is also in ``metrics/`` and ``plots/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
import warnings
from pathlib import Path

from bbn.config import TrackingParams
from bbn.io import project_root


def store_uri(p: TrackingParams) -> str:
    return p.uri or f"sqlite:///{project_root() / 'mlflow.db'}"


def git_revision(cwd: str | Path = ".") -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


class Tracker:
    """A thin, failure-tolerant wrapper over ``MlflowClient`` bound to one run."""

    def __init__(self, p: TrackingParams, run_id: str | None = None, enabled: bool = True):
        """``enabled`` False: every call is a no-op (the ranks other than 0 of a distributed job)."""
        self.uri, self.experiment, self.run_id = store_uri(p), p.experiment, run_id if enabled else None
        self.client = None
        self._warned = False
        if enabled:
            self._call(self._connect, connecting=True)

    def reopen(self) -> bool:
        """Continue this tracker's run (a resumed training); False when the store does not have it."""
        def _reopen():
            from mlflow.exceptions import MlflowException

            try:
                run = self.client.get_run(self.run_id)
            except MlflowException:  # deleted, or another store: the caller starts a new run
                return False
            if run.info.lifecycle_stage != "active":
                return False
            self.client.update_run(self.run_id, status="RUNNING")
            return True

        if not self.run_id or self.client is None:
            return False
        return bool(self._call(_reopen))

    def _connect(self) -> None:
        from mlflow.tracking import MlflowClient

        with store_lock():  # the first touch of a new sqlite store creates its schema: one at a time
            client = MlflowClient(tracking_uri=self.uri)
            client.search_experiments(max_results=1)
        self.client = client

    def _call(self, fn, *args, connecting: bool = False, **kwargs):
        if self.client is None and not connecting:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # tracking must never stop training
            if not self._warned:
                warnings.warn(f"MLflow store {self.uri} unavailable ({type(exc).__name__}: {exc}); "
                              "continuing without tracking, results stay in metrics/", stacklevel=3)
                self._warned = True
            self.client = None
            return None

    def experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        artifacts = (project_root() / "mlartifacts").as_uri()
        try:
            return self.client.create_experiment(self.experiment, artifact_location=artifacts)
        except Exception:  # another process created it first
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def start(self, params: dict, tags: dict) -> str | None:
        """Create the run, log params (dotted names) and tags; return the run id."""
        def _start():
            with store_lock():  # parallel queued runs must not both create the experiment
                experiment = self.experiment_id()
            run = self.client.create_run(experiment, tags=tags,
                                         run_name=os.environ.get("DVC_EXP_NAME") or None)
            self.run_id = run.info.run_id
            from mlflow.entities import Param

            items = [Param(k, str(v)) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow's batch limit is 100 params
                self.client.log_batch(self.run_id, params=items[i : i + 100])
            return self.run_id

        return self._call(_start)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        def _log():
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
            self.client.log_batch(self.run_id, metrics=batch)

        if self.run_id:
            self._call(_log)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self.run_id and Path(path).exists():
            self._call(self.client.log_artifact, self.run_id, str(path), folder)

    def log_text(self, text: str, name: str) -> None:
        if self.run_id:
            self._call(self.client.log_text, self.run_id, text, name)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.run_id:
            for k, v in tags.items():
                self._call(self.client.set_tag, self.run_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self._call(self.client.set_terminated, self.run_id, status)


@contextlib.contextmanager
def store_lock():
    """An exclusive lock beside the store: sqlite schema creation is not safe under concurrency
    (six processes starting on a fresh store crash), so the first touch is serialised."""
    path = project_root() / ".mlflow.lock"
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "pillow", "dvc", "mlflow")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = version(name)
        except PackageNotFoundError:
            out[f"version.{name}"] = "absent"
    return out


def run_tags() -> dict[str, str]:
    import platform

    return {"git_revision": git_revision(), "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
            "dvc_root": str(project_root()), "version.python": platform.python_version()} | package_versions()
