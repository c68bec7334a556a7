"""From a config to runnable work: build the market once, then one group per static shape.

A run is identified by a content hash of everything its numbers depend on (data, market,
learner, init, engine, probing, its knob values, the package version and the sha256 of every
input file the loader read), so re-running a config finds finished runs by id: that is what
makes sweeps resumable, and what keeps results of other data out of a results directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from userchoice.data.dataset import Dataset
from userchoice.data.registry import DatasetOptionError, get_dataset
from userchoice.engine import EngineSpec, Knobs, make_knobs
from userchoice.engine.spec import check_population
from userchoice.experiments.config import ConfigError, ExperimentConfig
from userchoice.families import Family, Params, make_family
from userchoice.market import Market, make_market
from userchoice.probing import ProbingSpec
from userchoice.version import __version__

# The setup and run phases a sweep reports (``phase(label)``), in the order they happen; a
# phase that does not apply (no ERM init, no baseline, nothing left to compute) is skipped.
PHASES = ("loading data", "preferences", "ERM init", "baseline", "compiling", "simulating")
Phase = Callable[[str], None]


def _no_phase(label: str) -> None:
    del label


@dataclass
class Group:
    """Runs that share one compiled engine (same static shape)."""

    index: int
    static: dict[str, Any]  # this group's static_grid values
    spec: EngineSpec
    knobs: Knobs
    run_ids: list[str]
    rows: list[dict[str, Any]]  # one record per run: run_id, group, knob values, static values


@dataclass
class Plan:
    config: ExperimentConfig
    market: Any  # a Market (msgd) or a population.GroupSet (population dynamics)
    family: Family | None
    init_params: Params | None
    groups: list[Group]
    baseline: dict[str, float] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # see input_files

    @property
    def run_ids(self) -> set[str]:
        return {rid for g in self.groups for rid in g.run_ids}

    @property
    def n_runs(self) -> int:
        return sum(len(g.run_ids) for g in self.groups)


def load_dataset(config: ExperimentConfig, data_dir: str | None = None):
    """What the config's dataset loader returns: a ``Dataset`` (registry kind ``"dataset"``) or
    a ``Market`` with its own preferences (kind ``"market"``, e.g. the synthetic ones).

    ``data.options`` are checked against the loader's signature first (a ``ConfigError`` names
    ``data.options.<key>``, the dataset and the allowed options), and ``data.path`` is only
    accepted by file-backed datasets."""
    data = config.data
    entry = get_dataset(data.dataset)
    try:
        entry.check_options(data.options)
    except DatasetOptionError as error:
        raise ConfigError(f"data.options for dataset {data.dataset!r}: {error}") from None
    if data.path is not None and not entry.file_backed:
        raise ConfigError(f"data.path: dataset {data.dataset!r} reads no files (its loader "
                          f"{entry.loader_name} takes no path); remove data.path")
    market_args = {name: getattr(config.market, name) for name in entry.market_args}
    return entry.load(data.options, path=data.path, data_dir=data_dir, market_args=market_args)


def build_market(config: ExperimentConfig, data_dir: str | None = None,
                 phase: Phase | None = None) -> Market:
    """The config's market: the loader's own (kind ``"market"``, unless ``market.preferences``
    rebuilds the preferences on its dataset) or its dataset with ``market.preferences``.
    ``phase`` is told ``"loading data"``, then ``"preferences"`` when they are built here."""
    name = config.data.dataset
    entry = get_dataset(name)
    phase = phase or _no_phase
    phase("loading data")
    loaded = load_dataset(config, data_dir)
    if config.market.preferences is not None:
        phase("preferences")
    if entry.kind == "market":
        if not isinstance(loaded, Market):
            raise ValueError(f"dataset {name!r} is declared kind 'market' but its loader "
                             f"{entry.loader_name} returned {type(loaded).__name__}, not a Market")
        if config.market.preferences is not None:
            return make_market(loaded.dataset, config.market.preferences,
                               config.market.n_learners, attribute=config.market.attribute,
                               name=config.name, **config.market.options)
        if loaded.n_learners != config.market.n_learners:
            raise ValueError(f"market.n_learners={config.market.n_learners} but the "
                             f"{name} market has {loaded.n_learners} learners")
        return loaded
    if not isinstance(loaded, Dataset):
        hint = (" (a loader that returns a Market must declare kind 'market': register it with "
                "kind='market' or set its attribute kind = 'market')"
                if isinstance(loaded, Market) else "")
        raise ValueError(f"dataset {name!r} is declared kind 'dataset' but its loader "
                         f"{entry.loader_name} returned {type(loaded).__name__}, not a "
                         f"Dataset{hint}")
    if config.market.preferences is None:
        raise ValueError(f"market.preferences must be set for dataset {name!r}")
    return make_market(loaded, config.market.preferences, config.market.n_learners,
                       attribute=config.market.attribute, name=config.name,
                       **config.market.options)


def make_learner_family(config: ExperimentConfig, market: Market) -> Family:
    try:
        return make_family(config.learner.family, dataset=market.dataset,
                           **config.learner.options)
    except ValueError as error:
        raise ConfigError(f"learner.options: {error}") from None


def _static_variants(config: ExperimentConfig) -> list[dict[str, Any]]:
    keys = list(config.static_grid)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(config.static_grid[k] for k in keys))] or [{}]


def engine_spec(config: ExperimentConfig, family: Family, static: dict[str, Any]) -> EngineSpec:
    engine = config.engine.model_dump()
    probing = None if config.probing is None else config.probing.model_dump()
    for key, value in static.items():
        section, name = key.split(".", 1)
        if section == "engine":
            engine[name] = value
        else:
            if probing is None:
                raise ValueError(f"static_grid {key!r} needs a probing section")
            probing[name] = value
    probing_spec = None
    if probing is not None:
        probing_spec = ProbingSpec(
            probers=tuple(probing["probers"]), source=probing["source"], leader=probing["leader"],
            subset=None if probing["subset"] is None else tuple(probing["subset"]),
            n_probe=probing["n_probe"], probe_batch=probing["probe_batch"],
            refresh_every=probing["refresh_every"])
    # init kind `uniform` is drawn inside the engine (one draw per seed, from its init
    # stream); `random` and `erm` start from the family's init or from init_params
    init = "uniform" if config.init.kind == "uniform" else "family"
    return EngineSpec(family=family, n_learners=config.market.n_learners, probing=probing_spec,
                      init=init, **engine)


def code_version() -> str:
    """The version in run ids and sweep hashes: results of another version are not reused."""
    return __version__


def canonical_json(value: Any) -> str:
    """One text per value, whatever the key order or key types: a JSON round trip first (keys
    become strings, as after a manifest round trip, so mixed int/str keys can be sorted), then
    JSON with sorted keys."""
    return json.dumps(json.loads(json.dumps(value, default=str)), sort_keys=True)


def input_files(market: Market | Dataset) -> list[dict[str, Any]]:
    """The input files the dataset's loader read, in order, each ``{path, sha256, bytes}``
    (from ``dataset.provenance["files"]``; files listed as not read carry no sha256 and are
    left out). Empty for synthetic datasets."""
    dataset = market.dataset if isinstance(market, Market) else market
    records = (dataset.provenance or {}).get("files") or []
    return [{"path": str(r["path"]), "sha256": str(r["sha256"]), "bytes": r.get("bytes")}
            for r in records if isinstance(r, dict) and r.get("sha256")]


def run_id(config: ExperimentConfig, static: dict[str, Any], knobs: dict[str, Any],
           inputs: list[dict[str, Any]] | None = None) -> str:
    """Content hash of everything a run's numbers depend on; ``inputs`` (see
    :func:`input_files`) adds the content of the input files (not added when there are none,
    so the ids of synthetic datasets do not depend on it)."""
    if config.dynamics != "msgd":
        return _population_run_id(config, static, knobs, inputs)
    identity = {
        "data": config.data.model_dump(mode="json"),
        "market": config.market.model_dump(mode="json"),
        "learner": config.learner.model_dump(mode="json"),
        "init": config.init.model_dump(mode="json"),
        # Fields added later leave the ids of earlier configs unchanged at their default.
        "engine": config.engine.model_dump(mode="json", exclude={
            name for name, default in (("metrics", None), ("arrival", "uniform"),
                                       ("choice_loss", None), ("loss_temperature", 1.0))
            if getattr(config.engine, name) == default} or None),
        "probing": None if config.probing is None else config.probing.model_dump(
            mode="json", exclude={"start"} if config.probing.start == "start" else None),
        "static": static, "knobs": knobs, "prior": config.knobs.prior, "version": code_version(),
    }
    if inputs:  # the data's content, not only its path
        identity["inputs"] = [record["sha256"] for record in inputs]
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def _population_run_id(config: ExperimentConfig, static: dict[str, Any],
                       knobs: dict[str, Any], inputs: list[dict[str, Any]] | None) -> str:
    identity = {
        "dynamics": config.dynamics,
        "data": None if config.data is None else config.data.model_dump(mode="json"),
        "market": config.market.model_dump(mode="json"),
        "population": None if config.population is None
        else config.population.model_dump(mode="json"),
        "equilibrium": None if config.equilibrium is None  # a later field, left out at None
        else config.equilibrium.model_dump(mode="json", exclude={"features"} if
                                           config.equilibrium.features is None else None),
        "probing": None if config.probing is None else config.probing.model_dump(mode="json"),
        "static": static, "knobs": knobs, "version": code_version(),
    }
    if inputs:
        identity["inputs"] = [record["sha256"] for record in inputs]
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def make_groups(config: ExperimentConfig, family: Family,
                inputs: list[dict[str, Any]] | None = None) -> list[Group]:
    """The streaming engine's run groups: one ``EngineSpec`` per ``static_grid`` value."""
    return knob_groups(config, lambda static: engine_spec(config, family, static), inputs)


