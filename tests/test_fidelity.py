"""Fidelity to the official code (issue 15, defects 1-6): each test fails on the earlier behaviour.

Sources: Megvii-Nanjing/BBN (configs/, lib/backbone/resnet_cifar.py, lib/core/combiner.py,
lib/dataset/imbalance_cifar.py), kaidic/LDAM-DRW (models/resnet_cifar.py, imbalance_cifar.py),
richardaecn/class-balanced-loss (src/cifar_main.py).
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from bbn.cli.report import cell
from bbn.data.samplers import StepBatches, UniformSampler
from bbn.data.split import val_split_kind
from bbn.data.transforms import NORMALIZE, checkpoint_transform, eval_transform, preprocessing, train_transform
from bbn.errors import ArgError
from bbn.model.checkpoint import Checkpoint
from bbn.model.network import CosineLinear, ModelSpec, build_model
from bbn.sources.datasets import fetch_dataset
from bbn.train.losses import effective_number_weights, focal_loss, loss_for, sigmoid_focal_loss
from stages.split import official_val
from tests.helpers import cifar10_python, dataspec


# ------------------------------------------------------------------ 1. scale augmentation for photos
def _bright_border_photo(h: int = 64, w: int = 96, border: int = 12) -> torch.Tensor:
    """A landscape photo, dark except for bright outer columns (uint8, C x H x W)."""
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[:, :, :border] = 255
    image[:, :, -border:] = 255
    return image


def test_photos_get_random_resized_crops_that_reach_the_border():
    pre = preprocessing("auto", "auto", "inat2019")
    assert pre["augment"] == "inception" and preprocessing("auto", "auto", "imagefolder")["augment"] == "inception"
    photo = _bright_border_photo()
    torch.manual_seed(0)
    t = train_transform(32, pre["augment"], True, (0, 0, 0), (1, 1, 1))
    reached = sum(bool(t(photo).amax() > 0.5) for _ in range(200))
    assert reached > 50  # the old Resize -> CenterCrop -> RandomCrop(pad 4) never saw the outer columns
    old_style = train_transform(32, "cifar", True, (0, 0, 0), (1, 1, 1))
    assert sum(bool(old_style(photo).amax() > 0.5) for _ in range(50)) == 0


def test_inception_test_transform_resizes_to_size_over_0875_then_centre_crops():
    rows, cols = torch.meshgrid(torch.arange(300), torch.arange(400), indexing="ij")
    photo = torch.stack([rows * 255 // 299, cols * 255 // 399, (rows + cols) * 255 // 698]).to(torch.uint8)
    out = eval_transform(224, "inception", (0, 0, 0), (1, 1, 1))(photo)
    resized = torch.nn.functional.interpolate(photo[None].float(), size=(256, 341), mode="bilinear",
                                              antialias=True, align_corners=False)[0]
    top, left = (256 - 224) // 2, (341 - 224) // 2  # 400 x 256/300 = 341 wide
    expected = resized[:, top:top + 224, left:left + 224] / 255
    assert out.shape == (3, 224, 224) and (out - expected).abs().max() < 0.02


def test_cifar_statistics_for_cifar_and_the_checkpoint_carries_them():
    pre = preprocessing("auto", "auto", "cifar10_lt")
    assert pre["augment"] == "cifar" and tuple(pre["std"]) == (0.2023, 0.1994, 0.2010)
    assert preprocessing("auto", "auto", "digits")["mean"] == list(NORMALIZE["imagenet"][0])
    image = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    ckpt = Checkpoint(ModelSpec("resnet32", 10), {}, 32, [], [], 0, preprocess=pre)
    value = checkpoint_transform(ckpt)(image)[0, 0, 0].item()
    assert value == pytest.approx((128 / 255 - 0.4914) / 0.2023, abs=1e-5)  # old: ImageNet's mean/std


# ------------------------------------------------------------------ 2. iNat on the official val split
def test_inat_validates_on_the_official_val_split_by_default():
    assert official_val("auto", "inat2018") and official_val("auto", "inat2017") and official_val("auto", "inat2019")
    assert not official_val("auto", "digits") and not official_val("auto", "cifar10_lt")
    assert not official_val(False, "inat2019") and official_val(True, "digits")


def test_a_longtailed_holdout_is_named_next_to_the_number():
    assert val_split_kind(False, [500, 120, 9]) == "holdout-longtailed"
    assert val_split_kind(False, [50, 48, 50]) == "holdout-balanced"
    assert val_split_kind(True, [500, 120, 9]) == "official"
    row = {"test_top1_acc_mean": 0.8, "test_top1_acc_std": float("nan"), "test_top1_acc_n": 1,
           "test_top1_acc_source": "val_top1_acc", "n": 1, "val_split": "holdout-longtailed"}
    assert cell(row, "test_top1_acc") == "80.00 (val: holdout-longtailed)"


# ------------------------------------------------------------------ 3. LDAM's cosine classifier
def test_cosine_classifier_starts_with_unit_norm_class_vectors():
    torch.manual_seed(0)
    head = CosineLinear(64, 10)
    norms = head.weight.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones(10), atol=1e-6)  # old: uniform(-1, 1), norms ~ sqrt(64/3) = 4.6
    net = build_model(ModelSpec("resnet32", 7, "off", head="cosine"))
    assert torch.allclose(net.rb_fc.weight.detach().norm(dim=1), torch.ones(7), atol=1e-6)
    # the forward pass is unchanged: normalised features . normalised weights, in [-1, 1]
    f = torch.randn(5, 64)
    expected = torch.nn.functional.cosine_similarity(f[:, None, :], head.weight[None], dim=2)
    assert torch.allclose(head(f), expected, atol=1e-6)


# ------------------------------------------------------------------ 4. CB-Focal is Cui et al.'s sigmoid loss
def test_cb_focal_is_the_sigmoid_focal_loss_by_hand():
    logits = [[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]]
    target, gamma, counts, beta = [0, 2], 2.0, [100, 10, 1], 0.9
    raw = [(1 - beta) / (1 - beta ** n) for n in counts]
    w = [x * 3 / sum(raw) for x in raw]
    total = 0.0
    for row, y in zip(logits, target):
        for c, z in enumerate(row):
            p = 1 / (1 + math.exp(-z))
            if c == y:
                total += w[y] * (1 - p) ** gamma * -math.log(p)
            else:
                total += w[y] * p ** gamma * -math.log(1 - p)
    expected = total / len(target)  # Cui et al.: the sum over batch x classes over the number of positives
    z, y = torch.tensor(logits), torch.tensor(target)
    weight = effective_number_weights(counts, beta)
    assert sigmoid_focal_loss(z, y, gamma, weight).item() == pytest.approx(expected, rel=1e-6)
    b = type("B", (), {"focal_gamma": gamma, "cb_beta": beta})()
    assert loss_for("cb_focal", b, counts, 0)(z, y).item() == pytest.approx(expected, rel=1e-6)
    softmax = loss_for("cb_softmax_focal", b, counts, 0)(z, y).item()
    assert softmax == pytest.approx(focal_loss(z, y, gamma, weight).item()) and abs(softmax - expected) > 0.1


def test_cb_focal_head_starts_at_the_class_prior():
    net = build_model(ModelSpec("resnet32", 10, "off", head="sigmoid"))
    assert torch.allclose(net.cb_fc.bias, torch.full((10,), -math.log(9)))  # Cui et al. model_base.py


# ------------------------------------------------------------------ 6. smaller departures
def test_option_a_shortcuts_give_the_official_parameter_count():
    def count(shortcut, classifier):
        net = build_model(ModelSpec("resnet32", 10, "off", shortcut=shortcut, classifier=classifier))
        return sum(p.numel() for p in net.parameters())

    # BBN's bbn_res32_cifar (option A, 537,488) + FC(128 -> 10) with bias (1,290)
    assert count("pad", "official") == 538_778
    assert count("pad", "separate") == 537_488 + 2 * (64 * 10 + 10)  # two 64 -> 10 heads: 538,788
    assert count("conv", "official") == 538_778 + 2_752  # option B: 1x1 conv + BN in layer2 and layer3
    assert count("conv", "separate") == 541_540  # the earlier network
    full = build_model(ModelSpec("resnet32", 10, "full", shortcut="pad", classifier="official"))
    assert sum(p.numel() for p in full.parameters()) == 538_778  # blurring adds no parameters
    with pytest.raises(ArgError, match="conv"):
        build_model(ModelSpec("resnet50", 10, "off", shortcut="pad"))


def test_option_a_shortcut_is_a_strided_slice_with_zero_channels():
    net = build_model(ModelSpec("resnet32", 10, "off", shortcut="pad"))
    shortcut = net.trunk.layer2[0].downsample
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4) and not list(shortcut.parameters())
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and not out[:, :8].any() and not out[:, 24:].any()


def test_official_classifier_is_the_papers_formula_with_twice_the_weights_and_one_bias():
    torch.manual_seed(0)
    official = build_model(ModelSpec("resnet32", 5, "off", shortcut="pad", classifier="official")).eval()
    f_c, f_r = torch.randn(3, 64), torch.randn(3, 64)
    w, b = official.fc.weight, official.fc.bias
    for alpha in (1.0, 0.7, 0.5, 0.0):
        z = official.classify(f_c, f_r, alpha)
        manual = official.fc(2 * torch.cat([alpha * f_c, (1 - alpha) * f_r], dim=1))  # combiner.py bbn_mix
        paper = alpha * (f_c @ (2 * w[:, :64]).T + b) + (1 - alpha) * (f_r @ (2 * w[:, 64:]).T + b)
        assert torch.allclose(z, manual, atol=1e-5) and torch.allclose(z, paper, atol=1e-5)
    # at test the official code feeds cat(f_c, f_r) without the factor 2: alpha 0.5
    assert torch.allclose(official.classify(f_c, f_r, 0.5), official.fc(torch.cat([f_c, f_r], dim=1)), atol=1e-6)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        logits_c, logits_r = official.branch_logits(x)
        assert torch.allclose(official(x, 0.3), 0.3 * logits_c + 0.7 * logits_r, atol=1e-5)
        assert torch.allclose(official(x, 1.0), logits_c, atol=1e-5)
    with pytest.raises(ArgError, match="cosine"):
        build_model(ModelSpec("resnet32", 5, "off", head="cosine", classifier="official"))


def test_drop_last_drops_the_partial_batch():
    # 12,406 CIFAR-10-LT IR100 images at batch 128: the official loader takes 96 steps (drop_last)
    kept = StepBatches(UniformSampler(12_406), 128, drop_last=True)
    assert len(kept) == len(list(kept)) == 96 and all(len(b) == 128 for b in kept)
    assert len(StepBatches(UniformSampler(12_406), 128, drop_last=False)) == 97  # the earlier behaviour


def _reference_longtail(labels: np.ndarray, img_num_per_cls: list[int], seed: int) -> np.ndarray:
    """kaidic/LDAM-DRW imbalance_cifar.py gen_imbalanced_data, written out: the global numpy RNG
    seeded once, classes from np.unique, per class np.where + np.random.shuffle + the first n."""
    np.random.seed(seed)
    targets_np = np.array(labels, dtype=np.int64)
    selected = []
    for the_class, the_img_num in zip(np.unique(targets_np), img_num_per_cls):
        idx = np.where(targets_np == the_class)[0]
        np.random.shuffle(idx)
        selected.append(idx[:the_img_num])
    return np.concatenate(selected)


def test_cifar_lt_subset_is_the_reference_generators(tmp_path):
    archive, batches = cifar10_python(per_class=60)
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(archive)
    fetch_dataset(dataspec(name="cifar10_lt", source=str(path), imbalance_ratio=10, seed=0),
                  tmp_path / "raw", tmp_path / "dl")
    labels = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])  # torchvision's order
    img_max = len(labels) / 10
    counts = [int(img_max * (1 / 10) ** (i / 9.0)) for i in range(10)]  # 'exp' profile, int() truncation
    expected = _reference_longtail(labels, counts, seed=0)
    kept = [int(name.rsplit("/", 1)[1].split(".")[0])
            for name in (tmp_path / "raw/longtail_index.txt").read_text().split()]
    assert sorted(kept) == sorted(expected.tolist()) and len(kept) == sum(counts)
    train = json.loads((tmp_path / "raw/train.json").read_text())
    assert hashlib.sha256(json.dumps(train["annotations"]).encode()).hexdigest()  # written and readable
