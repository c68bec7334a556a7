"""The static spec of the population dynamics (what fixes shapes and control flow: one
compilation each) and its probing section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from userchoice import metrics as metric_table
from userchoice.population import metrics as _population_metrics  # noqa: F401  (registers)
from userchoice.population.sources import get_population_source

DTYPES: tuple[str, ...] = ("float32", "float64")
ENTRIES: tuple[str, ...] = ("largest", "index")
UPDATES: tuple[str, ...] = ("retrain", "gradient_step")
STOPS: tuple[str, ...] = ("consecutive", "cumulative")
WEIGHTINGS: tuple[str, ...] = ("beta", "beta_count")
STARTS: tuple[str, ...] = ("start", "equilibrium")


def _int(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        what = "a positive integer" if low == 1 else f"an integer ≥ {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _indices(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a sequence of learner indices, e.g. {name}=(0,), got "
                         f"{value!r}")
    out = []
    for i in value:
        if not isinstance(i, int | np.integer) or isinstance(i, bool) or i < 0:
            raise ValueError(f"{name} must hold learner indices (integers ≥ 0), got {value!r}")
        out.append(int(i))
    return tuple(out)


@dataclass(frozen=True)
class PopulationProbing:
    """Peer probing in the population dynamics (NEIGHBOURS §D): each prober i ∈ ``probers``
    adds p × its probe risk Σ_j (β_j/Σβ)·(θ − s_ij)ᵀA_j(θ − s_ij) to its retraining
    objective (or gradient), s_ij the source parameter for group j (``sources``); for logistic
    groups the probe risk is the cross-entropy against σ(x_rᵀs_ij) on group j's rows.

    ``source``: a name in ``POPULATION_SOURCES`` (``majority``, ``median``, ``leader``,
    ``subset``, ``preferred``), an import path or a source object. ``refresh_every`` k: the
    labels are recomputed from the current learners at the start of every k-th probing round
    (k = 1: every round, from the previous round's parameters); 0: fixed when probing starts.
    ``start``: ``"start"`` (probe from round 1) or ``"equilibrium"`` (an unprobed first phase
    runs to its equilibrium — or its round budget — then probing switches on for a phase of
    its own, before any market entry). A prober that has not entered the market yet does not
    probe.
    """

    probers: tuple[int, ...]
    source: Any = "majority"
    leader: int | None = None
    subset: tuple[int, ...] | None = None
    refresh_every: int = 1
    start: str = "start"

    def __post_init__(self) -> None:
        object.__setattr__(self, "probers", _indices("probers", self.probers))
        if self.subset is not None:
            object.__setattr__(self, "subset", _indices("subset", self.subset))
        if self.leader is not None:
            _int("leader", self.leader, 0)
            object.__setattr__(self, "leader", int(self.leader))
        if not self.probers:
            raise ValueError("probers must name at least one learner (use probing=None for "
                             "no probing)")
        if len(set(self.probers)) != len(self.probers):
            raise ValueError(f"probers must not repeat a learner, got {self.probers}")
        _int("refresh_every", self.refresh_every, 0)
        _choice("start", self.start, STARTS)
        self.source_object.check(self)  # an unknown name fails in get, naming the known ones

    @property
    def source_object(self) -> Any:
        return get_population_source(self.source)

    @property
    def per_user_source(self) -> bool:
        """Whether the source names one learner per user (these admit noise κ)."""
        return bool(self.source_object.per_user)

    @property
    def n_probers(self) -> int:
        return len(self.probers)

    def validate(self, n_learners: int, max_n: int) -> None:
        if n_learners < 2:
            raise ValueError(f"probing needs at least 2 learners, the market starts with "
                             f"{n_learners}")
        for i in self.probers:
            if not 0 <= i < max_n:
                raise ValueError(f"probers entry {i} out of range; allowed [0, {max_n - 1}] "
                                 f"(learners up to the entry cap)")
        self.source_object.validate(self, n_learners, max_n)


@dataclass(frozen=True)
class PopulationSpec:
    """Everything that fixes shapes and control flow of the population dynamics (one
    compilation per spec).

    A run has phases of at most ``steps`` rounds each. A phase ends when the stop rule holds
    (the allocations were allclose(``rtol``, ``atol``) to the previous round's on more than
    ``patience`` rounds: consecutive rounds with ``stop="consecutive"``, any rounds of the phase
    with ``"cumulative"``, the authors' count) or when its budget is spent. Then, in order: the
    unprobed first phase hands over to a probed one (``probing.start == "equilibrium"``); a
    learner enters (``max_learners``: splitting one, ``entry``) until there are
    ``max_learners``; after the last phase the run stops (later rounds are no-ops).

    ``entry``: ``"largest"`` (split the learner with the largest share), ``"index"`` (the
    authors': learners 0, 1, 2, … in turn) or an explicit sequence of parent indices (the k-th
    split's parent must exist then: an index < n_learners + k). ``update``: ``"retrain"`` (the
    exact minimiser of the learner's objective) or ``"gradient_step"`` (one step of size knob
    η). ``weighting``: retraining weights β_j·α_ij (``"beta"``) or β_j·N_j·α_ij
    (``"beta_count"``, the authors' compat switch; reported risks always weight by β_j).
    ``metrics``: metric-table names (default: every metric of dynamics ``"population"`` that
    applies, fixed when the spec is made).
    """

    n_learners: int
    steps: int
    max_learners: int | None = None
    entry: str | tuple[int, ...] = "largest"
    update: str = "retrain"
    stop: str = "consecutive"
    patience: int = 20
    rtol: float = 1e-5
    atol: float = 1e-8
    weighting: str = "beta"
    eval_every: int = 1
    probing: PopulationProbing | None = None
    dtype: str = "float64"
    metrics: tuple[str, ...] | None = None

    dynamics = "population"  # class constant: the metric and knob tables' name for it

    def __post_init__(self) -> None:
        _int("n_learners", self.n_learners, 1)
        _int("steps", self.steps, 1)
        _int("eval_every", self.eval_every, 1)
        _int("patience", self.patience, 0)
        if self.max_learners is not None:
            _int("max_learners", self.max_learners, 1)
            if self.max_learners < self.n_learners:
                raise ValueError(f"max_learners={self.max_learners} is below n_learners="
                                 f"{self.n_learners}: the entry cap must be at least the "
                                 f"learners at the start")
        if isinstance(self.entry, str):
            _choice("entry", self.entry, ENTRIES)
        else:
            parents = _indices("entry", self.entry)
            object.__setattr__(self, "entry", parents)
            if len(parents) < self.n_entries:
                raise ValueError(f"entry names {len(parents)} parents for {self.n_entries} "
                                 f"entries (n_learners={self.n_learners} → max_learners="
                                 f"{self.max_learners})")
            for k, parent in enumerate(parents[: self.n_entries]):
                if parent >= self.n_learners + k:
                    raise ValueError(f"entry: split {k} names learner {parent}, which does "
                                     f"not exist then (learners 0..{self.n_learners + k - 1})")
        _choice("update", self.update, UPDATES)
        _choice("stop", self.stop, STOPS)
        _choice("weighting", self.weighting, WEIGHTINGS)
        _choice("dtype", self.dtype, DTYPES)
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating) \
                    or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.probing is not None:
            if not isinstance(self.probing, PopulationProbing):
                raise ValueError(f"probing must be a PopulationProbing or None, got "
                                 f"{self.probing!r}")
            self.probing.validate(self.n_learners, self.max_n)
        object.__setattr__(self, "metrics", metric_table.select(self, self.metrics))

    @property
    def max_n(self) -> int:
        """Learners at the end (the learner axis of every array)."""
        return int(self.max_learners or self.n_learners)

    @property
    def n_entries(self) -> int:
        return self.max_n - self.n_learners

    @property
    def probe_phase(self) -> bool:
        """Whether an unprobed phase precedes a probed one (``probing.start``)."""
        return self.probing is not None and self.probing.start == "equilibrium"

    @property
    def n_phases(self) -> int:
        return 1 + int(self.probe_phase) + self.n_entries

    @property
    def total_rounds(self) -> int:
        """The round budget of a run: every phase spends its whole budget."""
        return self.n_phases * self.steps

    @property
    def eval_steps(self) -> np.ndarray:
        """Global rounds after which metrics are recorded: 0 (the initial state), k, 2k, …,
        and ``total_rounds`` if k does not divide it."""
        points = list(range(0, self.total_rounds + 1, self.eval_every))
        if points[-1] != self.total_rounds:
            points.append(self.total_rounds)
        return np.asarray(points)
