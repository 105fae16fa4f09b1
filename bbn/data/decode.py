"""Image files to pixels: which files are images, and the one decode path every phase uses.

Every phase (the readability check, ``prepare``, training, evaluation, ``bbn-predict``) sees an image
as a viewer shows it (``to_rgb``):

* EXIF orientation applied (``PIL.ImageOps.exif_transpose``): a phone portrait stored landscape with
  Orientation 6 comes out upright, and the orientation tag is dropped with it;
* 16-bit and 32-bit integer greyscale (``I;16``, ``I``: scanners, microscopes) scaled from 0..65535
  to 0..255 (divided by 257) instead of clipped to white; float images (``F``) taken as 0..1 when
  they lie within it, else clipped to 0..255;
* transparency (RGBA, LA, a palette with a transparent colour) composited on white, as viewers show
  it on a page; dropping alpha instead would expose whatever colour the transparent pixels hold
  (often black);
* palette, CMYK, greyscale and every other mode converted to RGB by Pillow.

JPEGs much larger than needed are decoded at reduced size through libjpeg's DCT scaling (PIL's
``draft``), which skips most of the work on an ~800 px iNaturalist original. Other JPEGs without an
orientation to apply go through ``torchvision.io.decode_jpeg`` (the same libjpeg, ~1.6x faster per
image than PIL here): for those it gives the same pixels.

OS metadata that archives and folders carry (``__MACOSX/``, AppleDouble ``._*`` files,
``.DS_Store``, ``Thumbs.db``, ...) is never data: ``is_os_metadata`` is the one test every dataset
entry point applies.
"""

from __future__ import annotations

import io
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:
    import torch

# files a dataset walk collects (bbn.sources.walk): what Pillow reads (.jfif and .jpe are JPEG), and photo
# formats it may not (the readability check lists those as "unsupported format" instead of dropping them)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif"}
OTHER_IMAGE_SUFFIXES = {".heic", ".heif", ".hif", ".jxl", ".jp2", ".j2k", ".svg", ".dng", ".cr2", ".cr3", ".nef",
                        ".arw", ".raf", ".orf", ".rw2"}
ORIENTATION = 0x0112  # the EXIF tag; 1 = stored upright

# names that operating systems, file managers and archivers add beside the user's files
OS_METADATA = {"__MACOSX", ".DS_Store", ".AppleDouble", ".AppleDB", ".AppleDesktop", ".Spotlight-V100",
               ".Trashes", ".fseventsd", ".TemporaryItems", ".DocumentRevisions-V100", ".VolumeIcon.icns",
               "Icon\r", "Thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "Desktop.ini",
               "$RECYCLE.BIN", "System Volume Information", "@eaDir", ".directory", ".ipynb_checkpoints"}


def is_os_metadata(path) -> bool:
    """Whether any part of ``path`` (str or path, relative or absolute, / or \\ separated) is OS or
    tool metadata: a name in ``OS_METADATA`` or an AppleDouble resource fork (``._<name>``)."""
    parts = PurePath(str(path).replace("\\", "/")).parts
    return any(part in OS_METADATA or part.startswith("._") for part in parts)


def is_image_name(path) -> bool:
    """Whether a file name (str or Path) has an image suffix (``IMAGE_SUFFIXES`` or
    ``OTHER_IMAGE_SUFFIXES``, case-insensitive) and is not OS metadata."""
    return str(path).lower().endswith(tuple(IMAGE_SUFFIXES | OTHER_IMAGE_SUFFIXES)) and not is_os_metadata(path)


def draft_size(size: tuple[int, int], short_side: int) -> tuple[int, int] | None:
    """The size to ask PIL's ``draft`` for when libjpeg can decode at 1/2 scale or less and keep the
    short side >= ``short_side``; None when a reduced decode cannot help."""
    w, h = size
    if short_side <= 0 or min(w, h) < 2 * short_side:
        return None
    scale = short_side / min(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def reduce(img: Image.Image, short_side: int) -> Image.Image:
    """``img`` (opened, not yet decoded) set to decode at the smallest JPEG scale whose short side is
    still >= ``short_side`` (other formats, or ``short_side`` 0: unchanged)."""
    target = draft_size(img.size, short_side) if img.format == "JPEG" else None
    if target:
        img.draft("RGB", target)
    return img


def open_reduced(path, short_side: int) -> Image.Image:
    """``Image.open(path)`` (a path or file object) that will decode at reduced size (``reduce``)."""
    return reduce(Image.open(path), short_side)


def orientation(img: Image.Image) -> int:
    """The EXIF orientation of an opened image (1..8; 1 when it has none), read from the header."""
    try:
        value = img.getexif().get(ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):  # a broken EXIF block: the pixels are still usable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _scaled_8bit(img: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float greyscale image as 8-bit 'L' (see the module docstring)."""
    a = np.asarray(img)
    if img.mode == "F":
        a = a.astype(np.float64)
        a = a * 255.0 if a.size and np.nanmin(a) >= 0.0 and np.nanmax(a) <= 1.0 else a
    else:
        a = a.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8), mode="L")


def _on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(page, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """An opened image as an upright 8-bit RGB image, as a viewer shows it (see the module
    docstring). Raises what Pillow raises for an unreadable file (OSError, SyntaxError, ValueError)."""
    img = ImageOps.exif_transpose(img)  # loads the pixels; a copy without the orientation tag
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _scaled_8bit(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        return _on_white(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(source, min_side: int = 0) -> Image.Image:
    """``to_rgb`` of a file (path or file object), JPEGs decoded at reduced size (``reduce``)."""
    with Image.open(source) as img:
        return to_rgb(reduce(img, min_side))


def decode(data: bytes, min_side: int = 0) -> torch.Tensor:
    """An encoded image as a uint8 RGB tensor (3, H, W), upright (``to_rgb``).

    JPEGs that PIL's ``draft`` can decode at 1/2 scale or less (``draft_size``) or that carry an
    EXIF orientation other than 1 go through PIL (``load_rgb``); other JPEGs through
    ``torchvision.io.decode_jpeg``, which gives the same pixels faster; anything else through PIL.
    Raises OSError, SyntaxError or ValueError for data that is not a usable image.
    """
    import torch  # here, not at the top: the data stages that only walk and check files skip torch's import
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms import v2

    with Image.open(io.BytesIO(data)) as img:  # parses the header only
        fast = img.format == "JPEG" and not draft_size(img.size, min_side) and orientation(img) == 1
    if fast:
        try:
            return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:  # a JPEG flavour libjpeg-in-torchvision refuses (e.g. some CMYK files)
            pass
    return v2.functional.pil_to_tensor(load_rgb(io.BytesIO(data), min_side))
