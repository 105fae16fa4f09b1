"""The project's checkpoint file (``models/model.pt``): network spec, weights and label set.

Plain tensors, lists and numbers only, so it loads with ``torch.load(weights_only=True)``
(no pickled code runs) and carries everything that evaluation and ``bbn-predict`` need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from bbn.errors import BBNError
from bbn.files import atomic_path
from bbn.model.network import BilateralNet, ModelSpec, build_model


def save_checkpoint(path: str | Path, model: BilateralNet, image_size: int, category_ids: Sequence[int],
                    names: Sequence[str], epochs: int, method: str = "bbn", alpha: dict | None = None,
                    preprocess: dict | None = None, prepare: dict | None = None, inputs: dict | None = None) -> None:
    """Write ``path`` atomically. ``method``: the ``bbn.methods`` name it was trained with and
    ``alpha``: its alpha schedule as a dict (schedule, value), from which inference takes the
    test-time branch weight (``bbn.model.inference.test_alpha``). ``preprocess``: the augmentation
    kind and normalisation ({'augment', 'mean', 'std'}, ``bbn.data.transforms.preprocessing``) from
    which evaluation and prediction build the same test transform. ``prepare``: the prepare step
    its images went through ({short_side, quality}), which inference on original files repeats
    (``bbn.data.prepare.prepared_image``). ``inputs``: how the training images looked
    (``bbn.model.inputs.profile``), against which ``bbn-predict`` warns about unlike images."""
    state = {"spec": model.spec.to_dict(), "state_dict": model.state_dict(), "image_size": image_size,
             "category_ids": [int(c) for c in category_ids], "names": [str(n) for n in names], "epochs": epochs,
             "method": method, "alpha": alpha or {}, "preprocess": preprocess or {}, "prepare": prepare or {},
             "inputs": inputs or {}}
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
