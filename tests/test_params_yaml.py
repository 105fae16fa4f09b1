"""params.yaml read as DVC reads and writes it (YAML 1.2), and ranges the code downstream accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bbn.errors import BBNError
from stages.params import load_params

ROOT = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_dvc_set_param_values_load(tmp_path):
    """`dvc exp run -S` rewrites params.yaml through DVC's own code (Hydra + ruamel, YAML 1.2): a small
    lr becomes `1e-05` and `off` stays an unquoted word. Both must load as DVC wrote them."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, ["train.lr=0.00001", "train.amp=off", "model.antialias=off", "train.seed=4294967295"])
    text = path.read_text()
    assert "lr: 1e-05" in text and "amp: off" in text  # what DVC writes (the old reader refused both)
    params = load_params(path)
    assert params.train.lr == 1e-05
    assert params.train.amp == "off" and params.model.antialias == "off"
    assert params.train.seed == 2**32 - 1


@pytest.mark.parametrize("text, value", [("train:\n  lr: 1e-3\n", 1e-3), ("train:\n  lr: 1e-05\n", 1e-05),
                                         ("train:\n  lr: 2.5E-4\n", 2.5e-4)])
def test_exponent_floats_are_numbers(tmp_path, text, value):
    assert load_params(_params(tmp_path, text)).train.lr == value


@pytest.mark.parametrize("text, key", [
    ("train:\n  seed: -1\n", "train.seed"),
    ("train:\n  seed: 1099511627776\n", "train.seed"),  # 2**40: numpy.random.seed refuses it
    ("data:\n  seed: 4294967296\n", "data.seed"),
    ("split:\n  seed: -3\n", "split.seed"),
    ("train:\n  lr: .inf\n", "train.lr"),
    ("train:\n  lr: .nan\n", "train.lr"),
    ("train:\n  amp: yes\n", "train.amp"),  # YAML 1.2: the word 'yes', not one of off/bf16/fp16
    ("train:\n  nesterov: yes\n", "train.nesterov"),  # ... and not a boolean either
])
def test_out_of_range_values_name_the_key(tmp_path, text, key):
    with pytest.raises(BBNError, match=key.replace(".", r"\.")):
        load_params(_params(tmp_path, text))


def test_largest_seed_works_downstream():
    """The largest accepted seed is one every seeded library takes."""
    import numpy as np
    import torch
    from sklearn.model_selection import train_test_split

    seed = 2**32 - 1
    np.random.seed(seed)
    torch.manual_seed(seed)
    train_test_split(list(range(10)), test_size=2, random_state=seed)
    with pytest.raises(ValueError):
        np.random.seed(seed + 1)
