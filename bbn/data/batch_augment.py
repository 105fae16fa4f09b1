"""Training augmentation of whole uint8 batches on their device, in a few kernels.

The per-image transforms of ``bbn.data.loading`` (torchvision, one image at a time in DataLoader
workers) are re-stated for a batch that already lies on the training device:

* ``cifar``: zero padding of ``padding`` pixels, a random ``size`` x ``size`` crop (offsets uniform
  in [0, 2 * padding] on each axis, as ``RandomCrop(size, padding)``) and a horizontal flip with
  probability 0.5 (``RandomHorizontalFlip``): one pad and one gather, whatever the batch size.
  The CIFAR recipe of Zhou et al. 2020 (official ``lib/dataset/imbalance_cifar.py``) and LDAM-DRW.
* ``inception``: torchvision's ``RandomResizedCrop(size, scale, ratio)`` box sampling (up to 10
  tries per image, then the centre crop with the aspect ratio clamped), vectorised over the batch,
  every box resized in one ``torchvision.ops.roi_align`` call (bilinear, averaged over
  ceil(box / size)^2 samples per output pixel when shrinking, close to an antialiased resize), and
  the flip. The iNaturalist recipe of the official BBN code (``transform_wrapper.py``).

then ``normalize``: float, /255, minus mean, over std (``ToDtype(scale=True)`` + ``Normalize``).
Random numbers come from the ``torch.Generator`` passed in (on the batch's device), so a seeded
epoch is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.ops import roi_align


def _uniform(n: int, generator: torch.Generator, device: torch.device, shape: tuple = ()) -> torch.Tensor:
    return torch.rand((n, *shape), generator=generator, device=device)


def crop_flip(padded: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor,
              size: int) -> torch.Tensor:
    """``size`` x ``size`` crops of ``padded`` (B, C, H, W) at per-image ``top``/``left`` (B,) offsets,
    mirrored where ``flip`` (B,) bool: one advanced-indexing gather. Returns (B, C, size, size)."""
    b, c = padded.shape[:2]
    steps = torch.arange(size, device=padded.device)
    rows = top[:, None] + steps  # (B, size)
    cols = torch.where(flip[:, None], left[:, None] + size - 1 - steps, left[:, None] + steps)
    batch = torch.arange(b, device=padded.device)[:, None, None, None]
    chans = torch.arange(c, device=padded.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def cifar_augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``RandomCrop(S, padding)`` + ``RandomHorizontalFlip()`` of a square batch ``x`` (B, C, S, S),
    any dtype (zero padding, as torchvision's default fill). Returns a new (B, C, S, S) tensor."""
    b, size = len(x), x.shape[-1]
    padded = torch.nn.functional.pad(x, (padding,) * 4) if padding else x
    top = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    left = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    mirror = _uniform(b, generator, x.device) < 0.5 if flip else torch.zeros(b, dtype=torch.bool, device=x.device)
    return crop_flip(padded, top, left, mirror, size)


def resized_crop_boxes(sizes: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float],
                       generator: torch.Generator, tries: int = 10) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` for every image at once.

    ``sizes`` (B, 2): each image's (height, width). Per image up to ``tries`` (area fraction ~
    U(scale), log aspect ~ U(log ratio)) draws; the first whose rounded box fits is taken, with a
    uniform position; none fits: the centre crop with the aspect ratio clamped to ``ratio``.
    Returns (B, 4) float boxes (x1, y1, x2, y2) in pixel-edge coordinates.
    """
    device, (b, _) = sizes.device, sizes.shape
    h_img, w_img = sizes[:, 0:1].double(), sizes[:, 1:2].double()
    area = h_img * w_img * (scale[0] + (scale[1] - scale[0]) * _uniform(b, generator, device, (tries,)).double())
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * _uniform(b, generator, device, (tries,)).double())
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= w_img) & (h > 0) & (h <= h_img)
    first = fits.double().argmax(1, keepdim=True)  # the first try that fits (0 when none does)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(1)
    h_img, w_img = h_img[:, 0], w_img[:, 0]
    top = torch.floor(_uniform(b, generator, device).double() * (h_img - h + 1))
    left = torch.floor(_uniform(b, generator, device).double() * (w_img - w + 1))
    # fallback: the whole image, its aspect ratio clamped into `ratio`, centred
    in_ratio = w_img / h_img
    fw = torch.where(in_ratio > ratio[1], torch.round(h_img * ratio[1]), w_img)
    fh = torch.where(in_ratio < ratio[0], torch.round(w_img / ratio[0]), h_img)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    top = torch.where(found, top, torch.div(h_img - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(w_img - w, 2, rounding_mode="floor"))
    return torch.stack([left, top, left + w, top + h], 1).float()


def resize_boxes(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box of ``x`` (B, C, H, W) resized to ``size`` x ``size`` in one ``roi_align``
    (aligned: pixel k covers [k, k+1)). Returns float (B, C, size, size) on ``x``'s value scale.

    Inside the box this is bilinear resizing (enlarging: exactly torchvision's; shrinking: averaged
    samples); within half an input pixel of a box edge that is not the image's, the samples blend in
    the neighbouring pixels outside the box, where torchvision's crop-then-resize repeats the edge."""
    index = torch.arange(len(x), device=x.device, dtype=boxes.dtype)[:, None]
    return roi_align(x.float(), torch.cat([index, boxes], 1), (size, size), spatial_scale=1.0,
                     sampling_ratio=-1, aligned=True)


def inception_augment(x: torch.Tensor, sizes: torch.Tensor, size: int, scale: tuple[float, float],
                      ratio: tuple[float, float], flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``RandomResizedCrop(size, scale, ratio)`` + ``RandomHorizontalFlip()`` of a batch ``x``
    (B, C, H, W) whose image i fills the top-left ``sizes[i]`` (height, width) (the rest repeats
    its last row and column, so bilinear samples at the border see the image's own edge).
    Returns float (B, C, size, size) on the 0..255 scale."""
    out = resize_boxes(x, resized_crop_boxes(sizes, scale, ratio, generator), size)
    if flip:
        mirror = _uniform(len(x), generator, x.device) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x / 255 - mean) / std per channel, as float32 (B, C, H, W): the operations of
    ``v2.ToDtype(float32, scale=True)`` + ``v2.Normalize`` in their order, so the two paths agree to
    the bit (three elementwise kernels; negligible next to a training step)."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device)[:, None, None]
    return x.to(torch.float32).mul_(1.0 / 255).sub_(mean_t).div_(std_t)


@dataclass(frozen=True)
class DeviceAugment:
    """One training augmentation by its explicit arguments (the DataLoader transforms' meanings).

    ``kind``: 'cifar' (``padding``, ``flip``) or 'inception' (``scale``, ``ratio``, ``flip``);
    'none' crops nothing (only ``normalize``). ``size``: output side in pixels.
    """

    kind: str
    size: int
    padding: int = 4
    flip: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        if self.kind not in ("cifar", "inception", "none"):
            raise ValueError(f"augmentation kind {self.kind!r}: choose cifar, inception or none")

    def __call__(self, x: torch.Tensor, sizes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented, normalised float32 (B, C, size, size) from uint8 ``x`` (B, C, H, W)."""
        if self.kind == "inception":
            x = inception_augment(x, sizes, self.size, self.scale, self.ratio, self.flip, generator)
        elif self.kind == "cifar":
            x = cifar_augment(x, self.padding, self.flip, generator)
        return normalize(x, self.mean, self.std)
