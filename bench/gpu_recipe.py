"""BBN's CIFAR-10-LT recipe end to end on the in-memory input path, timed; part of ``bench/gpu.sh``.

    python bench/gpu_recipe.py --data cifar10-jpg.tar.gz [--epochs 200] [--device cuda] [--amp bf16]
        [--channels-last] [--compile] [--json out.json]

The official BBN CIFAR configuration (Megvii-Nanjing/BBN ``configs/cifar10.yaml``, ``get_optimizer``,
``WarmupMultiStepLR``; Zhou et al. 2020): 200 epochs, batch 128 per sampler, SGD lr 0.1, momentum
0.9, Nesterov, weight decay 2e-4, 5 warm-up epochs, lr x0.01 at epochs 120 and 160, T_max 200,
ResNet-32 without anti-aliasing (option-A shortcuts where the model has them), pad-4 crop + flip,
CIFAR mean/std. With fewer ``--epochs`` the steps, warm-up and T_max scale with them. It trains on
all 12,406 training images (no hold-out, as the official code) through ``bbn.train.loop.fit`` fed by
``bbn.data.inmemory``, then reports the last epoch's top-1 on the 10,000 test images at alpha 0.5
(the official code reports the best test epoch instead). Before training it times the official
two-pass step (``bench/reference.py``, fp32) against ours (the same options as the training) on the
same batches already on the device, and prints both ratios: step alone, and whole training (input
included) against that official step.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import torch  # noqa: E402

from bbn.data.batch_augment import DeviceAugment, normalize  # noqa: E402
from bbn.data.inmemory import ImageBank, train_batches  # noqa: E402
from bbn.model.inference import predict  # noqa: E402
from bbn.model.network import ModelSpec, build_model  # noqa: E402
from bbn.train import loop  # noqa: E402
from bbn.train.speed import Speed, prepare_model  # noqa: E402
from bench import reference  # noqa: E402
from bench.cifar_lt import build  # noqa: E402
from bench.common import shortcut_option  # noqa: E402
from bench.input_paths import CIFAR_MEAN, CIFAR_STD  # noqa: E402
from stages.params import TrainParams  # noqa: E402
from stages.specs import train_spec  # noqa: E402

PAPER_TOP1 = 79.82  # Zhou et al. 2020, CIFAR-10-LT IR100 BBN: top-1 error 20.18


def recipe(args) -> TrainParams:
    e = args.epochs
    steps = [max(1, round(e * 120 / 200)), max(1, round(e * 160 / 200))]
    return TrainParams.model_validate(dict(
        epochs=e, batch_size=args.batch, lr=0.1, momentum=0.9, weight_decay=2e-4, nesterov=True,
        warmup_epochs=min(5, max(0, e - 1)), lr_steps=steps, lr_factor=0.01, tmax=e, image_size=32,
        seed=args.seed, device=args.device, amp=args.amp, channels_last=args.channels_last, compile=args.compile))


def step_ratio(model, batches: list, p, device: torch.device, rounds: int = 3) -> tuple[float, float]:
    """(ours, official) img/s of BBN steps on the same batches already on the device, interleaved."""
    ours_net, ref_net = copy.deepcopy(model), copy.deepcopy(model)
    prepare_model(ours_net, p, device)
    official = reference.OfficialBBN(ref_net).to(device)
    opt_ours, opt_ref = loop.make_optimizer(ours_net, p), reference.make_optimizer(official, p.lr)
    speed, step = Speed.of(p), loop.bilateral_step(0.5)
    uniform = _Listed(batches[0::2])
    reverse = _Listed(batches[1::2])
    images = 2 * sum(len(y) for _, y in uniform.items)

    def ours():
        loop.train_epoch(ours_net, [uniform, reverse], step, opt_ours, device, 0, speed, speed.scaler(device))

    def theirs():
        reference.train_epoch(official, uniform.items, reverse.items, opt_ref, 0.5, device)
    times = {ours: [], theirs: []}
    for fn in (ours, theirs):
        fn()  # warm-up (and compilation)
    for _ in range(rounds):
        for fn in times:
            times[fn].append(_timed(fn, device))
    return images / sorted(times[ours])[rounds // 2], images / sorted(times[theirs])[rounds // 2]


class _Listed:
    """Pre-made batches with what ``train_epoch`` asks of a loader."""

    class _Epoch:
        def set_epoch(self, epoch: int) -> None:
            pass

    def __init__(self, items: list):
        self.items, self.batch_sampler = items, self._Epoch()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def test_top1(model, bank: ImageBank, device: torch.device, batch: int = 1000) -> float:
    data = [(normalize(bank.images[i:i + batch], CIFAR_MEAN, CIFAR_STD), bank.targets[i:i + batch].cpu())
            for i in range(0, len(bank), batch)]
    logits, y = predict(model, data, device, 0.5, desc="test")
    return 100.0 * float((logits.argmax(1) == y).mean())


def run(args) -> dict:
    device, p = torch.device(args.device), recipe(args)
    with tempfile.TemporaryDirectory(prefix="bbn-gpu-recipe-") as tmp:
        split = build(Path(tmp), args.data, n_max=args.n_max, test_per_class=args.test_per_class)
        print(split.source, flush=True)
        train_bank = ImageBank.from_files(*split.train, 32, True, device, args.gpu_decode)
        test_bank = ImageBank.from_files(*split.test, 32, True, device, args.gpu_decode)
    augment = DeviceAugment("cifar", 32, 4, True, mean=CIFAR_MEAN, std=CIFAR_STD)
    loaders = train_batches(train_bank, augment, p.batch_size, p.seed)
    loop.seed_everything(p.seed)
    model = build_model(ModelSpec("resnet32", 10, "off", **shortcut_option()))
    model.to(device)
    pairs = itertools.islice(zip(loaders["uniform"], loaders["reversed"]), args.official_steps)
    sample = [b for pair in pairs for b in pair]
    ours_step, official_step = step_ratio(model, sample, train_spec(p), device)
    print(f"step alone, same batches on {device}: ours {ours_step:,.0f} img/s vs official two-pass "
          f"{official_step:,.0f} img/s = {ours_step / official_step:.2f}x", flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counts = torch.bincount(train_bank.targets.cpu(), minlength=10)

    def on_epoch(epoch: int, row: dict, state: dict) -> None:
        if (epoch + 1) % max(1, p.epochs // 10) == 0 or epoch + 1 == p.epochs:
            print(f"epoch {epoch + 1}/{p.epochs}  alpha {row['alpha']:.3f}  lr {row['lr']:.3g}  "
                  f"loss {row['train_loss']:.4f}  {row['seconds']:.1f}s", flush=True)
    start = time.perf_counter()
    history = loop.fit(model, loaders, None, train_spec(p), device, counts, on_epoch)
    seconds = time.perf_counter() - start
    images = 2 * sum(h["steps"] for h in history) * p.batch_size
    top1 = test_top1(model, test_bank, device)
    return summary(p, device, seconds, images, (ours_step, official_step), top1, split.source)


def summary(p, device: torch.device, seconds: float, images: int, steps: tuple[float, float], top1: float,
            source: str) -> dict:
    """The printed line and the JSON summary of a recipe run."""
    ours_step, official_step = steps
    out = {"epochs": p.epochs, "train_seconds": seconds, "train_img_per_s": images / seconds,
           "official_step_img_per_s": official_step, "our_step_img_per_s": ours_step,
           "ratio_training_vs_official_step": images / seconds / official_step,
           "ratio_step_vs_official_step": ours_step / official_step, "test_top1": top1,
           "paper_top1": PAPER_TOP1, "data": source, "device": str(device),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
           "max_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan}
    print(f"BBN CIFAR-10-LT IR100, {p.epochs} epochs on {device} in {seconds / 60:.1f} min "
          f"({out['train_img_per_s']:,.0f} img/s, {out['ratio_training_vs_official_step']:.2f}x the official "
          f"two-pass step alone); top-1 {top1:.2f} % (paper {PAPER_TOP1} %, {top1 - PAPER_TOP1:+.2f}); "
          f"peak GPU memory {out['max_memory_gib']:.2f} GiB", flush=True)
    return out


def parse(argv=None) -> argparse.Namespace:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"),
                   help="CIFAR-10 JPEG tarball (synthetic images of the same counts when absent)")
    a.add_argument("--epochs", type=int, default=200)
    a.add_argument("--device", default="cuda")
    a.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off")
    a.add_argument("--channels-last", action="store_true")
    a.add_argument("--compile", action="store_true")
    a.add_argument("--gpu-decode", action="store_true", help="decode the JPEGs with nvJPEG (CUDA only)")
    a.add_argument("--batch", type=int, default=128)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--n-max", type=int, default=5000, help="head-class images (5000: the real IR100 set)")
    a.add_argument("--test-per-class", type=int, default=1000)
    a.add_argument("--official-steps", type=int, default=20, help="steps per timing of the step ratio")
    a.add_argument("--json", help="also write the summary here")
    return a.parse_args(argv)


if __name__ == "__main__":
    args = parse()
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
