"""The params schema: the committed params.yaml validates, and every error names its dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bbn.errors import BBNError
from stages.params import flatten, load_params, validate

ROOT = Path(__file__).resolve().parents[1]


def _raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _flat(d: dict, prefix: str = "") -> dict:
    parts = [_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v} for k, v in d.items()]
    return {k: v for part in parts for k, v in part.items()}


def test_repo_params_validate_and_flatten():
    flat = flatten(load_params(ROOT / "params.yaml"))
    assert "train.alpha.schedule" in flat and "train.alpha" not in flat
    for key, value in _flat(_raw()).items():  # every leaf of the file, under its dotted name
        assert flat[key] == value, key


@pytest.mark.parametrize("section, key, value, dotted", [
    ("train", "bogus", 1, "train.bogus"),
    ("train", "batch_size", "abc", "train.batch_size"),
    ("train", "tmax", 0, "train.tmax"),
    ("train", "batch_size", 0, "train.batch_size"),
    ("model", "antialias", "blurry", "model.antialias"),
    ("train", "lr_steps", [36, 30], "lr_steps"),  # the model validator names 'train' and lr_steps
])
def test_config_errors_name_the_key(section, key, value, dotted):
    raw = _raw()
    raw[section][key] = value
    with pytest.raises(BBNError) as info:
        validate(raw)
    lines = str(info.value).splitlines()
    assert len(lines) == 1 and dotted in lines[0]


def test_config_one_line_per_problem():
    raw = _raw()
    raw["train"]["tmax"], raw["model"]["antialias"] = 0, "blurry"
    with pytest.raises(BBNError) as info:
        validate(raw)
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and "train.tmax" in lines[0] + lines[1] and "model.antialias" in lines[0] + lines[1]


def test_config_lr_steps_dotted_key():
    raw = _raw()
    raw["train"]["lr_steps"] = [36, 30]
    with pytest.raises(BBNError, match=r"train\.lr_steps"):
        validate(raw)


