"""The DVC pipeline on a tiny config in a fresh temporary copy of the repository.

The copy is the tests' (``tests/helpers.py``: ``copy_project``, ``TINY``), made a DVC repository
without git (``core.no_scm``): the bench runs no git commands.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import Work
from tests.helpers import copy_project

ROOT = Path(__file__).resolve().parents[1]


def env(repo: Path) -> dict:
    e = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(repo), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    for key in ("DVC_ROOT", "DVC_EXP_NAME"):
        e.pop(key, None)
    return e


def make_repo(dest: Path) -> Path:
    """The tests' tiny copy of the project (``copy_project``), made a DVC repo without git."""
    copy_project(dest)
    config = dest / ".dvc" / "config"
    text = config.read_text() if config.exists() else ""
    text = text.replace("[core]\n", "[core]\n    no_scm = true\n") if "[core]" in text else "[core]\n    no_scm = true\n" + text
    config.write_text(text)
    return dest


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env(repo), capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


def set_tmax(repo: Path) -> int:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["tmax"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params["train"]["tmax"]


def pipeline(spec: dict) -> Work:
    """Setup: the first ``dvc repro``. Each run: one no-op ``dvc repro`` (seconds).
    Finish: edit train.tmax, report what ``dvc status`` and ``dvc repro --dry`` would redo (and, with
    ``rerun``, what ``dvc repro`` then actually runs)."""
    tmp = Path(tempfile.mkdtemp(prefix="bbn-bench-"))
    repo = make_repo(tmp / "bbn")
    start = time.perf_counter()
    first = dvc(repo, "repro")
    facts = {"first_s": time.perf_counter() - start, "first_ran": ran(first.stdout), "noop_ran": []}

    def noop() -> float:
        start = time.perf_counter()
        out = dvc(repo, "repro")
        elapsed = time.perf_counter() - start
        facts["noop_ran"] += ran(out.stdout)
        return elapsed

    def finish() -> dict:
        facts["tmax"] = set_tmax(repo)
        facts["status_changed"] = list(json.loads(dvc(repo, "status", "--json").stdout or "{}"))
        facts["dry_run"] = ran(dvc(repo, "repro", "--dry").stdout)
        if spec.get("rerun"):  # the ground truth: what a real repro re-runs (train changes model.pt)
            facts["rerun"] = ran(dvc(repo, "repro").stdout)
        shutil.rmtree(tmp, ignore_errors=True)
        return facts

    return Work(noop, finish)
