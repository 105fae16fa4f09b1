"""The in-memory input path (bbn.data.inmemory, bbn.data.batch_augment) against the DataLoader path:
same sampler draws, same augmentation distributions, same transform, same losses. CPU only.

Statistical checks use fixed seeds and tolerances of 4 binomial standard deviations.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from bbn.data.batch_augment import DeviceAugment, crop_flip, normalize
from bbn.data.decode import decode
from bbn.data.inmemory import ImageBank, bank_bytes, choose_in_memory, decode_batch, train_batches
from bbn.data.loading import ImageList, train_loaders
from bbn.data.transforms import NORMALIZE, train_transform
from bbn.errors import ArgError, BBNError

MEAN, STD = NORMALIZE["imagenet"]

COUNTS = (24, 10, 5, 3)  # a long tail over 4 classes


def _jpegs(folder, counts=COUNTS, size=(20, 24), seed=0) -> tuple[list[str], list[int]]:
    """Smooth colour JPEGs whose mean colour depends on the class (learnable, as real data)."""
    rng = np.random.default_rng(seed)
    paths, targets = [], []
    for cls, n in enumerate(counts):
        for i in range(n):
            base = np.array([60 * cls, 255 - 60 * cls, 128], np.float32)
            field = rng.normal(0, 40, (3, 4, 3)).astype(np.float32) + base
            img = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
            path = folder / f"{cls}_{i}.jpg"
            img.save(path, quality=95)
            paths.append(str(path))
            targets.append(cls)
    return paths, targets


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _jpegs(tmp_path_factory.mktemp("inmem"))


def _bank(labels, side: int = 8) -> ImageBank:
    images = torch.zeros(len(labels), 3, side, side, dtype=torch.uint8)
    return ImageBank(images, torch.full((len(labels), 2), side), labels)


def _within(count: float, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_reversed_draws_follow_inverse_class_counts_and_equal_the_dataloader_sampler():
    counts = (400, 120, 40, 10)
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    bank = _bank(labels)
    augment = DeviceAugment("none", 8)
    batches = train_batches(bank, augment, batch_size=32, seed=3)
    loaders = train_loaders(ImageList([f"{i}.jpg" for i in range(len(labels))], labels, None), 32, 0, seed=3)
    drawn = []
    for epoch in range(6):
        for name in ("uniform", "reversed", "balanced"):
            batches[name].batch_sampler.set_epoch(epoch)
            loaders[name].batch_sampler.set_epoch(epoch)
            assert list(batches[name].batch_sampler) == list(loaders[name].batch_sampler), (name, epoch)
        for _, y in batches["reversed"]:
            drawn.append(y)
    y = torch.cat(drawn)
    inverse = [1 / n for n in counts]
    for cls, w in enumerate(inverse):
        p = w / sum(inverse)
        assert _within(int((y == cls).sum()), len(y), p), (cls, int((y == cls).sum()), len(y) * p)


def test_uniform_batches_see_every_image_once_and_labels_follow_indices():
    labels = [c for c, n in enumerate(COUNTS) for _ in range(n)]
    bank = _bank(labels)
    bank.images[:, 0, 0, 0] = torch.arange(len(labels), dtype=torch.uint8)  # image i says i
    batches = train_batches(bank, DeviceAugment("none", 8, mean=(0, 0, 0), std=(1 / 255,) * 3), 5, seed=0)
    seen = []
    for x, y in batches["uniform"]:
        idx = x[:, 0, 0, 0].round().long()
        assert torch.equal(y, bank.targets[idx])
        seen += idx.tolist()
    assert sorted(seen) == list(range(len(labels)))


def test_cifar_augment_at_zero_shift_equals_the_dataloader_transform(files):
    """An image through the device path with the crop at its own place (offset = padding) and no
    flip equals the DataLoader path's transform (resize, centre crop, float, normalise)."""
    paths, targets = files
    bank = ImageBank.from_files(paths, targets, 16, True, torch.device("cpu"))
    reference = ImageList(paths, targets, train_transform(16, "cifar", False, MEAN, STD, padding=0), 16)
    pad, n = 4, 6
    padded = torch.nn.functional.pad(bank.images[:n], (pad,) * 4)
    at = torch.full((n,), pad)
    for flip in (False, True):
        got = normalize(crop_flip(padded, at, at, torch.full((n,), flip), 16), MEAN, STD)
        for i in range(n):
            want = reference[i][0].flip(-1) if flip else reference[i][0]
            torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)


