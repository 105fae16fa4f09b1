"""Finding images that cannot be used: missing, zero-byte, truncated, not an image at all, or in a
format no reader is installed for (``.heic``); and each file's sha256 (``bbn.data.duplicates``).

Every image is fully decoded (a header check misses truncation), at 1/8 scale where the format
allows (JPEG's DCT scaling: the whole stream is still read, so truncation is still caught) and
across all CPU cores, so that iNaturalist's 268k images take minutes, not an hour. The decoded image
then goes through the same conversion as every other phase (``bbn.data.decode.to_rgb``: orientation,
16-bit scaling, alpha, palette, CMYK), so an image passes here exactly when training can read it.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm import tqdm

from bbn.data.decode import to_rgb

PARALLEL_FROM = 2000  # below this, starting worker processes costs more than it saves


UNSUPPORTED = "unsupported format"  # the reason's start for an image suffix Pillow has no reader for


def check_image(path: str) -> str:
    """'' for a usable image, else why it is not."""
    return inspect_image(path)[0]


def inspect_image(path: str) -> tuple[str, str]:
    """(``check_image``'s reason, sha256 of the file's bytes, '' when it cannot be read). A file that
    is no image Pillow knows while its suffix names one Pillow has no reader for (``.heic`` without a
    plugin) is an "unsupported format (.heic)"."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "missing file", ""
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})", ""
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return "empty file", digest
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            to_rgb(img)
    except Image.UnidentifiedImageError:
        suffix = Path(path).suffix.lower()
        known = suffix in Image.registered_extensions()
        return ("not an image" if known or not suffix else f"{UNSUPPORTED} ({suffix})"), digest
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot decode ({str(exc).splitlines()[0][:80]})", digest
    return "", digest


def inspect_images(images: pd.DataFrame, workers: int | None = None) -> pd.DataFrame:
    """``images`` (columns split, image_id, path) with ``reason`` ('' when usable: ``check_image``)
    and ``sha256`` (the bytes' digest) added; every image is read once, across ``workers`` processes."""
    paths = images["path"].tolist()
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(paths), desc="check images", unit="img", disable=None, leave=False)
    if len(paths) < PARALLEL_FROM or workers == 1:
        found = [inspect_image(p) for p in tqdm(paths, **bar)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            found = list(tqdm(pool.map(inspect_image, paths, chunksize=256), **bar))
    return images.assign(reason=[r for r, _ in found], sha256=[d for _, d in found])


def unreadable_rows(inspected: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``inspect_images``'s table that are not usable: split, image_id, path, reason."""
    return inspected[inspected["reason"] != ""][["split", "image_id", "path", "reason"]].reset_index(drop=True)


def find_unreadable(images: pd.DataFrame, workers: int | None = None) -> pd.DataFrame:
    """The rows of ``images`` (columns split, image_id, path) that fail ``check_image``, with a reason."""
    return unreadable_rows(inspect_images(images, workers))


def drop_unreadable(frame: pd.DataFrame, unreadable: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["path"].isin(set(unreadable["path"]))].reset_index(drop=True)
