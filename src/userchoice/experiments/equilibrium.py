"""Competition for market share (Jagadeesan et al.) as a dynamics of the experiment layer:
config → users → run groups → chunks → tidy tables, through the planner, runner, store, Ray
executor and analysis shared with the other dynamics.

A run group's static spec is an :class:`EquilibriumRun`: the ``EquilibriumSpec`` (providers,
choice loss, best-response schedule) and what draws its users (the synthetic setting and its
parameter, or the config's dataset). A chunk's tables: ``learners`` holds each provider's
share after every round (and its loss on its users at the end), ``market`` the social loss
after every round and, at the last round, the Bayes risk of the best single model, the rounds
run and whether the stop rule held.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from userchoice.equilibrium import (
    EquilibriumData,
    EquilibriumProbing,
    EquilibriumSpec,
    compile_equilibrium,
    from_dataset,
    setting1,
    setting2,
    setting3,
    simulate_equilibrium,
)
from userchoice.experiments.config import ConfigError, ExperimentConfig
from userchoice.knobs import Knobs


@dataclass(frozen=True)
class EquilibriumRun:
    """What one compiled program is fixed by: the spec, and the users' draw (``setting``,
    its parameter, size and seed; ``"dataset"``: the plan's users). Reads like an
    ``EngineSpec`` where the runner needs it (``steps``: the round budget)."""

    spec: EquilibriumSpec
    setting: Any
    parameter: float | None
    n_points: int
    data_seed: int
    features: int | None = None  # dataset: keep the first k features (and the bias)

    dynamics = "equilibrium"

    @property
    def steps(self) -> int:
        return int(self.spec.max_rounds)

    @property
    def n_learners(self) -> int:
        return int(self.spec.n_providers)

    @property
    def probing(self) -> EquilibriumProbing | None:
        return self.spec.probing

    @property
    def eval_steps(self) -> np.ndarray:
        return np.arange(self.spec.max_rounds + 1)

    def users(self, dataset_users: EquilibriumData | None) -> EquilibriumData:
        if self.setting == 1:
            return setting1(self.parameter, n_points=self.n_points, seed=self.data_seed)
        if self.setting == 2:
            return setting2(self.parameter, n_points=self.n_points, seed=self.data_seed)
        if self.setting == 3:
            # Every D in one shape (zero columns change no model): one compilation per m.
            return setting3(int(self.parameter), n_points=self.n_points, seed=self.data_seed,
                            pad_to=5)
        if dataset_users is None:
            raise ValueError("equilibrium.setting = 'dataset' needs the plan's users")
        return representation(dataset_users, self.features)


def representation(users: EquilibriumData, features: int | None) -> EquilibriumData:
    """The users seen through their first ``features`` features (the bias, last, kept). The
    dropped features are set to zero rather than removed: a zero column changes no model, so
    every rung of a ladder has one shape and one compilation."""
    if features is None:
        return users
    d = users.x.shape[-1] - 1  # the last column is the bias
    if features > d:
        raise ConfigError(f"equilibrium.features = {features}, but the dataset's users have "
                          f"{d} features")
    x = np.array(users.x, float)
    x[..., features:d] = 0.0
    provenance = {**users.provenance, "features": features}
    return dataclasses.replace(users, x=x, provenance=provenance)


class DatasetUsers:
    """The plan's market of an equilibrium config: the dataset's users (or none for the
    synthetic settings), with the provenance the manifest records."""

    def __init__(self, users: EquilibriumData | None, provenance: dict[str, Any]) -> None:
        self.users = users
        self.provenance = provenance


def build_users(config: ExperimentConfig, data_dir: str | None = None,
                phase: Any = None) -> tuple[DatasetUsers, list[dict[str, Any]]]:
    """The users of a ``setting: dataset`` config (bring your own features), or a
    placeholder for the synthetic settings; and the input files read."""
    from userchoice.experiments.plan import input_files, load_dataset

    section = config.equilibrium
    if section.setting != "dataset":
        return DatasetUsers(None, {"setting": section.setting}), []
    if phase is not None:
        phase("loading data")
    dataset = load_dataset(config, data_dir)
    if not hasattr(dataset, "x_train"):  # a market-kind loader
        dataset = dataset.dataset
    try:
        users = from_dataset(dataset, split=section.split)
    except ValueError as error:
        raise ConfigError(f"equilibrium: {error}") from None
    return DatasetUsers(users, dict(dataset.provenance or {})), input_files(dataset)


def equilibrium_run(config: ExperimentConfig, static: dict[str, Any]) -> EquilibriumRun:
    section = config.equilibrium.model_dump()
    n = config.market.n_learners
    probing = None if config.probing is None else config.probing.model_dump()
    for key, value in static.items():
        part, name = key.split(".", 1)
        if part == "equilibrium":
            section[name] = value
        elif part == "market":
            n = int(value)
        elif probing is None:
            raise ConfigError(f"static_grid {key!r} needs a probing section")
        else:
            probing[name] = value
    probe = None
    if probing is not None:
        probe = EquilibriumProbing(
            probers=tuple(probing["probers"]), source=probing["source"],
            leader=probing["leader"],
            subset=None if probing["subset"] is None else tuple(probing["subset"]))
    try:
        spec = EquilibriumSpec(
            n_providers=n, choice_loss=section["choice_loss"],
            loss_temperature=section["loss_temperature"], lr=section["lr"],
            steps=section["steps"], tol=section["tol"], max_rounds=section["max_rounds"],
            extra_starts=tuple(section["extra_starts"]), probing=probe, dtype=section["dtype"])
    except ValueError as error:
        raise ConfigError(f"equilibrium: {error}") from None
    setting = section["setting"]
    parameter = {1: section["alpha"], 2: section["sigma"], 3: section["D"]}.get(setting)
    return EquilibriumRun(spec, setting, parameter, section["n_points"], section["data_seed"],
                          section["features"])


def make_equilibrium_groups(config: ExperimentConfig, inputs: list[dict[str, Any]] | None
                            ) -> list[Any]:
    """One run group per ``static_grid`` combination (setting parameters, provider counts),
    with the grid of the knobs the equilibrium reads (``knobs.knobs_of("equilibrium")``)."""
    from userchoice.experiments.plan import knob_groups

    return knob_groups(config, lambda static: equilibrium_run(config, static), inputs)


def simulate_chunk(users: DatasetUsers, run: EquilibriumRun, knobs: Knobs) -> dict[str, Any]:
    result = simulate_equilibrium(run.users(users.users), run.spec, knobs,
                                  chunk_size=knobs.n_runs)
    return {"metrics": result.metrics, "converged": result.converged, "rounds": result.rounds,
            "share_history": result.share_history, "social_history": result.social_history,
            "timings": dict(result.timings)}


def compile_chunk(users: DatasetUsers, run: EquilibriumRun, knobs: Knobs) -> float:
    return compile_equilibrium(run.users(users.users), run.spec, knobs)


def chunk_size(run: EquilibriumRun, n_runs: int) -> int:
    """Runs per call: each holds the users' choice probabilities ([users, providers]), so a
    few dozen at a time; balanced so the last chunk needs little padding."""
    limit = 32
    chunks = -(-n_runs // limit)
    return max(1, -(-n_runs // chunks))


def chunk_frames(group: Any, job: Any, output: dict[str, Any] | None, error: str | None,
                 seconds: float) -> dict[str, pd.DataFrame]:
    rows = [dict(group.rows[i]) for i in job.indices]
    runs = pd.DataFrame(rows)
    runs["chunk"] = job.key
    runs["seconds"] = seconds / max(1, len(rows))
    empty = {"learners": pd.DataFrame(), "market": pd.DataFrame()}
    if output is None:
        runs["status"], runs["reason"], runs["diverged_step"] = "failed", error, -1
        return {"runs": runs, **empty}
    converged = np.asarray(output["converged"], bool)
    rounds = np.asarray(output["rounds"], int)
    runs["diverged_step"] = -1
    runs["status"] = "done"
    runs["equilibria"] = converged.astype(int)  # (the rounds run: a market metric)
    runs["reason"] = ["" if ok else f"no equilibrium within {group.spec.steps} rounds (shares "
                      f"still changing by more than tol)" for ok in converged]
    ids = [r["run_id"] for r in rows]
    shares = np.asarray(output["share_history"])  # [R, rounds + 1, m]
    social = np.asarray(output["social_history"])  # [R, rounds + 1]
    probers = [] if group.spec.probing is None else list(group.spec.probing.probers)
    learner_parts, market_parts = [], []
    for r, rid in enumerate(ids):
        steps = np.arange(rounds[r] + 1)
        m = shares.shape[2]
        frame = pd.DataFrame({"run_id": rid, "step": np.repeat(steps, m),
                              "learner": np.tile(np.arange(m), len(steps)),
                              "equilibrium_share": shares[r, steps].reshape(-1)})
        final = {name: np.asarray(values)[r] for name, values in output["metrics"].items()}
        for name, value in final.items():
            if np.ndim(value) == 1 and name != "equilibrium_share":  # learner metrics
                column = np.full(len(frame), np.nan)
                column[-m:] = value
                frame[name] = column
        frame["is_prober"] = frame["learner"].isin(probers)
        learner_parts.append(frame)
        market = pd.DataFrame({"run_id": rid, "step": steps, "social_loss": social[r, steps]})
        for name, value in final.items():
            if np.ndim(value) == 0 and name != "social_loss":  # market metrics, at the end
                column = np.full(len(market), np.nan)
                column[-1] = float(value)
                market[name] = column
        market_parts.append(market)
    return {"runs": runs, "learners": pd.concat(learner_parts, ignore_index=True),
            "market": pd.concat(market_parts, ignore_index=True)}
