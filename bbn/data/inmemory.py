"""The in-memory input path: every training image decoded once, batches drawn and augmented on the device.

For datasets whose decoded images fit in memory (CIFAR-LT: 12,406 x 3 x 32 x 32 bytes = 38 MB), a
``DataLoader`` that decodes, crops and normalises one image at a time in worker processes caps a GPU
far below what a ResNet-32 step can do. Here:

* ``ImageBank``: all images decoded once (``bbn.data.decode.decode``, or batched
  ``torchvision.io.decode_jpeg`` on CUDA with ``gpu_decode``) into one uint8 tensor (N, 3, H, W) on
  the training device;
* the very samplers of the DataLoader path (``bbn.data.samplers``: uniform, reversed, class-balanced,
  seeded per epoch, cut into this rank's micro-batches by ``StepBatches``) draw the indices, so the
  same seed gives the same images in the same steps on both paths;
* ``bbn.data.batch_augment`` augments each batch on the device (``cifar`` / ``inception``).

``DeviceBatches`` duck-types the DataLoaders ``bbn.train.loop.train_epoch`` consumes: an iterable of
(x, y) with ``len()`` and ``batch_sampler.set_epoch(epoch)``.

For images that do not fit, ``DecodedBatches`` keeps the rest of the path: DataLoader workers only
read the files, each batch is decoded on the device (nvJPEG with ``gpu``) and augmented there.
"""

from __future__ import annotations

import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2
from tqdm import tqdm

from bbn import vocab
from bbn.data.batch_augment import DeviceAugment
from bbn.data.decode import decode
from bbn.data.loading import resolve_workers
from bbn.data.samplers import ClassBalancedSampler, ReversedSampler, StepBatches, UniformSampler, rank_seed
from bbn.errors import ArgError, BBNError, BBNWarning

_JPEG_MAGIC = b"\xff\xd8"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise BBNError(f"{path}: cannot read image ({exc})") from None


def _decode_cpu(data: bytes | torch.Tensor, min_side: int, name: str) -> torch.Tensor:
    try:
        return decode(data if isinstance(data, bytes) else data.numpy().tobytes(), min_side)
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's ways of saying "not an image"
        raise BBNError(f"{name}: cannot read image ({exc})") from None


def _is_jpeg(data: bytes | torch.Tensor) -> bool:
    return bytes(data[:2].tolist() if isinstance(data, torch.Tensor) else data[:2]) == _JPEG_MAGIC


def decode_batch(datas: Sequence[bytes | torch.Tensor], min_side: int, device: torch.device, gpu: bool,
                 names: Sequence[str] | None = None) -> list[torch.Tensor]:
    """Encoded images (bytes or 1-D uint8 tensors) -> uint8 (3, H, W) tensors on ``device``.

    ``gpu`` and a CUDA ``device``: all-JPEG batches through ``torchvision.io.decode_jpeg(...,
    device=device)`` (full resolution: no DCT-scaled decoding on the GPU); anything else, a batch
    nvJPEG refuses, or no CUDA device (a warning says so), through ``bbn.data.decode.decode`` on the
    CPU (reduced-size decoding when ``min_side`` allows), then moved to ``device``. Raises
    ``BBNError`` naming the file (``names``) that cannot be decoded.
    """
    names = names or [f"image {i}" for i in range(len(datas))]
    if gpu and device.type != "cuda":
        warnings.warn(f"GPU JPEG decoding needs a CUDA device, not {device}: decoding on the CPU", BBNWarning, stacklevel=2)
    if gpu and device.type == "cuda" and all(_is_jpeg(d) for d in datas):
        tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) if isinstance(d, bytes) else d for d in datas]
        try:
            return decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # e.g. a CMYK or progressive flavour nvJPEG refuses: the CPU path decides
            pass
    return [_decode_cpu(d, min_side, n).to(device) for d, n in zip(datas, names)]


def fit_image(img: torch.Tensor, side: int, square: bool) -> torch.Tensor:
    """The deterministic part of the training transform: short side resized to ``side``
    (``v2.Resize(side, antialias=True)``) and, ``square``, the centre ``side`` x ``side`` crop."""
    img = v2.functional.resize(img, side, antialias=True) if min(img.shape[-2:]) != side else img
    return v2.functional.center_crop(img, side) if square else img


