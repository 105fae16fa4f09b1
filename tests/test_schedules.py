"""Epochs are counted from 1 everywhere: the alpha and lr schedules at the official BBN boundaries."""

from __future__ import annotations

import pytest

from bbn.train.schedules import cumulative_alpha, lr_at

# configs/cifar10.yaml of the official BBN: BASE_LR 0.1, WARM_EPOCH 5, LR_STEP [120, 160], LR_FACTOR 0.01
OFFICIAL = dict(peak=0.1, warmup_epochs=5, lr_steps=[120, 160], lr_factor=0.01)


@pytest.mark.parametrize("epoch, lr", [
    (1, 0.1 / 3), (2, 0.1 * (1 / 3 * 0.8 + 0.2)), (5, 0.1 * (1 / 3 * 0.2 + 0.8)),  # warm-up: epochs 1..5
    (6, 0.1), (120, 0.1),        # base rate up to and including epoch 120
    (121, 1e-3), (160, 1e-3),    # x 0.01 for epochs 121-160
    (161, 1e-5), (200, 1e-5),    # x 0.01^2 from 161 on
])
def test_lr_at_the_official_boundaries(epoch, lr):
    """torch 1.0.1's WarmupMultiStepLR stepped before each epoch: epoch e uses last_epoch e - 1."""
    assert lr_at(epoch, **OFFICIAL) == pytest.approx(lr, rel=1e-12)


def test_warmup_epochs_one_is_a_warmup():
    """The old 0-based rule gave the full rate already in epoch 1 with warmup_epochs 1."""
    assert lr_at(1, 0.3, 1, [], 0.1) == pytest.approx(0.1)
    assert lr_at(2, 0.3, 1, [], 0.1) == pytest.approx(0.3)
    assert lr_at(1, 0.3, 0, [], 0.1) == pytest.approx(0.3)  # no warm-up: the full rate at once


def test_lr_step_two_lowers_epoch_three():
    assert [lr_at(e, 0.05, 0, [2], 0.1) for e in (1, 2, 3)] == pytest.approx([0.05, 0.05, 0.005])


@pytest.mark.parametrize("tmax, epochs", [(200, 200), (200, 180)])
def test_alpha_at_the_boundary_epochs(tmax, epochs):
    """lib/core/combiner.py: l = 1 - ((epoch - 1) / div_epoch) ** 2 with 1-based epochs."""
    assert cumulative_alpha(1, tmax) == 1.0
    assert cumulative_alpha(2, tmax) == pytest.approx(1 - (1 / tmax) ** 2)
    assert cumulative_alpha(epochs, tmax) == pytest.approx(1 - ((epochs - 1) / tmax) ** 2)
    assert cumulative_alpha(tmax + 1, tmax) == 0.0 and cumulative_alpha(tmax + 7, tmax) == 0.0
