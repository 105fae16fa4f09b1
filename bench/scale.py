"""The scale benchmark: the whole pipeline on iNat2019-shaped synthetic data at two scales, timed per stage.

For each scale s (``--scales 1/80,1/40``): ``bench/inat_synth.py`` writes (or reuses) the five archives
and serves them on 127.0.0.1; a temporary copy of the repository (``tests/helpers.py``
``copy_project``, a git repo as a user's clone) gets the ``inat2019_bbn_r50`` recipe with
``data.mirror`` = the server, ``data.md5`` = the archives' md5s, ``train.in_memory: off`` (the path of
the full dataset, which does not fit in memory) and training bounded by ``train.max_steps``. Each
stage then runs alone (``dvc repro -s STAGE``, DVC's own hashing included) and is timed
(``bench/scale_measure.py``); then a no-op ``dvc status`` and ``dvc repro``, and (at the first scale)
queued experiments that change only ``train.tmax``: what ran and the seconds before training.
``bench/scale_report.py`` prints per-image costs, the growth between the scales and the full-size
extrapolation for ``--cores``. See bench/README.md "Scale: iNaturalist 2019".

    python bench/scale.py                      # 1/80 and 1/40: ~70 min on 2 shared cores (generation included)
    python bench/scale.py --smoke              # 20 classes, 96-px images: ~1 min (tests/test_bench_scale.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo root, not bench/, so `bench.x`, `stages` and `tests` import from here

import yaml  # noqa: E402

from bench import inat_synth, scale_report  # noqa: E402
from bench.scale_measure import Timing, disk_bytes, timed  # noqa: E402
from bench.scale_queue import queued_experiments  # noqa: E402
from bench.serve import serve  # noqa: E402
from tests.helpers import copy_project, merge, read_params  # noqa: E402

RECIPE = "inat2019_bbn_r50"
SMOKE = {"model": {"backbone": "resnet32"}, "prepare": {"short_side": 36}, "train": {"image_size": 32, "batch_size": 4},
         "eval": {"batch_size": 16}, "tracking": {"log_model": False}}


def env(repo: Path) -> dict:
    e = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(repo), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
             PYTHONUNBUFFERED="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
             GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost")
    for key in ("DVC_ROOT", "DVC_EXP_NAME"):
        e.pop(key, None)
    return e


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=env(repo), check=True, capture_output=True)


def params(url: str, md5: dict, a) -> dict:
    """The project's params.yaml + the recipe + the benchmark's overrides (``--accumulate``: the
    recipe's global batch in that many micro-batches, so that a CPU step fits in memory)."""
    from stages.recipe import load
    out = merge(read_params(ROOT / "params.yaml"), load(RECIPE)) | {"recipe": RECIPE}
    batch = out["train"]["batch_size"]
    if batch % a.accumulate:
        raise SystemExit(f"--accumulate {a.accumulate} does not divide the recipe's batch of {batch}")
    train = {"in_memory": "off", "max_steps": a.max_steps, "batch_size": batch // a.accumulate, "accumulate": a.accumulate,
             "lr": out["train"]["lr"] / a.accumulate}  # train.lr_scaling linear multiplies it back
    out = merge(out, {"data": {"name": "inat2019", "mirror": url, "md5": md5}, "train": train})
    return merge(out, SMOKE) if a.smoke else out


def make_repo(dest: Path, url: str, md5: dict, a) -> Path:
    copy_project(dest)
    (dest / "params.yaml").write_text(yaml.safe_dump(params(url, md5, a), sort_keys=False))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", f"bench: {RECIPE} on synthetic data")
    return dest


def stages(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def time_stages(repo: Path, a) -> list[Timing]:
    """Each stage alone (``dvc repro -s``), dvc.lock committed, then a no-op status and repro."""
    e, timings = env(repo), []
    steps = [(name, dvc("repro", "-s", name)) for name in stages(repo)]
    for i, (what, cmd) in enumerate([*steps, ("dvc status (no-op)", dvc("status")), ("dvc repro (no-op)", dvc("repro"))]):
        if i == len(steps):
            git(repo, "add", "-A")  # the user commits dvc.lock: queued experiments start from it
            git(repo, "commit", "-q", "-m", "dvc repro")
        timings.append(timed(what, cmd, repo, e, [repo], a.timeout))
        log(f"  {summary(timings[-1])}")
    return timings


def disk_usage(repo: Path) -> dict[str, int]:
    """Bytes per folder after the pipeline, each file counted once (``disk_bytes``)."""
    parts = ["data/downloads", "data/raw", "data/prepared", ".dvc/cache", "models", "checkpoints", "mlartifacts"]
    disk = {Path(k).relative_to(repo).as_posix(): v for k, v in disk_bytes([repo / p for p in parts]).items()}
    disk["other (mlflow.db, predictions, ...)"] = disk_bytes([repo])[str(repo)] - sum(disk.values())
    return disk


def run_scale(scale: float, a, work: Path) -> dict:
    """Generate, serve, and time every stage at one scale; the facts for the report."""
    tag = f"s{scale:.6g}"
    log(f"scale {scale:.6g}: generating (or reusing) {work / ('data-' + tag)}")
    start = time.perf_counter()
    manifest = inat_synth.build(work / f"data-{tag}", inat_synth.Spec(scale, a.classes, a.px))
    generate_s = time.perf_counter() - start
    repo_dir = work / f"run-{tag}"
    shutil.rmtree(repo_dir, ignore_errors=True)
    with serve(work / f"data-{tag}", lifetime=a.timeout) as url:
        repo = make_repo(repo_dir / "bbn", url, manifest["md5"], a)
        timings = time_stages(repo, a)
        disk = disk_usage(repo)
        queue = queued_experiments(repo, env(repo), a.queued, a.timeout) if a.queued and scale == a.scales[0] else None
    if not a.keep:
        shutil.rmtree(repo_dir, ignore_errors=True)
    return {"scale": scale, "counts": manifest["counts"], "classes": manifest["classes"],
            "archive_bytes": sum(manifest["archive_bytes"].values()), "generate_s": generate_s,
            "timings": [vars(t) | {"output": t.output[-2000:]} for t in timings], "disk": disk, "queue": queue,
            "max_steps": a.max_steps, "accumulate": a.accumulate}


def summary(t: Timing) -> str:
    return (f"{t.what}: {t.wall_s:.1f} s wall, {t.cpu_s:.1f} s CPU, {t.rss_mib:,.0f} MiB peak, {t.files} files, "
            f"{t.bytes / 2**20:,.1f} MiB written, load {t.load[0]:.2f}->{t.load[1]:.2f}, ran {t.ran}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="1/80,1/40", help="two (or more) fractions of the full size")
    ap.add_argument("--cores", type=int, default=16, help="cores of the machine to extrapolate to")
    ap.add_argument("--smoke", action="store_true", help="20 classes, 96-px images, 32-px training: ~1 min")
    ap.add_argument("--classes", type=int, default=None, help=f"default {inat_synth.CLASSES} (smoke: 20)")
    ap.add_argument("--px", type=int, default=None, help="longer image side, default 800 (smoke: 96)")
    ap.add_argument("--max-steps", type=int, default=1, help="train.max_steps of the timed training")
    ap.add_argument("--accumulate", type=int, default=8, help="train.accumulate: the recipe's batch of 128 in micro-batches "
                    "of 128/N (a CPU step of 128 x 2 images at 224 px needs ~20 GB)")
    ap.add_argument("--queued", type=int, default=2, help="queued train.tmax experiments at the first scale (0: none)")
    ap.add_argument("--work", type=Path, default=None, help="data and run folders (default: a temporary one; "
                    "the generated data is reused from here)")
    ap.add_argument("--keep", action="store_true", help="keep the repository copies")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw facts here")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per command (and the server's lifetime)")
    a = ap.parse_args(argv)
    a.scales = sorted(inat_synth.parse_scale(s) for s in a.scales.split(","))
    if a.smoke:
        a.scales = a.scales if "--scales" in (argv or sys.argv) else [1 / 200, 1 / 100]
        a.max_steps, a.queued, a.accumulate = 1, min(a.queued, 1), 1
    a.classes = a.classes or (20 if a.smoke else inat_synth.CLASSES)
    a.px = a.px or (96 if a.smoke else 800)
    return a


def main(argv=None) -> None:
    a = parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="bbn-scale-"))
    header = scale_report.header(a)
    log(header)
    results = [run_scale(s, a, work) for s in a.scales]
    report = {"header": header, "cores": a.cores, "results": results}
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    print(scale_report.render(report))
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
