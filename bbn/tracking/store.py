"""MLflow tracking: one run per training run, through a client that never stops the pipeline.

Every logging call goes through a queue. When the store cannot be reached or written (locked,
moved, removed, a server down) the call stays queued, a warning is printed once, and the work goes
on; the queue is retried on later calls (at most every ``retry_s`` seconds) and always when the run
finishes or the tracker is closed, so the epochs logged while the store was away reach it, in order
and with their original timestamps, once it is back. Calls the store refuses as malformed (MLflow's
request errors) are dropped, each with a warning. What is still queued at the end is reported and
stays in the caller's metrics and plot files (``python -m stages.relog`` logs it later). A write the
disk under a store that answers refuses (no space left, quota, permission: an artifact upload onto a
full disk) is dropped with one warning naming the file and the reason, the calls after it go on,
and the run ends FAILED with the tag ``bbn.not_logged`` listing what it lacks.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
import warnings
from pathlib import Path
from typing import Callable

from bbn.errors import BBNWarning
from bbn.files import locked
from bbn.tracking.experiment import ensure_experiment
from bbn.tracking.failures import (
    CONFLICT_RETRIES,
    REQUEST_ERRORS,
    first_line,
    quiet_store_log,
    refused_write,
    store_failure,
    write_conflict,
)

NOTE = "mlflow.note.content"  # the description MLflow's UI shows for a run or an experiment
NOT_LOGGED = "bbn.not_logged"  # the calls whose writes the store's disk refused: what the run lacks


class Tracker:
    """A failure-tolerant wrapper over ``MlflowClient`` bound to one run (see the module docstring)."""

    def __init__(self, uri: str, experiment: str, run_id: str | None = None, enabled: bool = True,
                 artifacts: Path | None = None, lock: Path | None = None, description: str = "",
                 retry_s: float = 10.0):
        """``uri``: the MLflow store; ``experiment``: its name; ``artifacts``: artifact folder of a new
        experiment (None: MLflow's default); ``lock``: lock file for the first touch of the store
        (None: no lock); ``description``: the experiment's description when it has none;
        ``retry_s``: least seconds between retries while the store fails. ``enabled`` False: every
        call is a no-op (ranks other than 0)."""
        self.uri, self.experiment, self.run_id = uri, experiment, run_id if enabled else None
        self.artifacts, self.lock, self.description, self.retry_s = artifacts, lock, description, retry_s
        self.enabled, self.client = enabled, None
        self._queue: list[tuple[str, Callable, bool]] = []
        self._has_run = bool(self.run_id)
        self._failed_at: float | None = None
        self._monitor = None
        self._interval = 0.0
        self.refused: list[str] = []  # the calls dropped because the store's disk refused their writes
        self._tagged = 0  # how many of them the run's NOT_LOGGED tag names
        if enabled:
            quiet_store_log()
            self._attempt(self._connect)

    @property
    def available(self) -> bool:
        """Whether the store answers and nothing is waiting for it."""
        return self.client is not None and not self._queue and self._failed_at is None

    # -- the queue ---------------------------------------------------------------------------
    def submit(self, what: str, fn: Callable, needs_run: bool = True, force: bool = False):
        """Queue ``fn(client, run_id)`` (``what`` names it in warnings) and run the queue; its result
        when it ran now, else None. Calls needing a run are ignored when there is none."""
        if not self.enabled or (needs_run and not self._has_run):
            return None
        self._queue.append((what, fn, needs_run))
        return self.flush(force)

    def flush(self, force: bool = False):
        """Run the queued calls in order; stop at the first the store fails (they stay queued).
        Returns the last call's result. ``force``: retry now even if the last failure is recent."""
        if self._failed_at is not None and not force and time.monotonic() - self._failed_at < self.retry_s:
            return None
        result = None
        while self._queue:
            what, fn, needs_run = self._queue[0]
            ok, result = self._attempt(functools.partial(self._run, fn, needs_run), what)
            if not ok:
                return None
            self._queue.pop(0)
        if self._failed_at is not None:
            warnings.warn(f"MLflow store {self.uri} is back: the calls delayed while it failed are logged now",
                          BBNWarning, stacklevel=2)
            self._failed_at = None
            if self._monitor is not None:  # its thread stops at the first failed write: a new one goes on
                self._stop_system_metrics()
                self.start_system_metrics(self._interval)
        return result

    def _run(self, fn: Callable, needs_run: bool):
        if needs_run and not self.run_id:  # the run's creation was refused: nothing to log into
            return None
        if self.client is None:
            self._connect()
        return fn(self.client, self.run_id)

    def _attempt(self, fn: Callable, what: str = "connect") -> tuple[bool, object]:
        """(True, result), or (False, None) after a store failure; a request error drops the call.
        A write that lost a race with another process (``write_conflict``) is tried again at once,
        up to ``CONFLICT_RETRIES`` times, before it counts as failed."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return True, fn()
            except Exception as exc:  # tracking must never stop the work
                if attempt < CONFLICT_RETRIES and write_conflict(exc):
                    time.sleep(random.uniform(0.05, 0.5) * (attempt + 1))
                    continue
                return self._failed(exc, what)
        return False, None

    def _failed(self, exc: Exception, what: str) -> tuple[bool, object]:
        """``_attempt``'s answer for a call that failed with ``exc`` (warnings as stacklevel 4: the caller's)."""
        refused = refused_write(exc) if self.client is not None else None
        if refused is not None:  # the store answers but its disk takes no more: drop this write, go on
            self.refused.append(what)
            warnings.warn(f"tracking: {what} not logged: {refused}; the run names it in its tag {NOT_LOGGED} "
                          "(the outputs stay in the project: python -m stages.relog logs them later)", BBNWarning, stacklevel=4)
            return True, None
        if not store_failure(exc):
            warnings.warn(f"tracking: {what} failed ({type(exc).__name__}: {first_line(exc)}); skipped",
                          BBNWarning, stacklevel=4)
            return True, None
        if self._failed_at is None:
            warnings.warn(f"MLflow store {self.uri} unavailable during {what} ({type(exc).__name__}: "
                          f"{first_line(exc)}); continuing without tracking, results stay "
                          "in metrics/ and plots/; retrying later", BBNWarning, stacklevel=4)
        self._failed_at = time.monotonic()
        return False, None

    def _connect(self) -> None:
        from mlflow.tracking import MlflowClient

        with store_lock(self.lock):  # the first touch of a new sqlite store creates its schema: one at a time
            client = MlflowClient(tracking_uri=self.uri)
            client.search_experiments(max_results=1)
        self.client = client

    # -- the run -----------------------------------------------------------------------------
    def reopen(self) -> bool:
        """Continue this tracker's run (a resumed training); False when the store does not have it
        or cannot be reached now (the caller then starts a new run)."""
        if not self.run_id or self.client is None:
            return False

        def _reopen():
            from mlflow.exceptions import MlflowException

            try:
                run = self.client.get_run(self.run_id)
            except MlflowException as exc:  # deleted, or another store: the caller starts a new run
                if getattr(exc, "error_code", "") in REQUEST_ERRORS:
                    return False
                raise
            if run.info.lifecycle_stage != "active":
                return False
            self.client.update_run(self.run_id, status="RUNNING")
            return True

        return bool(self._attempt(_reopen, "reopen")[1])

    def params(self) -> dict[str, str] | None:
        """The run's params as the store has them; None without a run or a store."""
        if not self.run_id or self.client is None:
            return None
        return self._attempt(lambda: dict(self.client.get_run(self.run_id).data.params), "get_run")[1]

    def logged_steps(self, key: str) -> set[int] | None:
        """The steps at which the run has metric ``key``; None without a run or a store."""
        if not self.run_id or self.client is None:
            return None
        found = self._attempt(lambda: self.client.get_metric_history(self.run_id, key), "get_metric_history")[1]
        return None if found is None else {m.step for m in found}

    def start(self, params: dict, tags: dict, run_name: str | None = None, description: str = "") -> str | None:
        """Create the run (in the experiment, created or tagged as model training), log its params
        (dotted names) and tags; the run id, or None while the store is away (the run is created
        when it is back: ``run_id`` then holds it)."""
        def _start(client, _):
            with store_lock(self.lock):  # parallel queued runs must not both create the experiment
                experiment = ensure_experiment(client, self.experiment, self.artifacts, self.description)
            all_tags = tags | ({NOTE: description} if description else {})
            self.run_id = client.create_run(experiment, tags=all_tags, run_name=run_name).info.run_id
            from mlflow.entities import Param

            items = [Param(k, str(v)) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow's batch limit is 100 params
                client.log_batch(self.run_id, params=items[i : i + 100])
            return self.run_id

        self._has_run = True
        return self.submit("start", _start, needs_run=False)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numbers at ``step`` (0 when None), time-stamped now (also when logged later)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.submit(f"log_metrics(step={step or 0})", lambda c, run: c.log_batch(run, metrics=batch))

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if Path(path).exists():
            self.submit(f"log_artifact({path})", lambda c, run: c.log_artifact(run, str(path), folder))

    def log_text(self, text: str, name: str) -> None:
        self.submit(f"log_text({name})", lambda c, run: c.log_text(run, text, name))

    def set_tags(self, tags: dict[str, str]) -> None:
        def _tags(client, run):
            for k, v in tags.items():
                client.set_tag(run, k, str(v))

        self.submit("set_tags", _tags)

    def start_system_metrics(self, interval_s: float) -> None:
        """Sample CPU, memory, disk, network (and GPUs when ``nvidia-ml-py`` finds any) into the run
        every ``interval_s`` seconds (MLflow's ``system/*`` metrics) until ``finish``; 0: off."""
        self._interval = interval_s
        if interval_s <= 0 or not self.run_id or self.client is None or self._monitor is not None:
            return

        def _start():
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval_s, resume_logging=True,
                                           tracking_uri=self.uri)
            monitor.start()
            self._monitor = monitor

        self._attempt(_start, "system metrics")

    def _stop_system_metrics(self) -> None:
        """Stop sampling; log the last samples so a run shorter than one interval has them too."""
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return

        def _stop():
            monitor.finish()
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()

        self._attempt(_stop, "system metrics")

    def finish(self, status: str = "FINISHED") -> None:
        """End the run with ``status`` (FAILED instead of FINISHED when a write was refused: the
        run is not complete) and retry whatever is still queued (``close``)."""
        self._stop_system_metrics()
        if self.refused and status == "FINISHED":
            status = "FAILED"
        self._tag_refused()
        self.submit(f"set_terminated({status})", lambda c, run: c.set_terminated(run, status))
        self.close()

    def close(self) -> None:
        """Retry the queue now; warn about what still could not be logged. A run this tracker does
        not end (the training run, for evaluate) gets the ``NOT_LOGGED`` tag of refused writes too."""
        self._tag_refused()
        if not self.enabled or not self._queue:
            return
        self.flush(force=True)
        if self._queue:
            warnings.warn(f"tracking: {len(self._queue)} call(s) not logged ({self._queue[0][0]} first); "
                          "the numbers are in metrics/ and plots/ (log them later with python -m stages.relog)",
                          BBNWarning, stacklevel=2)

    def _tag_refused(self) -> None:
        """Name the refused writes (``refused``) in the run's ``NOT_LOGGED`` tag, when there are new ones."""
        if len(self.refused) > self._tagged:
            self._tagged = len(self.refused)
            self.set_tags({NOT_LOGGED: "; ".join(self.refused)[:5000]})  # within MLflow's limit on a tag value


@contextlib.contextmanager
def store_lock(path: Path | None):
    """An exclusive lock on ``path`` (None: none): sqlite schema creation is not safe under
    concurrency (six processes starting on a fresh store crash), so the first touch is serialised."""
    if path is None:
        yield
        return
    with locked(path):
        yield
