"""Initialising the bilateral network from pretrained weights.

Accepted sources (a local path or an http(s)/file URL, verified by md5 when downloaded):
* an ImageNet ResNet state dict with torchvision or timm names (``conv1.weight``, ``layer4.2...``);
  the last residual block initialises *both* branch blocks, the ImageNet classifier is dropped;
  a CIFAR ResNet's ``conv1``/``bn1`` are ResNet-32's stem;
* a checkpoint of the official BBN code (megvii-research/BBN, ``lib/net/network.py``: ``backbone.``
  with ``cb_block``/``rb_block``, one ``classifier`` on the concatenated features [f_c, f_r]): the
  classifier's halves, doubled (its training mixes ``2 * [a f_c, (1 - a) f_r]``), become the two
  heads and its bias both biases, so the logits are the same for every alpha;
* a checkpoint of this project (``models/model.pt``); its classifiers are kept when the class
  count matches and re-initialised otherwise (fine-tuning on a new label set).

Common trainers' wrappers are taken off: the weights under ``state_dict_ema``/``model_ema`` (timm's
EMA, preferred as timm does), ``state_dict``, ``model``, ``module``, ``net`` or ``network``, and the
key prefixes ``module.`` (DataParallel/DDP), ``_orig_mod.`` (torch.compile), ``model.``
(Lightning), ``backbone.``/``encoder.`` (mmpretrain, detection and self-supervised code). When most
of the network is still not found, the error names a missing key and an unused one of the file.

Files load with ``torch.load(weights_only=True)``: no pickled code runs. Numpy scalars, dtypes and
arrays beside the weights (a ``best_result`` metric) are allowed, as they rebuild through numpy's
constructors only; any other object is refused in one line naming its entry.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.parse import urlparse

import torch

from bbn.errors import ArgError, BBNError
from bbn.model.network import LAST_BLOCK, BilateralNet
from bbn.sources.download import fetch

HEADS = ("cb_fc.", "rb_fc.", "fc.")  # this project's classifiers (fc: model.classifier official)
WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model", "module", "net", "network")
PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.")
DROPPED = ("fc.", "head.", "classifier.", "linear.", "last_linear.")  # ImageNet/CIFAR classifiers
CIFAR_STEM = {"conv1.": "stem.0.", "bn1.": "stem.1."}  # a CIFAR ResNet's stem under ResNet-32's names


def _resolve(source: str, md5: str, cache: Path) -> Path:
    if urlparse(source).scheme in ("http", "https", "file"):
        if not md5:
            raise ArgError("pretrained_md5", "required when pretrained is a URL")
        return fetch(source, cache / Path(urlparse(source).path).name, md5)
    path = Path(source)
    if not path.is_file():
        raise ArgError("pretrained", f"file {source} not found")
    return path


def unwrap(obj: object) -> dict | None:
    """The state dict inside a trainer's checkpoint (under ``WRAPPERS``, nested), or None. Non-tensor
    entries beside the tensors (counters, metadata) are dropped."""
    for _ in range(4):
        if not isinstance(obj, dict):
            return None
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            return tensors if tensors and len(tensors) >= len(obj) / 2 else None
        obj = inner
    return None


def strip_prefixes(state: dict) -> dict:
    """Keys without the wrapper prefixes (``PREFIXES``), however nested (``module.backbone.x``)."""
    out = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key[len(next(p for p in PREFIXES if key.startswith(p))):]
        out[key] = value
    return out


def _official_heads(state: dict, width: int) -> dict:
    """The official BBN ``classifier`` (C x 2*width, on [f_c, f_r]) as this network's two heads."""
    weight, bias = state.get("classifier.weight"), state.get("classifier.bias")
    if weight is None or weight.ndim != 2 or weight.shape[1] != 2 * width:
        return {}
    heads = {"cb_fc.weight": 2 * weight[:, :width], "rb_fc.weight": 2 * weight[:, width:]}
    if bias is not None:
        heads |= {"cb_fc.bias": bias.clone(), "rb_fc.bias": bias.clone()}
    return heads


