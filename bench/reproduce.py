"""The equal-budget table on CIFAR-10-LT IR100: BBN (official and fan-out init), the baselines of
BBN's Table 1, CE + cRT and MiSLAS, as queued DVC experiments of the recipes, then the table
beside the published numbers (rows and keys: ``bench/equal_budget.py``).

    python bench/reproduce.py --source ../shared/data/cifar10-jpg.tar.gz              # queue + run + table (12 epochs)
    python bench/reproduce.py --report-only                                           # table from the store
    python bench/reproduce.py --smoke                                                 # tiny: digits, 1 epoch

Run from the project root (a git + DVC checkout). Each run is ``python -m stages.recipe <recipe>``
with the budget, the row's and the seed's overrides, then ``dvc exp run --queue``; params.yaml is
restored afterwards. ``dvc queue start -j JOBS`` runs them; every finished run lands in the MLflow
store (experiment ``--experiment``), so the queue may be stopped (``dvc queue kill``) and the rest
run later (``dvc queue start``); ``--report-only`` then writes the table from whatever has finished.
The queue goes seed by seed (seed 0 of every row first), so a queue stopped early still has every
row at equal seeds. Seeds: ``--seeds`` (default 0 1 2) for BBN with either init, CE, CE + cRT and
MiSLAS; ``--single-seeds`` (default 0) for LDAM-DRW, Mixup, Manifold Mixup and its two-sampler form.

**Budget.** ``--epochs E`` (default 12, the CPU budget; 200 = the published recipes) scales each
recipe's schedule shape to E epochs: lr steps, DRW/DRS start and warm-up at the same fractions of
training (round(step * E / 200), warm-up at least 1 epoch), T_max = E (BBN's div_epoch = MAX_EPOCH);
MiSLAS's stage-1 steps 160/180 like the others. The classifier stage (one epoch = N class-balanced
draws for N training images, as long as a training epoch) gets the same fraction
of its recipe's epochs, at least one: ``classifier.epochs = max(1, round(epochs_recipe * E / 200))``
(MiSLAS and cRT: 10 -> 1 at E = 12). Images stay at the full 32 px, batch 128. The report states it.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bbn.errors import BBNError, run  # noqa: E402
from bbn.files import atomic_path, write_text  # noqa: E402
from bbn.tracking.runs import load_runs  # noqa: E402
from bench.equal_budget import ROWS, Row, evaluated, header  # noqa: E402
from bench.equal_budget import table as rows_table  # noqa: E402
from stages.recipe import load  # noqa: E402

FULL_EPOCHS = 200
SMOKE = ["data.name=digits", "data.n_max=30", "data.imbalance_ratio=10", "data.image_px=16", "data.test_per_class=5",
         "data.val_per_class=1", "split.val_fraction=0.2", "prepare.short_side=16", "train.image_size=16",
         "train.batch_size=16", "stats.many_above=20", "stats.few_below=5", "eval.batch_size=64"]
SMOKE_ROWS = ("BBN (official init)", "CE + cRT")  # a training-run row and a classifier-run row
TITLE = "# CIFAR-10-LT IR100 at equal budget: BBN, the baselines of its Table 1, CE + cRT, MiSLAS"


def classifier_epochs(recipe_epochs: int, epochs: int) -> int:
    """The classifier stage's epochs at a budget of ``epochs``: the recipe's at the same fraction, at least 1."""
    return max(1, round(recipe_epochs * epochs / FULL_EPOCHS))


def scaled(recipe: str, epochs: int) -> list[str]:
    """``-S`` overrides that scale ``recipe``'s schedule shape to ``epochs`` (see the module docstring)."""
    params = load(recipe)
    t, f = params["train"], epochs / FULL_EPOCHS
    steps, last = [], 0
    for s in t["lr_steps"]:
        last = min(max(last + 1, round(s * f)), max(epochs, last + 1))
        steps.append(last)
    warmup = max(1, round(t["warmup_epochs"] * f)) if t["warmup_epochs"] else 0
    defer = round(t["baseline"]["defer_epoch"] * f)
    out = [f"train.epochs={epochs}", f"train.lr_steps=[{','.join(map(str, steps))}]", f"train.tmax={epochs}",
           f"train.warmup_epochs={warmup}", f"train.baseline.defer_epoch={defer}"]
    c = params.get("classifier", {})
    if c.get("method", "none") != "none":
        out.append(f"classifier.epochs={classifier_epochs(c['epochs'], epochs)}")
    return out


