"""The project's checkpoint file (``models/model.pt``): network spec, weights and label set.

``Checkpoint`` is the one reader and writer of that file. On disk it is a dict of plain tensors,
lists and numbers, so it loads with ``torch.load(weights_only=True)`` (no pickled code runs), and
it carries everything that evaluation, ``bbn-predict`` and the MLflow model need.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import torch

from bbn.errors import BBNError
from bbn.files import atomic_path
from bbn.model.network import BilateralNet, ModelSpec, build_model


@dataclass(frozen=True)
class Checkpoint:
    """A trained network and what inference needs to use it.

    ``state_dict``: the weights of ``spec``'s network. ``image_size``: the training crop (pixels).
    ``category_ids``/``names``: the class of each logit, in logit order. ``epochs``: epochs trained.
    ``method``: the ``bbn.methods`` name it was trained with (None: written by a version before
    methods; inference refuses it). ``alpha``: its alpha schedule {schedule, value}, from which
    inference takes the test-time branch weight (``bbn.model.inference.test_alpha``).
    ``preprocess``: {augment, mean, std} (``bbn.data.transforms.preprocessing``), from which
    evaluation and prediction build the same test transform. ``prepare``: {short_side, quality},
    the prepare step its images went through, which inference on original files repeats.
    ``inputs``: how the training images looked (``bbn.model.inputs.profile``), against which
    ``bbn-predict`` warns about unlike images.
    """

    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    image_size: int
    category_ids: list[int]
    names: list[str]
    epochs: int
    method: str | None = "bbn"
    alpha: dict = field(default_factory=dict)
    preprocess: dict = field(default_factory=dict)
    prepare: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: BilateralNet, image_size: int, category_ids: Sequence[int], names: Sequence[str],
           epochs: int, **meta) -> Checkpoint:
        """The checkpoint of ``model`` as it is now; ``meta``: the optional fields above."""
        return cls(model.spec, model.state_dict(), image_size, [int(c) for c in category_ids],
                   [str(n) for n in names], epochs, **meta)

    def save(self, path: str | Path) -> None:
        """Write ``path`` atomically (temporary name, then rename)."""
        state = {f.name: getattr(self, f.name) for f in fields(self)} | {"spec": self.spec.to_dict()}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """``BBNError`` naming ``path`` when it is missing or not a checkpoint of this project."""
        with _naming(path):
            raw = torch.load(path, map_location="cpu", weights_only=True)
            known = {f.name for f in fields(cls)}
            return cls(**({"method": None} | {k: v for k, v in raw.items() if k in known}
                          | {"spec": ModelSpec(**raw["spec"])}))

    def model(self, device: torch.device) -> BilateralNet:
        """The network with these weights, on ``device``."""
        model = build_model(self.spec)
        model.load_state_dict(self.state_dict)
        return model.to(device)


@contextmanager
def _naming(path: str | Path):
    """Any failure to read a checkpoint as one ``BBNError`` naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise BBNError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # unpickling, zip, key and shape errors all mean the same to a user
        raise BBNError(f"{path}: not a checkpoint of this project ({type(exc).__name__}: {exc})") from None


def load_checkpoint(path: str | Path, device: torch.device) -> tuple[BilateralNet, Checkpoint]:
    """The network of the checkpoint at ``path``, on ``device``, and the checkpoint; ``BBNError``
    naming the file when it is missing, unreadable, or its weights do not fit its spec."""
    ckpt = Checkpoint.load(path)
    with _naming(path):
        return ckpt.model(device), ckpt
