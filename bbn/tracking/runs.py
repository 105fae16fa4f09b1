"""Reading a tracking store back: every run of an experiment as one flat table (``bbn-report``,
the benchmarks' tables)."""

from __future__ import annotations

import pandas as pd

from bbn.errors import BBNError
from bbn.files import sqlite_path


def load_runs(uri: str, experiment: str, filter_string: str = "",
              tags: tuple[str, ...] = ("val_split",)) -> pd.DataFrame:
    """Every run of the experiment matching the filter, newest first, as a flat frame: ``run_id``,
    ``status``, ``start_time``, ``params.<name>``, ``metrics.<name>`` and ``tags.<name>`` of ``tags``."""
    from mlflow.exceptions import MlflowException

    from bbn.tracking.failures import open_store

    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise BBNError(f"no MLflow store at {uri} (no run has been tracked yet?)")
    client = open_store(uri)
    try:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            have = ", ".join(e.name for e in client.search_experiments()) or "none"
            raise BBNError(f"no experiment {experiment!r} in {uri} (experiments: {have})")
        found, token = [], None
        while True:
            page = client.search_runs([exp.experiment_id], filter_string, max_results=1000,
                                      order_by=["attributes.start_time DESC"], page_token=token)
            found += page
            token = page.token
            if not token:
                break
    except MlflowException as exc:
        raise BBNError(f"cannot search {uri} with filter {filter_string!r}: "
                       f"{str(exc).splitlines()[0]}") from None
    rows = [{"run_id": r.info.run_id, "status": r.info.status, "start_time": r.info.start_time}
            | {f"params.{k}": v for k, v in r.data.params.items()}
            | {f"metrics.{k}": v for k, v in r.data.metrics.items()}
            | {f"tags.{k}": v for k, v in r.data.tags.items() if k in tags} for r in found]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run_id", "status", "start_time"])
