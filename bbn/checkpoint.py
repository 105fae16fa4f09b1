"""The project's checkpoint file (``models/model.pt``): network spec, weights and label set.

Plain tensors, lists and numbers only, so it loads with ``torch.load(weights_only=True)``
(no pickled code runs) and carries everything that evaluation and ``bbn-predict`` need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from bbn.errors import BBNError
from bbn.io import atomic_path
from bbn.network import BilateralNet, ModelSpec, build_model


def save_checkpoint(path: str | Path, model: BilateralNet, image_size: int, category_ids: Sequence[int],
                    names: Sequence[str], epochs: int, method: str = "bbn", alpha: dict | None = None) -> None:
    """``alpha``: train.alpha as a dict (schedule, value), so inference knows a fixed-alpha model."""
    state = {"spec": model.spec.to_dict(), "state_dict": model.state_dict(), "image_size": image_size,
             "category_ids": [int(c) for c in category_ids], "names": [str(n) for n in names], "epochs": epochs,
             "method": method, "alpha": alpha or {}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, device: torch.device) -> tuple[BilateralNet, dict]:
    """The network of a checkpoint, on ``device``, and the checkpoint's metadata."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(ModelSpec(**ckpt["spec"]))
        model.load_state_dict(ckpt["state_dict"])
    except FileNotFoundError:
        raise BBNError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # unpickling, zip, key and shape errors all mean the same to a user
        raise BBNError(f"{path}: not a checkpoint of this project ({type(exc).__name__}: {exc})") from None
    return model.to(device), ckpt


# ---------------------------------------------------------------- resume state
# Written after every epoch, read back when the same training (same key) starts again after an
# interruption. Like the checkpoint above it holds only tensors, numbers, strings, lists and dicts.


def save_state(path: str | Path, key: str, model: BilateralNet, state: dict, run_id: str | None) -> None:
    """``state``: fit's optimizer / scaler / history after an epoch; ``key``: which training it is."""
    payload = {"key": key, "epoch": len(state["history"]), "model": model.state_dict(), "run_id": run_id or "",
               "optimizer": state["optimizer"], "scaler": state["scaler"], "history": state["history"]}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    for stale in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):  # left by a SIGKILLed writer
        stale.unlink(missing_ok=True)


def load_state(path: str | Path, key: str, model: BilateralNet) -> dict | None:
    """The saved state of training ``key`` with its weights loaded into ``model``; None when there is
    none, or it belongs to other params or data (then training starts afresh)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # atomic writes make this unlikely; a bad file must not stop a new run
        print(f"warning: {path}: unreadable resume state ({type(exc).__name__}), starting afresh")
        return None
    if state.get("key") != key:
        return None
    model.load_state_dict(state["model"])
    return state
