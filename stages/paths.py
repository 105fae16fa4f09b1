"""Where each stage reads and writes; dvc.yaml declares the same paths.

Paths under DVC's control are relative to the working directory (DVC runs each stage in the
workspace, or in the temporary copy of ``dvc exp run --temp/--queue``). What must outlive such a
copy (downloads, resume states, the MLflow store) lives under ``ROOT``, the real project root.
"""

import os
from pathlib import Path
from urllib.parse import unquote

from bbn.files import sqlite_uri


def project_root() -> Path:
    """The real project root, also from inside ``dvc exp run --temp/--queue``'s throw-away copy."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


ROOT = project_root()
RAW = Path("data/raw")  # a link to the dataset's shared tree (bbn.sources.raw)
RAW_MANIFEST = Path("data/raw.json")  # what data/raw holds: the download stage's DVC output
DOWNLOADS = ROOT / "data/downloads"  # kept across experiments, outside DVC
CHECKPOINTS = ROOT / "checkpoints"  # resume states of interrupted trainings, outside DVC
STATS = Path("data/stats")
SPLIT = Path("data/split")
PREPARED = Path("data/prepared")
MODEL = Path("models/model.pt")
RUN = Path("models/mlflow_run.json")
FINAL_MODEL = Path("models/final.pt")  # what evaluate reads: the train stage's model, or its re-trained classifier
FINAL_RUN = Path("models/final_run.json")  # the MLflow run that logged FINAL_MODEL (the training or the classifier run)
PREDICTIONS = Path("predictions")
METRICS = Path("metrics")
PLOTS = Path("plots")
SUBMISSION = Path("submission.csv")
MLFLOW_DB = ROOT / "mlflow.db"
MLFLOW_ARTIFACTS = ROOT / "mlartifacts"
MLFLOW_LOCK = ROOT / ".mlflow.lock"


def resolve(path: str) -> str:
    """A path param as an absolute path: relative ones are relative to the project root, so they
    mean the same under ``dvc repro`` and in ``dvc exp run``'s temporary copy. URLs and '' pass."""
    if not path or "://" in path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else ROOT / p)


def resolve_uri(uri: str) -> str:
    """A tracking URI with its relative path made absolute against the project root: ``sqlite:///x.db``
    (three slashes: relative), ``file:x`` and a bare folder (MLflow's file store); others pass. The
    path is percent-encoded (``bbn.files.sqlite_uri``: a project folder may hold ``%``, ``?``, ``#``,
    spaces, non-ASCII letters); what the user wrote is read as a URI (``%20`` is a space)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return sqlite_uri(resolve(unquote(uri.removeprefix("sqlite:///"))))
    if uri.startswith("file:") and not uri.startswith("file://"):
        return Path(resolve(unquote(uri.removeprefix("file:")))).as_uri()
    return resolve(uri) if uri and ":" not in uri else uri
