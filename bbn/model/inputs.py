"""How the training images looked, kept in the checkpoint, and how far a new image is from that.

``profile(paths)`` reads up to ``SAMPLE`` training originals (evenly spaced over the list; JPEGs
decoded at reduced size, upright, as everywhere: ``bbn.data.decode.load_rgb``) and records the range
of their short side in pixels and, for three per-image colour statistics — brightness (mean grey
level), contrast (std of the grey levels) and saturation (mean of max−min over R, G, B), all in
[0, 1] — their mean and standard deviation over the images. ``unlike(profile, path)`` says in words
why an image looks nothing like that, or '' when it does: a short side more than ``SIZE_FACTOR``
times outside the training range, or a statistic more than ``Z`` standard deviations from its
training mean (the deviation floored at ``MIN_SPREAD``, so a set of grey digits still accepts a
slightly tinted scan).

A warning for people, not an out-of-distribution detector: a model always answers, and an image
unlike every training image (a bird photo given to a digits model) gets a confident but meaningless
class. An image can pass these checks and still show something outside the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAMPLE = 200
SIZE_FACTOR = 4.0
Z = 4.0
MIN_SPREAD = 0.05
STATS = ("brightness", "contrast", "saturation")
ANALYSIS_SIDE = 64  # colour statistics on a copy with this short side: cheap, and size-independent


def _measure(path: str) -> tuple[int, dict[str, float]]:
    """(short side of the original in pixels, {statistic: value in [0, 1]}). Raises what Pillow
    raises for an unreadable file."""
    from PIL import Image

    from bbn.data.decode import load_rgb

    with Image.open(path) as img:
        short = min(img.size)
    rgb = load_rgb(path, ANALYSIS_SIDE)
    rgb.thumbnail((4 * ANALYSIS_SIDE, 4 * ANALYSIS_SIDE))
    a = np.asarray(rgb, dtype=np.float64) / 255.0
    grey = a @ np.array([0.299, 0.587, 0.114])
    return short, {"brightness": float(grey.mean()), "contrast": float(grey.std()),
                   "saturation": float((a.max(axis=2) - a.min(axis=2)).mean())}


def profile(paths: Sequence[str]) -> dict:
    """{"images", "short_side": [min, max], "<stat>": [mean, std]} over a sample of ``paths``
    (unreadable files skipped); {} when none can be read."""
    step = max(1, len(paths) // SAMPLE)
    sides, values = [], {k: [] for k in STATS}
    for path in list(paths)[::step][:SAMPLE]:
        try:
            short, stats = _measure(path)
        except (OSError, SyntaxError, ValueError):
            continue
        sides.append(short)
        for k in STATS:
            values[k].append(stats[k])
    if not sides:
        return {}
    return {"images": len(sides), "short_side": [int(min(sides)), int(max(sides))]} | {
        k: [round(float(np.mean(v)), 4), round(float(np.std(v)), 4)] for k, v in values.items()}


def unlike(reference: dict, path: str) -> str:
    """Why the image at ``path`` looks nothing like the training images of ``reference`` (a
    ``profile``), in words; '' when it looks like them or ``reference`` is empty."""
    if not reference:
        return ""
    try:
        short, stats = _measure(path)
    except (OSError, SyntaxError, ValueError):
        return ""  # unreadable files are reported as such elsewhere
    lo, hi = reference["short_side"]
    why = []
    if short * SIZE_FACTOR < lo or short > hi * SIZE_FACTOR:
        why.append(f"short side {short} px (training {lo}–{hi} px)")
    for k in STATS:
        mean, std = reference[k]
        if abs(stats[k] - mean) > Z * max(std, MIN_SPREAD):
            why.append(f"{k} {stats[k]:.2f} (training {mean:.2f} ± {std:.2f})")
    return "; ".join(why)