def knob_groups(config: ExperimentConfig, spec_of: Callable[[dict[str, Any]], Any],
                inputs: list[dict[str, Any]] | None = None,
                cell: Callable[[Any], Any] | None = None) -> list[Group]:
    """One run group per ``static_grid`` combination, its static spec ``spec_of(static)``
    (anything with the runner's reading of a spec: ``dynamics``, ``n_learners``, ``steps``,
    ``probing``, ``eval_steps``), its runs the grid of the knobs its dynamics reads
    (``knobs.knobs_of``), each with its run id and its row of the runs table (``cell``: how a
    static value is written there; default: as it is)."""
    combos = None
    groups = []
    for index, static in enumerate(_static_variants(config)):
        spec = spec_of(static)
        if combos is None:
            axes = config.knobs.axes(spec.dynamics)
            combos = list(itertools.product(*axes.values()))
        values = {name: [c[i] for c in combos] for i, name in enumerate(axes)}
        prior = config.knobs.prior
        knobs = make_knobs(spec.n_learners, **values,
                           **({} if prior is None else {"prior": prior}))
        rows, ids = [], []
        for r in range(len(combos)):
            knob_values = {name: values[name][r] for name in axes}
            rid = run_id(config, static, knob_values, inputs)
            ids.append(rid)
            rows.append({"run_id": rid, "group": index, **knob_values,
                         **{k.replace(".", "_"): (cell or (lambda v: v))(v)
                            for k, v in static.items()}})
        groups.append(Group(index, static, spec, knobs, ids, rows))
    return groups


