"""Queued experiments of the scale benchmark: ``dvc exp run --queue -S train.tmax=...``, then run.

What a user of a queue pays before training starts: the experiments are queued, then run one at a
time by ``dvc exp run --run-all -j 1`` (DVC's queue worker, each in its temporary copy), whose
output (DVC following each experiment's log) is read line by line with the time each line arrived.
Per experiment: the stages DVC ran (``dvc queue logs``), and the seconds from the experiment's
start to its MLflow run's start (the train stage opens the run after building the model and the
loaders, right before the first step).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.scale_measure import ran


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def _run(repo: Path, env: dict, *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(dvc(*args), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def queued_experiments(repo: Path, env: dict, n: int, timeout: float) -> dict:
    tmax = yaml.safe_load((repo / "params.yaml").read_text())["train"]["tmax"]
    values = [tmax + 1 + i for i in range(n)]
    start = time.time()
    _run(repo, env, "exp", "run", "--queue", "-S", "train.tmax=" + ",".join(map(str, values)))
    queue_s = time.time() - start
    start = time.time()
    proc = subprocess.Popen(dvc("exp", "run", "--run-all", "-j", "1"), cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = [(round(time.time() - start, 2), line.rstrip()) for line in proc.stdout]
    proc.wait(timeout=timeout)
    total_s = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"dvc exp run --run-all exited {proc.returncode}\n" + "\n".join(text for _, text in lines[-60:]))
    experiments = split_log(lines, total_s)
    starts = mlflow_starts(repo)
    for exp in experiments:
        exp["ran_queue_logs"] = ran(_run(repo, env, "queue", "logs", exp["name"]))
        run_start = starts.get(exp["name"])
        exp["to_mlflow_run_s"] = None if run_start is None else round(run_start - start - exp["start_s"], 2)
    return {"queue_s": round(queue_s, 2), "run_all_s": round(total_s, 2), "tmax": values,
            "experiments": experiments, "log": [f"{t:8.2f}  {line}" for t, line in lines]}


def split_log(lines: list[tuple[float, str]], end: float) -> list[dict]:
    """Per experiment of the followed output: name, start, the stages run, the train stage's start,
    and the seconds each took (relative to the experiment's first line)."""
    out = []
    for t, line in lines:
        found = re.match(r"Reproducing experiment '([^']+)'", line)
        if found:
            out.append({"name": found.group(1), "start_s": t, "ran": [], "to_train_stage_s": None})
        elif out and (stage := re.match(r"Running stage '([\w-]+)'", line)):
            out[-1]["ran"].append(stage.group(1))
            if stage.group(1) == "train":
                out[-1]["to_train_stage_s"] = round(t - out[-1]["start_s"], 2)
    for exp, nxt in zip(out, out[1:] + [None]):
        exp["total_s"] = round((nxt["start_s"] if nxt else end) - exp["start_s"], 2)
    return out


def mlflow_starts(repo: Path) -> dict[str, float]:
    """{DVC experiment name: its MLflow run's start time (epoch seconds)} from the repo's store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bbn")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return {r.data.tags.get("dvc_exp_name"): r.info.start_time / 1000 for r in runs if r.data.tags.get("dvc_exp_name")}
