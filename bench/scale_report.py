"""The scale benchmark's tables (``bench/scale.py``): per-image costs, growth, full-size extrapolation.

Per-image costs divide a step's wall and CPU seconds by every image of the dataset at that scale
(train + val + test). Growth = the per-image CPU cost at the largest scale / at the smallest (1.00:
linear; below 1: a fixed cost, e.g. DVC and Python start-up, spread over more images; above 1:
worse than linear). Full size: the line through the two outermost points, CPU seconds = fixed +
marginal x images, at 303,593 images (a line that falls, noise above the per-image cost: the larger
value as a fixed cost): on one core for the steps that run in one process; for those
that spread over every core the marginal part divided by ``--cores`` (perfect scaling: a lower
bound on the time). CPU seconds, not wall, are extrapolated because this machine is shared: the
wall of a timing grows with the load average (shown). ``train`` runs a fixed number of steps
(``train.max_steps``): its seconds are shown as they are; the full training is GPU-bound and
estimated from a published GPU figure. Disk: the same line per folder, each file counted once
(a hard link in data/raw into data/downloads costs nothing).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from bench.inat_synth import FULL

FULL_IMAGES = sum(FULL.values())
# Stages that use every core of the machine (the rest run in one process).
ALL_CORES = {"check": "all (process pool)", "prepare": "all (process pool)",
             "evaluate": "all (torch threads, CPU model)", "train": "all (torch threads, CPU model)"}
# NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training
# performance: NVIDIA DGX A100 (8x A100 80GB)": ResNet-50 v1.5, mixed precision (DALI input).
A100_AMP_IMG_S = {1: 2470, 8: 16621}
EPOCHS = 180  # the inat2019_bbn_r50 recipe


def header(a) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                            text=True).stdout.strip() or "?"
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, {platform.node()}: "
            f"{os.cpu_count()} CPUs (shared), scales {', '.join(f'{s:.6g}' for s in a.scales)}, "
            f"{a.classes} classes, longer side {a.px} px, load average at start {os.getloadavg()[0]:.2f}")


def images(result: dict) -> int:
    return sum(result["counts"].values())


def _cells(t: dict, n: int, fixed: bool) -> list[str]:
    if fixed:
        return [f"{t['wall_s']:.1f} s", f"{t['cpu_s']:.1f} s"]
    return [f"{1000 * t['wall_s'] / n:.2f}", f"{1000 * t['cpu_s'] / n:.2f}"]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def line(results: list[dict], values: list[float]) -> tuple[float, float]:
    """(fixed, marginal per image) of the line through the smallest and largest scale's values."""
    n0, n1 = images(results[0]), images(results[-1])
    marginal = (values[-1] - values[0]) / (n1 - n0) if n1 != n0 else values[-1] / n1
    if marginal <= 0:  # no measurable growth (noise above the per-image cost): the larger value, as fixed
        return max(values), 0.0
    return max(values[0] - marginal * n0, 0.0), marginal


def stage_rows(results: list[dict], cores: int) -> list[dict]:
    """One row per timed step: per-image (or fixed) costs per scale, growth, full-size estimates."""
    rows = []
    for i, first in enumerate(results[0]["timings"]):
        what = first["what"]
        per_scale = [r["timings"][i] for r in results]
        fixed = what == "train"
        per_img = [t["cpu_s"] / images(r) for t, r in zip(per_scale, results)]
        growth = (per_scale[-1]["cpu_s"] / per_scale[0]["cpu_s"]) if fixed else per_img[-1] / per_img[0]
        base, marginal = line(results, [t["cpu_s"] for t in per_scale])
        full = marginal * FULL_IMAGES
        rows.append({"what": what, "cores": ALL_CORES.get(what, "1"), "fixed": fixed,
                     "cells": [c for t, r in zip(per_scale, results) for c in _cells(t, images(r), fixed)],
                     "growth": growth, "rss_mib": max(t["rss_mib"] for t in per_scale),
                     "kb_per_img": per_scale[-1]["bytes"] / 1024 / images(results[-1]),
                     "files_per_img": per_scale[-1]["files"] / images(results[-1]),
                     "load": " / ".join(f"{t['load'][0]:.1f}→{t['load'][1]:.1f}" for t in per_scale),
                     "full_1": base + full, "full_n": base + full / (cores if what in ALL_CORES else 1)})
    return rows


