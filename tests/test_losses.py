"""Long-tail baseline losses, checked against values worked out by hand on tiny examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbn.data.stats import log_prior
from bbn.evaluate.posthoc import posthoc_adjust, tune_tau
from bbn.train.losses import (
    balanced_softmax_loss,
    drw_weights,
    effective_number_weights,
    focal_loss,
    ldam_loss,
    ldam_margins,
    logit_adjusted_loss,
)


def close(t: torch.Tensor, expected, tol: float = 1e-6) -> bool:
    return torch.allclose(t.double(), torch.as_tensor(expected, dtype=torch.float64), atol=tol, rtol=tol)


@pytest.mark.parametrize("beta", [0.9, 0.999])
def test_effective_number_weights_by_hand(beta):
    raw = [(1 - beta) / (1 - beta ** 100), (1 - beta) / (1 - beta ** 10), (1 - beta) / (1 - beta ** 1)]
    expected = [3 * r / sum(raw) for r in raw]
    w = effective_number_weights([100, 10, 1], beta)
    assert w.dtype == torch.float32 and close(w, expected)
    assert math.isclose(float(w.sum()), 3.0, rel_tol=1e-6)
    assert w[2] > w[1] > w[0]  # rare classes weigh more


def test_effective_number_weights_small_numbers():
    # counts [2, 1], beta 0.5: raw = [0.5 / 0.75, 0.5 / 0.5] = [2/3, 1]; sum 5/3; * 2 / (5/3) -> [0.8, 1.2]
    assert close(effective_number_weights([2, 1], 0.5), [0.8, 1.2])
    assert close(effective_number_weights(torch.tensor([100, 10, 1]), 0.0), [1.0, 1.0, 1.0])


def test_focal_gamma2_by_hand():
    # sample 0: logits [0, log 3] -> p = [1/4, 3/4], target 1 -> p_t = 3/4
    # sample 1: logits [0, 0]     -> p = [1/2, 1/2], target 0 -> p_t = 1/2
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    target = torch.tensor([1, 0])
    a = -((1 - 0.75) ** 2) * math.log(0.75)
    b = -((1 - 0.5) ** 2) * math.log(0.5)
    assert close(focal_loss(logits, target, gamma=2.0), (a + b) / 2)
    # weights w = [2, 1]: sample 0 (class 1) gets 1, sample 1 (class 0) gets 2; plain mean over 2 samples
    assert close(focal_loss(logits, target, gamma=2.0, weight=torch.tensor([2.0, 1.0])), (1 * a + 2 * b) / 2)


def test_focal_gamma0_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(64, 10, generator=g), torch.randint(0, 10, (64,), generator=g)
    assert torch.equal(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target))  # bit-exact
    # the hand example: (-log 3/4 - log 1/2) / 2
    logits2 = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])
    assert close(focal_loss(logits2, torch.tensor([1, 0]), 0.0), (-math.log(0.75) - math.log(0.5)) / 2)


def test_ldam_margins_by_hand():
    # 16 ** -1/4 = 1/2, 1 ** -1/4 = 1 -> scaled so the max is 0.5 -> [0.25, 0.5]
    m = ldam_margins([16, 1], max_m=0.5)
    assert m.dtype == torch.float32 and close(m, [0.25, 0.5])
    assert close(ldam_margins([16, 1], max_m=1.0), [0.5, 1.0])


def test_ldam_loss_by_hand():
    # margins [0.25, 0.5], s = 2, logits [[1, 0], [0, 1]], targets [0, 1]
    # sample 0: [1 - 0.25, 0] * 2 = [1.5, 0] -> -log(e^1.5 / (e^1.5 + 1)) = log(1 + e^-1.5)
    # sample 1: [0, 1 - 0.5] * 2 = [0, 1]    -> log(1 + e^-1)
    logits, target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    margins = torch.tensor([0.25, 0.5])
    l0, l1 = math.log(1 + math.exp(-1.5)), math.log(1 + math.exp(-1.0))
    assert close(ldam_loss(logits, target, margins, s=2.0), (l0 + l1) / 2)
    # weight [1, 3]: weighted mean as in F.cross_entropy -> (1 * l0 + 3 * l1) / (1 + 3)
    assert close(ldam_loss(logits, target, margins, s=2.0, weight=torch.tensor([1.0, 3.0])), (l0 + 3 * l1) / 4)
    # zero margins and s = 1 is plain cross entropy
    assert close(ldam_loss(logits, target, torch.zeros(2)), F.cross_entropy(logits, target))


def test_drw_weights_switch_on_at_defer_epoch():
    assert drw_weights([2, 1], epoch=0, defer_epoch=5, beta=0.5) is None
    assert drw_weights([2, 1], epoch=4, defer_epoch=5, beta=0.5) is None
    assert close(drw_weights([2, 1], epoch=5, defer_epoch=5, beta=0.5), [0.8, 1.2])  # see small-numbers test
    assert close(drw_weights([2, 1], epoch=9, defer_epoch=5, beta=0.5), [0.8, 1.2])


def test_log_prior_by_hand():
    lp = log_prior([3, 1])
    assert lp.dtype == np.float64 and close(torch.from_numpy(lp), [math.log(0.75), math.log(0.25)])


def test_logit_adjusted_by_hand():
    # counts [3, 1] -> prior [3/4, 1/4]; zero logits; targets [1, 0]
    # tau 1: softmax(log prior) = prior        -> (-log 1/4 - log 3/4) / 2
    # tau 2: softmax(2 log prior) ∝ [9/16, 1/16] = [0.9, 0.1] -> (-log 0.1 - log 0.9) / 2
    logits, target, lp = torch.zeros(2, 2), torch.tensor([1, 0]), torch.from_numpy(log_prior([3, 1]))
    assert close(logit_adjusted_loss(logits, target, lp, tau=1.0), (math.log(4) + math.log(4 / 3)) / 2)
    assert close(logit_adjusted_loss(logits, target, lp, tau=2.0), (math.log(10) + math.log(10 / 9)) / 2)
    assert close(logit_adjusted_loss(logits, target, lp, tau=0.0), math.log(2))


def test_balanced_softmax_by_hand_and_equals_logit_adjusted_tau1():
    # zero logits + log [3, 1] -> softmax = [3/4, 1/4], same as the tau 1 example above
    logits, target = torch.zeros(2, 2), torch.tensor([1, 0])
    assert close(balanced_softmax_loss(logits, target, [3, 1]), (math.log(4) + math.log(4 / 3)) / 2)
    g = torch.Generator().manual_seed(1)
    counts = [100, 10, 1]
    logits, target = torch.randn(6, 3, generator=g), torch.randint(0, 3, (6,), generator=g)
    assert torch.allclose(balanced_softmax_loss(logits, target, counts),
                          logit_adjusted_loss(logits, target, log_prior(counts), tau=1.0), atol=1e-6)


LOSSES = {
    "focal": lambda z, y: focal_loss(z, y, 2.0, weight=effective_number_weights([5, 2, 1], 0.9)),
    "ldam": lambda z, y: ldam_loss(z, y, ldam_margins([5, 2, 1]), s=30.0, weight=torch.tensor([0.5, 1.0, 1.5])),
    "logit_adjusted": lambda z, y: logit_adjusted_loss(z, y, log_prior([5, 2, 1]), tau=1.5),
    "balanced_softmax": lambda z, y: balanced_softmax_loss(z, y, [5, 2, 1]),
}


@pytest.mark.parametrize("name", LOSSES)
def test_losses_are_differentiable(name):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, generator=g).requires_grad_()
    loss = LOSSES[name](logits, torch.tensor([0, 1, 2, 0]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_posthoc_adjust_by_hand():
    lp = np.log([0.9, 0.1])
    out = posthoc_adjust(np.array([[3.0, 0.0]]), lp, 0.5)
    np.testing.assert_allclose(out, [[3 - 0.5 * math.log(0.9), -0.5 * math.log(0.1)]])
    np.testing.assert_array_equal(posthoc_adjust(np.array([[3.0, 0.0]]), lp, 0.0), [[3.0, 0.0]])


def test_tune_tau_fixes_the_tail_class():
    # prior [0.9, 0.1]; adjusted head-minus-tail margin = d - tau * log 9, log 9 ≈ 2.197
    # head samples d = 3: stay head while tau < 3 / log 9 ≈ 1.365
    # tail samples d = 1: flip to tail once tau > 1 / log 9 ≈ 0.455
    # tau 0 -> head 2/2, tail 0/2 -> 0.5; first grid tau with both right: 0.5 (0.5 * 2.197 = 1.099 > 1)
    logits = np.array([[3.0, 0.0], [3.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    labels = np.array([0, 0, 1, 1])
    lp = np.log([0.9, 0.1])
    assert posthoc_adjust(logits, lp, 0.0).argmax(1).tolist() == [0, 0, 0, 0]
    tau, acc = tune_tau(logits, labels, lp)
    assert math.isclose(tau, 0.5) and acc == 1.0  # taus 0.5 ... 1.3 all tie at 1.0: smallest wins
    tau, acc = tune_tau(logits, labels, lp, taus=[1.3, 0.9, 0.0, 0.4])  # unsorted grid, 0.4 is too small
    assert math.isclose(tau, 0.9) and acc == 1.0
    assert tune_tau(logits, labels, lp, taus=[0.0]) == (0.0, 0.5)


def test_tune_tau_ignores_classes_absent_from_labels():
    # 3 classes, class 2 never labelled; predictions [0, 2, 1] for labels [0, 0, 1]
    # class 0: 1/2, class 1: 1/1 -> balanced accuracy 0.75 (class 2 is not averaged in as 0)
    logits = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    tau, acc = tune_tau(logits, np.array([0, 0, 1]), np.zeros(3), taus=[0.0, 1.0])
    assert tau == 0.0 and math.isclose(acc, 0.75)
