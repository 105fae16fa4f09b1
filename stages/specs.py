"""The library's typed inputs built from the validated params: the one place where a params section
becomes a ``bbn`` spec (``bbn.train.spec``), field by field by name."""

from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass

from pydantic import BaseModel

from bbn.sources.spec import DataSpec
from bbn.train.spec import LaunchSpec, TrainSpec

if typing.TYPE_CHECKING:
    from bbn.model.network import ModelSpec
    from bbn.train.inputs import InputSpec

T = typing.TypeVar("T")


def to_spec(cls: type[T], section: BaseModel) -> T:
    """``cls`` (a frozen dataclass) from the same-named fields of ``section``; nested specs from
    nested sections, lists as tuples (a spec is immutable)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        value = getattr(section, f.name)
        if is_dataclass(hints[f.name]):
            value = to_spec(hints[f.name], value)
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def train_spec(train: BaseModel) -> TrainSpec:
    """The ``train`` section as ``bbn.train.loop.fit`` takes it."""
    return to_spec(TrainSpec, train)


def data_spec(data: BaseModel) -> DataSpec:
    """The ``data`` section as ``bbn.sources.datasets.fetch_dataset`` takes it."""
    return to_spec(DataSpec, data)


def launch_spec(train: BaseModel) -> LaunchSpec:
    """The ``train`` section's process layout (``bbn.train.distributed.launch_argv``)."""
    return to_spec(LaunchSpec, train)


def input_spec(train: BaseModel, preprocessing: dict, readers: int) -> InputSpec:
    """The ``train`` section's input fields, with the resolved ``preprocessing`` (augment, mean, std)
    and the number of samplers that read at once (``readers``)."""
    from bbn.train.inputs import InputSpec  # with torch: only the stages that train import it

    return InputSpec(**{f: getattr(train, f) for f in InputSpec.__dataclass_fields__
                        if f not in ("augment", "mean", "std", "readers")},
                     augment=preprocessing["augment"], mean=tuple(preprocessing["mean"]),
                     std=tuple(preprocessing["std"]), readers=readers)


def model_spec(params: BaseModel, num_classes: int) -> ModelSpec:
    """The network of the ``model`` section for ``num_classes`` classes, with the head the training
    method needs (``bbn.methods``)."""
    from bbn.methods import method
    from bbn.model.network import ModelSpec  # with torch: only the stages that train import it

    m = params.model
    return ModelSpec(backbone=m.backbone, num_classes=num_classes, antialias=m.antialias, blur_filter=m.blur_filter,
                     head=method(params.train.method).head, shortcut=m.shortcut, classifier=m.classifier, init=m.init)