def test_device_batches_reseed_per_epoch(files):
    paths, targets = files
    bank = ImageBank.from_files(paths, targets, 16, True, torch.device("cpu"))
    augment = DeviceAugment("inception", 12, mean=MEAN, std=STD)

    def epoch(e):
        b = train_batches(bank, augment, 8, seed=5)["uniform"]
        b.batch_sampler.set_epoch(e)
        return torch.cat([x for x, _ in b])
    first = epoch(1)
    assert first.shape[1:] == (3, 12, 12)
    assert torch.equal(first, epoch(1)) and not torch.equal(first, epoch(2))


def _train(loaders: dict, epochs: int, seed: int = 0) -> list[float]:
    from types import SimpleNamespace

    from bbn.model.network import ModelSpec, build_model
    from bbn.train.loop import bilateral_step, make_optimizer, seed_everything, train_epoch
    torch.manual_seed(seed)
    model = build_model(ModelSpec("resnet32", len(COUNTS), "off"))
    opt = make_optimizer(model, SimpleNamespace(lr=0.05, momentum=0.9, weight_decay=2e-4, nesterov=True))
    losses = []
    for e in range(epochs):
        seed_everything(100 + e)
        row = train_epoch(model, [loaders["uniform"], loaders["reversed"]], bilateral_step(1 - e / epochs), opt,
                          torch.device("cpu"), e)
        losses.append(row["train_loss"])
    return losses


def test_both_paths_train_to_the_same_losses_unaugmented(files):
    """Without random augmentation the two paths feed identical batches (same sampler draws, same
    pixels to the bit): a short run gives the same loss every epoch."""
    paths, targets = files
    torch.set_num_threads(1)
    dataset = ImageList(paths, targets, train_transform(16, "cifar", False, MEAN, STD, padding=0), 16)
    bank = ImageBank.from_files(paths, targets, 16, True, torch.device("cpu"))
    ours = _train(train_batches(bank, DeviceAugment("cifar", 16, 0, False, mean=MEAN, std=STD), 8, seed=0), 3)
    theirs = _train(train_loaders(dataset, 8, 0, seed=0, persistent=False), 3)
    assert ours == pytest.approx(theirs, rel=1e-5, abs=0)


def _losses(batches, model, epochs: int) -> torch.Tensor:
    """Per-image cross-entropy of a fixed model over ``epochs`` epochs of augmented batches."""
    out = []
    with torch.no_grad():
        for e in range(epochs):
            torch.manual_seed(1000 + e)  # the DataLoader path's transforms draw from the global RNG
            batches.batch_sampler.set_epoch(e)
            out += [torch.nn.functional.cross_entropy(model(x), y, reduction="none") for x, y in batches]
    return torch.cat(out)


@pytest.mark.parametrize("name", ["uniform", "reversed"])
def test_both_paths_give_the_same_expected_loss_augmented(files, name):
    """With pad-crop and flips the draws differ, their distribution must not: the mean loss of a
    fixed model over many augmented epochs agrees within 4 standard errors, while turning the
    augmentation off moves it outside (the check can fail)."""
    paths, targets = files
    torch.set_num_threads(1)
    torch.manual_seed(0)
    nn = torch.nn  # a small fixed random network: sees position (padding) and orientation (flips)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                          nn.Linear(144, len(COUNTS)))
    bank = ImageBank.from_files(paths, targets, 16, True, torch.device("cpu"))

    def device_path(padding, flip):
        augment = DeviceAugment("cifar", 16, padding, flip, mean=MEAN, std=STD)
        return _losses(train_batches(bank, augment, 8, seed=0)[name], model, 40)
    dataset = ImageList(paths, targets, train_transform(16, "cifar", True, MEAN, STD, padding=4), 16)
    theirs = _losses(train_loaders(dataset, 8, 0, seed=0, persistent=False)[name], model, 40)
    ours, plain = device_path(4, True), device_path(0, False)

    def gap(a, b):
        return abs(a.mean() - b.mean()) / math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert gap(ours, theirs) <= 4, (ours.mean(), theirs.mean())
    assert gap(plain, theirs) > 4, (plain.mean(), theirs.mean())


def test_gpu_decode_falls_back_to_the_cpu_without_cuda(files, tmp_path):
    paths, targets = files
    datas = [open(p, "rb").read() for p in paths[:3]]
    with pytest.warns(UserWarning, match="CUDA"):
        got = decode_batch(datas, 0, torch.device("cpu"), gpu=True)
    assert all(torch.equal(a, decode(d)) for a, d in zip(got, datas))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu = ImageBank.from_files(paths, targets, 16, True, torch.device("cpu"), gpu_decode=True)
    assert torch.equal(gpu.images, ImageBank.from_files(paths, targets, 16, True, torch.device("cpu")).images)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(BBNError, match="bad.jpg"):
        ImageBank.from_files([paths[0], str(bad)], [0, 0], 16, True, torch.device("cpu"))


