"""Unit tests of the BBN method: cumulative alpha, bilateral loss, samplers, network, BlurPool."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from bbn.data.samplers import ReversedSampler, UniformSampler, reversed_weights
from bbn.model.blurpool import BlurPool
from bbn.model.network import ModelSpec, build_model, mix_logits
from bbn.train.losses import bilateral_loss
from bbn.train.schedules import cumulative_alpha

torch.set_num_threads(1)
C = 7  # number of classes of the test networks


# ----------------------------------------------------------------------------------------- alpha
@pytest.mark.parametrize("schedule, half, expected_fn", [
    ("parabolic", 0.75, lambda t: 1 - t * t),
    ("linear", 0.5, lambda t: 1 - t),
    ("cosine", math.sqrt(2) / 2, lambda t: math.cos(math.pi * t / 2)),
])
def test_alpha_schedules(schedule, half, expected_fn):
    tmax = 40  # epochs count from 1: alpha = f((epoch - 1) / T_max)
    assert cumulative_alpha(1, tmax, schedule) == pytest.approx(1.0)
    assert cumulative_alpha(tmax // 2 + 1, tmax, schedule) == pytest.approx(half)
    assert cumulative_alpha(tmax + 1, tmax, schedule) == pytest.approx(0.0, abs=1e-12)
    for epoch in (2, 8, 14, 34):
        assert cumulative_alpha(epoch, tmax, schedule) == pytest.approx(expected_fn((epoch - 1) / tmax))
    # past T_max alpha stays at 0 (1 - 2^2 = -3 without the clamp)
    for epoch in (tmax + 2, 2 * tmax + 1, 10 * tmax):
        assert cumulative_alpha(epoch, tmax, schedule) == pytest.approx(0.0, abs=1e-12)


def test_alpha_monotone_and_fixed():
    values = [cumulative_alpha(e, 10, "parabolic") for e in range(1, 16)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    for epoch in (1, 5, 10, 100):
        assert cumulative_alpha(epoch, 10, "fixed", value=0.3) == pytest.approx(0.3)
        assert cumulative_alpha(epoch, 10, "fixed", value=1.0) == 1.0
    with pytest.raises(ValueError):
        cumulative_alpha(1, 10, "quadratic")
    with pytest.raises(ValueError):
        cumulative_alpha(1, 0, "parabolic")


# ------------------------------------------------------------------------------------------ loss
def _ce_by_hand(row: list[float], label: int) -> float:
    return -row[label] + math.log(sum(math.exp(v) for v in row))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_bilateral_loss_by_hand(alpha):
    z = [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [-0.5, 1.5, 1.0, 0.7]]
    y_c, y_r = [0, 2, 3], [1, 2, 0]
    ce_c = sum(_ce_by_hand(r, y) for r, y in zip(z, y_c)) / len(z)
    ce_r = sum(_ce_by_hand(r, y) for r, y in zip(z, y_r)) / len(z)
    got = bilateral_loss(torch.tensor(z, dtype=torch.float64), torch.tensor(y_c), torch.tensor(y_r), alpha)
    assert got.item() == pytest.approx(alpha * ce_c + (1 - alpha) * ce_r, rel=1e-10)


# -------------------------------------------------------------------------------------- samplers
def test_uniform_sampler_epochs():
    n = 50
    s = UniformSampler(n, seed=3)
    assert len(s) == n
    s.set_epoch(0)
    first = list(s)
    assert sorted(first) == list(range(n)) and list(s) == first  # each index once, stable per epoch
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(n)) and second != first
    other = UniformSampler(n, seed=3)
    other.set_epoch(1)
    assert list(other) == second  # same seed + epoch: same order
    another_seed = UniformSampler(n, seed=4)
    another_seed.set_epoch(1)
    assert list(another_seed) != second


LABELS = [0] * 100 + [1] * 40 + [2] * 20 + [3] * 8 + [4] * 2


def test_reversed_weights_per_class():
    labels = np.array(LABELS)
    w = reversed_weights(labels).double().numpy()
    assert w.shape == (len(labels),) and w.sum() == pytest.approx(1.0)
    counts = np.bincount(labels)
    inv = 1.0 / counts
    expected = inv / inv.sum()
    for c in range(len(counts)):
        wc = w[labels == c]
        assert np.allclose(wc, wc[0])  # uniform within the class
        assert wc.sum() == pytest.approx(expected[c], rel=1e-9)


def _class_chi2(draws: np.ndarray) -> float:
    labels = np.array(LABELS)
    counts = np.bincount(labels)
    observed = np.bincount(labels[draws], minlength=len(counts))
    inv = 1.0 / counts
    return chisquare(observed, inv / inv.sum() * len(draws)).pvalue


def test_reversed_sampler_chi_square_has_power():
    n = 200_000
    s = ReversedSampler(LABELS, num_samples=n, seed=0)
    draws = np.array(list(s))
    assert len(draws) == n and draws.min() >= 0 and draws.max() < len(LABELS)
    assert _class_chi2(draws) > 1e-3
    gen = torch.Generator().manual_seed(0)
    plain = torch.multinomial(torch.ones(len(LABELS)), n, replacement=True, generator=gen).numpy()
    assert _class_chi2(plain) < 1e-10  # a uniform sampler's class frequencies are rejected
    per_class = 1.0 / np.bincount(LABELS)[LABELS]  # near miss: classes equally likely
    near = torch.multinomial(torch.as_tensor(per_class), n, replacement=True, generator=gen).numpy()
    assert _class_chi2(near) < 1e-10


def test_reversed_sampler_reproducible_per_epoch():
    a, b = ReversedSampler(LABELS, seed=5), ReversedSampler(LABELS, seed=5)
    assert len(a) == len(LABELS)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


# --------------------------------------------------------------------------------------- network
def _net(antialias: str = "off", blur: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelSpec("resnet32", C, antialias, blur))


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def _nonzero(grads) -> bool:
    return all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_trunk_is_one_shared_module():
    net = _net()
    parts = [net.trunk, net.cb_block, net.rb_block, net.cb_fc, net.rb_fc]
    ids = [id(p) for part in parts for p in part.parameters()]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))  # a partition of the parameters
    x_c, x_r = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    logits_c, logits_r = net.branch_logits(x_c, x_r)
    logits_c.sum().backward()  # only branch c's logits
    assert _nonzero(_grads(net.trunk)) and _nonzero(_grads(net.cb_block))
    assert all(g is None for g in _grads(net.rb_block) + _grads(net.rb_fc))
    trunk_after_c = [g.clone() for g in _grads(net.trunk)]
    logits_r.sum().backward()  # the r branch accumulates into the very same trunk tensors
    assert any(not torch.equal(a, g) for a, g in zip(trunk_after_c, _grads(net.trunk)))


def test_branch_blocks_are_distinct():
    net = _net()
    assert net.cb_block is not net.rb_block and net.cb_fc is not net.rb_fc
    cb = {p.data_ptr() for p in net.cb_block.parameters()} | {p.data_ptr() for p in net.cb_fc.parameters()}
    rb = {p.data_ptr() for p in net.rb_block.parameters()} | {p.data_ptr() for p in net.rb_fc.parameters()}
    trunk = {p.data_ptr() for p in net.trunk.parameters()}
    assert not cb & rb and not (cb | rb) & trunk


def _bilateral_backward(net, alpha: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x_c, x_r = torch.randn(4, 3, 16, 16, generator=gen), torch.randn(4, 3, 16, 16, generator=gen)
    y_c, y_r = torch.tensor([0, 1, 2, 3]), torch.tensor([6, 5, 4, 6])
    z = mix_logits(*net.branch_logits(x_c, x_r), alpha)
    bilateral_loss(z, y_c, y_r, alpha).backward()


def test_both_branches_learn_for_mid_alpha():
    net = _net()
    _bilateral_backward(net, 0.6)
    for part in (net.trunk, net.cb_block, net.rb_block, net.cb_fc, net.rb_fc):
        assert _nonzero(_grads(part))


def test_alpha_one_trains_only_conventional_branch():
    net = _net()
    _bilateral_backward(net, 1.0)
    assert _nonzero(_grads(net.cb_block)) and _nonzero(_grads(net.cb_fc)) and _nonzero(_grads(net.trunk))
    for g in _grads(net.rb_block) + _grads(net.rb_fc):
        assert g is None or torch.count_nonzero(g) == 0


@pytest.mark.parametrize("antialias", ["off", "full"])
@pytest.mark.parametrize("px", [32, 64])
def test_output_shapes(antialias, px):
    net = _net(antialias).eval()
    x = torch.randn(2, 3, px, px)
    with torch.no_grad():
        logits_c, logits_r = net.branch_logits(x)
        z = net(x, alpha=0.3)
    assert logits_c.shape == logits_r.shape == z.shape == (2, C)
    assert torch.allclose(z, 0.3 * logits_c + 0.7 * logits_r, atol=1e-5)


def _conv(cin, cout, k):
    return cin * cout * k * k


def _bn(c):
    return 2 * c


def _basic_block(cin, cout):
    count = _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3) + _bn(cout)
    if cin != cout:  # option B shortcut: 1x1 conv + BN
        count += _conv(cin, cout, 1) + _bn(cout)
    return count


def _resnet32_bilateral_count(num_classes: int) -> int:
    total = _conv(3, 16, 3) + _bn(16)
    cin = 16
    for width in (16, 32, 64):
        for _ in range(5):
            total += _basic_block(cin, width)
            cin = width
    total += _basic_block(64, 64)  # the duplicated last block (rb_block)
    return total + 2 * (64 * num_classes + num_classes)


@pytest.mark.parametrize("antialias", ["off", "full"])
def test_parameter_count(antialias):
    count = sum(p.numel() for p in _net(antialias).parameters())
    assert count == _resnet32_bilateral_count(C)


@pytest.mark.parametrize("blur", [3, 5])
def test_blurpool_filters_normalised(blur):
    full, off = _net("full", blur), _net("off", blur)
    pools = [m for m in full.modules() if isinstance(m, BlurPool)]
    assert len(pools) == 4  # 2 stage transitions x (strided main path + shortcut)
    assert not [m for m in off.modules() if isinstance(m, BlurPool)]
    for m in pools:
        assert m.filt.shape[-2:] == (blur, blur)
        assert torch.allclose(m.filt.sum(dim=(1, 2, 3)), torch.ones(m.filt.shape[0]), atol=1e-6)
        assert (m.filt > 0).all()


def _smooth_images(n: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return F.interpolate(torch.randn(n, 3, 10, 10, generator=gen), size=(44, 44), mode="bicubic")


def _shift_change(net, big: torch.Tensor) -> float:
    def crop(dy, dx):
        return big[:, :, 6 + dy: 38 + dy, 6 + dx: 38 + dx]

    with torch.no_grad():
        z0 = net(crop(0, 0))
        changes = [((net(crop(dy, dx)) - z0).abs().mean() / z0.abs().mean()).item()
                   for dy, dx in [(0, 1), (1, 0), (1, 1), (0, -1), (-1, 0), (-1, -1)]]
    return float(np.mean(changes))


def test_antialiasing_improves_shift_consistency():
    off, full = _net("off", seed=0).eval(), _net("full", seed=0).eval()
    full.load_state_dict(off.state_dict())  # same weights; only the blur differs
    big = _smooth_images()
    change_off, change_full = _shift_change(off, big), _shift_change(full, big)
    assert change_off > 0.005  # the test can see a change at all
    assert change_full < 0.8 * change_off


@pytest.mark.parametrize("filt", [3, 5])
@pytest.mark.parametrize("side", [1, 2])
@pytest.mark.parametrize("channels", [None, 4])
def test_blurpool_tiny_maps(filt, side, channels):
    pool = BlurPool(channels, filt_size=filt, stride=2)
    x = torch.rand(2, 4, side, side)
    y = pool(x)
    assert y.shape == (2, 4, 1, 1) and torch.isfinite(y).all()
    if side == 1:  # a constant map stays constant under a normalised blur
        assert torch.allclose(y.flatten(), x.flatten(), atol=1e-6)


@pytest.mark.parametrize("filt", [2, 3, 4, 5, 6, 7])
def test_blurpool_halves_the_map_for_every_allowed_filter(filt):
    assert BlurPool(4, filt_size=filt, stride=2)(torch.rand(1, 4, 32, 32)).shape[-1] == 16
