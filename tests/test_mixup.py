"""The mixup family (bbn.train.mixup): lam, the mixing layer and the pairing, against hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbn.methods import method
from bbn.model.network import ModelSpec, build_model
from bbn.train import mixup
from bbn.train.loop import Branches, epoch_step
from stages.params import TrainParams
from stages.specs import train_spec


class Fixed:
    """A numpy-like generator that draws given values."""

    def __init__(self, lam: float, layer: int):
        self.lam, self.layer = lam, layer

    def beta(self, a, b):
        return self.lam

    def randint(self, low, high):
        assert low == 0 and self.layer < high
        return self.layer


@pytest.fixture
def net():
    torch.manual_seed(0)
    return build_model(ModelSpec("resnet32", 5, "off", shortcut="pad")).eval()  # eval: BatchNorm fixed


def test_draws_lam_from_beta_and_the_layer_among_input_and_stages():
    rng = np.random.RandomState(3)
    lams, layers = zip(*(mixup.draw(1.0, 3, True, rng) for _ in range(4000)))
    assert set(layers) == {0, 1, 2, 3} and max(np.bincount(layers)) < 1.15 * min(np.bincount(layers))
    assert np.mean(lams) == pytest.approx(0.5, abs=0.02) and np.var(lams) == pytest.approx(1 / 12, abs=0.01)  # U(0, 1)
    assert {mixup.draw(1.0, 3, False, rng)[1] for _ in range(50)} == {0}  # Mixup: the input only
    assert mixup.draw(0.0, 3, True, rng)[0] == 1.0


def test_mixup_loss_and_accuracy_by_hand(net):
    x, y = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    torch.manual_seed(7)
    loss, accs = mixup.mixup_step("input", 1.0, Fixed(0.3, 0))(Branches(net), [(x, y)])
    torch.manual_seed(7)
    perm = torch.randperm(6)
    z = net.conventional(0.3 * x + 0.7 * x[perm])
    expected = 0.3 * F.cross_entropy(z, y) + 0.7 * F.cross_entropy(z, y[perm])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    hits = 0.3 * (z.argmax(1) == y).float().mean() + 0.7 * (z.argmax(1) == y[perm]).float().mean()
    assert accs["train_acc"] == pytest.approx(hits.item())


def test_manifold_mixup_mixes_the_chosen_stage_output(net):
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    torch.manual_seed(1)
    loss, _ = mixup.mixup_step("manifold", 1.0, Fixed(0.6, 2))(Branches(net), [(x, y)])
    torch.manual_seed(1)
    perm = torch.randperm(4)
    h = net.trunk.layer2(net.trunk.layer1(net.trunk.stem(x)))  # the output of the second stage
    h = net.trunk.layer3(0.6 * h + 0.4 * h[perm])
    z = net.cb_fc(net.pool(net.cb_block(h)))
    expected = 0.6 * F.cross_entropy(z, y) + 0.4 * F.cross_entropy(z, y[perm])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_two_samplers_pair_the_uniform_and_the_reversed_batch_image_by_image(net):
    x_c, y_c = torch.randn(3, 3, 16, 16), torch.tensor([0, 0, 1])
    x_r, y_r = torch.randn(3, 3, 16, 16), torch.tensor([4, 3, 2])
    loss, _ = mixup.mixup_step("manifold", 1.0, Fixed(0.25, 1))(Branches(net), [(x_c, y_c), (x_r, y_r)])
    stem, t = net.trunk.stem, net.trunk
    h = 0.25 * t.layer1(stem(x_c)) + 0.75 * t.layer1(stem(x_r))
    z = net.cb_fc(net.pool(net.cb_block(t.layer3(t.layer2(h)))))
    expected = 0.25 * F.cross_entropy(z, y_c) + 0.75 * F.cross_entropy(z, y_r)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_registry_feeds_each_mixup_method_its_batches():
    assert method("mixup").samplers(0, 0) == ("uniform",) == method("manifold_mixup").samplers(5, 0)
    assert method("manifold_mixup_two_samplers").samplers(0, 0) == ("uniform", "reversed")
    for name in ("mixup", "manifold_mixup", "manifold_mixup_two_samplers"):
        assert not method(name).bilateral and method(name).test_alpha("parabolic", 0.5, 0.5) == 1.0
        alpha, names, _ = epoch_step(train_spec(TrainParams(method=name)), 1, torch.ones(5))
        assert alpha == 1.0 and names == method(name).samplers(0, 0)


def test_every_rank_draws_the_same_lam_and_layer_in_an_epoch(net):
    """The mixing layer decides how many BatchNorm calls a step makes: ranks must agree (SyncBatchNorm)."""
    p = train_spec(TrainParams(method="manifold_mixup_two_samplers"))
    x_c, x_r, y = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 2])
    losses = []
    for rank_seed in (0, 1, 2):  # each rank seeds the global generators with its own epoch seed
        np.random.seed(rank_seed)
        step = epoch_step(p, 3, torch.ones(5))[2]
        losses.append([step(Branches(net), [(x_c, y), (x_r, y)])[0].item() for _ in range(4)])
    assert losses[0] == losses[1] == losses[2] and len(set(losses[0])) > 1  # same draws, step after step


def test_the_network_builds_every_backbone_the_vocabulary_names():
    from bbn import vocab
    from bbn.model.network import BACKBONES

    assert tuple(BACKBONES) == vocab.BACKBONES
