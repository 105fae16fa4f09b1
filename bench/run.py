"""The project's benchmark: our code vs a plain reference, measured side by side in one run.

    python bench/run.py [--quick] [--device cpu|cuda] [--amp off|bf16|fp16] [--no-channels-last] [--compile]

Every row runs both sides in their own subprocess (peak RSS per side; see bench/workloads.py),
with the same ``torch.set_num_threads``; repetitions interleave A B A B ... and each side's median is reported,
with the ratio ours / reference. ``--amp``, ``--channels-last`` (on by default, as in the pipeline;
not in the eval rows: the evaluate stage keeps the default format) and ``--compile`` apply to our
side only (and to both sides of the anti-aliasing and channels_last rows, which compare two of
ours). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # the repo root, not bench/, so `bench.x` and `bbn` import from here

from bench.measure import Row, log, measure, side_by_side  # noqa: E402

# Sizes per (mode, device): repetitions per side, timed steps per repetition, images, ...
# in_*: the inmemory section (CIFAR-10-LT IR100, batch 128): steps of the data-only pass (0: a whole
# epoch) and of the training pass; workers of the DataLoader side (0: the pipeline's default).
_IN_CPU = dict(in_batch=128, in_data_steps=0, in_epoch_steps=2, in_workers=0, in_n_max=5000)
_IN_CUDA = dict(in_batch=128, in_data_steps=0, in_epoch_steps=40, in_workers=8, in_n_max=5000)
PLANS = {
    ("quick", "cpu"): dict(reps=5, r32_steps=2, r50_steps=1, warmup=1, eval_n=512, images=96, noop_reps=2,
                           rerun=False, **_IN_CPU),
    ("full", "cpu"): dict(reps=7, r32_steps=8, r50_steps=4, warmup=2, eval_n=2048, images=256, noop_reps=3,
                          rerun=True, **_IN_CPU | dict(in_epoch_steps=6)),
    ("quick", "cuda"): dict(reps=5, r32_steps=40, r50_steps=30, warmup=5, eval_n=8192, images=96, noop_reps=2,
                            rerun=False, **_IN_CUDA),
    ("full", "cuda"): dict(reps=7, r32_steps=150, r50_steps=100, warmup=10, eval_n=32768, images=256,
                           noop_reps=3, rerun=True, **_IN_CUDA | dict(in_epoch_steps=96)),
    # --smoke: the smallest sizes, to check that every row runs (bench/gpu.sh's CPU dry run; not figures)
    ("smoke", "cpu"): dict(reps=1, r32_steps=1, r50_steps=1, warmup=1, eval_n=64, images=8, noop_reps=1,
                           rerun=False, in_batch=16, in_data_steps=2, in_epoch_steps=1, in_workers=0, in_n_max=40),
}
SECTIONS = ("train", "inmemory", "data", "eval", "pipeline")


# ---------------------------------------------------------------- sections


def _shortcut_note() -> str:
    from bench.common import shortcut_option
    return "option-A shortcuts" if shortcut_option() else "1×1-conv shortcuts: no model.shortcut option in this build"


def train_rows(base: dict, plain: dict, plan: dict) -> Iterator[Row]:
    sizes = {"resnet32": (32, 64, plan["r32_steps"]), "resnet50": (64, 16, plan["r50_steps"])}
    for backbone in plan["backbones"]:
        px, batch, steps = sizes[backbone]
        job = dict(kind="train", backbone=backbone, px=px, batch=batch, steps=steps, warmup=plan["warmup"],
                   antialias="off")
        name = {"resnet32": f"ResNet-32 (antialias off, {_shortcut_note()})", "resnet50": "ResNet-50"}[backbone]
        yield side_by_side("train step", f"{name}, {px} px, batch {batch}, {steps} steps: ours vs "
                                 "official two-pass BBN (img/s, 2×batch per step)",
                                 base | job | {"impl": "ours"}, plain | job | {"impl": "ref"}, plan["reps"])
    job = dict(kind="train", impl="ours", backbone="resnet32", px=32, batch=64, steps=plan["r32_steps"],
               warmup=plan["warmup"])
    if base["channels_last"]:  # where the train rows' gain comes from: the memory format, not the step's logic
        yield side_by_side("memory format", "ResNet-32 (antialias off), 32 px, batch 64: our step with "
                           "channels_last (ours) vs the default NCHW format (reference)", base | job | {"antialias": "off"},
                           base | job | {"antialias": "off", "channels_last": False}, plan["reps"])
    yield side_by_side("anti-aliasing overhead", "ResNet-32, 32 px, batch 64: our step with antialias "
                       "full (ours) vs off (reference)", base | job | {"antialias": "full"},
                       base | job | {"antialias": "off"}, plan["reps"])


def inmemory_rows(base: dict, plain: dict, plan: dict, data: str) -> Iterator[Row]:
    """In-memory vs DataLoader input on CIFAR-10-LT IR100 at 32 px: data alone, then training steps."""
    from bench.cifar_lt import build
    with tempfile.TemporaryDirectory(prefix="bbn-bench-cifar-") as tmp:
        start = time.perf_counter()
        split = build(Path(tmp), data, n_max=plan["in_n_max"], test_per_class=0)
        log(f"{split.source} in {time.perf_counter() - start:.1f} s")
        job = dict(root=tmp, px=32, batch=plan["in_batch"], workers=plan["in_workers"])
        where = f"CIFAR-10-LT IR100 ({split.source.split(':')[0]}, {len(split.train[0]):,} images), 32 px"
        steps = plan["in_data_steps"]
        yield side_by_side("in-memory input", f"{where}, data only (no model): in-memory batches "
                           f"vs DataLoader ({plan['in_workers']} workers), uniform + reversed, batch "
                           f"{plan['in_batch']}, {'an epoch' if not steps else f'{steps} steps'} (img/s)",
                           plain | job | dict(kind="input", impl="ours", steps=steps),
                           plain | job | dict(kind="input", impl="ref", steps=steps), plan["reps"])
        steps = plan["in_epoch_steps"]
        yield side_by_side("in-memory input", f"{where}, BBN ResNet-32 training ({_shortcut_note()}), first "
                           f"{steps} steps of an epoch: in-memory vs DataLoader input (img/s, 2×batch per step)",
                           base | job | dict(kind="input_epoch", impl="ours", steps=steps),
                           base | job | dict(kind="input_epoch", impl="ref", steps=steps), plan["reps"])


def data_rows(base: dict, plan: dict) -> Iterator[Row]:
    from bench.images import make_originals
    with tempfile.TemporaryDirectory(prefix="bbn-bench-img-") as tmp:
        start = time.perf_counter()
        make_originals(Path(tmp), plan["images"])
        log(f"wrote {plan['images']} 800×600 JPEGs in {time.perf_counter() - start:.1f} s")
        job = base | dict(root=tmp)
        n = plan["images"]
        yield side_by_side("prepare (one-time)", f"{n} 800×600 JPEGs → short side 224: bbn.data.prepare.prepare_images "
                         "vs full decode + resize (img/s, 1 process)", job | dict(kind="prepare", impl="ours"),
                         job | dict(kind="prepare", impl="ref"), plan["reps"])
        yield side_by_side("data loading", "prepared 224-px cache → 224-px train tensors vs ImageFolder on the "
                         "originals (img/s per worker, batch 32)", job | dict(kind="load", impl="ours_prepared"),
                         job | dict(kind="load", impl="ref"), plan["reps"])
        yield side_by_side("data loading", "originals with decode_size=224 (no cache) vs ImageFolder on the "
                         "originals (img/s per worker, batch 32)", job | dict(kind="load", impl="ours_originals"),
                         job | dict(kind="load", impl="ref"), plan["reps"])


def eval_rows(base: dict, plain: dict, plan: dict) -> Iterator[Row]:
    job = dict(kind="eval", n=plan["eval_n"], px=32)
    yield side_by_side("eval", f"ResNet-32 (antialias full), 32 px, {plan['eval_n']} images: "
                         "bbn.model.inference.predict (eval.batch_size auto) vs plain no_grad loop (batch 32) (img/s)",
                       base | job | {"impl": "ours"}, plain | job | {"impl": "ref"}, plan["reps"])


def pipeline_rows(base: dict, plan: dict) -> Iterator[Row]:
    [res] = measure([base | dict(kind="pipeline", rerun=plan["rerun"])], plan["noop_reps"])
    log(f"pipeline: {json.dumps(res)}")
    rss = f"{res['rss_mib']:,.0f} MiB"
    noop = "no-op" if not res["noop_ran"] else f"NOT no-op: ran {', '.join(res['noop_ran'])}"
    yield Row("pipeline", f"first `dvc repro`, tiny params ({len(res['first_ran'])} stages)",
              f"{res['first_s']:.1f} s", rss=rss)
    yield Row("pipeline", f"second `dvc repro` ({noop}; median of {plan['noop_reps']})",
              f"{res['median']:.1f} s", rss=rss)
    found = (f"`dvc status`: {', '.join(res['status_changed']) or 'none'}; "
             f"`dvc repro --dry` would run: {', '.join(res['dry_run']) or 'none'}")
    if "rerun" in res:
        found += f"; `dvc repro` ran: {', '.join(res['rerun']) or 'none'}"
    yield Row("pipeline", f"stages changed after train.tmax → {res['tmax']} (expected: train, classifier, evaluate, submit)",
              found)


# ---------------------------------------------------------------- report


def machine(args, load_start: float) -> str:
    import torch
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    device = args.device
    if args.device == "cuda":
        device += f" ({torch.cuda.get_device_name(0)})"
    return (f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, device {device}, "
            f"threads {args.threads} per side, amp {args.amp}, channels_last {args.channels_last}, "
            f"compile {args.compile} (ours); {'smoke' if args.smoke else 'quick' if args.quick else 'full'} mode; "
            f"date {time.strftime('%Y-%m-%d %H:%M %Z')}; load average (1 min) {load_start:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end")


def speed_options_note() -> str:
    return ("--amp / --channels-last / --compile on our side: training via train_epoch(..., speed=Speed(amp, channels_last), "
            "scaler=speed.scaler(device)); eval via torch.autocast around predict; model and batches in "
            "channels_last memory format")


def table(rows: list[Row]) -> str:
    lines = ["| section | what | ours | reference | ratio | peak RSS ours / reference |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.section} | {r.what} | {r.ours} | {r.reference} | {r.ratio} | {r.rss} |" for r in rows]
    return "\n".join(lines)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: about 5 minutes on 2 CPU cores")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast (our side)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="channels_last memory format on our side of the train and inmemory rows (default: on, "
                        "as the pipeline's train.channels_last; the official code has none)")
    p.add_argument("--compile", action="store_true", help="torch.compile of trunk and branches (our side)")
    p.add_argument("--backbones", default="resnet32,resnet50", help="train step rows: resnet32, resnet50")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition: checks that rows run")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"),
                   help="CIFAR-10 JPEG tarball for the inmemory section (synthetic images when absent)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per side (default 1: on a shared CPU, more threads than idle cores "
                        "make every figure several times slower and far noisier)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    return p.parse_args(argv)


class Stopped(Exception):
    pass


def _stop(signum, frame):
    raise Stopped(signal.Signals(signum).name)


def main(argv=None) -> None:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _stop)  # e.g. `timeout`: still print the rows measured so far
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    plan = (PLANS.get((mode, args.device)) or PLANS[mode, "cpu"]) | {"backbones": args.backbones.split(",")}
    plain = dict(device=args.device, threads=args.threads, amp="off", channels_last=False)
    base = plain | dict(amp=args.amp, channels_last=args.channels_last, compile=args.compile)
    sections = {"train": lambda: train_rows(base, plain, plan), "data": lambda: data_rows(plain, plan),
                "inmemory": lambda: inmemory_rows(base, plain, plan, args.data),
                "eval": lambda: eval_rows(base | {"channels_last": False}, plain, plan),
                "pipeline": lambda: pipeline_rows(plain, plan)}
    rows, note = [], ""
    try:
        for name in args.sections.split(","):
            for row in sections[name]():
                rows.append(row)
    except (Stopped, KeyboardInterrupt) as exc:
        note = f"\nINCOMPLETE: stopped ({exc.__class__.__name__} {exc}) after {len(rows)} rows"
    print(machine(args, load_start))
    print(speed_options_note())
    print()
    print(table(rows))
    print(f"{note}\nbench wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
