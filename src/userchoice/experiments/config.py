"""Experiment configs: YAML → validated pydantic model.

Unknown or invalid fields are errors naming the field path, the value and what is allowed.
List-valued knobs expand to a grid (``seed: 15`` means seeds 0..14); ``static_grid`` sweeps
fields that change compiled shapes (e.g. ``probing.n_probe``), one engine group per value.
"""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from userchoice.choice import CHOICE_RULES, get_rule
from userchoice.data.registry import get_dataset
from userchoice.families import FAMILIES
from userchoice.knobs import BY_NAME, KNOBS, SCALAR_KNOBS, Knob
from userchoice.metrics import METRICS
from userchoice.preferences import PREFERENCE_MODES
from userchoice.probing import SOURCES, get_source
from userchoice.registry import RegistryError
from userchoice.schedules import NORMALISATIONS, SCHEDULES


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
    """The package's one YAML reader (configs, overrides): safe, and YAML 1.2 floats."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def read_yaml_file(path: str | Path) -> Any:
    """A YAML file through ``yaml_load``; a missing or malformed file is a ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return yaml_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None


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
    """``dataset``: a name in the dataset registry (``userchoice.data.registry.DATASETS``) or
    the import path ``package.module:function`` of a user's own loader (imported here, to check
    it exists). ``options`` go to the loader; their keys are checked against its signature when
    the market is built (``experiments.plan.load_dataset``), as are ``path`` (file-backed
    datasets only) and what the loader returns (its declared kind)."""

    dataset: str
    path: str | list[str] | None = None  # default: the data directory's folder for the dataset
    options: dict[str, Any] = Field(default_factory=dict)  # passed to the loader

    @field_validator("dataset")
    @classmethod
    def _registered(cls, name: str) -> str:
        try:
            get_dataset(name)
        except RegistryError as error:
            raise ValueError(str(error)) from None
        return name


class MarketConfig(_Strict):
    preferences: Literal[PREFERENCE_MODES] | None = None  # None: the dataset's own (synthetic)
    n_learners: Count
    attribute: str | None = None  # for category / feature preferences
    options: dict[str, Any] = Field(default_factory=dict)


def _registered(registry: Any, resolve: Any = None) -> AfterValidator:
    """A string field naming an entry of ``registry`` (a registered name or an import path
    ``package.module:Name``); the error lists the known names."""

    def check(name: str) -> str:
        (resolve or registry.get)(name)
        return name

    return AfterValidator(check)


FamilyName = Annotated[str, _registered(FAMILIES)]
RuleName = Annotated[str, _registered(CHOICE_RULES, get_rule)]
SourceName = Annotated[str, _registered(SOURCES, get_source)]
ScheduleName = Annotated[str, _registered(SCHEDULES)]
NormalisationName = Annotated[str, _registered(NORMALISATIONS)]
MetricName = Annotated[str, _registered(METRICS)]


class LearnerConfig(_Strict):
    family: FamilyName = "logistic"
    options: dict[str, Any] = Field(default_factory=dict)


class InitConfig(_Strict):
    kind: Literal["random", "erm"] = "random"
    options: dict[str, Any] = Field(default_factory=dict)  # passed to erm_init


class EngineConfig(_Strict):
    batch_size: Count
    steps: Count
    eval_every: Count = 100
    choice: RuleName = "tau_mixture"
    schedule: ScheduleName = "constant"
    normalisation: NormalisationName = "mean"
    update_all: bool = True
    dtype: Literal["float32", "float64"] = "float32"
    metrics: list[MetricName] | None = None  # None: every registered metric that applies


class ProbingConfig(_Strict):
    probers: list[Index] = Field(min_length=1)
    source: SourceName = "preferred"
    leader: Index | None = None
    subset: list[Index] | None = None
    n_probe: Count = 100
    probe_batch: Count = 150
    refresh_every: Index = 0

    @property
    def per_user_source(self) -> bool:
        return bool(get_source(self.source).per_user)


class _KnobsBase(_Strict):
    """Per-run values; a list is a grid axis. ``seed: N`` (an int) means seeds 0..N−1."""

    @field_validator("*")
    @classmethod
    def _non_empty(cls, value: Any, info: Any) -> Any:
        if isinstance(value, list) and not value and info.field_name in SCALAR_KNOBS:
            raise ValueError("a grid axis needs at least one value")
        return value

    def axes(self) -> dict[str, list]:
        """Grid axes in the knob table's order (seed varies slowest)."""
        out: dict[str, list] = {}
        for name in SCALAR_KNOBS:
            value = getattr(self, name)
            if BY_NAME[name].kind == "seed" and isinstance(value, int):
                value = list(range(value))
            out[name] = value if isinstance(value, list) else [value]
        return out


def _knob_field(knob: Knob) -> tuple[Any, Any]:
    """The config field of one knob, derived from its row in the knob table."""
    if knob.kind == "seed":  # a count (seeds 0..N−1) or a list of seeds
        seed = Annotated[int, Field(ge=0, lt=2**31, strict=True)]
        return (Count | list[seed], 1)
    value = Annotated[float, Field(allow_inf_nan=False, **knob.interval.pydantic_bounds())]
    if knob.kind == "per_learner":
        return (list[value] | None, None)
    return (value | list[value], knob.default)


KnobsConfig = create_model(
    "KnobsConfig", __base__=_KnobsBase, __doc__=_KnobsBase.__doc__,
    **{knob.name: _knob_field(knob) for knob in KNOBS})


STATIC_FIELDS = {
    **{f"engine.{k}": k for k in EngineConfig.model_fields},
    **{f"probing.{k}": k for k in ProbingConfig.model_fields},
}


def import_plugins(modules: Any) -> None:
    """Import each module named in a config's ``plugins:`` list: importing a plug-in module
    registers its families, rules, sources, metrics or datasets."""
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ValueError(f"plugins must be a list of module names, got {modules!r}")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(f"plugins: cannot import {module!r}: {error}") from None


class ExperimentConfig(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    # Modules imported before the rest is validated (they register plug-ins by name).
    plugins: list[str] = Field(default_factory=list)
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

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("plugins"):
            import_plugins(raw["plugins"])
        return raw

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

        for knob in KNOBS:  # the knob table says what each knob needs
            reason = None if knob.needs is None else knob.needs(self.probing)
            if reason is not None and knob.kind == "real" and any(
                    v != knob.default for v in values(knob.name)):
                raise ValueError(f"knobs.{knob.name} > {knob.default:g} needs {reason}")
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
    """Read a YAML experiment config (and ``key=value`` overrides); errors name the field.
    Paths stay as written; ``experiments.paths.load_experiment`` also resolves them."""
    return config_from_dict(read_yaml_file(path), str(path), overrides)
