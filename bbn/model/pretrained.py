"""Initialising the bilateral network from pretrained weights.

Accepted sources (a local path or an http(s)/file URL, verified by md5 when downloaded):
* an ImageNet ResNet state dict with torchvision or timm names (``conv1.weight``, ``layer4.2...``);
  the last residual block initialises *both* branch blocks, the ImageNet classifier is dropped;
* a checkpoint of this project (``models/model.pt``); its classifiers are kept when the class
  count matches and re-initialised otherwise (fine-tuning on a new label set).

Files load with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch

from bbn.errors import ArgError, BBNError
from bbn.model.network import LAST_BLOCK, BilateralNet
from bbn.sources.download import fetch

HEADS = ("cb_fc.", "rb_fc.", "fc.")


def _resolve(source: str, md5: str, cache: Path) -> Path:
    if urlparse(source).scheme in ("http", "https", "file"):
        if not md5:
            raise ArgError("pretrained_md5", "required when pretrained is a URL")
        return fetch(source, cache / Path(urlparse(source).path).name, md5)
    path = Path(source)
    if not path.is_file():
        raise ArgError("pretrained", f"file {source} not found")
    return path


def _from_imagenet(state: dict, last_block: str) -> dict:
    """torchvision/timm names -> this network's names (trunk / both branch blocks)."""
    out = {}
    for key, value in state.items():
        if key.startswith(("fc.", "classifier.", "head.")):
            continue
        if key.startswith(last_block):
            rest = key[len(last_block):]
            out["cb_block." + rest] = value
            out["rb_block." + rest] = value.clone()
        else:
            out["trunk." + key] = value
    return out


def load_pretrained(model: BilateralNet, source: str, md5: str = "", cache: str | Path = "data/pretrained") -> str:
    """Load ``source`` into ``model``; return a one-line report; BBNError when it does not fit."""
    path = _resolve(source, md5, Path(cache))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BBNError(f"{path}: not a loadable weights file ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BBNError(f"{path}: expected a state dict of tensors")
    if not any(k.startswith("trunk.") for k in state):
        state = _from_imagenet(state, LAST_BLOCK[model.spec.backbone])
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if any(not k.startswith(HEADS) for k in mismatched):
        bad = next(k for k in mismatched if not k.startswith(HEADS))
        raise BBNError(f"{path}: does not fit backbone {model.spec.backbone}: {bad} has shape "
                       f"{tuple(state[bad].shape)}, the network {tuple(own[bad].shape)}")
    state = {k: v for k, v in state.items() if k not in mismatched}  # new label set: fresh heads
    missing, unexpected = model.load_state_dict(state, strict=False)
    body_missing = [k for k in missing if not k.startswith(HEADS)]
    if len(body_missing) > len(own) // 2:
        raise BBNError(f"{path}: does not fit backbone {model.spec.backbone}: "
                       f"{len(body_missing)} of {len(own)} tensors missing, e.g. {body_missing[0]}")
    return (f"pretrained: {len(state)} tensors from {path}; missing {len(missing)} {missing[:4]}; "
            f"unexpected {len(unexpected)} {unexpected[:4]}")
