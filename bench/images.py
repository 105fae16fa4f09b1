"""Image jobs: synthetic 800x600 'photos', the one-time prepare, and DataLoader throughput.

The originals are written once by the parent (``make_originals``) in an ImageFolder layout
``<root>/originals/class_<k>/<i>.jpg``; the workers below time reading them.
"""

from __future__ import annotations

import gc
import itertools
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bench.common import Work

SIZE, QUALITY, CLASSES = (800, 600), 90, 4
SHORT_SIDE, PREPARE_QUALITY, BATCH = 224, 95, 32


def photo(rng: np.random.Generator, size: tuple[int, int] = SIZE, grain: float = 0.0) -> Image.Image:
    """Photo-like content of ``size`` (width, height): smooth colour field, a few blurred shapes,
    mild sensor noise; ``grain`` > 0 adds a luminance texture of that standard deviation at half
    resolution (foliage-like detail: at 800x600, quality 90, grain 25 gives ~170 KB instead of ~100)."""
    width, height = size
    field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(field).resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    scale = max(size) / max(SIZE)
    for _ in range(10):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = (max(1, int(v * scale)) for v in rng.integers(20, 250, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(1.5))
    noisy = np.asarray(img, np.float32) + rng.normal(0, 5, (height, width, 3))
    if grain:
        half = rng.normal(128, grain, (max(1, height // 2), max(1, width // 2))).clip(0, 255).astype(np.uint8)
        texture = np.asarray(Image.fromarray(half).resize(size, Image.BILINEAR), np.float32) - 128
        noisy += texture[..., None]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def make_originals(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs (quality 90) spread over 4 class folders; returns the ImageFolder root."""
    rng = np.random.default_rng(seed)
    folder = root / "originals"
    for i in range(n):
        path = folder / f"class_{i % CLASSES}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(rng).save(path, format="JPEG", quality=QUALITY)
    return folder


def originals(root: Path) -> tuple[list[str], list[int]]:
    """(paths, class indices) in ImageFolder's order."""
    paths = sorted((root / "originals").glob("*/*.jpg"))
    classes = sorted({p.parent.name for p in paths})
    return [str(p) for p in paths], [classes.index(p.parent.name) for p in paths]


def _mirror(paths: list[str], src: Path, dst: Path) -> list[str]:
    return [str(dst / Path(p).relative_to(src)) for p in paths]


def prepare(spec: dict) -> Work:
    """One-time shrink to 224 px: ``bbn.data.prepare.prepare_images`` or the naive full decode."""
    from bbn.data.prepare import prepare_images
    from bench import reference
    root = Path(spec["root"])
    sources, _ = originals(root)
    job = prepare_images if spec["impl"] == "ours" else reference.prepare_naive
    numbers = itertools.count()

    def once() -> float:
        out = root / f"prepare_{spec['impl']}_{next(numbers)}"
        targets = _mirror(sources, root / "originals", out)
        start = time.perf_counter()
        if spec["impl"] == "ours":
            job(sources, targets, SHORT_SIDE, PREPARE_QUALITY, workers=1)
        else:
            job(sources, targets, SHORT_SIDE, PREPARE_QUALITY)
        elapsed = time.perf_counter() - start
        shutil.rmtree(out)
        return len(sources) / elapsed

    once()  # warm-up: page cache, imports
    return Work(once)


def _dataset(spec: dict, root: Path):
    from bbn.data.loading import ImageList
    from bbn.data.prepare import prepare_images
    from bbn.data.transforms import NORMALIZE, train_transform
    from bench import reference
    if spec["impl"] == "ref":
        return reference.image_folder(root / "originals")
    paths, targets = originals(root)
    if spec["impl"] == "ours_prepared":
        cache = root / "prepared_cache"
        prepared = _mirror(paths, root / "originals", cache)
        if not cache.exists():
            prepare_images(paths, prepared, SHORT_SIDE, PREPARE_QUALITY, workers=1)
        paths = prepared
    mean, std = NORMALIZE["imagenet"]  # the cifar augmentation without the padded crop: resize, centre crop, flip
    return ImageList(paths, targets, train_transform(SHORT_SIDE, "cifar", True, mean, std, padding=0),
                     decode_size=SHORT_SIDE)


def load(spec: dict) -> Work:
    """Images/s of one DataLoader worker turning files into normalised 224-px training tensors."""
    import torch
    from torch.utils.data import DataLoader
    dataset = _dataset(spec, Path(spec["root"]))
    state = {"loader": DataLoader(dataset, batch_size=BATCH, num_workers=1, persistent_workers=True)}

    def one_pass() -> float:
        start = time.perf_counter()
        for x, _ in state["loader"]:
            assert x.shape[1:] == (3, SHORT_SIDE, SHORT_SIDE) and x.dtype == torch.float32
        return len(dataset) / (time.perf_counter() - start)

    def finish() -> dict:
        state.clear()  # the persistent worker is joined, so its peak RSS counts in RUSAGE_CHILDREN
        gc.collect()
        return {}

    one_pass()  # warm-up: starts the worker process
    return Work(one_pass, finish)
