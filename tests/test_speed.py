"""Speed options (AMP, channels_last, single trunk pass, torch.compile): each works on the CPU,
none changes what is learned beyond a stated tolerance."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from bbn.data.samplers import UniformSampler
from bbn.model.inference import predict
from bbn.model.network import ModelSpec, build_model
from bbn.train.loop import fit
from stages.params import TrainParams
from stages.specs import train_spec

PLAIN = {"channels_last": False}  # every speed option off (the pipeline's default turns channels_last on)
OPTIONS = [{"amp": "bf16"}, {"amp": "fp16"}, {"channels_last": True}, {"single_pass": True}]


def _fit(options: dict, epochs: int = 1):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 4, (64,))
    data = TensorDataset(x + y[:, None, None, None].float(), y)  # learnable: the class shifts the mean
    loaders = {k: DataLoader(data, batch_size=16, sampler=UniformSampler(64, seed=1)) for k in ("uniform", "reversed")}
    model = build_model(ModelSpec("resnet32", 4, "full"))
    p = train_spec(TrainParams(epochs=epochs, warmup_epochs=0, lr_steps=[99], lr=0.05, **PLAIN | options))
    history = fit(model, loaders, None, p, torch.device("cpu"), torch.ones(4))
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


def _digits(n_train: int = 600):
    """scikit-learn's digits as 16 px RGB tensors: (train x, y), (test x, y)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1) / 8.0 - 1.0
    x = torch.nn.functional.interpolate(x, size=16, mode="bilinear", align_corners=False)
    y = torch.tensor(d.target)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def test_all_speed_options_keep_accuracy_over_three_epochs():
    """3 epochs on the digits with AMP (bf16), channels_last and the single trunk pass together reach
    the test accuracy of the plain run within 0.15 (1,197 test images), from the same start. Measured
    here with 1 thread: 0.788 plain, 0.885 fast (2 threads: 0.812, 0.888); bf16 rounding and pooled
    BatchNorm statistics move a 3-epoch run, and so does the thread count, hence one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        accuracy = _three_epochs()
    finally:
        torch.set_num_threads(threads)
    assert accuracy["plain"] > 0.7, accuracy  # learned: the comparison means something
    assert abs(accuracy["fast"] - accuracy["plain"]) <= 0.15, accuracy


def _three_epochs() -> dict[str, float]:
    (x, y), (tx, ty) = _digits()
    accuracy = {}
    for name, options in (("plain", {}), ("fast", {"amp": "bf16", "channels_last": True, "single_pass": True})):
        torch.manual_seed(0)
        data = TensorDataset(x, y)
        loaders = {k: DataLoader(data, batch_size=32, sampler=UniformSampler(len(y), seed=1))
                   for k in ("uniform", "reversed")}
        model = build_model(ModelSpec("resnet32", 10, "full"))
        p = train_spec(TrainParams(epochs=3, tmax=3, warmup_epochs=0, lr_steps=[99], lr=0.05, **PLAIN | options))
        fit(model, loaders, None, p, torch.device("cpu"), torch.bincount(y))
        logits, _ = predict(model, DataLoader(TensorDataset(tx, ty), batch_size=256), torch.device("cpu"))
        accuracy[name] = float((logits.argmax(1) == ty.numpy()).mean())
    return accuracy


def test_the_pipeline_trains_in_channels_last_by_default():
    """train.channels_last defaults on (1.2-1.4x faster ResNet-32 steps on this CPU, bench/README.md):
    the model the loop trains holds its conv weights in NHWC, and the step's batches follow."""
    from bbn.train.speed import Speed, prepare_model

    p = train_spec(TrainParams())
    model = prepare_model(build_model(ModelSpec("resnet32", 4, "off")), p, torch.device("cpu"))
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = Speed.of(p).to(torch.randn(2, 3, 16, 16), torch.device("cpu"))
    assert x.is_contiguous(memory_format=torch.channels_last)
