"""The prepared image cache: reduced-size decoding, short-side resizing, byte copies of small images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bbn.data.prepare import open_reduced, prepare_bytes, prepare_images, prepared_path
from bbn.errors import BBNError


def _photo(path, w, h, seed=0):
    """A smooth synthetic photo (JPEG), so that resampling differences stay small."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([np.sin(xx / (17 + 5 * c) + rng.random()) * np.cos(yy / (23 + 3 * c)) for c in range(3)], -1)
    Image.fromarray(((img + 1) * 127).astype(np.uint8)).save(path, quality=95)
    return path


def test_open_reduced_decodes_at_the_smallest_sufficient_scale(tmp_path):
    src = _photo(tmp_path / "big.jpg", 800, 600)
    with open_reduced(src, 224) as img:
        img.load()
        assert img.size == (400, 300)  # 1/2 scale: 1/4 would give a 150 px short side < 224
    with open_reduced(src, 64) as img:
        img.load()
        assert img.size == (100, 75)  # 1/8 scale
    with open_reduced(src, 0) as img:
        img.load()
        assert img.size == (800, 600)


def test_prepare_images_resizes_and_copies(tmp_path):
    (tmp_path / "raw/a").mkdir(parents=True)
    big = _photo(tmp_path / "raw/a/big.jpg", 800, 600)
    small = _photo(tmp_path / "raw/a/small.jpg", 100, 180, seed=1)
    png = tmp_path / "raw/b.png"
    Image.fromarray(np.zeros((500, 400, 3), np.uint8)).save(png)
    sources = [str(big), str(small), str(png)]
    targets = [prepared_path(s, str(tmp_path / "raw"), str(tmp_path / "prep")) for s in sources]
    prepare_images(sources, targets, short_side=224, quality=90, workers=1)
    with Image.open(targets[0]) as img:
        assert img.size == (299, 224) and img.format == "JPEG"
        prepared = np.asarray(img.convert("RGB"), dtype=np.float32)
    with Image.open(big) as img:  # the same as a full decode resized directly, up to JPEG noise
        direct = np.asarray(img.convert("RGB").resize((299, 224), Image.BICUBIC), dtype=np.float32)
    assert np.abs(prepared - direct).mean() < 3.0
    assert open(targets[1], "rb").read() == small.read_bytes()  # already small: the same bytes
    with Image.open(targets[2]) as img:
        assert min(img.size) == 224


def test_prepared_path_and_errors(tmp_path):
    assert prepared_path("data/raw/x/y.jpg") == "data/prepared/x/y.jpg"
    with pytest.raises(BBNError, match="not below data/raw"):
        prepared_path("elsewhere/y.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(BBNError, match="prepare: 1 image.*broken.jpg"):
        prepare_images([str(broken)], [str(tmp_path / "out.jpg")], 64, workers=1)


def test_predict_on_originals_sees_the_tensor_evaluation_gets_from_the_prepared_copy(tmp_path):
    """Photo-sized JPEG and PNG (larger than the prepare size) and a small image: the prepare step in
    memory (bbn-predict) gives the very tensor the prepared copy gives (evaluation)."""
    from bbn.data.loading import ImageList
    from bbn.data.prepare import OriginalImages
    from bbn.data.transforms import eval_transform

    (tmp_path / "raw").mkdir()
    photo = _photo(tmp_path / "raw/photo.jpg", 500, 375)
    rng = np.random.default_rng(3)
    png = tmp_path / "raw/seedling.png"
    Image.fromarray(rng.integers(0, 255, (150, 170, 3), dtype=np.uint8)).save(png)
    small = _photo(tmp_path / "raw/small.jpg", 40, 50, seed=2)
    sources = [str(photo), str(png), str(small)]
    targets = [prepared_path(s, str(tmp_path / "raw"), str(tmp_path / "prep")) for s in sources]
    short_side, quality, size = 64, 90, 56
    prepare_images(sources, targets, short_side, quality, workers=1)
    transform = eval_transform(size)
    evaluated = ImageList(targets, [0, 1, 2], transform, decode_size=size)
    predicted = OriginalImages(sources, [0, 1, 2], transform, size, short_side, quality)
    decoded_directly = ImageList(sources, [0, 1, 2], transform, decode_size=size)  # the old bbn-predict
    for i in range(3):
        assert torch.equal(evaluated[i][0], predicted[i][0]), sources[i]
    for i in range(2):  # the photo-sized ones: decoding the original directly is another tensor
        assert (evaluated[i][0] - decoded_directly[i][0]).abs().mean() > 1e-3, sources[i]
    again = prepare_bytes(open(targets[0], "rb").read(), short_side, quality)
    assert again == open(targets[0], "rb").read()  # idempotent: a prepared copy is its own prepared copy
