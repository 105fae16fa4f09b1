"""The library's typed inputs built from the validated params: the one place where a params section
becomes a ``bbn`` spec (``bbn.train.spec``), field by field by name."""

from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass

from pydantic import BaseModel

from bbn.train.inputs import InputSpec
from bbn.train.spec import LaunchSpec, TrainSpec

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


def launch_spec(train: BaseModel) -> LaunchSpec:
    """The ``train`` section's process layout (``bbn.train.distributed.launch_argv``)."""
    return to_spec(LaunchSpec, train)


def input_spec(train: BaseModel, preprocessing: dict, readers: int) -> InputSpec:
    """The ``train`` section's input fields, with the resolved ``preprocessing`` (augment, mean, std)
    and the number of samplers that read at once (``readers``)."""
    return InputSpec(**{f: getattr(train, f) for f in InputSpec.__dataclass_fields__
                        if f not in ("augment", "mean", "std", "readers")},
                     augment=preprocessing["augment"], mean=tuple(preprocessing["mean"]),
                     std=tuple(preprocessing["std"]), readers=readers)