def canvas(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of differing sizes in one uint8 (N, 3, Hmax, Wmax) tensor, each at the top left with its
    last row and column repeated into the rest (bilinear sampling at its border sees its own edge),
    and their (N, 2) (height, width)."""
    sizes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.long)
    device = images[0].device if len(images) else torch.device("cpu")
    if len(images) and (sizes == sizes[0]).all():  # one size (square banks): nothing to pad
        return torch.stack(list(images)), sizes.to(device)
    h_max, w_max = (int(s) for s in sizes.max(0).values) if len(images) else (1, 1)
    out = torch.empty((len(images), 3, h_max, w_max), dtype=torch.uint8, device=device)
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        rows = torch.arange(h_max, device=device).clamp_(max=h - 1)
        cols = torch.arange(w_max, device=device).clamp_(max=w - 1)
        out[i] = img[:, rows][:, :, cols]
    return out, sizes.to(device)


class ImageBank:
    """Training images in one uint8 tensor ``images`` (N, 3, H, W) on the training device, with
    ``sizes`` (N, 2) (each image's height and width at the top left of the canvas, see ``canvas``)
    and class indices ``targets`` (N,) on the same device."""

    def __init__(self, images: torch.Tensor, sizes: torch.Tensor, targets: Sequence[int] | torch.Tensor):
        self.images, self.sizes = images, sizes.to(images.device)
        self.targets = torch.as_tensor(targets, dtype=torch.long).to(images.device)
        if not (len(images) == len(self.sizes) == len(self.targets)):
            raise ValueError(f"{len(images)} images, {len(self.sizes)} sizes, {len(self.targets)} targets")

    @classmethod
    def from_files(cls, paths: Sequence[str], targets: Sequence[int], side: int, square: bool,
                   device: torch.device, gpu_decode: bool = False, chunk: int = 256) -> "ImageBank":
        """Every file decoded once (``decode_batch``, ``chunk`` at a time) onto ``device``.

        ``side`` > 0: each image's short side resized to ``side``; ``square``: then its centre crop,
        so ``images`` is (N, 3, side, side), what the DataLoader path's transform starts from (the
        ``cifar`` augmentation's input); otherwise images keep their aspect ratio on a common canvas,
        for ``inception``. Raises ``BBNError`` naming an unreadable file.
        """
        paths, images = list(paths), []
        for start in tqdm(range(0, len(paths), chunk), desc="decode to memory", unit="chunk", disable=None):
            part = paths[start:start + chunk]
            decoded = decode_batch([_read(p) for p in part], side, device, gpu_decode, part)
            images += [fit_image(img, side, square) if side else img for img in decoded]
        return cls(*canvas(images), targets)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()


def bank_bytes(paths: Sequence[str], side: int, square: bool, probe: int = 64) -> int:
    """Bytes an ``ImageBank`` of ``paths`` will take: exact for ``square`` banks, otherwise from the
    largest aspect ratio among ``probe`` evenly spaced files' headers (no decoding)."""
    from PIL import Image
    if square or not paths:
        return len(paths) * 3 * side * side
    aspect = 1.0
    for i in np.linspace(0, len(paths) - 1, min(probe, len(paths))).astype(int):
        with Image.open(paths[i]) as img:
            aspect = max(aspect, max(img.size) / min(img.size))
    return int(len(paths) * 3 * side * side * aspect * aspect)  # both canvas sides may be the long one


def epoch_generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator on ``device`` seeded from ``key`` (e.g. seed, rank, stream, epoch)."""
    return torch.Generator(device=device).manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))


class DeviceBatches:
    """This rank's augmented micro-batches of one sampler, drawn from an ``ImageBank``.

    Iterating yields (x float32 (B, 3, size, size), y long (B,)) on the bank's device; ``len`` and
    ``batch_sampler.set_epoch`` behave as a ``DataLoader`` over ``StepBatches``. The augmentation's
    random numbers are re-seeded every epoch from (``seed``, ``stream``, epoch).
    """

    def __init__(self, bank: ImageBank, batch_sampler: StepBatches, augment: DeviceAugment, seed: int,
                 stream: int = 0):
        self.bank, self.batch_sampler, self.augment = bank, batch_sampler, augment
        self.seed, self.stream = seed, stream

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.bank.images.device
        generator = epoch_generator(device, self.seed, self.stream, self.batch_sampler.sampler.epoch)
        for indices in self.batch_sampler:
            idx = torch.as_tensor(indices, device=device)
            x = self.augment(self.bank.images[idx], self.bank.sizes[idx], generator)
            yield x, self.bank.targets[idx]


def _samplers(labels: list[int], seed: int, rank: int) -> dict:
    """The samplers of ``bbn.data.loading.train_loaders``, with the same seeds."""
    n, mine = len(labels), rank_seed(seed, rank)
    return {"uniform": UniformSampler(n, seed=seed), "reversed": ReversedSampler(labels, num_samples=n, seed=mine),
            "balanced": ClassBalancedSampler(labels, num_samples=n, seed=mine)}


def train_batches(bank: ImageBank, augment: DeviceAugment, batch_size: int, seed: int, rank: int = 0,
                  world_size: int = 1, accumulate: int = 1, **step_options) -> dict[str, DeviceBatches]:
    """The 'uniform', 'reversed' and 'balanced' batches of ``bbn.data.loading.train_loaders``, from
    the same samplers with the same seeds (so the same indices per step), augmented on the device.
    ``step_options``: further ``StepBatches`` arguments, passed as the DataLoader path passes them."""
    samplers = _samplers(bank.targets.tolist(), seed, rank)
    return {name: DeviceBatches(bank, StepBatches(s, batch_size, world_size, rank, accumulate, **step_options),
                                augment, rank_seed(seed, rank), stream)
            for stream, (name, s) in enumerate(samplers.items())}


class EncodedFiles(Dataset):
    """(file content as a 1-D uint8 tensor, class index): DataLoader workers only read files."""

    def __init__(self, paths: Sequence[str], targets: Sequence[int]):
        self.paths, self.targets = list(paths), list(targets)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.frombuffer(bytearray(_read(self.paths[i])), dtype=torch.uint8), self.targets[i]


def _as_lists(batch: list) -> tuple[list[torch.Tensor], torch.Tensor]:
    return [d for d, _ in batch], torch.tensor([t for _, t in batch])


class DecodedBatches(DeviceBatches):
    """``DeviceBatches`` for images that do not stay in memory: DataLoader workers read the files of
    each micro-batch, the batch is decoded on the device (``decode_batch``, nvJPEG with ``gpu``),
    brought to ``side`` (``fit_image``), laid on a ``canvas`` and augmented there."""

    def __init__(self, files: EncodedFiles, batch_sampler: StepBatches, augment: DeviceAugment, seed: int,
                 stream: int, side: int, square: bool, device: torch.device, gpu: bool, workers: int = 0):
        super().__init__(None, batch_sampler, augment, seed, stream)
        extra = {"persistent_workers": True, "prefetch_factor": 4} if workers > 0 else {}
        self.loader = DataLoader(files, batch_sampler=batch_sampler, num_workers=workers, collate_fn=_as_lists,
                                 **extra)
        self.side, self.square, self.device, self.gpu = side, square, device, gpu

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = epoch_generator(self.device, self.seed, self.stream, self.batch_sampler.sampler.epoch)
        for datas, y in self.loader:
            images = decode_batch(datas, self.side, self.device, self.gpu)
            x, sizes = canvas([fit_image(img, self.side, self.square) if self.side else img for img in images])
            yield self.augment(x, sizes, generator), y.to(self.device, non_blocking=True)


def decoded_batches(paths: Sequence[str], targets: Sequence[int], augment: DeviceAugment, side: int,
                    square: bool, device: torch.device, gpu: bool, batch_size: int, num_workers: int | str, seed: int,
                    rank: int = 0, world_size: int = 1, accumulate: int = 1, share: int = 2, **step_options
                    ) -> dict[str, DecodedBatches]:
    """``train_batches`` for files decoded batch by batch on ``device`` (``DecodedBatches``);
    ``num_workers`` and ``share`` as ``train_loaders`` (auto: the CPUs, shared by the loaders that run at once)."""
    files, workers = EncodedFiles(paths, targets), resolve_workers(num_workers, share)
    return {name: DecodedBatches(files, StepBatches(s, batch_size, world_size, rank, accumulate, **step_options),
                                 augment, rank_seed(seed, rank), stream, side, square, device, gpu, workers)
            for stream, (name, s) in enumerate(_samplers(list(targets), seed, rank).items())}


def choose_in_memory(mode: str, nbytes: int, max_gb: float) -> bool:
    """Whether to train from an ``ImageBank``: ``mode`` 'on' / 'off', or 'auto': when its ``nbytes``
    are at most ``max_gb`` GiB. Raises ``ArgError('in_memory')`` for another mode."""
    if mode not in vocab.IN_MEMORY:
        raise ArgError("in_memory", f"{mode!r}: choose auto, on or off")
    return mode == "on" or (mode == "auto" and nbytes <= max_gb * 2**30)
