"""Where each stage reads and writes; dvc.yaml declares the same paths."""

from pathlib import Path

from bbn.io import project_root

RAW = Path("data/raw")
DOWNLOADS = project_root() / "data/downloads"  # kept across experiments, outside DVC
STATS = Path("data/stats")
SPLIT = Path("data/split")
PREPARED = Path("data/prepared")
MODEL = Path("models/model.pt")
RUN = Path("models/mlflow_run.json")
PREDICTIONS = Path("predictions")
METRICS = Path("metrics")
PLOTS = Path("plots")
SUBMISSION = Path("submission.csv")
