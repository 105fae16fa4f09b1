"""MLflow tracking: one run per training run, through a failure-tolerant client.

Tracking never stops training: if the store cannot be reached or written, a warning is printed once
and the run goes on; everything logged is also in the caller's metrics and plot files. The caller
says where the store is (``uri``), where a new experiment keeps its artifacts, and which lock file
serialises the first touch of a fresh sqlite store.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path

from bbn.files import locked


class Tracker:
    """A thin, failure-tolerant wrapper over ``MlflowClient`` bound to one run."""

    def __init__(self, uri: str, experiment: str, run_id: str | None = None, enabled: bool = True,
                 artifacts: Path | None = None, lock: Path | None = None):
        """``uri``: the MLflow store; ``experiment``: its name; ``artifacts``: artifact folder of a new
        experiment (None: MLflow's default); ``lock``: lock file for the first touch of the store
        (None: no lock). ``enabled`` False: every call is a no-op (ranks other than 0)."""
        self.uri, self.experiment, self.run_id = uri, experiment, run_id if enabled else None
        self.artifacts, self.lock = artifacts, lock
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

        with store_lock(self.lock):  # the first touch of a new sqlite store creates its schema: one at a time
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
        artifacts = self.artifacts.as_uri() if self.artifacts else None
        try:
            return self.client.create_experiment(self.experiment, artifact_location=artifacts)
        except Exception:  # another process created it first
            return self.client.get_experiment_by_name(self.experiment).experiment_id

    def start(self, params: dict, tags: dict, run_name: str | None = None) -> str | None:
        """Create the run, log params (dotted names) and tags; return the run id."""
        def _start():
            with store_lock(self.lock):  # parallel queued runs must not both create the experiment
                experiment = self.experiment_id()
            run = self.client.create_run(experiment, tags=tags,
                                         run_name=run_name)
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
def store_lock(path: Path | None):
    """An exclusive lock on ``path`` (None: none): sqlite schema creation is not safe under
    concurrency (six processes starting on a fresh store crash), so the first touch is serialised."""
    if path is None:
        yield
        return
    with locked(path):
        yield
