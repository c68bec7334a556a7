"""Experiment configs: YAML → validated pydantic model.

Unknown or invalid fields are errors naming the field path, the value and what is allowed.
List-valued knobs expand to a grid (``seed: 15`` means seeds 0..14); ``static_grid`` sweeps
fields that change compiled shapes (e.g. ``probing.n_probe``), one engine group per value.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from userchoice.choice import CHOICE_RULES
from userchoice.families import FAMILIES
from userchoice.preferences import PREFERENCE_MODES
from userchoice.probing import SOURCES

DATASETS = ("census", "movielens", "amazon", "trap", "mixture")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``1e-3`` (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Count = Annotated[int, Field(ge=1, strict=True)]  # strict: `true` is not a count
Index = Annotated[int, Field(ge=0, strict=True)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class DataConfig(_Strict):
    dataset: Literal["census", "movielens", "amazon", "trap", "mixture"]
    path: str | list[str] | None = None  # default: the data directory's folder for the dataset
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the loader


class MarketConfig(_Strict):
    preferences: Literal[PREFERENCE_MODES] | None = None  # None: the dataset's own (synthetic)
    n_learners: Count
    attribute: str | None = None  # for category / feature preferences
    options: dict[str, Any] = Field(default_factory=dict)


class LearnerConfig(_Strict):
    family: Literal[tuple(FAMILIES)] = "logistic"
    options: dict[str, Any] = Field(default_factory=dict)


class InitConfig(_Strict):
    kind: Literal["random", "erm"] = "random"
    options: dict[str, Any] = Field(default_factory=dict)  # passed to erm_init


class EngineConfig(_Strict):
    batch_size: Count
    steps: Count
    eval_every: Count = 100
    choice: Literal[CHOICE_RULES] = "tau_mixture"
    schedule: Literal["constant", "inv_sqrt", "inv"] = "constant"
    normalisation: Literal["mean", "su_dean"] = "mean"
    update_all: bool = True
    dtype: Literal["float32", "float64"] = "float32"


class ProbingConfig(_Strict):
    probers: list[Index] = Field(min_length=1)
    source: Literal[SOURCES] = "preferred"
    leader: Index | None = None
    subset: list[Index] | None = None
    n_probe: Count = 100
    probe_batch: Count = 150
    refresh_every: Index = 0


class KnobsConfig(_Strict):
    """Per-run values; a list is a grid axis. ``seed: N`` (an int) means seeds 0..N−1."""

    seed: Count | list[Index] = 1
    tau: Probability | list[Probability] = 0.0
    p: NonNegative | list[NonNegative] = 0.0
    kappa: Probability | list[Probability] = 0.0
    eta: Positive | list[Positive] = 0.01
    lam: NonNegative | list[NonNegative] = 0.0
    temperature: Positive | list[Positive] = 1.0
    zeta: Probability | list[Probability] = 0.0
    prior: list[Positive] | None = None

    @field_validator("seed", "tau", "p", "kappa", "eta", "lam", "temperature", "zeta")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("a grid axis needs at least one value")
        return value

    def axes(self) -> dict[str, list]:
        """Grid axes in a fixed order (seed varies slowest)."""
        out: dict[str, list] = {}
        for name in ("seed", "tau", "p", "kappa", "eta", "lam", "temperature", "zeta"):
            value = getattr(self, name)
            if name == "seed" and isinstance(value, int):
                value = list(range(value))
            out[name] = value if isinstance(value, list) else [value]
        return out


STATIC_FIELDS = {
    **{f"engine.{k}": k for k in EngineConfig.model_fields},
    **{f"probing.{k}": k for k in ProbingConfig.model_fields},
}


class ExperimentConfig(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    data: DataConfig
    market: MarketConfig
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    engine: EngineConfig
    probing: ProbingConfig | None = None
    knobs: KnobsConfig = Field(default_factory=KnobsConfig)
    static_grid: dict[str, list[Any]] = Field(default_factory=dict)
    baseline: bool = True  # fit and record the pooled baseline
    reported: dict[str, Any] = Field(default_factory=dict)  # the paper's numbers, for summaries

    @field_validator("static_grid")
    @classmethod
    def _known_static_fields(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if key not in STATIC_FIELDS:
                raise ValueError(f"static_grid key {key!r} is not one of {sorted(STATIC_FIELDS)}")
            if not values:
                raise ValueError(f"static_grid[{key!r}] needs at least one value")
        return grid

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        def values(name: str) -> list:
            value = getattr(self.knobs, name)
            return value if isinstance(value, list) else [value]

        if self.probing is None and any(v > 0 for v in values("p")):
            raise ValueError("knobs.p > 0 needs a probing section (which learners probe, whom)")
        per_user = self.probing is not None and self.probing.source in ("leader", "preferred")
        if not per_user and any(v > 0 for v in values("kappa")):
            raise ValueError("knobs.kappa > 0 needs probing with source 'preferred' or 'leader'")
        for key, grid_values in self.static_grid.items():
            section_name, field = key.split(".", 1)
            section = getattr(self, section_name)
            if section is None:
                raise ValueError(f"static_grid[{key!r}] needs a {section_name} section")
            for value in grid_values:
                try:
                    type(section).model_validate({**section.model_dump(), field: value})
                except ValidationError as error:
                    reason = error.errors()[0]["msg"]
                    raise ValueError(f"static_grid[{key!r}] value {value!r}: {reason}") from None
        return self


def _location(loc: tuple, raw: Any) -> str:
    """The dotted path of the fields the user wrote: pydantic also puts the union branch it
    tried into the location, so keep only the parts found in the raw input (or, for a missing
    required field, its name)."""
    parts, node = [], raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part in _field_names():
            parts.append(part)  # a required field that is missing
            node = None
    return ".".join(parts) or "(top level)"


def _field_names() -> set[str]:
    names: set[str] = set()
    for model in (ExperimentConfig, DataConfig, MarketConfig, LearnerConfig, InitConfig,
                  EngineConfig, ProbingConfig, KnobsConfig):
        names.update(model.model_fields)
    return names


def _format_error(error: ValidationError, source: str, raw: Any) -> str:
    lines, seen = [f"invalid config {source}:"], set()
    for item in error.errors():
        where = _location(item["loc"], raw)
        if where in seen:  # one message per field: the first union branch's
            continue
        seen.add(where)
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}{shown}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.sub=value`` → (path, value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {text!r} names no field")
    try:
        value = yaml_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error})") from error
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return raw


def config_from_dict(raw: Any, source: str = "<dict>",
                     overrides: list[str] | None = None) -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping, "
                          f"got {type(raw).__name__}")
    raw = apply_overrides(copy.deepcopy(raw), overrides or [])
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_error(error, source, raw)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment config (and ``key=value`` overrides); errors name the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None
    return config_from_dict(raw, str(path), overrides)
