"""Finding images that cannot be used: missing, zero-byte, truncated, or not an image at all.

Every image is fully decoded (a header check misses truncation), at 1/8 scale where the format
allows (JPEG's DCT scaling: the whole stream is still read, so truncation is still caught) and
across all CPU cores, so that iNaturalist's 268k images take minutes, not an hour. The decoded image
then goes through the same conversion as every other phase (``bbn.data.decode.to_rgb``: orientation,
16-bit scaling, alpha, palette, CMYK), so an image passes here exactly when training can read it.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
from PIL import Image
from tqdm import tqdm

from bbn.data.decode import to_rgb

PARALLEL_FROM = 2000  # below this, starting worker processes costs more than it saves


def check_image(path: str) -> str:
    """'' for a usable image, else why it is not."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        with Image.open(path) as img:
            img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            to_rgb(img)
    except FileNotFoundError:
        return "missing file"
    except Image.UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot decode ({str(exc).splitlines()[0][:80]})"
    return ""


def find_unreadable(images: pd.DataFrame, workers: int | None = None) -> pd.DataFrame:
    """The rows of ``images`` (columns split, image_id, path) that fail ``check_image``, with a reason."""
    paths = images["path"].tolist()
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(paths), desc="check images", unit="img", disable=None, leave=False)
    if len(paths) < PARALLEL_FROM or workers == 1:
        reasons = [check_image(p) for p in tqdm(paths, **bar)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            reasons = list(tqdm(pool.map(check_image, paths, chunksize=256), **bar))
    out = images.assign(reason=reasons)
    return out[out["reason"] != ""][["split", "image_id", "path", "reason"]].reset_index(drop=True)


def drop_unreadable(frame: pd.DataFrame, unreadable: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["path"].isin(set(unreadable["path"]))].reset_index(drop=True)
