"""Re-log a run whose training could not reach the MLflow store: ``python -m stages.relog [--uri URI]``.

Training never waits for MLflow; when the store was unavailable everything it would have logged is
still in the project: ``params.yaml``, ``plots/learning_curve.csv`` (per-epoch numbers),
``metrics/*.json`` (final numbers) and the plots. This command creates one MLflow run from those
files, tagged ``relogged``, and prints its id (``models/mlflow_run.json`` is the train stage's DVC
output and is left as it is).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from bbn.errors import BBNError, run
from bbn.files import read_csv
from bbn.tracking.failures import open_store
from bbn.train.loop import finite
from stages.params import flatten, load_params
from stages.runs import describe, run_name, run_tags, store_uri, tracker


def relog(root: Path, uri: str = "") -> str:
    params = load_params(root / "params.yaml")
    curve_path = root / "plots" / "learning_curve.csv"
    if not curve_path.exists():
        raise BBNError(f"{curve_path}: not found; nothing to re-log (has the train stage run?)")
    tracking = params.tracking.model_copy(update={"uri": uri}) if uri else params.tracking
    open_store(store_uri(tracking))  # one line when the store cannot be opened
    mlrun = tracker(tracking)
    if not mlrun.available:
        raise BBNError(f"MLflow store {mlrun.uri} is still unavailable")
    mlrun.start(flatten(params), run_tags() | {"relogged": "true"}, run_name(params),
                describe(params, "Re-logged from the project's files by stages.relog."))
    mlrun.log_text(yaml.safe_dump(params.model_dump(), sort_keys=False), "params_resolved.yaml")
    for row in read_csv(curve_path).to_dict("records"):
        mlrun.log_metrics(finite(row), step=int(row["epoch"]))
    for path in sorted((root / "metrics").glob("*.json")):
        mlrun.log_metrics(finite(json.loads(path.read_text())))
    for png in sorted((root / "plots").glob("*.png")):
        mlrun.log_artifact(png, "plots")
    mlrun.finish()
    if mlrun.run_id is None or not mlrun.available:
        raise BBNError(f"MLflow store {mlrun.uri}: logging failed midway (see the warning above)")
    return mlrun.run_id


def cli(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uri", default="", help="store to log to (default: tracking.uri of params.yaml)")
    ap.add_argument("--root", default=".", help="project folder holding params.yaml, metrics/, plots/")
    args = ap.parse_args(argv)
    run(lambda: print(f"relog: run {relog(Path(args.root), args.uri)}"))


if __name__ == "__main__":
    cli()