def stage_table(results: list[dict], cores: int) -> str:
    scales = [f"1/{1 / r['scale']:.0f}" if 1 / r["scale"] == round(1 / r["scale"]) else f"{r['scale']:.4g}" for r in results]
    head = ["step", "cores used"] + [f"{w} ms/img @{s}" for s in scales for w in ("wall", "CPU")] + [
        "growth (CPU)", "peak RSS MiB", "KiB written/img", "files/img", "load 1-min start→end", "full size, 1 core",
        f"full size, {cores} cores"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in stage_rows(results, cores):
        full = ["GPU-bound (below)"] * 2 if row["fixed"] else [_duration(row["full_1"]), _duration(row["full_n"])]
        name = f"{row['what']} ({results[0]['max_steps']} step(s): seconds)" if row["fixed"] else row["what"]
        lines.append("| " + " | ".join([name, row["cores"], *row["cells"], f"{row['growth']:.2f}", f"{row['rss_mib']:,.0f}",
                                        f"{row['kb_per_img']:,.1f}", f"{row['files_per_img']:.2f}", row["load"], *full]) + " |")
    return "\n".join(lines)


def disk_table(results: list[dict]) -> str:
    head = ["folder", *(f"KiB/img @{r['scale']:.4g}" for r in results), "full size (line)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for part in [*results[0]["disk"], "total"]:
        values = [sum(r["disk"].values()) if part == "total" else r["disk"][part] for r in results]
        base, marginal = line(results, values)
        per = [v / 1024 / images(r) for v, r in zip(values, results)]
        full = (base + marginal * FULL_IMAGES) / 1e9
        lines.append(f"| {part} | " + " | ".join(f"{v:,.1f}" for v in per) + f" | {full:,.1f} GB |")
    return "\n".join(lines)


def queue_table(queue: dict | None) -> str:
    if not queue:
        return "(no queued experiments)"
    lines = [f"`dvc exp run --queue -S train.tmax={','.join(map(str, queue['tmax']))}`: {queue['queue_s']:.1f} s; "
             f"`dvc exp run --run-all -j 1`: {queue['run_all_s']:.1f} s in all", "",
             "| experiment | stages run (`dvc queue logs`) | s to the train stage | s to the MLflow run (first step) "
             "| s in all |",
             "|---|---|---|---|---|"]
    for e in queue["experiments"]:
        lines.append(f"| {e['name']} | {', '.join(e['ran_queue_logs']) or '–'} | {e['to_train_stage_s']} | "
                     f"{e['to_mlflow_run_s']} | {e['total_s']} |")
    return "\n".join(lines)


def gpu_estimate() -> str:
    """Training time at full size from the published A100 figure (BBN: two images per sample)."""
    per_epoch = 2 * FULL["train"]
    out = ["**Training at full size** (not measured: estimated from the published A100 rates):", "",
           f"BBN trains on 2 x {FULL['train']:,} = {per_epoch:,} images per epoch (uniform and reversed batches); "
           f"ResNet-50 AMP on A100 80GB (NVIDIA DeepLearningExamples): {A100_AMP_IMG_S[1]:,} img/s on 1 GPU, "
           f"{A100_AMP_IMG_S[8]:,} on 8."]
    for gpus, rate in A100_AMP_IMG_S.items():
        out.append(f"- {gpus} GPU(s): {per_epoch / rate:,.0f} s per epoch, {EPOCHS} epochs ≈ "
                   f"{EPOCHS * per_epoch / rate / 3600:.1f} h, if the input keeps up with {rate:,} images/s")
    return "\n".join(out)


def render(report: dict) -> str:
    results, cores = report["results"], report["cores"]
    counts = "; ".join(f"s={r['scale']:.4g}: {r['counts']['train']:,} train, {r['counts']['val']:,} val, "
                       f"{r['counts']['test']:,} test, archives {r['archive_bytes'] / 2**20:,.0f} MiB, "
                       f"generated in {r['generate_s']:.0f} s" for r in results)
    return "\n\n".join([report["header"], counts, stage_table(results, cores), disk_table(results),
                        queue_table(results[0].get("queue")), gpu_estimate()])