def plan_without_fits(config: ExperimentConfig, data_dir: str | None = None,
                      phase: Phase | None = None) -> Plan:
    """A plan up to the run ids (market, family, input files, groups), without the initial
    fits and the pooled baseline (``fit_plan``): a sweep with nothing left to compute does not
    fit (nor compile) them again. ``phase``: see :data:`PHASES`."""
    started = time.perf_counter()
    if config.dynamics == "equilibrium":
        from userchoice.experiments import equilibrium

        users, inputs = equilibrium.build_users(config, data_dir, phase)
        groups = equilibrium.make_equilibrium_groups(config, inputs)
        return Plan(config, users, None, None, groups, None,
                    {"data_seconds": time.perf_counter() - started}, inputs)
    if config.dynamics == "population":
        from userchoice.experiments import population

        sub_populations, inputs = population.build_groups(config, data_dir, phase)
        groups = population.make_population_groups(config, sub_populations, inputs)
        return Plan(config, sub_populations, None, None, groups, None,
                    {"data_seconds": time.perf_counter() - started}, inputs)
    market = build_market(config, data_dir, phase)
    family = make_learner_family(config, market)
    inputs = input_files(market)
    groups = make_groups(config, family, inputs)
    for group in groups:  # a one-pass arrival needs T·B users: say so before any run fails
        try:
            check_population(group.spec, market.dataset.n_train)
        except ValueError as error:
            raise ConfigError(f"engine.arrival: {error}") from None
    return Plan(config, market, family, None, groups, None,
                {"data_seconds": time.perf_counter() - started}, inputs)


