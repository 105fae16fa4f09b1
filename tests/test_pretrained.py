"""Pretrained initialisation, and the ResNet-50 variant through the whole pipeline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch
import torchvision

from bbn.errors import BBNError
from bbn.model.network import ModelSpec, build_model
from bbn.model.pretrained import load_pretrained
from tests.helpers import make_repo, sh


@pytest.fixture(scope="module")
def torchvision_r50(tmp_path_factory):
    """A torchvision-format ResNet-50 state dict (random weights: no model hub here)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50-tv.pth"
    net = torchvision.models.resnet50()
    torch.save(net.state_dict(), path)
    return path, net


def test_torchvision_resnet50_loads_every_trunk_key(torchvision_r50):
    path, net = torchvision_r50
    model = build_model(ModelSpec("resnet50", 7, "full", 3))
    report = load_pretrained(model, str(path))
    assert "missing 4" in report and "unexpected 0" in report  # only the two new classifiers
    own = model.state_dict()
    for key, value in net.state_dict().items():
        if key.startswith("fc."):
            continue
        if key.startswith("layer4.2."):
            rest = key[len("layer4.2."):]
            assert torch.equal(own["cb_block." + rest], value) and torch.equal(own["rb_block." + rest], value)
        else:
            assert torch.equal(own["trunk." + key], value), key
    # both branch blocks start equal but are separate tensors
    assert model.cb_block.conv1.weight.data_ptr() != model.rb_block.conv1.weight.data_ptr()


def test_checkpoint_of_another_backbone_fails_clearly(torchvision_r50):
    path, _ = torchvision_r50
    with pytest.raises(BBNError, match="does not fit backbone resnet32"):
        load_pretrained(build_model(ModelSpec("resnet32", 7, "full", 3)), str(path))


def test_own_checkpoint_fine_tunes_with_new_heads(tmp_path):
    source = build_model(ModelSpec("resnet32", 10, "full", 3))
    torch.save({"spec": source.spec.to_dict(), "state_dict": source.state_dict()}, tmp_path / "model.pt")
    target = build_model(ModelSpec("resnet32", 4, "full", 3))
    report = load_pretrained(target, str(tmp_path / "model.pt"))
    assert "missing 4" in report
    assert torch.equal(target.trunk.stem[0].weight, source.trunk.stem[0].weight)
    assert target.cb_fc.weight.shape == (4, 64)


def test_missing_file_and_url_without_md5(tmp_path):
    model = build_model(ModelSpec("resnet32", 4, "off", 3))
    with pytest.raises(BBNError, match="^pretrained: file"):
        load_pretrained(model, str(tmp_path / "nope.pth"))
    with pytest.raises(BBNError, match="^pretrained_md5: required"):
        load_pretrained(model, "http://127.0.0.1:1/w.pth")


@pytest.fixture()
def served(torchvision_r50):
    """Serve the weights' folder on 127.0.0.1 (a stand-in for the model hub)."""
    path, _ = torchvision_r50
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}", hashlib.md5(path.read_bytes()).hexdigest()
    server.shutdown()


@pytest.mark.pipeline
def test_resnet50_from_downloaded_weights_trains_one_epoch_in_the_pipeline(tmp_path, served):
    url, md5 = served
    repo = make_repo(tmp_path / "r50", {
        "model": {"backbone": "resnet50", "pretrained": url, "pretrained_md5": md5},
        "train": {"epochs": 1, "image_size": 32, "batch_size": 16},
    })
    out = sh(repo, "dvc", "repro", timeout=900)
    assert "missing 4" in out.stdout and "unexpected 0" in out.stdout
    assert "epoch 1/1" in out.stdout and (repo / "submission.csv").exists()
    spec = torch.load(repo / "models/model.pt", weights_only=True)["spec"]
    assert spec["backbone"] == "resnet50"
