"""Pretrained weights as common trainers save them: DataParallel/DDP `module.`, Lightning `model.`,
mmpretrain `backbone.`, torch.compile `_orig_mod.`, `state_dict`/`model`/`state_dict_ema` wrappers,
torchvision/timm and CIFAR names, the official BBN code's checkpoints; and a clear error naming the
mismatch when they really don't fit."""

from __future__ import annotations

import pytest
import torch
import torchvision

from bbn.errors import BBNError
from bbn.model.network import ModelSpec, build_model
from bbn.model.pretrained import load_pretrained


def _plain_resnet32(model) -> dict:
    """A source network's weights under a plain CIFAR ResNet-32's names (conv1, bn1, layer1..3, fc)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("trunk.stem.0."):
            out["conv1." + key.removeprefix("trunk.stem.0.")] = value
        elif key.startswith("trunk.stem.1."):
            out["bn1." + key.removeprefix("trunk.stem.1.")] = value
        elif key.startswith("trunk."):
            out[key.removeprefix("trunk.")] = value
        elif key.startswith("cb_block."):
            out["layer3.4." + key.removeprefix("cb_block.")] = value
        elif key.startswith("cb_fc."):
            out["fc." + key.removeprefix("cb_fc.")] = value
    return out


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(1)
    return build_model(ModelSpec("resnet32", 10, "off", 3))


WRAPPED = {
    "plain": lambda s: s,
    "ddp module.": lambda s: _prefixed(s, "module."),
    "state_dict": lambda s: {"state_dict": s, "epoch": 90, "arch": "resnet32"},
    "model": lambda s: {"model": s, "optimizer": {"state": {}}},
    "state_dict_ema preferred": lambda s: {"state_dict": {k: torch.zeros_like(v) for k, v in s.items()},
                                           "state_dict_ema": s},
    "lightning model.": lambda s: {"state_dict": _prefixed(s, "model."), "global_step": 7},
    "mmpretrain backbone.": lambda s: {"state_dict": _prefixed({k: v for k, v in s.items() if not k.startswith("fc.")},
                                                               "backbone.") | {"head.fc.weight": s["fc.weight"]}},
    "compile + ddp": lambda s: {"state_dict": _prefixed(s, "module._orig_mod.")},
}


@pytest.mark.parametrize("wrap", WRAPPED, ids=list(WRAPPED))
def test_wrappers_and_prefixes_load_every_trunk_tensor(tmp_path, source, wrap):
    torch.save(WRAPPED[wrap](_plain_resnet32(source)), tmp_path / "w.pth")
    target = build_model(ModelSpec("resnet32", 4, "off", 3))
    report = load_pretrained(target, str(tmp_path / "w.pth"))
    assert "missing 4 " in report and "unexpected 0" in report, report  # only the new heads
    mine, theirs = target.state_dict(), source.state_dict()
    for key, value in theirs.items():
        if not key.startswith(("cb_fc.", "rb_fc.")):
            want = theirs["cb_block." + key.removeprefix("rb_block.")] if key.startswith("rb_block.") else value
            assert torch.equal(mine[key], want), key


def test_resnet50_saved_from_ddp(tmp_path):
    """The reported instance: torchvision's ResNet-50 saved from DistributedDataParallel."""
    torch.manual_seed(0)
    net = torchvision.models.resnet50()
    torch.save(_prefixed(net.state_dict(), "module."), tmp_path / "ddp.pth")
    model = build_model(ModelSpec("resnet50", 7, "full", 3))
    report = load_pretrained(model, str(tmp_path / "ddp.pth"))
    assert "missing 4 " in report and "unexpected 0" in report
    assert torch.equal(model.trunk.conv1.weight, net.conv1.weight)
    assert torch.equal(model.rb_block.conv3.weight, net.layer4[2].conv3.weight)


def test_official_bbn_checkpoint_gives_the_same_logits(tmp_path, source):
    """An official BBN checkpoint (`module.backbone.*`, `cb_block`/`rb_block`, one classifier on the
    concatenated features, DataParallel, under `state_dict`) predicts exactly as it did there."""
    torch.manual_seed(2)
    with torch.no_grad():  # the official classifier has one bias for both branches
        source.rb_fc.bias.copy_(source.cb_fc.bias)
    state = {}
    for key, value in source.state_dict().items():
        if key.startswith("trunk.stem.0."):
            key = "conv1." + key.removeprefix("trunk.stem.0.")
        elif key.startswith("trunk.stem.1."):
            key = "bn1." + key.removeprefix("trunk.stem.1.")
        elif key.startswith(("cb_fc.", "rb_fc.")):
            continue
        state["module.backbone." + key.removeprefix("trunk.")] = value
    state["module.classifier.weight"] = torch.cat([source.cb_fc.weight, source.rb_fc.weight], 1).detach() / 2
    state["module.classifier.bias"] = source.cb_fc.bias.detach().clone()
    torch.save({"state_dict": state, "epoch": 200, "best_result": 0.5}, tmp_path / "official.pth")
    target = build_model(ModelSpec("resnet32", 10, "off", 3))
    report = load_pretrained(target, str(tmp_path / "official.pth"))
    assert "missing 0 " in report and "unexpected 0" in report, report
    x = torch.randn(3, 3, 16, 16)
    source.eval(), target.eval()
    with torch.no_grad():
        for alpha in (0.0, 0.3, 1.0):
            assert torch.allclose(target(x, alpha), source(x, alpha), atol=1e-5)


def test_weights_that_really_do_not_fit_name_the_mismatch(tmp_path):
    vit = {f"encoder.blocks.{i}.attn.qkv.weight": torch.zeros(3, 3) for i in range(12)}
    torch.save({"state_dict": vit}, tmp_path / "vit.pth")
    with pytest.raises(BBNError) as err:
        load_pretrained(build_model(ModelSpec("resnet32", 4, "off", 3)), str(tmp_path / "vit.pth"))
    line = str(err.value)
    assert "does not fit backbone resnet32" in line and "missing, e.g. trunk.stem.0.weight" in line
    assert "blocks.0.attn.qkv.weight fits nothing" in line
    torch.save({"epoch": 3, "arch": "x"}, tmp_path / "empty.pth")
    with pytest.raises(BBNError, match="expected a state dict of tensors"):
        load_pretrained(build_model(ModelSpec("resnet32", 4, "off", 3)), str(tmp_path / "empty.pth"))