def fit_plan(plan: Plan, phase: Phase | None = None) -> Plan:
    """The initial parameters (ERM when the config asks) and the pooled baseline of a plan
    (``phase`` is told ``"ERM init"`` and ``"baseline"`` as each starts)."""
    from userchoice.fitting import erm_init, pooled_baseline

    started = time.perf_counter()
    config = plan.config
    if config.dynamics != "msgd":  # nothing to fit: each round retrains exactly
        plan.timings["init_seconds"] = 0.0
        return plan
    phase = phase or _no_phase
    if config.init.kind == "erm":
        phase("ERM init")
        plan.init_params = erm_init(plan.market, plan.family, **config.init.options)
    if config.baseline:
        phase("baseline")
        plan.baseline = pooled_baseline(plan.market, plan.family)[1]
    plan.timings["init_seconds"] = time.perf_counter() - started
    return plan


def make_plan(config: ExperimentConfig, data_dir: str | None = None,
              phase: Phase | None = None) -> Plan:
    """Build the market, initial parameters, pooled baseline and run groups of a config."""
    return fit_plan(plan_without_fits(config, data_dir, phase), phase)


# ---------------------------------------------------------------------------------------------
# Estimates for a dry run (``runner.dry_run``)
# ---------------------------------------------------------------------------------------------

# The time model: a chunk of c runs takes T·(STEP + c·ELEMENT·(a + b·E/T)) seconds on one
# CPU core, a = elements one step touches per run (users × learners × parameters: the arriving
# batch, the update-all copies' batch, the probe batches), b = those of one evaluation point
# (test users, each copy and the ensemble, probe sets), E = evaluation points; STEP is what a
# step costs whatever its size (random draws, choices, the loop). Fitted to measurements on
# 2 CPU cores (one chunk per core; ``benchmarks/bench_estimate.py --fit`` prints the estimate
# beside the measured time for several shapes): within about a factor 2 there.
STEP_SECONDS = 1.5e-4          # per step of a chunk
ELEMENT_SECONDS = 2.4e-10      # per element touched, per run
COMPILE_SECONDS = 6.0          # per distinct program (measured 3–15 s on 2 CPU cores: the
#                                census configs ≈ 7 s, an MLP longer, a loaded machine double)


def cost_terms(spec: EngineSpec, dataset: Dataset) -> tuple[int, int]:
    """Elements one step and one evaluation point touch per run (the time model's a, b)."""
    import numpy as np

    outputs = int(np.prod(np.shape(dataset.y_train)[1:], dtype=int))
    hidden = getattr(spec.family, "hidden", None)
    parameters = (dataset.n_features + 1) * (hidden or 1) + (hidden or 1) * outputs
    copies = 2 if spec.update_all else 1
    probe_step = probe_eval = 0
    if spec.probing is not None:
        probe_step = spec.n_probers * spec.probing.probe_batch
        probe_eval = spec.n_probers * spec.probing.n_probe
    n_test = int(np.shape(dataset.x_test)[0])
    a = spec.n_learners * parameters * (copies * spec.batch_size + probe_step)
    b = spec.n_learners * parameters * ((copies + 1) * n_test + probe_eval)
    return int(a), int(b)


def estimate_chunk_seconds(spec: EngineSpec, dataset: Dataset, runs: int) -> float:
    """Estimated seconds of one chunk of ``runs`` runs on one CPU core (the time model)."""
    a, b = cost_terms(spec, dataset)
    per_step = a + b * len(spec.eval_steps) / spec.steps
    return spec.steps * (STEP_SECONDS + runs * ELEMENT_SECONDS * per_step)

