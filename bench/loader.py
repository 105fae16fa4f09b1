"""Loader row: how many CPU cores feed one GPU on the iNaturalist recipe (data only, no model).

The pipeline's own input path for ``inat2019_bbn_r50``: photo-like 800-px JPEGs
(``bench.inat_synth.jpeg``) shrunk once by ``bbn.data.prepare.prepare_images`` to short side 256
(the recipe's ``prepare``), then ``bbn.data.loading.ImageList`` with ``train_transform(224,
"inception", hflip)`` (RandomResizedCrop 224 + flip + normalisation; reduced-size JPEG decoding
at ``test_resize(224)`` = 256) behind the BBN ``uniform`` loader of ``train_loaders`` (only the
loaders iterated start workers: one loader, ``w`` worker processes). Images/s with 1 and 2 workers
(persistent, one warm-up pass, then the median of ``--passes`` timed passes), their ratio (the
target on 2 idle cores: >= 1.8x), and the workers one GPU needs: ResNet-50 with AMP trains at
2,470 images/s on one A100 80GB (NVIDIA DeepLearningExamples, resnet50v1.5 README); a BBN step
consumes two images per sample (uniform + reversed batch), all of which the loaders must deliver.

    python bench/loader.py                   # 512 images, batch 64, 3 passes: ~2 min on 2 idle cores
    python bench/loader.py --smoke           # 48 small images: seconds (a test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

GPU_IMG_S = 2470  # ResNet-50 v1.5, AMP, 1x A100 80GB (NVIDIA DeepLearningExamples)


def make_prepared(folder: Path, n: int, px: int, short_side: int) -> list[str]:
    """``n`` synthetic photos (longer side ``px``) and their prepared copies; the copies' paths."""
    from bbn.data.prepare import prepare_images
    from bench.inat_synth import jpeg

    originals, prepared = [], []
    for i in range(n):
        data, _, _ = jpeg((0, 0, i, px))
        path = folder / "originals" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        originals.append(str(path))
        prepared.append(str(folder / "prepared" / f"{i:05d}.jpg"))
    prepare_images(originals, prepared, short_side, 95)
    return prepared


def images_per_s(paths: list[str], workers: int, size: int, batch: int, passes: int) -> list[float]:
    """Images/s of the BBN uniform loader with ``workers`` worker processes, per timed pass."""
    from bbn.data.loading import ImageList, train_loaders
    from bbn.data.transforms import preprocessing, test_resize, train_transform

    pre = preprocessing("inception", "imagenet", "inat2019")
    dataset = ImageList(paths, [i % 10 for i in range(len(paths))],
                        train_transform(size, "inception", True, pre["mean"], pre["std"]), test_resize(size, "inception"))
    loader = train_loaders(dataset, batch, workers, seed=0, drop_last=True)["uniform"]
    rates = []
    for i in range(passes + 1):  # the first pass starts the workers: not timed
        start, seen = time.perf_counter(), 0
        for x, _ in loader:
            assert x.shape[1:] == (3, size, size)
            seen += len(x)
        if i:
            rates.append(seen / (time.perf_counter() - start))
    del loader
    return rates


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="48 images of 200 px, 64-px crops, 1 pass")
    a = ap.parse_args(argv)
    px, short, size = (200, 72, 64) if a.smoke else (800, 256, 224)
    n, batch, passes = (48, 8, 1) if a.smoke else (a.images, a.batch, a.passes)
    with tempfile.TemporaryDirectory(prefix="bbn-loader-") as tmp:
        paths = make_prepared(Path(tmp), n, px, short)
        load0 = os.getloadavg()[0]
        rates = {w: images_per_s(paths, w, size, batch, passes) for w in (1, 2)}
        load1 = os.getloadavg()[0]
    one, two = (statistics.median(rates[w]) for w in (1, 2))
    print(f"loader ({n} prepared images, short side {short}, {size}-px RandomResizedCrop + flip, batch {batch}, "
          f"{os.cpu_count()} CPUs, load {load0:.2f}->{load1:.2f}):")
    for w in (1, 2):
        print(f"  {w} worker(s): {statistics.median(rates[w]):,.0f} img/s  {[round(r) for r in rates[w]]}")
    print(f"  2 workers / 1 worker: {two / one:.2f}x (target >= 1.8x on 2 idle cores)")
    print(f"  one A100 (ResNet-50, AMP) trains at {GPU_IMG_S:,} img/s: ~{GPU_IMG_S / one:.0f} workers (cores) at "
          f"{one:,.0f} img/s each keep it fed")


if __name__ == "__main__":
    main()