def to_own_names(state: dict, backbone: str, width: int) -> dict:
    """torchvision/timm, CIFAR or official BBN names -> this network's (trunk, both branch blocks,
    heads); a checkpoint of this project passes unchanged."""
    if any(k.startswith("trunk.") for k in state):
        return state
    last_block, official = LAST_BLOCK[backbone], any(k.startswith("cb_block.") for k in state)
    out = _official_heads(state, width) if official else {}
    for key, value in state.items():
        if key.startswith(DROPPED):
            continue
        if key.startswith(("cb_block.", "rb_block.")):
            out[key] = value
        elif key.startswith(last_block) and not official:
            rest = key[len(last_block):]
            out["cb_block." + rest] = value
            out["rb_block." + rest] = value.clone()
        else:
            stem = next((p for p in CIFAR_STEM if key.startswith(p)), None) if backbone == "resnet32" else None
            out["trunk." + (CIFAR_STEM[stem] + key[len(stem):] if stem else key)] = value
    return out


def _plain_data_globals() -> list:
    """numpy scalars, dtypes and arrays (also under numpy 1's module names, which older files carry):
    what training scripts store beside their weights (``best_result: numpy.float64``). Rebuilding
    them runs no code but numpy's constructors, so ``weights_only`` loading may accept them."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    old = "numpy.core.multiarray."
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")] if hasattr(np, "dtypes") else []
    return [multiarray.scalar, (multiarray.scalar, old + "scalar"), multiarray._reconstruct,
            (multiarray._reconstruct, old + "_reconstruct"), np.ndarray, np.dtype, *dtypes]


def _refused_entry(path: Path, message: str) -> str:
    """'<entry>: <module.name>' for the first object of ``path`` that ``weights_only`` refused (the
    global torch names in ``message``; the entry is the last key before it in the pickle), else the
    global alone."""
    import pickletools
    import re
    import zipfile

    found = re.search(r"GLOBAL ([\w.]+)", message)
    if not found:
        return message.strip().splitlines()[0][:200] if message.strip() else "an object it cannot rebuild"
    name = found.group(1)
    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        key = None
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("BINUNICODE", "SHORT_BINUNICODE", "UNICODE", "BINUNICODE8"):
                key = arg
            elif op.name == "GLOBAL" and str(arg).replace(" ", ".") == name:
                return f"{key}: {name}" if key else name
    except (OSError, zipfile.BadZipFile, StopIteration, ValueError):
        pass
    return name


def load_weights(path: Path) -> object:
    """``torch.load(path, weights_only=True)`` that also accepts numpy scalars, dtypes and arrays
    (``_plain_data_globals``); BBNError in one line naming the entry it refuses otherwise."""
    try:
        with torch.serialization.safe_globals(_plain_data_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BBNError(f"{path}: holds an object that loading without running code refuses "
                       f"({_refused_entry(path, str(exc))}); save only the weights: "
                       "torch.save(model.state_dict(), path)") from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BBNError(f"{path}: not a loadable weights file ({type(exc).__name__}: {first})") from None


def load_pretrained(model: BilateralNet, source: str, md5: str = "", cache: str | Path = "data/pretrained") -> str:
    """Load ``source`` into ``model``; return a one-line report; BBNError when it does not fit."""
    path = _resolve(source, md5, Path(cache))
    loaded = load_weights(path)
    state = unwrap(loaded)
    if state is None:
        found = list(loaded)[:6] if isinstance(loaded, dict) else type(loaded).__name__
        raise BBNError(f"{path}: expected a state dict of tensors (or one under {', '.join(WRAPPERS)}), found {found}")
    state = to_own_names(strip_prefixes(state), model.spec.backbone, model.cb_fc.weight.shape[1])
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
        unused = f"; the file's {unexpected[0]} fits nothing" if unexpected else ""
        raise BBNError(f"{path}: does not fit backbone {model.spec.backbone}: {len(body_missing)} of {len(own)} "
                       f"tensors missing, e.g. {body_missing[0]}{unused}")
    return (f"pretrained: {len(state)} tensors from {path}; missing {len(missing)} {missing[:4]}; "
            f"unexpected {len(unexpected)} {unexpected[:4]}")
