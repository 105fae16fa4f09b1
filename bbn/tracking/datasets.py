"""The data a run trained and was tested on, as MLflow datasets (``mlflow.data``).

Each split is logged as one dataset input of the run (``MlflowClient.log_inputs``) with its context
(train / val / test): a name (the dataset, and the recipe when there is one), the file it was read
from as source, a digest of that file's bytes (md5: the same split files give the same digest,
whichever machine made them) and a profile with its row count. MLflow's runs table shows them in
its Dataset column; two runs on the same split share the dataset entry.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from bbn.files import file_hash


def file_digest(path: str | Path) -> str:
    """md5 (32 hex digits, within MLflow's 36-character digest limit) of a file's bytes; raises
    OSError when it cannot be read."""
    return file_hash(path, "md5")


def split_input(frame: pd.DataFrame, name: str, source: str | Path, context: str, digest: str = ""):
    """One ``mlflow.entities.DatasetInput``: ``frame`` (one row per image: path, category_id) read
    from ``source``; ``digest`` defaults to ``file_digest(source)``."""
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    table = frame[[c for c in ("path", "category_id") if c in frame]].astype(str)  # ids are labels, not numbers
    with warnings.catch_warnings():  # MLflow registers its local-file source twice and says so on every call
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(table, source=str(source), name=name,
                                          digest=digest or file_digest(source),
                                          targets="category_id" if "category_id" in table else None)
        entity = dataset._to_mlflow_entity()  # what mlflow.log_input sends, for a run that is not active
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def log_inputs(tracker, inputs: list) -> None:
    """Log dataset inputs into ``tracker``'s run (a ``bbn.tracking.Tracker``; queued if the store is away)."""
    if inputs:
        tracker.submit("log_inputs", lambda client, run: client.log_inputs(run, datasets=inputs))
