"""The params.yaml schema: every key, its type and range, validated before any work starts.

Each section is a pydantic model with ``extra="forbid"`` so a misspelt key fails instead of being
silently ignored; ``load_params`` turns pydantic's errors into one line per problem that names the
dotted key (``train.tmax``) the way ``dvc exp run -S`` spells it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bbn.errors import BBNError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(_Section):
    name: Literal["digits"] = "digits"
    image_px: int = Field(32, ge=8, le=512)
    imbalance_ratio: float = Field(20.0, ge=1.0)
    n_max: int = Field(140, ge=1)
    test_per_class: int = Field(30, ge=1)
    val_per_class: int = Field(3, ge=0)
    seed: int = 0


class StatsParams(_Section):
    many_above: int = Field(100, ge=0)
    few_below: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.few_below > self.many_above + 1:
            raise ValueError("few_below must not exceed many_above + 1")
        return self


class SplitParams(_Section):
    use_official_val: bool = False
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 0


class ModelParams(_Section):
    backbone: Literal["resnet32", "resnet50"] = "resnet32"
    antialias: Literal["off", "stem", "full"] = "full"
    blur_filter: int = Field(3, ge=2, le=7)
    pretrained: str = ""
    pretrained_md5: str = Field("", pattern=r"^([0-9a-f]{32})?$")


class AlphaParams(_Section):
    schedule: Literal["parabolic", "linear", "cosine", "fixed"] = "parabolic"
    value: float = Field(0.5, ge=0.0, le=1.0)


class TrainParams(_Section):
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(2e-4, ge=0.0)
    nesterov: bool = False
    lr_steps: list[int] = [30, 36]
    lr_factor: float = Field(0.1, gt=0.0, le=1.0)
    warmup_epochs: int = Field(2, ge=0)
    image_size: int = Field(32, ge=8, le=1024)
    crop_padding: int = Field(4, ge=0)
    hflip: bool = False
    tmax: int = Field(40, gt=0)
    alpha: AlphaParams = AlphaParams()
    seed: int = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    num_workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _steps(self):
        if any(s < 1 for s in self.lr_steps) or list(self.lr_steps) != sorted(self.lr_steps):
            raise ValueError("lr_steps must be increasing epoch numbers >= 1")
        return self


class EvalParams(_Section):
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    batch_size: int = Field(256, ge=1)
    tta_flip: bool = False


class SubmitParams(_Section):
    top_k: int = Field(5, ge=1, le=5)


class TrackingParams(_Section):
    uri: str = ""
    experiment: str = Field("bbn", min_length=1)


class Params(_Section):
    data: DataParams = DataParams()
    stats: StatsParams = StatsParams()
    split: SplitParams = SplitParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    submit: SubmitParams = SubmitParams()
    tracking: TrackingParams = TrackingParams()


def _describe(err: dict) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "<top level>"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    if isinstance(got, (dict, list)) and len(repr(got)) > 60:
        return f"{key}: {msg}"
    return f"{key}: {msg} (got {got!r})"


def validate(raw: object, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise BBNError with one line per problem."""
    if not isinstance(raw, dict):
        raise BBNError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe(e)}" for e in exc.errors()]
        raise BBNError("\n".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise BBNError(f"{path}: not found") from None
    except yaml.YAMLError as exc:
        raise BBNError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return validate(raw or {}, str(path))


def flatten(params: BaseModel, prefix: str = "") -> dict[str, object]:
    """Dotted names for every leaf, as in params.yaml (``train.alpha.schedule``)."""
    out: dict[str, object] = {}
    for name, value in params:
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out
