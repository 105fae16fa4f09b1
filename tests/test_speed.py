"""Speed options (AMP, channels_last, single trunk pass, torch.compile): each works on the CPU,
none changes what is learned beyond a stated tolerance."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from bbn.config import TrainParams
from bbn.network import ModelSpec, build_model
from bbn.sampler import UniformSampler
from bbn.training import fit
from conftest import make_repo, sh, stage

OPTIONS = [{"amp": "bf16"}, {"amp": "fp16"}, {"channels_last": True}, {"single_pass": True}]


def _fit(options: dict, epochs: int = 1):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 4, (64,))
    data = TensorDataset(x + y[:, None, None, None].float(), y)  # learnable: the class shifts the mean
    loaders = {k: DataLoader(data, batch_size=16, sampler=UniformSampler(64, seed=1)) for k in ("uniform", "reversed")}
    model = build_model(ModelSpec("resnet32", 4, "full"))
    p = TrainParams(epochs=epochs, warmup_epochs=0, lr_steps=[99], lr=0.05, **options)
    history = fit(model, loaders, None, p, 0.5, torch.device("cpu"), torch.ones(4))
    return model, history


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_each_speed_option_trains_on_cpu(options):
    model, history = _fit(options)
    plain, plain_history = _fit({})
    assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))
    assert list(model.state_dict()) == list(plain.state_dict())  # checkpoints stay interchangeable
    # one epoch from the same start: the losses agree to the precision of the option
    tolerance = 0.15 if "amp" in options else 0.05
    assert abs(history[-1]["train_loss"] - plain_history[-1]["train_loss"]) < tolerance * plain_history[-1]["train_loss"] + 0.02


def test_single_pass_gives_the_same_logits_outside_training():
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet32", 5, "full")).eval()
    x_c, x_r = torch.randn(6, 3, 16, 16), torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        two = model.branch_logits(x_c, x_r)
        one = model.branch_logits(x_c, x_r, single_pass=True)
    for a, b in zip(two, one):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_compile_trains_the_same(monkeypatch):
    """torch.compile traced by dynamo (eager backend: inductor's C++ build takes minutes on a CPU)."""
    monkeypatch.setenv("BBN_COMPILE_BACKEND", "eager")
    model, history = _fit({"compile": True})
    _, plain_history = _fit({})
    assert history[-1]["train_loss"] == pytest.approx(plain_history[-1]["train_loss"], rel=1e-4)


@pytest.mark.pipeline
def test_all_speed_options_keep_accuracy_over_three_epochs(tmp_path):
    """3 epochs on the embedded digits with AMP (bf16), channels_last and the single trunk pass
    together reach the test accuracy of the plain run within 0.15 (digits' tiny test set: 50 images)."""
    repo = make_repo(tmp_path / "speed", {"train": {"epochs": 3, "tmax": 3, "lr_steps": [3]}})
    sh(repo, "dvc", "repro", "prepare")
    accuracy = {}
    for name, options in (("plain", {}), ("fast", {"amp": "bf16", "channels_last": True, "single_pass": True})):
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["train"].update({"amp": "off", "channels_last": False, "single_pass": False} | options)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for s in ("train", "evaluate"):
            proc = stage(repo, s)
            assert proc.returncode == 0, proc.stderr
        accuracy[name] = json.loads((repo / "metrics/eval.json").read_text())["test_top1_acc"]
    assert accuracy["plain"] > 0.3  # learned something: the comparison means something
    assert abs(accuracy["fast"] - accuracy["plain"]) <= 0.15, accuracy
