"""Issue 26, concurrent tracking writes: two queued experiments logging into one sqlite store. The
reported instance: MLflow inserts a dataset entry both runs share; the slower run's insert fails
with `IntegrityError: UNIQUE constraint failed: datasets...`, which MLflow reports as a BAD_REQUEST,
so the run lost its dataset input. A write that lost such a race is retried, never dropped."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import sqlalchemy.exc
from mlflow.exceptions import MlflowException

from bbn.files import sqlite_uri
from bbn.tracking import Tracker
from bbn.tracking.failures import write_conflict

ROOT = Path(__file__).resolve().parents[1]


def _lost_race() -> MlflowException:
    """What MLflow's sqlalchemy store raises for the loser of the race (db/utils.make_managed_session)."""
    cause = sqlalchemy.exc.IntegrityError("INSERT INTO datasets ...", {}, sqlite3.IntegrityError(
        "UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"))
    try:
        raise MlflowException(message=cause, error_code="BAD_REQUEST") from cause
    except MlflowException as exc:
        return exc


def test_a_write_that_lost_a_race_is_retried(tmp_path):
    run = Tracker(sqlite_uri(tmp_path / "mlflow.db"), "e")
    run.start({}, {})
    calls = []

    def flaky(client, run_id):
        calls.append(run_id)
        if len(calls) == 1:
            raise _lost_race()
        return "logged"

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert run.submit("log_inputs", flaky) == "logged"
    assert len(calls) == 2 and write_conflict(_lost_race()) and not write_conflict(MlflowException("bad key"))
    run.finish()


RACER = """
import sys, time
import pandas as pd
from bbn.tracking import Tracker
from bbn.tracking.datasets import log_inputs, split_input
uri, start, csv = sys.argv[1], float(sys.argv[2]), sys.argv[3]
run = Tracker(uri, "e")
run.start({}, {})
inputs = [split_input(pd.read_csv(csv), "split", csv, "train")]
while time.time() < start:
    pass
log_inputs(run, inputs)
run.finish()
"""


def test_parallel_runs_sharing_a_dataset_all_log_it(tmp_path):
    """Four processes log the same dataset at the same instant (the race is not certain to happen in
    every try; the test above makes it certain)."""
    uri, csv = sqlite_uri(tmp_path / "mlflow.db"), tmp_path / "train.csv"
    pd.DataFrame({"path": ["a.jpg", "b.jpg"], "category_id": [0, 1]}).to_csv(csv, index=False)
    first = Tracker(uri, "e")  # the store and experiment exist before the race
    first.start({}, {})
    first.finish()
    (tmp_path / "racer.py").write_text(RACER)
    start = time.time() + 10
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "racer.py"), uri, str(start), str(csv)],
                              env=os.environ | {"PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert not any("skipped" in e or "not logged" in e for e in errors), errors
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("select count(*) from inputs").fetchone() == (4,)
