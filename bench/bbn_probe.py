"""Probe a finished BBN experiment without retraining it: test-time α and a re-trained classifier.

    python bench/bbn_probe.py --repo /path/to/project --exp brute-seam --out reports/probe.md

Where a BBN model loses accuracy at a budget (features or classifier?) is asked of the weights it
ended with, so every number below comes from the same trunk:

- **Test-time α** (``eval.alpha`` over ``--alphas``): the official head scores ``FC(2·cat(α f_c,
  (1−α) f_r))``; 0.5 is BBN's test rule, 1 the conventional branch alone, 0 the reversed one.
- **cRT on the frozen trunk** (``classifier.method=crt``, ``classifier.branch=both``,
  ``--crt-epochs``): Kang et al.'s classifier re-training with class-balanced batches, then the
  evaluation at α = 0.5. If it moves the head/tail split but not the top-1, the trunk limits.

The experiment (a DVC experiment name or commit of ``--repo``) is checked out into a temporary git
worktree sharing ``--repo``'s DVC cache (symlinks; the model files are copied, so nothing in the
cache is written), its ``data/raw`` linked to the shared tree the run used. The stages run as
processes (``python -m stages.evaluate`` …) with ``tracking.uri`` pointed at a store in the
worktree, so the experiment's MLflow runs are never written to. Prints and writes a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ruamel.yaml import YAML  # noqa: E402

from bbn.files import write_text  # noqa: E402

METRICS = ("test_top1_acc", "test_many_acc", "test_medium_acc", "test_few_acc")


def sh(cwd: Path, *cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def commit(repo: Path, exp: str) -> str:
    """The commit of DVC experiment ``exp`` (its name), else ``exp`` as a git revision."""
    for line in sh(repo, "git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps").splitlines():
        sha, ref = line.split(" ", 1)
        if ref.endswith("/" + exp):
            return sha
    return sh(repo, "git", "rev-parse", "--verify", exp + "^{commit}").strip()


def check_out(repo: Path, exp: str, work: Path) -> None:
    """The experiment's commit with its DVC outputs (cache shared read-only) and its data/raw tree."""
    sh(repo, "git", "worktree", "add", "--detach", str(work), commit(repo, exp))
    sh(work, "dvc", "config", "--local", "cache.dir", str(repo / ".dvc" / "cache"))
    sh(work, "dvc", "config", "--local", "cache.type", "symlink")
    sh(work, "dvc", "checkout", "download", "check", "split", "stats", "prepare", "train", "classifier")
    for f in (work / "models").iterdir():  # real files: the stages replace them, never the cache's
        shutil.copyfile(f.resolve(), f.with_suffix(".tmp"))
        f.with_suffix(".tmp").replace(f)
    content = json.loads((work / "data" / "raw.json").read_text())["content"]
    manifests = [t / "manifest.json" for t in (repo / "data" / "downloads" / "raw").iterdir()]
    trees = [m.parent for m in manifests if m.is_file() and json.loads(m.read_text()).get("content") == content]
    if not trees:
        raise SystemExit(f"{repo}/data/downloads/raw: no tree with the content {content} of the run's data/raw.json")
    (work / "data" / "raw").symlink_to(trees[0])


def evaluate(work: Path, label: str, **sections: dict) -> dict:
    yaml, path = YAML(), work / "params.yaml"  # round trip, YAML 1.2 as DVC writes it
    params = yaml.load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    params["tracking"]["uri"] = f"sqlite:///{work / 'probe.db'}"
    with path.open("w") as f:
        yaml.dump(params, f)
    if params["classifier"]["method"] != "none":
        print(sh(work, sys.executable, "-m", "stages.classifier").splitlines()[-1], flush=True)
    line = [x for x in sh(work, sys.executable, "-m", "stages.evaluate").splitlines() if x.startswith("evaluate: test")]
    print(f"{label}: {line[-1] if line else '(no headline)'}", flush=True)
    numbers = json.loads((work / "metrics" / "eval.json").read_text())
    numbers["test_top1_acc"] = 1 - numbers["test_top1_error"]
    return {"probe": label} | {m: None if numbers.get(m) is None else 100 * numbers[m] for m in METRICS}  # None: no class


def table(rows: list[dict], exp: str) -> str:
    lines = [f"Experiment `{exp}`: top-1 and many / medium / few-shot accuracy (%) on the test split.", "",
             "| probe | top-1 | many | medium | few |", "|---|---|---|---|---|"]
    lines += [f"| {r['probe']} | " + " | ".join("n/a" if r[m] is None else f"{r[m]:.1f}" for m in METRICS) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="the project checkout that ran the experiment")
    ap.add_argument("--exp", required=True, help="DVC experiment name or commit")
    ap.add_argument("--alphas", default="1,0.75,0.5,0.25,0", help="test-time alphas (eval.alpha)")
    ap.add_argument("--crt-epochs", type=int, default=1, help="classifier.epochs of the cRT probe (0: none)")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    a = ap.parse_args(argv)
    repo, work = a.repo.resolve(), Path(tempfile.mkdtemp(prefix="bbn-probe-")) / "repo"
    try:
        check_out(repo, a.exp, work)
        rows = [evaluate(work, f"test-time α = {x:g}", eval={"alpha": x}) for x in map(float, a.alphas.split(","))]
        if a.crt_epochs:
            rows.append(evaluate(work, f"cRT on the frozen trunk ({a.crt_epochs} epoch), α = 0.5", eval={"alpha": 0.5},
                                 classifier={"method": "crt", "branch": "both", "epochs": a.crt_epochs}))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(work)], cwd=repo, capture_output=True)
        shutil.rmtree(work.parent, ignore_errors=True)
    text = table(rows, a.exp)
    print(text)
    if a.out:
        write_text(a.out, text)


if __name__ == "__main__":
    main()
