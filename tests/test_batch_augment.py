"""On-device batch augmentation (bbn.data.batch_augment) against torchvision's per-image transforms:
crop offsets, flip rate, RandomResizedCrop boxes and their resize, the image canvas. CPU only.

Statistical checks use fixed seeds and tolerances of 4 binomial (or standard-error) deviations.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms import v2

from bbn.data.batch_augment import cifar_augment, crop_flip, resize_boxes, resized_crop_boxes


def _within(count: float, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def _coordinate_images(n: int, side: int) -> torch.Tensor:
    """Channel 0 holds row + 1, channel 1 column + 1 (0 marks the zero padding)."""
    steps = torch.arange(1, side + 1, dtype=torch.uint8)
    x = torch.zeros(n, 3, side, side, dtype=torch.uint8)
    x[:, 0] = steps[:, None]
    x[:, 1] = steps[None, :]
    return x


def test_cifar_crop_offsets_are_uniform_and_flip_rate_is_one_half():
    n, side, pad = 9000, 16, 4
    out = cifar_augment(_coordinate_images(n, side), pad, True, torch.Generator().manual_seed(1)).long()
    top = out[:, 0, 8, 8] - 1 - 8 + pad  # crop row 8 shows original row top + 8 - pad (always inside)
    step = out[:, 1, 8, 9] - out[:, 1, 8, 8]  # +1 unflipped, -1 mirrored
    assert set(step.tolist()) == {1, -1}
    flipped = step == -1
    left = torch.where(flipped, out[:, 1, 8, 8] - 1 - (side - 1 - 8) + pad, out[:, 1, 8, 8] - 1 - 8 + pad)
    assert _within(int(flipped.sum()), n, 0.5)
    for offsets in (top, left):
        assert offsets.min() == 0 and offsets.max() == 2 * pad
        for k in range(2 * pad + 1):
            assert _within(int((offsets == k).sum()), n, 1 / (2 * pad + 1)), (k, int((offsets == k).sum()))


def test_cifar_augment_every_offset_equals_torchvision_pad_and_crop():
    x = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    padded = v2.functional.pad(x, [3])
    for top in range(7):
        for left in range(7):
            got = crop_flip(torch.nn.functional.pad(x, (3,) * 4), torch.tensor([top]), torch.tensor([left]),
                            torch.tensor([False]), 8)
            assert torch.equal(got, v2.functional.crop(padded, top, left, 8, 8))


def test_inception_boxes_match_torchvision_random_resized_crop_statistics():
    n, h, w, scale, ratio = 6000, 60, 80, (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = resized_crop_boxes(torch.tensor([[h, w]] * n), scale, ratio, torch.Generator().manual_seed(0))
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    torch.manual_seed(0)
    ref = torch.tensor([v2.RandomResizedCrop.get_params(torch.zeros(1, h, w), list(scale), list(ratio))
                        for _ in range(n)], dtype=torch.float32)  # (top, left, height, width)
    for ours, theirs in ((bh * bw / (h * w), ref[:, 2] * ref[:, 3] / (h * w)),
                         (torch.log(bw / bh), torch.log(ref[:, 3] / ref[:, 2])),
                         (boxes[:, 0] / (w - bw + 1), ref[:, 1] / (w - ref[:, 3] + 1))):
        spread = 4 * math.sqrt(ours.var() / n + theirs.var() / n)
        assert abs(ours.mean() - theirs.mean()) <= spread, (ours.mean(), theirs.mean())
        assert ours.min() >= theirs.min() - 0.05 and ours.max() <= theirs.max() + 0.05


def test_inception_fallback_is_torchvisions_centre_crop():
    """With an impossible scale no try fits: both fall back to the ratio-clamped centre crop."""
    for h, w in ((10, 100), (100, 10), (50, 60)):
        ours = resized_crop_boxes(torch.tensor([[h, w]]), (2.0, 2.0), (3 / 4, 4 / 3), torch.Generator())[0]
        top, left, bh, bw = v2.RandomResizedCrop.get_params(torch.zeros(1, h, w), [2.0, 2.0], [3 / 4, 4 / 3])
        assert ours.tolist() == [left, top, left + bw, top + bh]


def test_box_resize_equals_bilinear_resized_crop_when_enlarging():
    """Equal to torchvision's crop-then-resize except within half an input pixel of an inner box's
    border, where roi_align samples the neighbours outside the box and torchvision the crop's edge."""
    x = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 30.0, 20.0], [3.0, 2.0, 15.0, 14.0]])
    got = resize_boxes(x, boxes, 32)
    for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        want = v2.functional.resized_crop(x[i].float(), y1, x1, y2 - y1, x2 - x1, [32, 32], antialias=False)
        inner = slice(0, 32) if i == 0 else slice(2, 30)  # 12 px -> 32: half a pixel is 1.33 outputs
        torch.testing.assert_close(got[i][:, inner, inner], want[:, inner, inner], atol=1e-3, rtol=0)


def test_canvas_repeats_each_images_edges():
    from bbn.data.inmemory import canvas
    a = torch.randint(0, 256, (3, 4, 6), dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 5, 3), dtype=torch.uint8)
    x, sizes = canvas([a, b])
    assert x.shape == (2, 3, 5, 6) and sizes.tolist() == [[4, 6], [5, 3]]
    assert torch.equal(x[0, :, :4, :6], a) and torch.equal(x[0, :, 4], a[:, 3])  # last row repeated
    assert torch.equal(x[1, :, :5, :3], b) and torch.equal(x[1, :, :, 5], b[:, :, 2])  # last column
