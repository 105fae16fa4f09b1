"""The prepared image cache: every image stored once at the short side training needs.

iNaturalist's originals are ~800 px JPEGs; decoding one costs far more than the network step at
100-224 px. The ``prepare`` stage decodes each original once (at reduced size where JPEG allows:
PIL's ``draft`` lets libjpeg's DCT scaling skip most of the work), resizes it so its short side is
``prepare.short_side`` (the largest image size the experiments use), and stores it as a JPEG with the
same relative path. Training and evaluation then read the small copies; image-size ablations up to
``short_side`` all reuse them. Images already small enough, stored upright in 8-bit RGB or greyscale
JPEG or PNG, are copied byte for byte (not linked: the folder may go into a hard-link cache, which must
not adopt the user's own files); every other image goes through ``bbn.data.decode.load_rgb`` (EXIF
orientation applied, 16-bit scaled, alpha on white), so the copy is upright and has no orientation tag.

``prepare_bytes`` is the one definition of that step: the stage writes its output to disk, and
inference on original files (``bbn-predict``) applies it in memory with the short side and quality
the checkpoint carries, so an image reaches the network as the same tensor either way
(``prepared_image``).
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from PIL import Image
from tqdm import tqdm

from bbn.data.decode import decode, load_rgb, open_reduced, orientation  # noqa: F401 (open_reduced: re-exported)
from bbn.data.loading import ImageList
from bbn.data.transforms import checkpoint_transform, test_resize
from bbn.errors import BBNError
from bbn.files import named

if TYPE_CHECKING:
    from bbn.model.checkpoint import Checkpoint

PARALLEL_FROM = 500  # below this, worker start-up costs more than it saves
DIGESTS = "sha256.csv"  # in the prepared folder: path (the original's, as the split lists it), sha256 of the copy


def resize_short(img: Image.Image, short_side: int) -> Image.Image:
    """``img`` resized (bicubic) so that its short side is ``short_side``; smaller images unchanged."""
    w, h = img.size
    if min(w, h) <= short_side:
        return img
    scale = short_side / min(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC, reducing_gap=None)


def prepare_bytes(data: bytes, short_side: int, quality: int = 95) -> bytes:
    """An encoded image as the prepare stage stores it: ``data`` itself when its short side is at
    most ``short_side`` and it is an upright 8-bit RGB/greyscale JPEG or PNG, else decoded upright in
    RGB (``load_rgb``: EXIF orientation, 16-bit, alpha) at reduced scale, resized to at most that
    short side (bicubic) and re-encoded as JPEG at ``quality``. Deterministic, and idempotent (a prepared image maps to
    itself). Raises PIL's OSError / ValueError for data that is not an image."""
    with Image.open(io.BytesIO(data)) as probe:
        as_is = (min(probe.size) <= short_side and probe.format in ("JPEG", "PNG") and probe.mode in ("RGB", "L")
                 and orientation(probe) == 1)
    if as_is:  # nothing to gain from re-encoding
        return data
    out = io.BytesIO()
    resize_short(load_rgb(io.BytesIO(data), short_side), short_side).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def prepared_image(data: bytes, short_side: int, quality: int = 95, min_side: int = 0) -> torch.Tensor:
    """The uint8 tensor (3, H, W) that training and evaluation decode from the prepared copy of the
    image ``data``: ``decode(prepare_bytes(data, short_side, quality), min_side)``."""
    return decode(prepare_bytes(data, short_side, quality), min_side)


class OriginalImages(ImageList):
    """An ``ImageList`` of original files that applies the prepare step in memory (``prepared_image``
    at ``short_side`` and ``quality``): the tensors of an ``ImageList`` of their prepared copies."""

    def __init__(self, paths: Sequence[str], targets: Sequence[int], transform, decode_size: int,
                 short_side: int, quality: int):
        super().__init__(paths, targets, transform, decode_size)
        self.short_side, self.quality = short_side, quality

    def load(self, data: bytes) -> torch.Tensor:
        return prepared_image(data, self.short_side, self.quality, self.decode_size)


def test_images(ckpt: Checkpoint, paths: Sequence[str], targets: Sequence[int], originals: bool) -> ImageList:
    """The test-time input of a checkpoint's model, the one definition evaluation, ``bbn-predict``
    and the MLflow model share: each file decoded (through the prepare step in memory when
    ``originals`` and the checkpoint records one: ``OriginalImages``), then the checkpoint's test
    transform (``bbn.data.transforms.checkpoint_transform``); items are normalised float tensors
    (3, S, S) and their targets."""
    size = test_resize(ckpt.image_size, ckpt.preprocess.get("augment", "cifar"))
    prep, transform = ckpt.prepare, checkpoint_transform(ckpt)
    if originals and prep:
        return OriginalImages(paths, targets, transform, size, prep["short_side"], prep["quality"])
    return ImageList(paths, targets, transform, decode_size=size)


def prepare_one(src: str, dst: str, short_side: int, quality: int = 95) -> str:
    """Write the prepared copy of file ``src`` to ``dst`` (folders created; the stage writes into a
    temporary folder that gets its name when every image is done); return the copy's sha256."""
    dst_path = Path(dst)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    data = prepare_bytes(Path(src).read_bytes(), short_side, quality)
    dst_path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _safe(args: tuple[str, str], short_side: int, quality: int) -> tuple[str, str]:
    try:
        return "", prepare_one(args[0], args[1], short_side, quality)
    except OSError as exc:  # reading the original or writing the copy (a full disk names no file)
        return f"{args[0]}: {named(exc, Path(args[1])) if exc.filename is None else exc}", ""
    except ValueError as exc:
        return f"{args[0]}: {exc}", ""


def prepare_images(sources: list[str], targets: list[str], short_side: int, quality: int = 95,
                   workers: int | None = None) -> list[str]:
    """Write each ``sources[i]`` to ``targets[i]`` with its short side reduced to ``short_side``;
    return the sha256 of each written copy (what training sees: ``bbn.train.resume``)."""
    pairs = list(zip(sources, targets))
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(pairs), desc="prepare images", unit="img", disable=None, leave=False)
    job = partial(_safe, short_side=short_side, quality=quality)
    if len(pairs) < PARALLEL_FROM or workers == 1:
        done = [job(p) for p in tqdm(pairs, **bar)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            done = list(tqdm(pool.map(job, pairs, chunksize=64), **bar))
    failed = [e for e, _ in done if e]
    if failed:
        raise BBNError(f"prepare: {len(failed)} image(s) failed, e.g. {failed[0]}")
    return [d for _, d in done]


def prepared_path(path: str, raw: str = "data/raw", prepared: str = "data/prepared") -> str:
    """Where the prepared copy of ``data/raw/<rel>`` lives: ``data/prepared/<rel>``."""
    rel = os.path.relpath(path, raw)
    if rel.startswith(".."):
        raise BBNError(f"{path}: not below {raw}")
    return os.path.join(prepared, rel)
