"""Which MLflow run a (possibly resumed) training logs to.

A training resumed from its state (``bbn.train.resume``) continues the interrupted run when that
run's logged params are still the params now, re-logging any epoch the kill left unlogged. When they
differ, its params would lie: a new run starts, the epochs so far are logged into it, and both are
linked (``bbn.resumed_from`` on the new run, ``bbn.resumed_in`` on the old one, which ends KILLED).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from bbn.tracking.datasets import log_inputs
from bbn.tracking.store import Tracker

RESUMED_FROM, RESUMED_IN = "bbn.resumed_from", "bbn.resumed_in"


@dataclass(frozen=True)
class RunStart:
    """What a new run starts with. ``params``: flat {dotted key: value}, logged as the run's params;
    ``texts``: {artifact file name: text}; ``inputs``: MLflow dataset inputs
    (``bbn.tracking.datasets.split_input``); ``metrics_interval``: seconds between system metrics."""

    params: dict[str, object]
    name: str
    description: str
    tags: dict[str, str]
    texts: dict[str, str] = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    metrics_interval: float = 10.0


def differing(logged: dict[str, str], params: dict[str, object]) -> list[str]:
    """The keys of ``params`` whose value differs from (or is missing in) a run's logged params."""
    return sorted(k for k, v in params.items() if logged.get(k) != str(v))


def begin(run: Tracker, start: RunStart, link: dict[str, str] | None = None) -> None:
    """Start ``run``: params, tags (and ``link``), name, description, texts, datasets, system metrics."""
    run.start(start.params, run_name=start.name, description=start.description, tags=start.tags | (link or {}))
    for name, text in start.texts.items():
        run.log_text(text, name)
    log_inputs(run, start.inputs)
    run.start_system_metrics(start.metrics_interval)


def log_history(run: Tracker, history: list[dict], skip: set[int] = frozenset()) -> None:
    """Each epoch's finite numbers at its step (``row['epoch']``), but the epochs in ``skip``."""
    for row in history:
        if int(row["epoch"]) not in skip:
            run.log_metrics({k: v for k, v in row.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                            step=int(row["epoch"]))


def training_run(make: Callable[[str | None], Tracker], start: RunStart, run_id: str = "",
                 history: list[dict] | None = None, state: str = "") -> Tracker:
    """The run a training logs to. ``make(run_id)``: a Tracker on that run (None: a new one);
    ``run_id``/``history``: the interrupted run and its epochs, when resuming from the resume state
    ``state`` (else '' / None)."""
    run = make(run_id or None)
    logged = run.params() if history is not None else None
    changed = differing(logged, start.params) if logged is not None else []
    if history is not None and logged is not None and not changed and run.reopen():
        print(f"train: resuming after epoch {len(history)} from {state}, MLflow run {run.run_id}")
        log_history(run, history, skip=run.logged_steps("train_loss") or set())  # killed between save and log
        run.start_system_metrics(start.metrics_interval)
        return run
    if not changed:
        begin(run, start)
    else:
        old, run = run, make(None)
        begin(run, start, {RESUMED_FROM: old.run_id})
        print(f"train: params changed since MLflow run {old.run_id} was interrupted ({', '.join(changed)}); "
              f"resuming in a new run {run.run_id} ({RESUMED_FROM}={old.run_id})")
        old.set_tags({RESUMED_IN: run.run_id or f"a run whose {RESUMED_FROM} is this one"})
        old.finish("KILLED")
    if history is not None:
        print(f"train: resuming after epoch {len(history)} from {state} in a new MLflow run {run.run_id}")
        log_history(run, history)
    return run
