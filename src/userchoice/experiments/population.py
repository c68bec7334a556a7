"""Population dynamics as a dynamics of the experiment layer: config → groups → run groups →
chunks → tidy tables, through the same planner, runner, store, Ray executor and analysis as
streaming MSGD.

What differs from the streaming engine is kept here: the market is a ``GroupSet`` (the
sub-populations' sufficient statistics), a run group's static spec is a
:class:`PopulationRun` (the ``PopulationSpec`` plus the initial allocation, both fixed per
compilation), and a chunk's output has, besides the learner and market tables, a ``groups``
table (one row per sub-population), an ``allocations`` table (learner × sub-population) and a
``phases`` table (one row per equilibrium reached: the state at the end of each phase, before
the next learner enters).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from userchoice import metrics as metric_table
from userchoice.experiments.config import ConfigError, ExperimentConfig
from userchoice.knobs import Knobs
from userchoice.population import (
    GroupSet,
    PopulationProbing,
    PopulationSpec,
    compile_population,
    gaussian_groups,
    groups_from_dataset,
    initial_allocation,
    quadratic_groups,
    simulate_population,
)

# The sub-population column of the groups and allocations tables ("group" is the run group).
GROUP_COLUMN = "user_group"


@dataclass(frozen=True)
class PopulationRun:
    """What one compiled population program is fixed by: the spec and the initial allocation
    (n × G, as nested tuples, so it is hashable like a spec). Reads like an ``EngineSpec``
    where the runner needs it (``steps``: the round budget of all phases; ``n_learners``: the
    learner axis, up to the entry cap)."""

    spec: PopulationSpec
    allocation: tuple[tuple[float, ...], ...]

    dynamics = "population"

    @property
    def steps(self) -> int:
        return int(self.spec.total_rounds)

    @property
    def n_learners(self) -> int:
        return int(self.spec.max_n)

    @property
    def probing(self) -> PopulationProbing | None:
        return self.spec.probing

    @property
    def eval_steps(self) -> np.ndarray:
        return np.asarray(self.spec.eval_steps)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.spec.metrics or ())

    @property
    def allocation_array(self) -> np.ndarray:
        return np.asarray(self.allocation, dtype=float)


def build_groups(config: ExperimentConfig, data_dir: str | None = None,
                 phase: Any = None) -> tuple[GroupSet, list[dict[str, Any]]]:
    """The config's sub-populations (``population.groups``) and the input files read
    (``plan.input_files``: none for synthetic groups)."""
    from userchoice.experiments.plan import input_files, load_dataset

    groups = config.population.groups
    if phase is not None:
        phase("loading data")
    try:
        if groups.kind == "quadratic":
            beta = None if groups.beta == "uniform" else np.asarray(groups.beta, float)
            return quadratic_groups(np.asarray(groups.phi, float), sigma2=groups.sigma2,
                                    beta=beta), []
        if groups.kind == "gaussian":
            beta = None if groups.beta == "uniform" else np.asarray(groups.beta, float)
            return gaussian_groups(groups.n_groups, groups.dim, seed=groups.seed,
                                   sigma2=groups.sigma2, beta=beta), []
        dataset = load_dataset(config, data_dir)
        if not hasattr(dataset, "attributes_train"):  # a market-kind loader
            dataset = dataset.dataset
        if groups.intercept:
            dataset = dataclasses.replace(
                dataset, x_train=_with_ones(dataset.x_train), x_test=_with_ones(dataset.x_test),
                feature_names=(*dataset.feature_names, "intercept")
                if dataset.feature_names else ())
        beta: Any = groups.beta if isinstance(groups.beta, str) else np.asarray(groups.beta)
        by: Any = groups.by
        if by == FAVOURITE:  # groups = the users' favourite learner under a preference model
            by = _favourites(config, dataset, groups)
        return groups_from_dataset(dataset, by, min_size=groups.min_size, beta=beta,
                                   split=groups.split, loss=groups.loss), input_files(dataset)
    except (ValueError, KeyError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"population.groups: {error}") from None


FAVOURITE = "favourite"  # groups.by: the preference construction's favourites, not a column


def _favourites(config: ExperimentConfig, dataset: Any, groups: Any) -> np.ndarray:
    """Each user's favourite under ``market.preferences`` (e.g. k-means ``clusters``) with
    ``groups.n_groups`` (default: ``market.n_learners``) options: the groups of a
    preference-built population."""
    from userchoice.market import make_market

    market_section = config.market
    if market_section.preferences is None:
        raise ConfigError("population.groups.by = 'favourite' needs market.preferences (the "
                          "construction whose favourites form the groups, e.g. clusters)")
    k = groups.n_groups or market_section.n_learners
    market = make_market(dataset, market_section.preferences, k,
                         attribute=market_section.attribute, **market_section.options)
    parts = {"train": [market.preferences_train], "test": [market.preferences_test],
             "all": [market.preferences_train, market.preferences_test]}[groups.split]
    return np.concatenate([np.asarray(p.favourite) for p in parts])


def _with_ones(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, float)
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)


def population_run(config: ExperimentConfig, groups: GroupSet,
                   static: dict[str, Any]) -> PopulationRun:
    """The static spec and initial allocation of one run group (``static``: its
    ``static_grid`` values)."""
    section = config.population.model_dump(exclude={"groups"})
    probing = None if config.probing is None else config.probing.model_dump()
    for key, value in static.items():
        part, name = key.split(".", 1)
        if part == "population":
            section[name] = value
        elif probing is None:
            raise ConfigError(f"static_grid {key!r} needs a probing section")
        else:
            probing[name] = value
    probe = None
    if probing is not None:
        probe = PopulationProbing(
            probers=tuple(probing["probers"]), source=probing["source"],
            leader=probing["leader"],
            subset=None if probing["subset"] is None else tuple(probing["subset"]),
            refresh_every=probing["refresh_every"], start=probing["start"])
    n = config.market.n_learners
    try:
        spec = PopulationSpec(
            n_learners=n, steps=section["steps"], max_learners=section["max_learners"],
            entry=section["entry"] or "largest", update=section["update"],
            stop=section["stop"], patience=section["patience"], rtol=section["rtol"],
            atol=section["atol"], weighting=section["weighting"],
            eval_every=section["eval_every"], probing=probe, dtype=section["dtype"],
            metrics=None if section["metrics"] is None else tuple(section["metrics"]))
        allocation = section["allocation"]
        if isinstance(allocation, dict):  # a named matrix
            allocation = allocation["alpha"]
        alloc = initial_allocation(allocation, n, groups.n_groups,
                                   seed=section["allocation_seed"],
                                   scale=section["allocation_scale"])
    except ValueError as error:
        raise ConfigError(f"population: {error}") from None
    return PopulationRun(spec, tuple(tuple(float(v) for v in row) for row in alloc))


def make_population_groups(config: ExperimentConfig, groups: GroupSet,
                           inputs: list[dict[str, Any]] | None = None) -> list[Any]:
    """One run group per ``static_grid`` combination, with the knob grid of the knobs the
    population dynamics read (``knobs.knobs_of("population")``)."""
    from userchoice.experiments.plan import knob_groups

    return knob_groups(config, lambda static: population_run(config, groups, static), inputs,
                       cell=_cell)


def _cell(value: Any) -> Any:
    """A static value as a table cell (a named allocation its name, a matrix its text)."""
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return value if isinstance(value, str | int | float | bool) else str(value)


# --------------------------------------------------------------------------- running


def simulate_chunk(groups: GroupSet, run: PopulationRun, knobs: Knobs) -> dict[str, Any]:
    """One chunk of population runs in this thread; plain arrays out (the runner's format,
    plus the equilibria)."""
    started = time.perf_counter()
    result = simulate_population(groups, run.spec, knobs, run.allocation_array,
                                 chunk_size=knobs.n_runs)
    timings = dict(result.timings)
    timings.setdefault("seconds", time.perf_counter() - started)
    return {"metrics": result.metrics, "diverged_step": result.diverged_step,
            "eval_steps": result.eval_steps, "timings": timings,
            "equilibrium": result.equilibrium, "phase_end": result.phase_end,
            "converged": result.converged}


def compile_chunk(groups: GroupSet, run: PopulationRun, knobs: Knobs) -> float:
    return compile_population(groups, run.spec, knobs, run.allocation_array)


def chunk_size(run: PopulationRun, groups: GroupSet, n_runs: int) -> int:
    """Runs per compiled call: a run's state is tiny (learners × groups), so large chunks;
    balanced so the last chunk needs little padding."""
    limit = 4096
    chunks = -(-n_runs // limit)
    return max(1, -(-n_runs // chunks))


def chunk_frames(group: Any, job: Any, output: dict[str, Any] | None, error: str | None,
                 seconds: float) -> dict[str, pd.DataFrame]:
    """The tidy tables of one finished (or failed) chunk of population runs: ``runs``,
    ``learners`` (learners present in the market only), ``market``, ``groups``,
    ``allocations`` and ``phases``."""
    rows = [dict(group.rows[i]) for i in job.indices]
    runs = pd.DataFrame(rows)
    runs["chunk"] = job.key
    runs["seconds"] = seconds / max(1, len(rows))
    empty = {name: pd.DataFrame() for name in ("learners", "market", "groups", "allocations",
                                               "phases")}
    if output is None:
        runs["status"], runs["reason"], runs["diverged_step"] = "failed", error, -1
        return {"runs": runs, **empty}
    diverged = np.asarray(output["diverged_step"])
    converged = np.asarray(output["converged"], bool)
    phase_end = np.asarray(output["phase_end"])
    runs["diverged_step"] = diverged
    runs["status"] = np.where(diverged >= 0, "diverged", "done")
    reached = phase_end >= 0
    runs["phases"] = reached.sum(axis=1)
    runs["rounds"] = np.where(reached.any(axis=1), phase_end.max(axis=1), -1)
    runs["equilibria"] = (converged & reached).sum(axis=1)  # phases whose stop rule held
    settled = (runs["equilibria"] == runs["phases"]) & (runs["phases"] > 0)
    runs["reason"] = [f"parameters not finite from round {d}" if d >= 0 else
                      ("" if ok else "a phase ran out of rounds before its allocations settled")
                      for d, ok in zip(diverged, settled, strict=True)]
    ids = np.asarray([r["run_id"] for r in rows])
    steps = np.asarray(output["eval_steps"])
    tables = _metric_tables(output["metrics"], ids, steps)
    if len(tables["learners"]):
        probers = [] if group.spec.probing is None else list(group.spec.probing.probers)
        tables["learners"]["is_prober"] = tables["learners"]["learner"].isin(probers)
    tables["phases"] = _phase_table(output, ids)
    return {"runs": runs, **tables}


def _metric_tables(metrics: dict[str, np.ndarray], ids: np.ndarray, steps: np.ndarray
                   ) -> dict[str, pd.DataFrame]:
    """Long tables of metrics on the evaluation grid, one per metric kind."""
    n_runs, n_evals = len(ids), len(steps)
    by_kind: dict[str, dict[str, np.ndarray]] = {}
    for name, values in metrics.items():
        by_kind.setdefault(metric_table.get_metric(name).kind, {})[name] = np.asarray(values)
    market = pd.DataFrame({"run_id": np.repeat(ids, n_evals), "step": np.tile(steps, n_runs)})
    for name, values in by_kind.get("market", {}).items():
        market[name] = values.reshape(-1)
    out = {"market": market}
    for kind, table, column in (("learner", "learners", "learner"),
                                ("group", "groups", GROUP_COLUMN)):
        found = by_kind.get(kind, {})
        if not found:
            out[table] = pd.DataFrame()
            continue
        width = next(iter(found.values())).shape[-1]
        frame = pd.DataFrame({"run_id": np.repeat(ids, n_evals * width),
                              "step": np.tile(np.repeat(steps, width), n_runs),
                              column: np.tile(np.arange(width), n_runs * n_evals)})
        for name, values in found.items():
            frame[name] = values.reshape(-1)
        if kind == "learner":  # learners not yet in the market have no row
            present = ~np.isnan(frame[list(found)].to_numpy(float)).all(axis=1)
            frame = frame[present].reset_index(drop=True)
        out[table] = frame
    found = by_kind.get("allocation", {})
    if found:
        shape = next(iter(found.values())).shape  # [R, E, n, G]
        n, g = shape[2], shape[3]
        frame = pd.DataFrame({
            "run_id": np.repeat(ids, n_evals * n * g),
            "step": np.tile(np.repeat(steps, n * g), n_runs),
            "learner": np.tile(np.repeat(np.arange(n), g), n_runs * n_evals),
            GROUP_COLUMN: np.tile(np.arange(g), n_runs * n_evals * n)})
        for name, values in found.items():
            frame[name] = values.reshape(-1)
        values = frame[list(found)].to_numpy(float)
        frame = frame[~np.isnan(values).all(axis=1)].reset_index(drop=True)
        out["allocations"] = frame
    else:
        out["allocations"] = pd.DataFrame()
    return out


def _phase_table(output: dict[str, Any], ids: np.ndarray) -> pd.DataFrame:
    """One row per (run, phase reached): the round it ended, whether its stop rule held, the
    learners in the market, and the market metrics at that equilibrium."""
    phase_end = np.asarray(output["phase_end"])
    converged = np.asarray(output["converged"], bool)
    n_runs, n_phases = phase_end.shape
    frame = pd.DataFrame({"run_id": np.repeat(ids, n_phases),
                          "phase": np.tile(np.arange(n_phases), n_runs),
                          "step": phase_end.reshape(-1),
                          "converged": converged.reshape(-1)})
    for name, values in (output.get("equilibrium") or {}).items():
        values = np.asarray(values)
        if metric_table.get_metric(name).kind == "market":
            frame[name] = values.reshape(-1)
    return frame[frame["step"] >= 0].reset_index(drop=True)


def describe_groups(groups: GroupSet) -> dict[str, Any]:
    """What the manifest records of the sub-populations."""
    return {"kind": groups.kind, "n_groups": int(groups.n_groups), "dim": int(groups.dim),
            "names": list(groups.names), "beta": np.asarray(groups.beta).tolist(),
            "counts": np.asarray(groups.counts).tolist(),
            "min_risk": np.asarray(groups.min_risk).tolist(),
            "provenance": groups.provenance,
            "loss": str(getattr(groups, "loss", "squared")),
            "digest": hashlib.sha256(np.ascontiguousarray(np.concatenate(
                [np.ravel(np.asarray(a, float)) for a in (
                    groups.A, groups.b, groups.c, groups.beta,
                    *(() if getattr(groups, "x", None) is None else (groups.x, groups.y)))]
            )).tobytes()).hexdigest()[:16]}


