"""Resume states under ``<project root>/checkpoints/``: ``python -m stages.checkpoints [--prune]``.

Lists every state (configuration key, epochs done, complete or interrupted, size, age, MLflow run)
and what the prune rule would delete. The train stage applies the rule at every start: a state is
deleted when its training finished and DVC has recorded the outputs (the model's md5 is in DVC's
cache or a ``dvc.lock``), when it is older than ``MAX_AGE_DAYS`` days, or when it is not among the
``KEEP_NEWEST`` newest; the state of the training starting and those of running trainings are kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bbn.errors import run
from bbn.train.resume import list_states, prune
from stages.paths import CHECKPOINTS, ROOT

KEEP_NEWEST = 3
MAX_AGE_DAYS = 14


def recorded(md5: str) -> bool:
    """Whether DVC holds a file with this md5: in the project's cache, or named in a ``dvc.lock``
    (the project's, or the one of the ``dvc exp run`` copy this runs in)."""
    if len(md5) != 32:
        return False
    if (ROOT / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).is_file():
        return True
    for lock in {ROOT / "dvc.lock", Path("dvc.lock").resolve()}:
        try:
            if md5 in lock.read_text():
                return True
        except OSError:
            continue
    return False


def prune_states(current: str | Path = "") -> list[Path]:
    """Apply the rule (module docstring) to ``CHECKPOINTS``; ``current``: the state to keep."""
    return prune(CHECKPOINTS, KEEP_NEWEST, MAX_AGE_DAYS, recorded, str(current))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prune", action="store_true", help="delete what the rule says now")
    args = ap.parse_args(argv)
    states = list_states(CHECKPOINTS)
    for s in states:
        state = "complete" if s.get("complete") else f"epoch {s.get('epoch', '?')}"
        done = s.get("complete") and recorded(s.get("outputs_md5", ""))
        note = "running" if s["held"] else "outputs recorded" if done else ""
        print(f"{s['path'].name}  {state:>10}  {s['bytes'] / 2**20:8.1f} MB  {s['age_days']:6.1f} days  "
              f"run {s.get('run_id') or '-'}  {note}")
    if args.prune:
        removed = prune_states()
        print(f"checkpoints: {len(removed)} of {len(states)} resume state(s) deleted")
    elif not states:
        print(f"checkpoints: no resume state in {CHECKPOINTS}")


if __name__ == "__main__":
    run(main)
