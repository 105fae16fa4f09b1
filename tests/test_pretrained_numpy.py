"""Issue 26: pretrained checkpoints saved by other training scripts (shared case numpy_scalar_checkpoint):
numpy scalars, dtypes and arrays beside the weights load; any other object is one plain line naming
the entry."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from bbn.errors import BBNError
from bbn.model.network import ModelSpec, build_model
from bbn.model.pretrained import load_pretrained, load_weights

TINY = Path(__file__).parent / "data" / "real-world-3" / "numpy_scalar_checkpoint" / "tiny_numpy_meta.pth"


def test_the_shared_tiny_file_loads():
    loaded = load_weights(TINY)
    assert loaded["best_result"] == np.float64(0.5) and loaded["state_dict"]["fc.weight"].shape == (2, 2)


def test_a_trainer_checkpoint_with_numpy_metadata_initialises_the_network(tmp_path):
    """As make.py of the shared case writes it: DataParallel keys and numpy metadata."""
    source = build_model(ModelSpec("resnet32", 3))
    path = tmp_path / "ck.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}, "epoch": 200,
                "best_result": np.float64(0.7123), "best_epoch": np.int64(187), "dtype": np.dtype("float32"),
                "per_class": np.array([0.5, 0.25])}, path)
    model = build_model(ModelSpec("resnet32", 3))
    report = load_pretrained(model, str(path))
    assert f"pretrained: {len(source.state_dict())} tensors" in report and "missing 0" in report
    assert torch.equal(model.state_dict()["cb_fc.weight"], source.state_dict()["cb_fc.weight"])


def test_any_other_object_is_one_plain_line_naming_the_entry(tmp_path):
    path = tmp_path / "ck.pth"
    torch.save({"state_dict": build_model(ModelSpec("resnet32", 3)).state_dict(),
                "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(BBNError) as caught:
        load_pretrained(build_model(ModelSpec("resnet32", 3)), str(path))
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and len(message) < 300
    assert "(args: argparse.Namespace)" in message and "save only the weights" in message
