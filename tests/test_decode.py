"""One decode for every phase: images as viewers show them (EXIF orientation, 16-bit, palette, alpha,
CMYK, greyscale), in the readability check, the prepared copies, training/evaluation and bbn-predict.

`tests/data/real-world/` holds the reported instances: a phone portrait stored landscape with EXIF
Orientation 6 (`portrait_exif6.jpg`, 80x40; `portrait_upright.jpg` is it as viewers show it, 40x80,
red half on top) and a 16-bit greyscale ramp (`ramp16.png`, mode I;16, 0..65535).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bbn.data.decode import decode, orientation
from bbn.data.imagecheck import check_image
from bbn.data.loading import ImageList
from bbn.data.prepare import prepare_one

CASES = Path(__file__).parent / "data" / "real-world"


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _red_on_top(t: torch.Tensor) -> bool:
    h = t.shape[1] // 2
    top, bottom = t[:, :h].float().mean((1, 2)), t[:, h:].float().mean((1, 2))
    return bool(top[0] > 200 and top[1] < 50 and bottom[0] < 50)


def test_exif_orientation_is_applied_in_every_decode():
    t = decode((CASES / "portrait_exif6.jpg").read_bytes())
    upright = decode((CASES / "portrait_upright.jpg").read_bytes())
    assert t.shape == (3, 80, 40) and _red_on_top(t)
    assert (t.int() - upright.int()).abs().float().mean() < 2.0
    # reduced-size decoding (draft) is rotated too
    assert decode((CASES / "portrait_exif6.jpg").read_bytes(), min_side=16).shape[1:] == (40, 20)


def test_training_and_evaluation_read_the_portrait_upright():
    data = ImageList([str(CASES / "portrait_exif6.jpg")], [0], transform=lambda x: x)
    image, _ = data[0]
    assert image.shape == (3, 80, 40) and _red_on_top(image)


@pytest.mark.parametrize("short_side", [16, 64])  # resized, and small enough to have been copied as is
def test_prepared_copy_is_upright_without_a_stale_tag(tmp_path, short_side):
    dst = tmp_path / "p.jpg"
    prepare_one(str(CASES / "portrait_exif6.jpg"), str(dst), short_side)
    with Image.open(dst) as img:
        assert orientation(img) == 1 and img.width < img.height
    t = decode(dst.read_bytes())
    assert t.shape[1] == 2 * t.shape[2] and _red_on_top(t)


def test_16bit_png_is_scaled_to_8_bits_not_white():
    with Image.open(CASES / "ramp16.png") as img:
        assert img.mode == "I;16"
        raw = np.asarray(img).astype(np.int64)
    t = decode((CASES / "ramp16.png").read_bytes())
    assert t.shape == (3, 96, 96) and t.dtype == torch.uint8
    assert (t[0] == t[1]).all() and (t[1] == t[2]).all()
    assert t.min() == 0 and t.max() == 255 and len(t.unique()) > 64
    assert np.abs(t[0].numpy() - raw / 257.0).max() <= 0.5 + 1e-9
    assert check_image(str(CASES / "ramp16.png")) == ""
    assert (t == 255).float().mean() < 0.05  # was 97-99 % pure white


def test_alpha_is_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red where opaque
    rgba[:4, :, 3] = 255  # top half opaque, bottom half transparent (its colour is black-ish red)
    t = decode(_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert t[:, :4].tolist() == torch.tensor([200, 0, 0], dtype=torch.uint8)[:, None, None].expand(3, 4, 8).tolist()
    assert (t[:, 4:] == 255).all()
    la = Image.fromarray(np.stack([np.full((4, 4), 10, np.uint8), np.zeros((4, 4), np.uint8)], -1), "LA")
    assert (decode(_bytes(la, "PNG")) == 255).all()


def test_palette_greyscale_cmyk_and_bilevel():
    pal = Image.new("P", (6, 6))
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 6, 3))
    t = decode(_bytes(pal, "PNG"))
    assert t[:, 0, 0].tolist() == [0, 255, 0] and t[:, 5, 0].tolist() == [0, 0, 0]
    pal.info["transparency"] = 0  # colour 0 transparent: white
    assert decode(_bytes(pal, "PNG", transparency=0))[:, 5, 0].tolist() == [255, 255, 255]
    grey = decode(_bytes(Image.new("L", (5, 7), 77), "PNG"))
    assert grey.shape == (3, 7, 5) and (grey == 77).all()
    cmyk = decode(_bytes(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    assert cmyk.shape == (3, 16, 16) and cmyk[0].float().mean() > 200 and cmyk[1].float().mean() < 60
    bilevel = decode(_bytes(Image.new("1", (4, 4), 1), "PNG"))
    assert (bilevel == 255).all()


def test_fast_jpeg_path_gives_the_same_pixels_as_pil():
    rng = np.random.default_rng(0)
    data = _bytes(Image.fromarray(rng.integers(0, 255, (30, 44, 3), dtype=np.uint8)), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as img:
        reference = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode(data), reference)