def test_inception_bank_keeps_aspect_on_a_canvas(files):
    paths, targets = files
    bank = ImageBank.from_files(paths[:3], targets[:3], 10, False, torch.device("cpu"))
    assert bank.images.shape == (3, 3, 12, 10) and bank.sizes.tolist() == [[12, 10]] * 3
    assert bank_bytes(paths, 10, square=False) >= len(paths) * 3 * 10 * 12
    assert bank_bytes(paths, 10, square=True) == len(paths) * 3 * 10 * 10


def test_choose_in_memory():
    assert choose_in_memory("auto", 2**30, 1.0) and not choose_in_memory("auto", 2**30 + 1, 1.0)
    assert choose_in_memory("on", 10 * 2**30, 1.0) and not choose_in_memory("off", 1, 1.0)
    with pytest.raises(ArgError):
        choose_in_memory("sometimes", 1, 1.0)


def test_in_memory_param_words():
    """Bare YAML 1.1 on/off (booleans, as ``dvc exp run -S`` writes them) mean on/off; another word
    is an error naming the key."""
    from stages.params import validate
    assert validate({"train": {"in_memory": False}}).train.in_memory == "off"
    assert validate({"train": {"in_memory": True}}).train.in_memory == "on"
    with pytest.raises(BBNError, match="train.in_memory"):
        validate({"train": {"in_memory": "sometimes"}})


@pytest.mark.pipeline
def test_train_stage_chooses_the_path_by_param(tmp_path):
    """The tiny digits set fits: auto trains in memory, off through the DataLoaders, off with
    gpu_decode through batches decoded on the device (here the CPU, with a warning)."""
    from tests.helpers import prepared_repo, set_params, stage
    repo = prepared_repo(tmp_path / "bbn", {"train": {"epochs": 1, "lr_steps": [1]}})
    for mode, gpu, in_memory in (("auto", False, True), (False, False, False), (False, True, False)):
        set_params(repo, {"train": {"in_memory": mode, "gpu_decode": gpu}})
        proc = stage(repo, "train")
        assert proc.returncode == 0, proc.stderr
        assert ("in memory on cpu" in proc.stdout) == in_memory, (mode, proc.stdout)
        assert ("GPU JPEG decoding needs a CUDA device" in proc.stderr) == gpu, proc.stderr[-2000:]


@pytest.mark.pipeline  # a bench script end to end: about a minute
def test_gpu_check_script_dry_run_on_cpu(tmp_path):
    """``bash bench/gpu.sh --device cpu``: the GPU check's every step on tiny synthetic data."""
    import json
    import subprocess

    from tests.helpers import ROOT, env
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", "bench/gpu.sh", "--device", "cpu", "--epochs", "1", "--data",
                           str(tmp_path / "absent.tar.gz")], cwd=ROOT, capture_output=True, text=True,
                          env=env() | {"BBN_GPU_JSON": str(out)}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "synthetic" in proc.stderr and "top-1" in proc.stdout
    result = json.loads(out.read_text())
    assert result["epochs"] == 1 and 0 <= result["test_top1"] <= 100 and result["official_step_img_per_s"] > 0
    assert proc.stdout.count("| in-memory input |") == 2 and "INCOMPLETE" not in proc.stdout
    assert "| BBN ResNet-50 step, 32 px" in proc.stdout and "GPU waits" in proc.stdout  # bench/gpu_input.py


def test_decoded_batches_equal_the_in_memory_batches(files):
    """Files decoded batch by batch on the device (here: the CPU fallback of gpu decoding) give the
    in-memory path's batches: same draws, same pixels, same augmentation."""
    from bbn.data.inmemory import decoded_batches
    paths, targets = files
    cpu = torch.device("cpu")
    augment = DeviceAugment("cifar", 16, 2, True, mean=MEAN, std=STD)
    bank = ImageBank.from_files(paths, targets, 16, True, cpu)
    memory = train_batches(bank, augment, 8, seed=4)
    with pytest.warns(UserWarning, match="CUDA"):
        streamed = decoded_batches(paths, targets, augment, 16, True, cpu, True, 8, 0, seed=4)
        for name in ("uniform", "reversed"):
            for b in (memory[name], streamed[name]):
                b.batch_sampler.set_epoch(2)
            assert len(memory[name]) == len(streamed[name])
            for (xa, ya), (xb, yb) in zip(memory[name], streamed[name]):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
