"""The params.yaml schema: every key, its type and range, validated before any work starts.

params.yaml is read as YAML 1.2 with ruamel.yaml, as DVC reads and writes it (``dvc exp run -S``):
``lr: 1e-05`` is a number and ``amp: off`` the word "off" (PyYAML's YAML 1.1 read the first as a
string and the second as False). Ranges are those the code downstream accepts (seeds: numpy's
0..2**32-1); infinities and NaN are refused everywhere.

Each section is a pydantic model with ``extra="forbid"`` so a misspelt key fails instead of being
silently ignored; ``load_params`` turns pydantic's errors into one line per problem that names the
dotted key (``train.tmax``) the way ``dvc exp run -S`` spells it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from bbn import vocab
from bbn.data.preprocessing import preprocessing, test_resize
from bbn.errors import ArgError, BBNError
from bbn.methods import METHODS as REGISTRY
from bbn.methods import check_rebalancing


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


# numpy.random.seed, sklearn's random_state and the DataLoader's workers take 0 .. 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]




class DataParams(_Section):
    name: Literal[vocab.DATASETS] = "digits"
    source: str = ""
    mirror: str = Field("", pattern=r"^((https?|file)://.*)?$")
    md5: dict[str, str] = {}
    imbalance_ratio: float = Field(20.0, ge=1.0)
    n_max: int = Field(0, ge=0)
    longtail_subsample: bool = False
    image_px: int = Field(32, ge=8, le=512)
    test_per_class: int = Field(30, ge=0)
    val_per_class: int = Field(3, ge=0)
    seed: Seed = 0
    keep_archives: bool = True

    @field_validator("md5")
    @classmethod
    def _hex(cls, md5: dict[str, str]) -> dict[str, str]:
        bad = [f for f, h in md5.items() if not re.fullmatch(r"[0-9a-f]{32}", h)]
        if bad:
            raise ValueError(f"{bad[0]}: not a 32-digit lowercase hex md5")
        return md5


class StatsParams(_Section):
    groups: Literal[vocab.SHOT_GROUPS] = "fixed"  # bbn.data.stats.shot_thresholds
    many_above: int = Field(100, ge=0)
    few_below: int = Field(20, ge=1)

    @field_validator("few_below")
    @classmethod
    def _ordered(cls, few_below: int, info: ValidationInfo) -> int:
        # a field validator (not a model one) so the error names stats.few_below
        many_above = info.data.get("many_above")
        if many_above is not None and few_below > many_above + 1:
            raise ValueError("few_below must not exceed many_above + 1")
        return few_below


class CheckParams(_Section):
    allow_test_duplicates: bool = True  # false: a test image with a copy in training stops split


class SplitParams(_Section):
    use_official_val: bool | Literal["auto"] = "auto"  # auto: inat*, or the dataset's own val/ (stages/split.py)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: Seed = 0


class PrepareParams(_Section):
    short_side: int = Field(32, ge=8, le=2048)
    quality: int = Field(95, ge=50, le=100)


class ModelParams(_Section):
    backbone: Literal[vocab.BACKBONES] = "resnet32"
    antialias: Literal[vocab.ANTIALIAS] = "full"
    blur_filter: int = Field(3, ge=2, le=7)
    pretrained: str = ""
    pretrained_md5: str = Field("", pattern=r"^([0-9a-f]{32})?$")
    shortcut: Literal[vocab.SHORTCUTS] = "conv"
    classifier: Literal[vocab.CLASSIFIERS] = "separate"
    init: Literal[vocab.INITS] = "fan_out"



class AlphaParams(_Section):
    schedule: Literal[vocab.ALPHA_SCHEDULES] = "parabolic"
    value: float = Field(0.5, ge=0.0, le=1.0)


METHODS = tuple(REGISTRY)  # every method the registry declares


class BaselineParams(_Section):
    defer_epoch: int = Field(30, ge=0)
    focal_gamma: float = Field(1.0, ge=0.0)
    cb_beta: float = Field(0.9999, ge=0.0, lt=1.0)
    la_tau: float = Field(1.0, ge=0.0)
    ldam_max_m: float = Field(0.5, gt=0.0)
    ldam_s: float = Field(30.0, gt=0.0)
    mixup_alpha: float = Field(1.0, ge=0.0)


class TrainParams(_Section):
    method: Literal[METHODS] = "bbn"
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
    augment: Literal[("auto", *vocab.AUGMENTS)] = "auto"
    normalize: Literal[("auto", *vocab.NORMALIZATIONS)] = "auto"
    crop_padding: int = Field(4, ge=0)
    hflip: bool = False
    drop_last: bool = True
    tmax: int = Field(40, gt=0)
    val_alpha: float = Field(0.5, ge=0.0, le=1.0)
    alpha: AlphaParams = AlphaParams()
    baseline: BaselineParams = BaselineParams()
    seed: Seed = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    num_workers: Literal["auto"] | Annotated[int, Field(ge=-1)] = "auto"
    max_steps: int = Field(0, ge=0)
    amp: Literal[vocab.AMP] = "off"
    channels_last: bool = True
    compile: bool = False
    single_pass: bool = False
    deterministic: bool = False
    nproc_per_node: int = Field(1, ge=1, le=1024)
    nnodes: int = Field(1, ge=1, le=4096)
    rdzv_endpoint: str = Field("", validate_default=True, pattern=r"^([A-Za-z0-9.\-\[\]:]+:\d+)?$")
    rdzv_id: str = Field("bbn", pattern=r"^[A-Za-z0-9_.\-]+$")
    accumulate: int = Field(1, ge=1)
    lr_scaling: Literal[vocab.LR_SCALINGS] = "linear"
    sync_bn: bool = False
    in_memory: Literal[vocab.IN_MEMORY] = "auto"
    in_memory_max_gb: float = Field(2.0, ge=0.0)
    gpu_decode: bool = False

    @field_validator("in_memory", mode="before")
    @classmethod
    def _in_memory_words(cls, value: object) -> object:
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("rdzv_endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str, info: ValidationInfo) -> str:
        if info.data.get("nnodes", 1) > 1 and not endpoint:
            raise ValueError("needed when train.nnodes > 1: host:port of node 0")
        return endpoint

    @field_validator("lr_steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if any(s < 1 for s in steps) or list(steps) != sorted(steps):
            raise ValueError("lr_steps must be increasing epoch numbers >= 1")
        return steps


class ClassifierParams(_Section):  # the classifier stage: bbn.classifier.ClassifierSpec
    method: Literal[vocab.CLASSIFIER_METHODS] = "none"
    branch: Literal[vocab.FEATURE_BRANCHES] = "conventional"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.1, gt=0.0)
    lr_factor: float = Field(0.5, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(2e-4, ge=0.0)
    smooth_head: float = Field(0.3, ge=0.0, le=1.0)
    smooth_tail: float = Field(0.0, ge=0.0, le=1.0)
    smooth_shape: Literal[vocab.SMOOTH_SHAPES] = "concave"
    shift_bn: bool = False
    # classifier-balancing tau_norm.py: np.linspace(0, 2, 21) (the spec's TAU_GRID; a test pins them equal)
    tau_grid: list[float] = Field(default_factory=lambda: [round(0.1 * i, 1) for i in range(21)], min_length=1)
    seed: Seed = 0


class EvalParams(_Section):
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    batch_size: int = Field(0, ge=0)  # 0: chosen by device (bbn.data.loading.eval_batch_size)
    tta_flip: bool = False


class SubmitParams(_Section):
    top_k: int = Field(5, ge=1, le=5)


with warnings.catch_warnings():  # "register" shadows ABCMeta.register of the class, which nothing here calls
    warnings.filterwarnings("ignore", 'Field name "register"')

    class TrackingParams(_Section):
        uri: str = ""
        experiment: str = Field("bbn", min_length=1)
        system_metrics_interval: float = Field(10.0, ge=0.0)  # seconds between samples; 0: off
        log_model: bool = True
        register: str = Field("", pattern=r"^([^/:]{1,200})?$")  # registered model name; "": do not register


class Params(_Section):
    recipe: str = ""  # the recipes/ preset applied last (stages/recipe.py); recorded with the run
    data: DataParams = DataParams()
    stats: StatsParams = StatsParams()
    check: CheckParams = CheckParams()
    split: SplitParams = SplitParams()
    prepare: PrepareParams = PrepareParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    classifier: ClassifierParams = ClassifierParams()
    eval: EvalParams = EvalParams()
    submit: SubmitParams = SubmitParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="after")
    def _prepared_big_enough(self):
        if self.train.image_size > self.prepare.short_side:
            raise ValueError(f"train.image_size: {self.train.image_size} exceeds prepare.short_side "
                             f"{self.prepare.short_side} (the prepared images would be upsampled; raise it)")
        augment = preprocessing(self.train.augment, self.train.normalize, self.data.name)["augment"]
        if test_resize(self.train.image_size, augment) > self.prepare.short_side:
            raise ValueError(f"prepare.short_side: {self.prepare.short_side} is below "
                             f"{test_resize(self.train.image_size, augment)}, the short side the {augment} test "
                             f"transform resizes to for train.image_size {self.train.image_size}; raise it")
        return self

    @model_validator(mode="after")
    def _classifier_fits_the_method(self):
        """The classifier stage's refusals (``bbn.methods.check_rebalancing``) before training, not after."""
        trained, c = REGISTRY[self.train.method], self.classifier
        try:
            check_rebalancing(trained.bilateral, trained.head, c.method, c.branch)
        except ArgError as err:
            raise ValueError(f"classifier.{err.arg}: {err.message} (train.method {self.train.method})") from None
        return self


def _describe(err: dict) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if not key:  # a check across sections: its message names the keys
        return err["msg"].removeprefix("Value error, ")
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
    """``path`` read as YAML 1.2 (as DVC reads it) and validated (``validate``)."""
    path = Path(path)
    try:
        raw = YAML(typ="safe", pure=True).load(path.read_text())
    except FileNotFoundError:
        raise BBNError(f"{path}: not found") from None
    except YAMLError as exc:
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