def plan(source: str, epochs: int, seeds: list[int], single_seeds: list[int], experiment: str,
         smoke: bool = False) -> list[tuple[Row, list[str], int]]:
    """(row, ``-S`` overrides, seed) of every run to queue, seed by seed in ``ROWS`` order."""
    rows = [r for r in ROWS if not smoke or r.name in SMOKE_ROWS]
    order = list(dict.fromkeys([*seeds, *single_seeds]))
    runs = [(r, s) for s in order for r in rows if s in (seeds if r.many_seeds else single_seeds)]
    data = SMOKE if smoke else [f"data.source={source}", "data.imbalance_ratio=100"]
    out = []
    for row, seed in runs:
        seed_sets = [f"train.seed={seed}"] + ([f"classifier.seed={seed}"] if row.classifier else [])
        out.append((row, scaled(row.recipe, epochs) + row.sets + data + seed_sets
                    + [f"tracking.experiment={experiment}"], seed))
    return out


def remaining(runs: list[tuple[Row, list[str], int]], experiment: str, uri: str,
              epochs: int) -> list[tuple[Row, list[str], int]]:
    """The planned runs whose row and seed have not finished in the store yet (a later sitting
    queues only those); all of them when the store or experiment does not exist yet."""
    try:
        done = evaluated(load_runs(uri, experiment, tags=("bbn.stage",)), epochs)
    except BBNError:
        return runs
    if done.empty:  # no run holds a row's evaluation yet (none finished, or all deleted)
        return runs
    finished = set(zip(done["params.row"], done["params.train.seed"].astype(int)))
    return [run for run in runs if (run[0].name, run[2]) not in finished]


def _sh(*cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def queue(runs: list[tuple[Row, list[str], int]]) -> None:
    """Apply each recipe with its overrides to params.yaml and queue it; params.yaml is restored afterwards."""
    params = ROOT / "params.yaml"
    saved = params.read_text()
    try:
        for row, sets, seed in runs:
            _sh(sys.executable, "-m", "stages.recipe", row.recipe, *[a for s in sets for a in ("-S", s)])
            _sh("dvc", "exp", "run", "--queue")
            print(f"queued {row.name} ({row.recipe}) seed {seed}", flush=True)
    finally:
        params.write_text(saved)


def run_queue(jobs: int, poll: float = 10.0) -> None:
    _sh("dvc", "queue", "start", "-j", str(jobs))
    while any(w in _sh("dvc", "queue", "status") for w in ("Queued", "Running")):
        time.sleep(poll)
    print(_sh("dvc", "queue", "status"))


def machine() -> str:
    """This host in words: CPU model, cores, OS."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU cores, {platform.system()} (the host that wrote the report)"


def table(experiment: str, uri: str, epochs: int, host: str | None = None) -> tuple[str, pd.DataFrame]:
    """The report's markdown (header, table, verdicts) and the summary per row, from the store."""
    runs = load_runs(uri, experiment, tags=("val_split", "bbn.stage", "device"))
    text, summary, used = rows_table(runs, epochs)
    devices = ", ".join(sorted(runs["tags.device"].dropna().unique())) if "tags.device" in runs else "?"
    return (f"{TITLE}\n\nStore `{uri}`, experiment `{experiment}`; {len(used)} runs.\n\n"
            + header(used, summary, epochs, host or machine(), devices or "?") + "\n" + text), summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=str(ROOT.parent / "shared/data/cifar10-jpg.tar.gz"))
    ap.add_argument("--epochs", type=int, default=12, help="budget: epochs per run (200 = published)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of BBN (both inits), CE, CE + cRT and MiSLAS")
    ap.add_argument("--single-seeds", type=int, nargs="*", default=[0],
                    help="seeds of LDAM-DRW, Mixup, Manifold Mixup (one sampler and two)")
    ap.add_argument("--jobs", type=int, default=1, help="queue workers (dvc queue start -j)")
    ap.add_argument("--experiment", default="equal_budget_cifar10_lt")
    ap.add_argument("--uri", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    ap.add_argument("--out", default=str(ROOT / "reports/equal_budget_cifar10_lt"))
    ap.add_argument("--machine", default=None, help="the machine in words (default: this host's CPU)")
    ap.add_argument("--report-only", action="store_true", help="only write the table from the store")
    ap.add_argument("--smoke", action="store_true", help="digits, 16 px, 1 epoch, seed 0, BBN and CE + cRT: a check")
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs, args.seeds, args.single_seeds = 1, [0], []
        args.experiment += "_smoke"
        args.out += "_smoke"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.report_only:
        planned = plan(args.source, args.epochs, args.seeds, args.single_seeds, args.experiment, args.smoke)
        todo = remaining(planned, args.experiment, args.uri, args.epochs)
        print(f"reproduce: {len(planned) - len(todo)} of {len(planned)} runs already finished in the store; "
              f"queueing {len(todo)}", flush=True)
        _sh("dvc", "queue", "remove", "--queued")  # an earlier sitting's queued runs: queued again below
        queue(todo)
        run_queue(args.jobs)
    text, summary = table(args.experiment, args.uri, args.epochs, args.machine)
    out = Path(args.out)
    write_text(out / "equal_budget.md", text)
    with atomic_path(out / "equal_budget.csv", suffix=".csv") as tmp:
        summary.to_csv(tmp, index=False)
    print(text)


if __name__ == "__main__":
    run(main)
