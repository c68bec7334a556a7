"""Experiment configs: YAML → validated pydantic model.

Unknown or invalid fields are errors naming the field path, the value and what is allowed.
List-valued knobs expand to a grid (``seed: 15`` means seeds 0..14); ``static_grid`` sweeps
fields that change compiled shapes (e.g. ``probing.n_probe``), one engine group per value.

Inputs that cannot hurt: configs are UTF-8; the YAML reader refuses anchors, aliases, merge
keys and duplicate keys (nothing can expand, no key is silently replaced); every count (steps,
seeds, grid size, batch and probe sizes, learners, synthetic users) is checked against memory
and time estimates (``size_estimates``, ``size_problems``) before anything is built; numbers in
``*.options`` are finite; a name cannot leave the results folder.
"""

from __future__ import annotations

import copy
import importlib
import math
import re
import reprlib
from collections.abc import Hashable
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
from userchoice.choice_losses import CHOICE_LOSSES, get_choice_loss
from userchoice.data.registry import get_dataset
from userchoice.engine.spec import working_bytes
from userchoice.families import FAMILIES, is_classifier
from userchoice.knobs import BY_NAME, DYNAMICS, KNOBS, SCALAR_KNOBS, Knob, knobs_of
from userchoice.metrics import METRICS
from userchoice.preferences import PREFERENCE_MODES
from userchoice.probing import SOURCES, get_source
from userchoice.registry import RegistryError
from userchoice.schedules import NORMALISATIONS, SCHEDULES


