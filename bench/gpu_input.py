"""Does the input keep a GPU busy? BBN's ResNet-50 step at 224 px fed by the DataLoader, against the
same step on batches already on the device; part of ``bench/gpu.sh``.

    python bench/gpu_input.py [--images 2048] [--steps 30] [--batch 128] [--device cuda] [--amp bf16]

Synthetic 800x600 'photos' (``bench/images.py``) go through the pipeline's own prepare step (short
side 256), then ``bbn.data.loading.train_loaders`` (uniform + reversed sampler, ``num_workers``
auto: the CPUs shared by the two loaders, persistent, pinned) with the iNaturalist transforms
(RandomResizedCrop 224 + flip). Side A: ``--steps`` BBN steps (``bbn.train.loop.bilateral_step``,
SGD) reading each batch pair from the loaders; side B: the same steps on one batch pair kept on the
device. Printed: images/s of both (two images per sample: one per branch), the ratio A / B, and the
share of time the GPU waits for images (1 - A / B). ``--device cpu`` is a dry run on tiny sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bbn.data.loading import ImageList, resolve_workers, train_loaders  # noqa: E402
from bbn.data.prepare import prepare_images  # noqa: E402
from bbn.data.transforms import NORMALIZE, train_transform  # noqa: E402
from bbn.model.network import ModelSpec, build_model  # noqa: E402
from bbn.train.loop import Branches, bilateral_step  # noqa: E402
from bench.images import photo  # noqa: E402


def _images(root: Path, n: int, classes: int, size: int) -> ImageList:
    """``n`` photos over ``classes`` long-tailed classes, prepared at short side ``size`` / 0.875."""
    short_side = round(size / 0.875)
    rng = np.random.default_rng(0)
    sources, targets = [], []
    for i in range(n):
        path = root / f"{i:05d}.jpg"
        photo(rng).save(path, format="JPEG", quality=90)
        sources.append(str(path))
        targets.append(min(int(rng.pareto(1.0)), classes - 1))  # a long tail of classes
    prepared = [str(root / "prepared" / Path(s).name) for s in sources]
    prepare_images(sources, prepared, short_side)
    return ImageList(prepared, targets, train_transform(size, "inception", True, *NORMALIZE["imagenet"]),
                     decode_size=short_side)


def _timed(model, optimizer, step, batches, steps: int, device, amp: str) -> float:
    """Images/s over ``steps`` BBN steps on ``batches`` (an iterator of (x_c, y_c, x_r, y_r))."""
    forward = Branches(model).train()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    done, start = 0, None
    for k, (x_c, y_c, x_r, y_r) in enumerate(batches):
        if k == 3:  # after warm-up (cuDNN autotuning, worker start)
            torch.cuda.synchronize() if device.type == "cuda" else None
            start, done = time.perf_counter(), 0
        pairs = [(x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last),
                  y.to(device, non_blocking=True)) for x, y in ((x_c, y_c), (x_r, y_r))]
        with torch.autocast(device.type, dtype=dtype, enabled=amp != "off"):
            loss, _ = step(forward, pairs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 2 * len(y_c)
        if k == steps + 2:
            break
    torch.cuda.synchronize() if device.type == "cuda" else None
    return done / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--classes", type=int, default=1010)
    ap.add_argument("--size", type=int, default=224, help="crop side (px); a dry run uses less")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", default="bf16", choices=["off", "bf16", "fp16"])
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        images = _images(Path(tmp), args.images, args.classes, args.size)
        print(f"{args.images} photos made and prepared in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        loaders = train_loaders(images, args.batch, "auto", seed=0, drop_last=True)
        model = build_model(ModelSpec("resnet50", args.classes, "off")).to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
        step = bilateral_step(0.5)

        def from_loaders():
            while True:
                for (x_c, y_c), (x_r, y_r) in zip(loaders["uniform"], loaders["reversed"]):
                    yield x_c, y_c, x_r, y_r

        fed = _timed(model, optimizer, step, from_loaders(), args.steps, device, args.amp)
        x_c, y_c, x_r, y_r = next(from_loaders())
        kept = [t.to(device) for t in (x_c, y_c, x_r, y_r)]
        resident = _timed(model, optimizer, step, iter(lambda: kept, None), args.steps, device, args.amp)
    workers = resolve_workers("auto", share=2)
    print(f"| BBN ResNet-50 step, {args.size} px, batch {args.batch}x2, {args.amp} | DataLoader ({workers} workers x 2 "
          f"loaders, {os.cpu_count()} CPUs) {fed:.4g} img/s | batches on the {device.type} {resident:.4g} img/s | "
          f"{fed / resident:.2f}x | GPU waits {max(0.0, 1 - fed / resident):.0%} |")


if __name__ == "__main__":
    main()
