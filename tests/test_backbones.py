"""Both backbones: shapes, parameter counts against torchvision, and Zhang's shift consistency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from bbn.model.network import ModelSpec, build_model


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("backbone, size", [("resnet32", 32), ("resnet50", 224)])
def test_output_shapes(backbone, size):
    model = build_model(ModelSpec(backbone, 11, "full", 3)).eval()
    with torch.no_grad():
        logits_c, logits_r = model.branch_logits(torch.randn(2, 3, size, size))
        z = model(torch.randn(2, 3, size, size))
    assert logits_c.shape == logits_r.shape == z.shape == (2, 11)


def test_resnet50_parameter_count_matches_torchvision_plus_one_branch_block():
    tv = torchvision.models.resnet50()
    classes = 13
    expected = count(tv) - count(tv.fc) + count(tv.layer4[2]) + 2 * (2048 * classes + classes)
    for antialias in ("off", "stem", "full"):  # blurring adds no parameters
        assert count(build_model(ModelSpec("resnet50", classes, antialias, 3))) == expected


def test_resnet50_names_match_torchvision():
    tv = set(torchvision.models.resnet50().state_dict())
    ours = {k.removeprefix("trunk.") for k in build_model(ModelSpec("resnet50", 5, "full", 5)).state_dict()}
    ours = {("layer4.2." + k.removeprefix("cb_block.")) if k.startswith("cb_block.") else k for k in ours}
    tv_trunk = {k for k in tv if not k.startswith("fc.")}
    assert tv_trunk <= ours


def _shift_change(model: torch.nn.Module, x: torch.Tensor, shifts=(1, 2, 3)) -> float:
    """Mean change of the logits under 1-3 pixel shifts, relative to their spread over the batch."""
    with torch.no_grad():
        base = model(x)
        spread = (base - base.mean(0)).norm(dim=1).mean()
        diffs = [(model(torch.roll(x, s, dims=d)) - base).norm(dim=1).mean() / spread
                 for s in shifts for d in (2, 3)]
    return float(torch.stack(diffs).mean())


@pytest.mark.parametrize("backbone, size", [("resnet32", 32), ("resnet50", 64)])
def test_antialiasing_makes_outputs_more_shift_consistent(backbone, size):
    """Zhang's consistency: the same weights, blurred subsampling vs plain, over three inits."""
    change = {"off": 0.0, "full": 0.0}
    for seed in range(3):
        torch.manual_seed(seed)
        off = build_model(ModelSpec(backbone, 10, "off", 3)).eval()
        full = build_model(ModelSpec(backbone, 10, "full", 3)).eval()
        full.load_state_dict(off.state_dict())  # parameter names are shared: only the subsampling differs
        # Smooth random images (natural images are mostly low-frequency) plus a little detail.
        x = F.interpolate(torch.randn(8, 3, size // 4, size // 4), size=size, mode="bilinear")
        x = x + 0.2 * torch.randn_like(x)
        change["off"] += _shift_change(off, x)
        change["full"] += _shift_change(full, x)
    assert change["full"] < 0.85 * change["off"], change