class YAMLRefused(yaml.MarkedYAMLError):
    """A YAML feature configs may not use: anchors and aliases (``&a`` / ``*a``: a "billion
    laughs" bomb is a few lines of them), merge keys (``<<``) and duplicate mapping keys."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``1e-3`` (YAML 1.1 wants ``1.0e-3``),
    and refuses anchors, aliases, merge keys and duplicate keys (``YAMLRefused``, with the
    line): nothing a config holds can expand, and no key is silently replaced."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise YAMLRefused(problem=f"found the alias *{event.anchor}: YAML anchors and "
                              "aliases (&name, *name) are not allowed in configs; write the "
                              "value out", problem_mark=event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise YAMLRefused(problem=f"found the anchor &{event.anchor}: YAML anchors and "
                              "aliases (&name, *name) are not allowed in configs; write the "
                              "value out", problem_mark=event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)  # the base class's error
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YAMLRefused(problem="YAML merge keys (<<) are not allowed in configs",
                                  problem_mark=key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:value":  # a key "=", as SafeLoader reads it
                key_node.tag = "tag:yaml.org,2002:str"
        mapping: dict = {}
        lines: dict = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found unhashable key",
                    key_node.start_mark)
            if key in mapping:
                raise YAMLRefused(problem=f"duplicate key {key!r} (first at line "
                                  f"{lines[key] + 1}); each key may appear once",
                                  problem_mark=key_node.start_mark)
            lines[key] = key_node.start_mark.line
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


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
    """The package's one YAML reader (configs, overrides): safe, YAML 1.2 floats, no anchors,
    aliases, merge keys or duplicate keys (``YAMLRefused``, a ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return "" if mark is None else f", line {mark.line + 1}, column {mark.column + 1}"


def _config_text(path: Path) -> str:
    """A config file's text: UTF-8 (a UTF-8 byte-order mark is allowed), else a
    ``ConfigError`` saying so."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise ConfigError(f"config {path} is not UTF-8 text (it looks like UTF-16); configs "
                          f"must be UTF-8: save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ConfigError(f"config {path} is not UTF-8 text (byte 0x{data[error.start]:02x} "
                          f"at line {line} is not UTF-8; Latin-1 or another encoding?); "
                          f"configs must be UTF-8: save it as UTF-8") from None


def read_yaml_file(path: str | Path) -> Any:
    """A YAML file through ``yaml_load``; a missing, unreadable, non-UTF-8 or malformed file,
    or one using anchors, aliases or duplicate keys, is a ``ConfigError`` naming the file (and
    the line)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = _config_text(path)
    try:
        return yaml_load(text)
    except YAMLRefused as error:
        raise ConfigError(f"config {path}{_where(error)}: {error.problem}") from None
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


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The first nan or ±inf inside ``value`` (nested mappings and lists), with its path."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        items = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for where, item in items:
        found = _non_finite(item, where)
        if found is not None:
            return found
    return None


def _finite_options(section: str) -> AfterValidator:
    """``<section>.options``: every number in it finite (``gap: .nan`` would make every run
    diverge); the message names the option's path."""

    def check(options: dict[str, Any]) -> dict[str, Any]:
        found = _non_finite(options, f"{section}.options")
        if found is not None:
            raise ValueError(f"{found[0]} is {found[1]!r}: numbers in {section}.options must be "
                             f"finite (no nan or inf)")
        return options

    return AfterValidator(check)


class DataConfig(_Strict):
    """``dataset``: a name in the dataset registry (``userchoice.data.registry.DATASETS``) or
    the import path ``package.module:function`` of a user's own loader (imported here, to check
    it exists). ``options`` go to the loader; their keys are checked against its signature when
    the market is built (``experiments.plan.load_dataset``), as are ``path`` (file-backed
    datasets only) and what the loader returns (its declared kind)."""

    dataset: str = Field(description="a registered dataset name or the import path "
                         "`package.module:function` of your own loader")
    path: str | list[str] | None = Field(
        None, description="file(s) or folder to read (file-backed datasets); default: the "
        "dataset's folder in the data directory")
    options: Annotated[dict[str, Any], _finite_options("data")] = Field(
        default_factory=dict, description="keyword arguments of the loader (checked against "
        "its signature)")

    @field_validator("dataset")
    @classmethod
    def _registered(cls, name: str) -> str:
        try:
            get_dataset(name)
        except RegistryError as error:
            raise ValueError(str(error)) from None
        return name


class MarketConfig(_Strict):
    """How users rank the learners (``market.make_market``)."""

    preferences: Literal[PREFERENCE_MODES] | None = Field(
        None, description="construction of the users' preferences; none: the dataset's own "
        "(synthetic markets)")
    n_learners: Count = Field(description="number of competing learners n")
    attribute: str | None = Field(None, description="the attribute behind `category` or "
                                  "`feature` preferences")
    options: Annotated[dict[str, Any], _finite_options("market")] = Field(
        default_factory=dict, description="keyword arguments of the preference construction")


def _registered(registry: Any, resolve: Any = None) -> AfterValidator:
    """A string field naming an entry of ``registry`` (a registered name or an import path
    ``package.module:Name``); the error lists the known names."""

    def check(name: str) -> str:
        (resolve or registry.get)(name)
        return name

    return AfterValidator(check)


FamilyName = Annotated[str, _registered(FAMILIES)]
RuleName = Annotated[str, _registered(CHOICE_RULES, get_rule)]
def _any_source(name: str) -> Any:
    """A probing source of MSGD-P (``probing.SOURCES``) or of the population dynamics
    (``population.POPULATION_SOURCES``); the dynamics' own check (``_check_dynamics``) then
    requires one of its own."""
    from userchoice.population import POPULATION_SOURCES, get_population_source

    if name in POPULATION_SOURCES and name not in SOURCES:
        return get_population_source(name)
    return get_source(name)


SourceName = Annotated[str, _registered(SOURCES, _any_source)]
ScheduleName = Annotated[str, _registered(SCHEDULES)]
NormalisationName = Annotated[str, _registered(NORMALISATIONS)]
MetricName = Annotated[str, _registered(METRICS)]
ChoiceLossName = Annotated[str, _registered(CHOICE_LOSSES, get_choice_loss)]


class LearnerConfig(_Strict):
    """The learner family every learner shares."""

    family: FamilyName = Field("logistic", description="learner family (registered name or "
                               "`package.module:Name`)")
    options: Annotated[dict[str, Any], _finite_options("learner")] = Field(
        default_factory=dict, description="keyword arguments of the family (e.g. `hidden` "
        "for `mlp`)")


class InitConfig(_Strict):
    """The learners' initial parameters."""

    kind: Literal["random", "erm", "uniform"] = Field(
        "random", description="`random` (the family's init), `erm` (each learner fitted on "
        "the users whose favourite it is) or `uniform` (every parameter U[0, 1), one draw per "
        "seed: Su & Dean's init, for any family)")
    options: Annotated[dict[str, Any], _finite_options("init")] = Field(
        default_factory=dict, description="keyword arguments of `erm_init` (e.g. `steps`, "
        "`eta`, `ridge`)")

    @model_validator(mode="after")
    def _uniform_takes_no_options(self) -> InitConfig:
        if self.kind == "uniform" and self.options:
            raise ValueError(f"init.options {sorted(self.options)}: init.kind 'uniform' takes "
                             f"no options (they are erm_init's)")
        return self


class EngineConfig(_Strict):
    """The static engine spec (``EngineSpec``): shapes and control flow, one compilation
    per distinct value."""

    batch_size: Count = Field(description="users B arriving per step")
    steps: Count = Field(description="steps T per run")
    eval_every: Count = Field(100, description="steps between evaluation points (step 0 is "
                              "always evaluated)")
    choice: RuleName = Field("tau_mixture", description="choice rule")
    schedule: ScheduleName = Field("constant", description="step-size schedule")
    normalisation: NormalisationName = Field("mean", description="batch gradient "
                                             "normalisation")
    update_all: bool = Field(True, description="also run update-all copies (train on every "
                             "user, no choice)")
    dtype: Literal["float32", "float64"] = Field("float32", description="floating-point "
                                                 "precision of the whole simulation")
    metrics: list[MetricName] | None = Field(
        None, description="metrics to record; none: every registered metric that applies and "
        "is recorded by default (path_length: under zeta_random only)")
    arrival: Literal["uniform", "stream", "shuffle"] = Field(
        "uniform", description="how users arrive: `uniform` (B users i.i.d. with replacement "
        "each step), `stream` (one pass over the training users in dataset order: step t takes "
        "users t·B … t·B + B − 1, Su & Dean's protocol) or `shuffle` (one pass in a random order "
        "per seed); one-pass arrivals need steps × batch_size ≤ the training users")
    choice_loss: ChoiceLossName | None = Field(
        None, description="the loss users choose by (a name in `choice_losses.CHOICE_LOSSES`: "
        "soft01, zero_one, logistic; classification families only); none: the learners' "
        "training loss. Learners still train on, and metrics report, the training loss")
    loss_temperature: Positive = Field(1.0, description="T of the choice loss (soft01: "
                                       "|y − σ(f/T)|, logistic: −log σ((2y − 1)f/T))")


class ProbingConfig(_Strict):
    """MSGD-P (``ProbingSpec``); without this section the learners run plain MSGD."""

    probers: list[Index] = Field(min_length=1, description="indices of the probing learners S")
    source: SourceName = Field("preferred", description="source of the probers' "
                               "pseudo-labels")
    leader: Index | None = Field(None, description="the learner the `leader` source asks")
    subset: list[Index] | None = Field(None, description="the learners whose median score "
                                       "the `subset` source takes")
    n_probe: Count = Field(100, description="unlabelled probe users per prober")
    probe_batch: Count = Field(150, description="probe points per prober per step")
    refresh_every: Index = Field(0, description="re-label the probe users from the current "
                                 "peers every k steps; 0: offline (labels from the initial "
                                 "parameters)")
    start: Literal["start", "equilibrium"] = Field(
        "start", description="population dynamics: probe from the first round, or from the "
        "first equilibrium on (`equilibrium`)")

    @property
    def per_user_source(self) -> bool:
        return bool(_any_source(self.source).per_user)


class GroupsConfig(_Strict):
    """The sub-populations of a population-dynamics market (``population.groups``): quadratic
    groups R_j(θ) = ‖θ − φ_j‖² + σ² from explicit ``phi`` or Gaussian draws, or empirical
    groups (weighted least squares) from the config's dataset, one group per value of an
    attribute."""

    kind: Literal["quadratic", "gaussian", "dataset"] = Field(
        description="`quadratic` (explicit φ), `gaussian` (φ_j ~ N(0, I), NumPy "
        "`default_rng(seed)`) or `dataset` (the rows of the config's dataset, grouped by `by`)")
    phi: list[list[Annotated[float, Field(allow_inf_nan=False)]]] | None = Field(
        None, description="quadratic: one optimum φ_j per group (rows of equal length d)")
    sigma2: NonNegative = Field(1.0, description="quadratic and gaussian: the noise floor σ² "
                                "of every group's risk")
    n_groups: Count | None = Field(None, description="gaussian: number of groups G; dataset "
                                   "with `by: favourite`: the preference construction's options "
                                   "(default: market.n_learners)")
    dim: Count | None = Field(None, description="gaussian: dimension d of φ")
    seed: Index = Field(0, description="gaussian: seed of NumPy's default_rng drawing φ")
    beta: list[Positive] | Literal["uniform", "count"] = Field(
        "uniform", description="group masses β_j: a list (one per group), `uniform` (β_j = 1) "
        "or, for dataset groups, `count` (β_j = rows of the group)")
    by: str | None = Field(None, description="dataset: the per-user attribute whose values "
                           "form the groups (e.g. `RAC1P`), or `favourite`: each user's "
                           "favourite under `market.preferences` with `n_groups` options")
    min_size: Count = Field(30, description="dataset: groups with fewer rows are merged (too "
                            "small to fit a learner on)")
    split: Literal["train", "test", "all"] = Field(
        "train", description="dataset: which users form the groups")
    intercept: bool = Field(True, description="dataset: add a constant feature, so each "
                            "learner fits an intercept (standardised features are centred)")
    loss: Literal["squared", "logistic", "auto"] = Field(
        "squared", description="dataset: each group's risk: mean squared error (weighted least "
        "squares) or logistic loss (classification, labels 0/1: weighted logistic regression "
        "by Newton's method); `auto`: logistic when every label is 0 or 1")

    @model_validator(mode="after")
    def _complete(self) -> GroupsConfig:
        need = {"quadratic": ("phi",), "gaussian": ("n_groups", "dim"), "dataset": ("by",)}
        for name in need[self.kind]:
            if getattr(self, name) is None:
                raise ValueError(f"groups.{name} is required for groups.kind = {self.kind!r}")
        if self.kind == "quadratic":
            widths = {len(row) for row in self.phi or []}
            if not self.phi or len(widths) != 1 or 0 in widths:
                raise ValueError("groups.phi must be a non-empty list of rows of one length d "
                                 f"≥ 1, got row lengths {sorted(widths)}")
        size = len(self.phi) if self.kind == "quadratic" else self.n_groups
        if isinstance(self.beta, list) and size is not None and len(self.beta) != size:
            raise ValueError(f"groups.beta has {len(self.beta)} masses for {size} groups")
        if self.beta == "count" and self.kind != "dataset":
            raise ValueError("groups.beta = 'count' needs groups.kind = 'dataset'")
        return self


AllocationMatrix = list[list[Annotated[float, Field(ge=0.0, allow_inf_nan=False)]]]


class NamedAllocation(_Strict):
    """An explicit initial allocation with a name (how results tables and figures call it)."""

    name: Annotated[str, Field(min_length=1)] = Field(description="the allocation's name")
    alpha: AllocationMatrix = Field(description="n_learners × G matrix, columns summing to 1")


Allocation = Literal["even", "jitter"] | AllocationMatrix | NamedAllocation


class PopulationConfig(_Strict):
    """The population (participation) dynamics of Dean et al. (``PopulationSpec``): rounds of
    retraining on the current allocation and multiplicative-weights participation, with market
    entry; one compilation per distinct value of these fields."""

    groups: GroupsConfig = Field(description="the sub-populations")
    steps: Count = Field(description="round budget T of each phase (a phase ends earlier when "
                         "the stop rule holds)")
    update: Literal["retrain", "gradient_step"] = Field(
        "retrain", description="learner update per round: `retrain` (exact weighted least "
        "squares) or `gradient_step` (one step of size knobs.eta)")
    allocation: Allocation = Field(
        "even", description="initial allocation α⁰: `even` (1/n), `jitter` (normalise(1 + "
        "scale·U[0, 1)) per group), an explicit n_learners × G matrix, columns summing to 1, "
        "or {name, alpha}: such a matrix with a name")
    allocation_seed: Index = Field(0, description="jitter: seed of NumPy's default_rng")
    allocation_scale: NonNegative = Field(1e-4, description="jitter: size of the perturbation")
    stop: Literal["consecutive", "cumulative"] = Field(
        "consecutive", description="how rounds with unchanged allocations are counted "
        "(`cumulative`: the authors' count, never reset)")
    patience: Count = Field(20, description="a phase has converged after more than this many "
                            "rounds with unchanged allocations")
    rtol: NonNegative = Field(1e-5, description="relative tolerance of 'unchanged'")
    atol: NonNegative = Field(1e-8, description="absolute tolerance of 'unchanged'")
    entry: Literal["largest", "index"] | None = Field(
        None, description="market entry after each phase: split the learner with the largest "
        "share (`largest`) or learners 0, 1, 2, … (`index`, the authors'); none: no entry")
    max_learners: Count | None = Field(None, description="entry: split until this many "
                                       "learners (the entry cap)")
    weighting: Literal["beta", "beta_count"] = Field(
        "beta", description="retraining weights β_j·α_ij, or β_j·N_j·α_ij (`beta_count`: the "
        "authors' compat switch)")
    eval_every: Count = Field(1, description="rounds between recorded points")
    dtype: Literal["float32", "float64"] = Field("float64", description="floating-point "
                                                 "precision")
    metrics: list[MetricName] | None = Field(
        None, description="metrics to record; none: every population metric")

    @model_validator(mode="after")
    def _entry(self) -> PopulationConfig:
        if (self.entry is None) != (self.max_learners is None):
            raise ValueError("population.entry and population.max_learners go together (set "
                             "both for market entry, neither for none)")
        return self


class EquilibriumConfig(_Strict):
    """Competition for market share (Jagadeesan et al., NeurIPS 2023; ``EquilibriumSpec``):
    ``market.n_learners`` providers best-respond in turn, each maximising its share of users who
    choose by logit (temperature: knobs.temperature) over a choice loss, until every share
    changes by at most ``tol`` in a round. The users: one of the paper's synthetic settings, or
    the config's dataset (bring your own features)."""

    setting: Literal[1, 2, 3, "dataset"] = Field(
        description="the users: synthetic setting 1 (no information, y = 0 w.p. alpha), 2 (one "
        "feature of noise sigma), 3 (four groups, representation D), or `dataset` (the "
        "config's data section, with a bias feature)")
    alpha: Probability | None = Field(None, description="setting 1: P(y = 0)")
    sigma: NonNegative | None = Field(None, description="setting 2: noise of the feature")
    D: Annotated[int, Field(ge=1, le=5, strict=True)] | None = Field(
        None, description="setting 3: representation (its first D − 1 coordinates + bias)")
    n_points: Count = Field(10_000, description="synthetic settings: users drawn")
    data_seed: Index = Field(0, description="synthetic settings: seed of the users' draw")
    split: Literal["train", "test", "all"] = Field("train", description="dataset: which users")
    features: Count | None = Field(
        None, description="dataset: the representation, the first k of the dataset's features "
        "(plus the bias); sweep it (`static_grid: {equilibrium.features: [...]}`) for a "
        "representation ladder: nested feature subsets, or with `pca_components` the first k "
        "principal components; none: every feature")
    choice_loss: ChoiceLossName = Field(
        "soft01", description="the loss users choose by (registered in "
        "`choice_losses.CHOICE_LOSSES`: soft01, soft01_multiclass, zero_one, logistic)")
    loss_temperature: Positive = Field(0.1, description="T of the soft 0-1 loss |y − σ(f/T)|")
    lr: Positive = Field(0.1, description="best-response gradient ascent: step size")
    steps: Count = Field(5000, description="best-response gradient ascent: steps per response")
    tol: Positive = Field(1e-3, description="converged when no share changes by more in a round")
    max_rounds: Count = Field(100, description="rounds before a run is recorded as not converged")
    extra_starts: list[Literal["peers", "flip"]] = Field(
        default_factory=lambda: ["peers", "flip"], description="further starts of each best "
        "response (peers' parameters, −θ): gradient ascent from the current θ alone stops at "
        "local optima that are not best responses")
    dtype: Literal["float32", "float64"] = Field("float32", description="precision")

    @model_validator(mode="after")
    def _complete(self) -> EquilibriumConfig:
        if self.features is not None and self.setting != "dataset":
            raise ValueError("equilibrium.features applies to setting 'dataset' only")
        need = {1: "alpha", 2: "sigma", 3: "D"}.get(self.setting)  # type: ignore[call-overload]
        if need is not None and getattr(self, need) is None:
            raise ValueError(f"equilibrium.{need} is required for equilibrium.setting = "
                             f"{self.setting}")
        return self


class _KnobsBase(_Strict):
    """Per-run values; a list is a grid axis. ``seed: N`` (an int) means seeds 0..N−1."""

    @field_validator("*")
    @classmethod
    def _non_empty(cls, value: Any, info: Any) -> Any:
        if isinstance(value, list) and not value and info.field_name in SCALAR_KNOBS:
            raise ValueError("a grid axis needs at least one value")
        return value

    def axes(self, dynamics: str = "msgd") -> dict[str, list]:
        """Grid axes in the knob table's order (seed varies slowest): the knobs ``dynamics``
        reads (``knobs.knobs_of``)."""
        out: dict[str, list] = {}
        for name in knobs_of(dynamics):
            value = getattr(self, name)
            if BY_NAME[name].kind == "seed" and isinstance(value, int):
                value = list(range(value))
            out[name] = value if isinstance(value, list) else [value]
        return out


def _knob_field(knob: Knob) -> tuple[Any, Any]:
    """The config field of one knob, derived from its row in the knob table."""
    if knob.kind == "seed":  # a count (seeds 0..N−1) or a list of seeds
        seed = Annotated[int, Field(ge=0, lt=2**31, strict=True)]
        return (Count | list[seed], Field(1, description=knob.meaning))
    value = Annotated[float, Field(allow_inf_nan=False, **knob.interval.pydantic_bounds())]
    if knob.kind == "per_learner":
        return (list[value] | None, Field(None, description=knob.meaning))
    return (value | list[value], Field(knob.default, description=knob.meaning))


KnobsConfig = create_model(
    "KnobsConfig", __base__=_KnobsBase, __doc__=_KnobsBase.__doc__,
    **{knob.name: _knob_field(knob) for knob in KNOBS})


STATIC_FIELDS = {
    **{f"engine.{k}": k for k in EngineConfig.model_fields},
    **{f"probing.{k}": k for k in ProbingConfig.model_fields},
    **{f"population.{k}": k for k in PopulationConfig.model_fields if k != "groups"},
    **{f"equilibrium.{k}": k for k in EquilibriumConfig.model_fields},
    "market.n_learners": "n_learners",  # dynamics equilibrium only: one spec per count
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


# ---------------------------------------------------------------------------------------------
# Size bounds: every count of a config, checked against memory and time estimates
# ---------------------------------------------------------------------------------------------

MEMORY_LIMIT = 64e9  # bytes: the most one structure of a sweep may need
TIME_LIMIT = 7 * 24 * 3600.0  # seconds of simulation, at UPDATE_RATE
UPDATE_RATE = 1e9  # learner-user gradient terms per second: optimistic (≈ 10× two CPU cores)
INDEX_LIMIT = 2**31 - 1  # the engine's step counter and user indices are int32
ROW_BYTES = 200  # one row of the learners table in memory (≈ 20 columns)
RUN_BYTES = 2048  # planning one run: its id, its row, its knob values
# What the paper uses, roughly: the field furthest above its typical value is the one named.
_TYPICAL = {"runs": 1e3, "engine.steps": 1e4, "engine.eval_every": 1e-2, "market.n_learners": 10,
            "engine.batch_size": 1e3, "probing.n_probe": 1e4, "probing.probe_batch": 1e3,
            "data.options.n_users": 1e6, "probing.refresh_every": 1e-2,
            "data.options.dim": 1e3, "init.options.steps": 1e4}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _static_values(config: Any, key: str, current: Any) -> list[Any]:
    return [current, *config.static_grid.get(key, [])]


def _bytes_text(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def _hours_text(seconds: float) -> str:
    return f"{seconds / 3600:.3g} hours"


def size_estimates(config: Any) -> dict[str, Any]:
    """The counts of a validated config (the largest over its ``static_grid``) and what they
    cost: memory of the results tables, of planning the runs, of one run's working set and of
    a synthetic market's data, and the simulation time at ``UPDATE_RATE``. Nothing is built:
    sizes come from the knob table's grid axes and the engine's shapes (``engine.spec``'s
    ``bytes_per_run``, with at least one feature when the data's width is not known yet)."""
    if config.dynamics == "population":
        return _population_estimates(config)
    if config.dynamics == "equilibrium":
        return {"axes": {}, "runs": 0, "results_bytes": 0, "seconds": 0.0}
    axes: dict[str, int] = {}
    for name in SCALAR_KNOBS:
        value = getattr(config.knobs, name)
        if BY_NAME[name].kind == "seed" and _count(value) is not None:
            axes[f"knobs.{name}"] = value
        else:
            axes[f"knobs.{name}"] = len(value) if isinstance(value, list) else 1
    for key, values in config.static_grid.items():
        axes[f"static_grid[{key!r}]"] = len(values)
    runs = math.prod(axes.values())

    def largest(key: str, default: int = 0) -> int:
        section, field = key.split(".")
        node = getattr(config, section)
        base = default if node is None else getattr(node, field)
        return max((_count(v) or 0) for v in _static_values(config, key, base))

    steps = largest("engine.steps")
    eval_every = min((_count(v) or steps) for v in _static_values(
        config, "engine.eval_every", config.engine.eval_every))
    batch = largest("engine.batch_size")
    n = config.market.n_learners
    probing = config.probing
    probers = 0 if probing is None else max(
        len(v) if isinstance(v, list) else 0
        for v in _static_values(config, "probing.probers", probing.probers))
    n_probe = largest("probing.n_probe") if probing else 0
    probe_batch = largest("probing.probe_batch") if probing else 0
    refresh = 0 if probing is None else min(
        (_count(v) or 0) for v in _static_values(config, "probing.refresh_every",
                                                 probing.refresh_every))
    dtypes = _static_values(config, "engine.dtype", config.engine.dtype)
    itemsize = 8 if "float64" in dtypes else 4
    options = config.data.options
    users = _count(options.get("n_users"))
    fraction = options.get("test_fraction", 0.25)
    fraction = fraction if isinstance(fraction, float) and 0 < fraction < 1 else 0.25
    n_test = 0 if users is None else int(users * fraction)
    features = max(1, _count(options.get("dim")) or 1)
    width = max(1, _count(config.learner.options.get("hidden")) or 1)
    init_steps = 0
    if config.init.kind == "erm":
        init_steps = _count(config.init.options.get("steps")) or 0
    evals = steps // eval_every + 2
    rows = n_test + batch + probers * (n_probe + probe_batch)
    work = runs * (steps * n * (2 * batch + probers * probe_batch)
                   + evals * n * (n_test + probers * n_probe)
                   + (0 if not refresh else steps // refresh) * n * probers * n_probe)
    # The ERM fit (gradient steps over each learner's users: at least batch_size users in all).
    work += init_steps * max(batch, (users or 0) - n_test) * features
    return {
        "axes": axes, "runs": runs, "steps": steps, "eval_every": eval_every, "evals": evals,
        "batch_size": batch, "n_learners": n, "probers": probers, "n_probe": n_probe,
        "probe_batch": probe_batch, "refresh_every": refresh, "n_users": users,
        "init_steps": init_steps,
        "n_test": n_test, "features": features, "width": width, "itemsize": itemsize,
        "results_bytes": runs * evals * n * ROW_BYTES,
        "plan_bytes": runs * RUN_BYTES,
        "run_bytes": working_bytes(n, rows, width, features, itemsize),
        "data_bytes": 0 if users is None else users * (features + n + 4) * 8 * 4,
        "seconds": work / UPDATE_RATE,
    }


def _population_estimates(config: Any) -> dict[str, Any]:
    """``size_estimates`` of a population-dynamics config: runs from the grid of the knobs
    it reads; rounds = T per phase × phases; rows of the recorded tables (learner, group and
    learner × group values at every evaluation point); the time at ``UPDATE_RATE`` counts one
    d × d solve per learner and group per round (dataset groups: 64 groups of 16 features
    assumed before the data is read)."""
    axes: dict[str, int] = {}
    for name in knobs_of("population"):
        value = getattr(config.knobs, name)
        count = value if BY_NAME[name].kind == "seed" and _count(value) is not None else (
            len(value) if isinstance(value, list) else 1)
        axes[f"knobs.{name}"] = count
    for key, values in config.static_grid.items():
        axes[f"static_grid[{key!r}]"] = len(values)
    runs = math.prod(axes.values())
    population, groups = config.population, config.population.groups
    n = population.max_learners or config.market.n_learners
    phases = 1 + (n - config.market.n_learners) + (
        1 if config.probing is not None and config.probing.start == "equilibrium" else 0)
    size = {"quadratic": len(groups.phi or []), "gaussian": groups.n_groups or 1}
    n_groups = size.get(groups.kind, 64)
    dim = {"quadratic": len((groups.phi or [[0]])[0]), "gaussian": groups.dim or 1}.get(
        groups.kind, 16)
    rounds = population.steps * phases
    evals = rounds // population.eval_every + 2
    chosen = population.metrics  # None: every population metric, the allocations included
    kinds = {METRICS.get(m).kind for m in chosen} if chosen is not None else {"group",
                                                                              "allocation"}
    rows = evals * (1 + n + n_groups * ("group" in kinds) + n * n_groups * ("allocation" in kinds))
    return {"axes": axes, "runs": runs, "steps": rounds, "evals": evals, "n_learners": n,
            "n_groups": n_groups, "features": dim,
            "results_bytes": runs * rows * ROW_BYTES // 4, "plan_bytes": runs * RUN_BYTES,
            "seconds": runs * rounds * n * n_groups * dim * dim / UPDATE_RATE}


def _population_problems(config: Any) -> list[str]:
    e = _population_estimates(config)
    axis, size = max(e["axes"].items(), key=lambda item: item[1])
    problems = []
    if e["results_bytes"] > MEMORY_LIMIT:
        problems.append(f"{axis} = {size} ({e['runs']} runs) × {e['evals']} evaluation points "
                        f"needs ≈ {_bytes_text(e['results_bytes'])} of results tables (the "
                        f"limit is {_bytes_text(MEMORY_LIMIT)}); raise population.eval_every "
                        f"or name fewer population.metrics")
    if e["seconds"] > TIME_LIMIT:
        problems.append(f"{axis} = {size} ({e['runs']} runs × {e['steps']} rounds) needs ≈ "
                        f"{_hours_text(e['seconds'])} of simulation (the limit is "
                        f"{_hours_text(TIME_LIMIT)})")
    return problems


def size_problems(config: Any) -> list[str]:
    """One message per count that would exceed ``MEMORY_LIMIT``, ``TIME_LIMIT`` or the
    engine's int32 indices; each names the field most responsible and the estimate."""
    if config.dynamics == "population":
        return _population_problems(config)
    if config.dynamics == "equilibrium":
        return []  # small: providers × users × steps per round (bench_equilibrium.py)
    e = size_estimates(config)
    axis, axis_size = max(e["axes"].items(), key=lambda item: item[1])
    values = {"runs": e["runs"], "engine.steps": e["steps"],
              "engine.eval_every": 1 / e["eval_every"], "market.n_learners": e["n_learners"],
              "engine.batch_size": e["batch_size"], "probing.n_probe": e["probers"] * e["n_probe"],
              "probing.probe_batch": e["probers"] * e["probe_batch"],
              "data.options.n_users": e["n_users"] or 0,
              "probing.refresh_every": 1 / e["refresh_every"] if e["refresh_every"] else 0,
              "data.options.dim": e["features"], "init.options.steps": e["init_steps"]}
    shown = {"runs": f"{axis} = {axis_size} ({e['runs']} runs in the grid)",
             "engine.eval_every": f"engine.eval_every = {e['eval_every']}",
             "probing.n_probe": f"probing.n_probe = {e['n_probe']}",
             "probing.probe_batch": f"probing.probe_batch = {e['probe_batch']}",
             "probing.refresh_every": f"probing.refresh_every = {e['refresh_every']}",
             "engine.steps": f"engine.steps = {e['steps']}",
             "engine.batch_size": f"engine.batch_size = {e['batch_size']}",
             "market.n_learners": f"market.n_learners = {e['n_learners']}",
             "data.options.n_users": f"data.options.n_users = {e['n_users']}",
             "data.options.dim": f"data.options.dim = {e['features']}",
             "init.options.steps": f"init.options.steps = {e['init_steps']}"}

    def culprit(*keys: str) -> str:
        return shown[max(keys, key=lambda k: values[k] / _TYPICAL[k])]

    memory = f"the limit is {_bytes_text(MEMORY_LIMIT)}"
    per_step = 2 * e["batch_size"] + e["probers"] * e["probe_batch"]
    checks = [
        (e["results_bytes"] > MEMORY_LIMIT,
         culprit("runs", "engine.steps", "engine.eval_every", "market.n_learners"),
         f"≈ {_bytes_text(e['results_bytes'])} for the evaluation list and results tables "
         f"({e['runs']} runs × {e['evals']} evaluation points × {e['n_learners']} learners; "
         f"{memory})"),
        (e["plan_bytes"] > MEMORY_LIMIT, culprit("runs"),
         f"≈ {_bytes_text(e['plan_bytes'])} to plan {e['runs']} runs ({memory})"),
        (e["run_bytes"] > MEMORY_LIMIT,
         culprit("market.n_learners", "engine.batch_size", "probing.n_probe",
                 "probing.probe_batch", "data.options.n_users", "data.options.dim"),
         f"at least ≈ {_bytes_text(e['run_bytes'])} of working memory for one run "
         f"({e['n_learners']} learners × ({e['batch_size']} batch users + {e['probers']} × "
         f"({e['n_probe']} + {e['probe_batch']}) probe users + {e['n_test']} test users); "
         f"{memory})"),
        (e["data_bytes"] > MEMORY_LIMIT,
         culprit("data.options.n_users", "market.n_learners", "data.options.dim"),
         f"≈ {_bytes_text(e['data_bytes'])} for the market's data ({e['n_users']} users × "
         f"{e['n_learners']} learners; {memory})"),
        (e["seconds"] > TIME_LIMIT,
         culprit("runs", "engine.steps", "market.n_learners", "engine.batch_size",
                 "probing.probe_batch", "probing.n_probe", "probing.refresh_every",
                 "init.options.steps", "data.options.dim"),
         f"≈ {_hours_text(e['seconds'])} of simulation at {UPDATE_RATE:.0e} learner-user "
         f"updates per second ({e['runs']} runs × {e['steps']} steps × {e['n_learners']} "
         f"learners × {per_step} user gradients per step, plus evaluations and the ERM fit; "
         f"the limit is "
         f"{_hours_text(TIME_LIMIT)})"),
    ]
    problems: dict[str, list[str]] = {}
    for failed, field, text in checks:
        if failed:
            problems.setdefault(field, []).append(f"needs {text}")
    for key, value in (("engine.steps", e["steps"]), ("engine.batch_size", e["batch_size"]),
                       ("probing.n_probe", e["n_probe"]),
                       ("probing.probe_batch", e["probe_batch"]),
                       ("data.options.n_users", e["n_users"] or 0)):
        if value > INDEX_LIMIT:
            problems.setdefault(shown[key], []).append(
                f"exceeds the engine's 32-bit indices (the limit is {INDEX_LIMIT})")
    return [f"{field} {', and '.join(texts)}" for field, texts in problems.items()]


NAME_LENGTH = 100


def _check_name(name: str) -> str:
    """A config's name names its results folder (``results/<name>``) and files: letters,
    digits, ``_``, ``.`` and ``-`` only, not starting with a dot (so never ``.`` or ``..``,
    never a hidden folder), at most ``NAME_LENGTH`` characters."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError("a name may hold only letters, digits, '_', '.' and '-' (it names "
                         "the results folder)")
    if name.startswith("."):
        raise ValueError("a name must not start with '.' ('.' and '..' would write outside "
                         "results/, '.x' would hide the folder)")
    if len(name) > NAME_LENGTH:
        raise ValueError(f"a name may have at most {NAME_LENGTH} characters, this one has "
                         f"{len(name)}")
    return name


class ExperimentConfig(_Strict):
    name: Annotated[str, Field(min_length=1), AfterValidator(_check_name)] = Field(
        description="names the results folder (`results/<name>`) and its files")
    description: str = Field("", description="what the experiment shows (titles, captions, "
                             "reports)")
    plugins: list[str] = Field(
        default_factory=list, description="modules imported before the rest is validated "
        "(they register plug-ins by name)")
    dynamics: Literal[DYNAMICS] = Field(
        "msgd", description="the dynamics the market runs under: `msgd` (streaming MSGD / "
        "MSGD-P, the `engine` section) or `population` (Dean et al.'s participation dynamics, "
        "the `population` section)")
    data: DataConfig | None = Field(None, description="the dataset and its loader's options "
                                    "(population dynamics: only for groups of kind `dataset`)")
    market: MarketConfig = Field(description="preferences and the number of learners")
    learner: LearnerConfig = Field(default_factory=LearnerConfig,
                                   description="the learner family")
    init: InitConfig = Field(default_factory=InitConfig, description="initial parameters")
    engine: EngineConfig | None = Field(None, description="the static engine spec (dynamics "
                                        "`msgd`)")
    population: PopulationConfig | None = Field(None, description="the population dynamics "
                                                "(dynamics `population`)")
    equilibrium: EquilibriumConfig | None = Field(None, description="share-maximising "
                                                  "providers (dynamics `equilibrium`)")
    probing: ProbingConfig | None = Field(None, description="peer probing (MSGD-P; in "
                                          "population dynamics, probing of peers' "
                                          "predictions); none: no probing")
    knobs: KnobsConfig = Field(default_factory=KnobsConfig, description="per-run values; "
                               "lists form a grid")
    static_grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="`engine.*`, `probing.*` or `population.*` fields "
        "to sweep, one engine shape (one compilation) per value")
    baseline: bool = Field(True, description="fit and record the pooled baseline (dynamics "
                           "`msgd`; population dynamics report each group's minimal risk)")
    reported: dict[str, Any] = Field(default_factory=dict, description="the paper's numbers, "
                                     "for summaries and reports")

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

        self._check_dynamics()
        for knob in KNOBS:  # the knob table says what each knob needs
            if self.dynamics not in knob.dynamics and knob.kind != "per_learner" and any(
                    v != knob.default for v in values(knob.name)):
                raise ValueError(f"knobs.{knob.name} is read by dynamics "
                                 f"{' or '.join(knob.dynamics)}, not {self.dynamics!r}; remove "
                                 f"it")
            if self.dynamics not in knob.dynamics and knob.kind == "per_learner" and \
                    self.knobs.prior is not None:
                raise ValueError(f"knobs.{knob.name} is read by dynamics "
                                 f"{' or '.join(knob.dynamics)}, not {self.dynamics!r}")
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
        problems = size_problems(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def _check_equilibrium(self) -> None:
        if self.equilibrium is None:
            raise ValueError("equilibrium is required (dynamics 'equilibrium')")
        for name in ("engine", "population"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} is not a section of dynamics 'equilibrium': remove it")
        dataset = self.equilibrium.setting == "dataset"
        if dataset and self.data is None:
            raise ValueError("equilibrium.setting = 'dataset' needs a data section")
        if not dataset and self.data is not None:
            raise ValueError(f"equilibrium.setting = {self.equilibrium.setting} draws its own "
                             f"users: remove the data section")
        for name, default in {"learner": LearnerConfig(), "init": InitConfig()}.items():
            if getattr(self, name) != default:
                raise ValueError(f"{name} is a section of dynamics 'msgd': remove it")
        if self.probing is not None:
            for name in ("n_probe", "probe_batch", "refresh_every", "start"):
                if getattr(self.probing, name) != ProbingConfig.model_fields[name].default:
                    raise ValueError(f"probing.{name} does not apply to dynamics "
                                     f"'equilibrium' (probes use every user): remove it")

    def _check_dynamics(self) -> None:
        """Each dynamics has its sections: msgd needs `data` and `engine`; population needs
        `population` (and `data` for groups of kind `dataset`), and no MSGD-only section."""
        if self.dynamics == "msgd":
            for name in ("data", "engine"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name} is required (dynamics 'msgd')")
            if self.equilibrium is not None:
                raise ValueError("equilibrium is a section of dynamics 'equilibrium'; set "
                                 "dynamics: equilibrium, or remove it")
            if "market.n_learners" in self.static_grid:
                raise ValueError("static_grid['market.n_learners'] applies to dynamics "
                                 "'equilibrium' only")
            if self.population is not None:
                raise ValueError("population is a section of dynamics 'population'; set "
                                 "dynamics: population, or remove it")
            if self.probing is not None and self.probing.start != "start":
                raise ValueError("probing.start applies to dynamics 'population' only")
            if self.probing is not None:
                get_source(self.probing.source)  # MSGD-P's sources (the error lists them)
            loss = self.engine.choice_loss
            if loss is not None and not is_classifier(self.learner.family):
                raise ValueError(f"engine.choice_loss {loss!r} reads class labels: learner "
                                 f"family {self.learner.family!r} is not a classifier; remove "
                                 f"engine.choice_loss (users then choose by the training loss)")
            return
        if self.dynamics == "equilibrium":
            self._check_equilibrium()
            return
        if self.equilibrium is not None:
            raise ValueError("equilibrium is a section of dynamics 'equilibrium'")
        if "market.n_learners" in self.static_grid:
            raise ValueError("static_grid['market.n_learners'] applies to dynamics "
                             "'equilibrium' only")
        if self.population is None:
            raise ValueError("population is required (dynamics 'population')")
        if self.engine is not None:
            raise ValueError("engine is a section of dynamics 'msgd'; population dynamics use "
                             "the population section: remove engine")
        groups = self.population.groups
        if groups.kind == "dataset" and self.data is None:
            raise ValueError("population.groups.kind = 'dataset' needs a data section")
        if groups.kind != "dataset" and self.data is not None:
            raise ValueError(f"population.groups.kind = {groups.kind!r} reads no data: remove "
                             f"the data section")
        unused = {"learner": LearnerConfig(), "init": InitConfig()}
        for name, default in unused.items():
            if getattr(self, name) != default:
                raise ValueError(f"{name} is a section of dynamics 'msgd' (population dynamics "
                                 f"fit least squares on each learner's groups): remove it")
        if self.probing is not None:
            from userchoice.population import get_population_source

            get_population_source(self.probing.source)  # the mean field's sources
            for name in ("n_probe", "probe_batch"):  # (a dumped config holds the defaults)
                if getattr(self.probing, name) != ProbingConfig.model_fields[name].default:
                    raise ValueError(f"probing.{name} is an MSGD-P field: population dynamics "
                                     f"probe every group in the mean field; remove it")


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
                  EngineConfig, ProbingConfig, KnobsConfig, PopulationConfig, GroupsConfig,
                  NamedAllocation, EquilibriumConfig):
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
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"] and item["type"] == "value_error":
            lines.append(f"  {message}")  # a whole-config check: its message names the fields
            continue
        shown = "" if isinstance(value, dict) else f" (got {_SHORT.repr(value)})"
        if item["type"] == "extra_forbidden":  # a mistyped key (in the file or a --set)
            shown += _did_you_mean(item["loc"])
        lines.append(f"  {where}: {message}{shown}")
    return "\n".join(lines)


def _did_you_mean(loc: tuple) -> str:
    """For an unknown key: the closest field of its section and the fields it has."""
    import difflib
    import typing

    from pydantic import BaseModel

    model: Any = ExperimentConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        kinds = () if field is None else typing.get_args(field.annotation) or (field.annotation,)
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)),
                     None)
        if model is None:
            return ""
    fields = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    prefix = "".join(f"{part}." for part in loc[:-1])
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"{hint} ({prefix.rstrip('.') or 'the top level'} has: {', '.join(fields)})"


# Values in error messages: a long list or string is shortened, never printed whole.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 3, 8, 8, 8
_SHORT.maxstring = _SHORT.maxother = 120


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
    except YAMLRefused as error:
        mark = error.problem_mark
        column = "" if mark is None else f" (column {mark.column + 1} of the value, line " \
                                         f"{mark.line + 1})"
        raise ConfigError(f"override {text!r}: {error.problem}{column}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error})") from None
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
