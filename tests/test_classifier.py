"""Unit tests of the classifier stage's library (bbn.classifier): tau-normalisation, LWS, label-aware
smoothing, the class-balanced batches, the BatchNorm shift, cRT, and the branch <-> linear-map view."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from bbn.classifier import heads
from bbn.classifier.heads import BRANCH_ALPHA, branch_features, read_linear, tau_normalise, write_linear
from bbn.classifier.rebalance import rebalance
from bbn.classifier.retrain import ScaledLinear, balanced_draws, balanced_loader, cosine_lr, retrain
from bbn.classifier.smoothing import label_aware_loss, smoothed_targets, smoothing_per_class
from bbn.classifier.spec import ClassifierSpec, check
from bbn.classifier.tau import choose_tau
from bbn.errors import ArgError
from bbn.methods import method
from bbn.model import inference
from bbn.model.checkpoint import Checkpoint
from bbn.model.network import ModelSpec, build_model

torch.set_num_threads(1)
C = 5


def net(classifier: str = "separate", head: str = "linear"):
    torch.manual_seed(0)
    return build_model(ModelSpec("resnet32", C, antialias="off", classifier=classifier, head=head)).eval()


def batches(n: int = 3, size: int = 6):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.arange(size) % C) for _ in range(n)]


# ------------------------------------------------------------------------------ tau-normalisation
def test_tau_normalised_weights_by_hand():
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # row norms 5 and 2
    assert torch.allclose(tau_normalise(w, 1.0), torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert torch.allclose(tau_normalise(w, 0.5), torch.tensor([[3 / 5 ** 0.5, 4 / 5 ** 0.5], [0.0, 2 ** 0.5]]))
    assert torch.equal(tau_normalise(w, 0.0), w)


def test_tau_is_chosen_on_val_by_balanced_accuracy_smallest_on_ties():
    # class 0's vector is 4x longer: at tau 0 every image goes to class 0; from tau 1 on, by direction
    v = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    feats, labels = torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.3, 1.0]]), np.array([0, 1, 1])
    tau, acc, table = choose_tau(feats, labels, v, [2.0, 0.0, 1.0, 1.5])
    assert table[0.0] == 0.5 and table[1.0] == 1.0 and table[2.0] == 1.0
    assert (tau, acc) == (1.0, 1.0)  # 1.0, 1.5 and 2.0 tie: the smallest
    with pytest.raises(ArgError, match="tau_grid"):
        choose_tau(feats, labels, v, [])
    with pytest.raises(ArgError, match="val split"):
        choose_tau(torch.zeros(0, 2), np.zeros(0, np.int64), v, [0.0, 1.0])


# ------------------------------------------------------------------------- branch <-> linear map
@pytest.mark.parametrize("classifier", ["separate", "official"])
@pytest.mark.parametrize("branch", ["conventional", "reversed", "both"])
def test_written_classifier_is_what_the_network_computes_at_the_branch_alpha(classifier, branch):
    model = net(classifier)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        before = model(x, alpha=BRANCH_ALPHA[branch])
        v0, c0 = read_linear(model, branch)  # the network's own classifier, read as one map
        assert torch.allclose(before, branch_features(model, x, branch) @ v0.T + c0, atol=1e-5)
        v, c = torch.randn_like(v0), torch.randn_like(c0)
        write_linear(model, branch, v, c)
        after = model(x, alpha=BRANCH_ALPHA[branch])
        assert torch.allclose(after, branch_features(model, x, branch) @ v.T + c, atol=1e-5)
        v1, c1 = read_linear(model, branch)
    assert torch.allclose(v1, v) and torch.allclose(c1, c)


def test_checkpoint_alpha_fixes_the_trained_branch_for_every_loader():
    for branch, alpha in BRANCH_ALPHA.items():
        ckpt = Checkpoint(ModelSpec("resnet32", 2), {}, 32, [0, 1], ["a", "b"], 1, method="bbn",
                          alpha=heads.test_alpha_record(branch))
        assert inference.test_alpha(ckpt, 0.3) == alpha  # eval.alpha 0.3 asked: the re-trained branch wins


def test_single_branch_methods_refuse_other_branches_and_cosine_refuses_rescaling():
    for branch in ("reversed", "both"):
        with pytest.raises(ArgError) as err:
            check(ClassifierSpec("crt", branch), bilateral=False, head="linear")
        assert err.value.arg == "branch"
    check(ClassifierSpec("crt", "both"), bilateral=True, head="linear")
    check(ClassifierSpec("crt"), bilateral=method("ldam_drw").bilateral, head="cosine")
    for name in ("lws", "tau_norm", "mislas"):
        with pytest.raises(ArgError) as err:
            check(ClassifierSpec(name), bilateral=False, head="cosine")
        assert err.value.arg == "method"


# ------------------------------------------------------------------------------------------ LWS
def test_lws_scales_multiply_each_class_logit_and_bake_into_the_weights():
    head = ScaledLinear(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([1.0, 1.0]), False, True)
    with torch.no_grad():
        head.scales.copy_(torch.tensor([2.0, 0.5]))
    f = torch.tensor([[1.0, 1.0]])
    assert torch.allclose(head(f), torch.tensor([[4.0, 1.5]]))  # s * (W f + b) = [2*2, 0.5*3]
    w, b = head.baked()
    assert torch.allclose(w, torch.tensor([[2.0, 0.0], [0.0, 1.0]])) and torch.allclose(b, torch.tensor([2.0, 0.5]))


def test_lws_training_only_rescales_each_class_vector():
    model = net()
    v0, c0 = read_linear(model, "conventional")
    retrain(model, ClassifierSpec("lws", epochs=2, lr=0.5), batches(), [9, 5, 3, 2, 1], torch.device("cpu"))
    v1, c1 = read_linear(model, "conventional")
    s = c1 / c0  # each row of the classifier is the old one times its class's scale
    assert torch.allclose(v1, s[:, None] * v0, atol=1e-6)
    assert not torch.allclose(s, torch.ones(C))


# ----------------------------------------------------------------------- label-aware smoothing
def test_label_aware_smoothing_per_class_by_hand():
    counts = [100, 50, 10]  # u = (N - 10) / 90 = 1, 4/9, 0
    concave = smoothing_per_class(counts, 0.4, 0.1, "concave")
    assert torch.allclose(concave, torch.tensor([0.4, 0.1 + 0.3 * math.sin(math.radians(40)), 0.1]))
    assert torch.allclose(concave[1], torch.tensor(0.29283628))
    assert torch.allclose(smoothing_per_class(counts, 0.4, 0.1, "linear"), torch.tensor([0.4, 0.1 + 0.3 * 4 / 9, 0.1]))
    assert torch.allclose(smoothing_per_class(counts, 0.4, 0.1, "convex"), torch.tensor([0.4, 0.17018667, 0.1]))
    assert torch.allclose(smoothing_per_class([7, 7], 0.3, 0.0), torch.tensor([0.3, 0.3]))
    with pytest.raises(ArgError, match="smooth_shape"):
        smoothing_per_class(counts, 0.4, 0.1, "cubic")


def test_smoothed_target_and_loss_by_hand():
    eps = torch.tensor([0.3, 0.0, 0.6])
    q = smoothed_targets(torch.tensor([0, 2]), eps, 3)
    assert torch.allclose(q, torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6]]))
    z = torch.tensor([[math.log(2.0), 0.0, 0.0]])  # p = 1/2, 1/4, 1/4
    # 0.7 * log 2 + 0.3 * mean(log 2, log 4, log 4) = 1.2 log 2
    assert label_aware_loss(z, torch.tensor([0]), eps).item() == pytest.approx(1.2 * math.log(2))
    z2 = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    soft_ce = -(smoothed_targets(y, eps, 3) * torch.log_softmax(z2, 1)).sum(1).mean()
    assert label_aware_loss(z2, y, eps).item() == pytest.approx(soft_ce.item(), rel=1e-6)


# ---------------------------------------------------------------------- class-balanced batches
class _Labels(torch.utils.data.Dataset):
    def __init__(self, targets):
        self.targets = list(targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return i, self.targets[i]


def test_class_balanced_batches_draw_classes_uniformly_then_images_uniformly():
    targets = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2]  # class 0's images 1/12 each, class 1's 1/6, class 2's 1/18
    assert balanced_draws(targets) == 12  # N, not the sampler's C x N_max = 18
    loader = balanced_loader(_Labels(targets), batch_size=5, seed=0, num_workers=0)
    expected = np.array([1 / 12] * 4 + [1 / 6] * 2 + [1 / 18] * 6)
    assert np.allclose(loader.batch_sampler.sampler.weights.numpy(), expected)
    drawn, sizes = [], []
    for epoch in range(400):
        loader.batch_sampler.set_epoch(epoch)
        for idx, _ in loader:
            drawn += idx.tolist()
            sizes.append(len(idx))
    assert sizes[:3] == [5, 5, 2]  # 12 draws an epoch, the last batch kept
    per_image = np.bincount(drawn, minlength=12)
    assert chisquare(per_image, expected * len(drawn)).pvalue > 1e-3
    assert chisquare([per_image[:4].sum(), per_image[4:6].sum(), per_image[6:].sum()]).pvalue > 1e-3


def test_cosine_lr_of_mislas():
    assert cosine_lr(0.1, 0, 10) == pytest.approx(0.1)
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05)
    assert cosine_lr(0.1, 9, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.9)))


# -------------------------------------------------------------------- frozen network, BN shift
def _not_classifier(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(("cb_fc.", "rb_fc.", "fc."))}


@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_crt_leaves_the_network_bit_identical_and_replaces_the_classifier(head):
    model = net(head=head)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out, summary = rebalance(model, ClassifierSpec("crt", epochs=1), False, batches(), None, [9, 5, 3, 2, 1],
                             torch.device("cpu"))
    after = out.state_dict()
    assert all(torch.equal(before[k], v) for k, v in _not_classifier(after).items())
    assert out.spec.head == "linear" and summary["epochs"] == 1
    if head == "linear":
        assert not torch.equal(before["cb_fc.weight"], after["cb_fc.weight"])
    assert torch.equal(before["rb_fc.weight"], after["rb_fc.weight"]) == (head == "linear")


def test_bn_shift_changes_running_statistics_and_no_weight():
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params_before = {k for k, _ in model.named_parameters()}
    retrain(model, ClassifierSpec("mislas", epochs=1, shift_bn=True), batches(), [9, 5, 3, 2, 1], torch.device("cpu"))
    after = _not_classifier(model.state_dict())
    weights = [k for k in after if k in params_before]
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert weights and all(torch.equal(before[k], after[k]) for k in weights)
    moved = [k for k in stats if not torch.equal(before[k], after[k])]
    assert any(k.startswith("trunk.") for k in moved) and any(k.startswith("cb_block.") for k in moved)
    assert all(torch.equal(before[k], after[k]) for k in stats if k.startswith("rb_block."))  # not run
    assert not torch.equal(before["cb_fc.weight"], model.state_dict()["cb_fc.weight"])  # classifier trained


def test_params_defaults_are_the_spec_defaults():
    from stages.params import Params
    from stages.specs import to_spec

    assert to_spec(ClassifierSpec, Params().classifier) == ClassifierSpec()


# dvlab-research/MiSLAS config/cifar{10,100}/*_imb001_stage{1_mixup,2_mislas}.yaml, train_stage1.py, written out
MISLAS = {"cifar10_lt_mislas": {"classifier.lr_factor": 0.5, "classifier.smooth_head": 0.3,
                                "classifier.smooth_tail": 0.0, "classifier.shift_bn": False},
          "cifar100_lt_mislas": {"classifier.lr_factor": 0.2, "classifier.smooth_head": 0.4,
                                 "classifier.smooth_tail": 0.1, "classifier.shift_bn": True}}
STAGES = {"train.method": "mixup", "train.baseline.mixup_alpha": 1.0, "train.epochs": 200, "train.batch_size": 128,
          "train.lr": 0.1, "train.lr_steps": [160, 180], "train.lr_factor": 0.1, "train.weight_decay": 2e-4,
          "train.momentum": 0.9, "train.nesterov": False, "data.imbalance_ratio": 100, "model.shortcut": "pad",
          "model.init": "official", "classifier.method": "mislas", "classifier.epochs": 10,
          "classifier.batch_size": 128, "classifier.lr": 0.1, "classifier.weight_decay": 2e-4,
          "classifier.momentum": 0.9, "classifier.smooth_shape": "concave"}


@pytest.mark.parametrize("name", sorted(MISLAS))
def test_mislas_recipes_are_the_released_cifar_settings(name):
    import yaml

    from stages.params import flatten, validate
    from stages.recipe import resolve
    from tests.helpers import ROOT

    flat = flatten(validate(resolve(name, [], yaml.safe_load((ROOT / "params.yaml").read_text()))))
    for key, value in (STAGES | MISLAS[name]).items():
        assert flat[key] == value, (name, key)
    crt = flatten(validate(resolve("cifar10_lt_ce_crt", [], yaml.safe_load((ROOT / "params.yaml").read_text()))))
    assert (crt["train.method"], crt["classifier.method"], crt["classifier.shift_bn"]) == ("ce", "crt", False)


@pytest.mark.parametrize("train, classifier, key", [
    ({"method": "ce"}, {"method": "crt", "branch": "reversed"}, "classifier.branch"),
    ({"method": "ldam_drw"}, {"method": "tau_norm"}, "classifier.method"),
])
def test_the_schema_refuses_what_the_stage_would_refuse_after_training(train, classifier, key):
    from bbn.errors import BBNError
    from stages.params import validate

    with pytest.raises(BBNError, match=f"{key}: .*train.method {train['method']}"):
        validate({"train": train, "classifier": classifier})
    validate({"train": {"method": "bbn"}, "classifier": {"method": "tau_norm", "branch": "reversed"}})

