"""THE knob table: per-run values traced through the compiled engine.

Each knob is declared once, with its default, its allowed interval and what it means;
``Knobs``, ``make_knobs``, ``knob_grid``, ``validate_knobs``, the config schema's ``knobs:``
section (``experiments.config``), the results tables' columns and the docs derive from
``KNOBS``. A knob that only makes sense with a feature of the spec (``p`` needs probing, ``kappa``
a per-user probing source) says so in ``needs``, and every check reads it from there.

Adding a knob: one row here; the engine reads it as ``knobs.<name>`` wherever it is used.
"""

from __future__ import annotations

import itertools
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A real interval, as scikit-learn's ``Interval``: bounds may be None (unbounded);
    ``closed`` says which bounds belong to it. Values must be finite unless a bound is inf."""

    low: float | None
    high: float | None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def contains(self, values: Any) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        ok = np.isfinite(v)
        if self.low is not None:
            ok &= v >= self.low if self.closed in ("both", "left") else v > self.low
        if self.high is not None:
            ok &= v <= self.high if self.closed in ("both", "right") else v < self.high
        return ok

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{left}{low}, {high}{right}"

    def pydantic_bounds(self) -> dict[str, float]:
        """The same constraint as pydantic ``Field`` keywords (ge/gt/le/lt)."""
        out: dict[str, float] = {}
        if self.low is not None:
            out["ge" if self.closed in ("both", "left") else "gt"] = self.low
        if self.high is not None:
            out["le" if self.closed in ("both", "right") else "lt"] = self.high
        return out


def _needs_probing(probing: Any) -> str | None:
    return None if probing is not None else ("probing (set EngineSpec.probing, or a probing: "
                                             "section in a config)")


def _needs_per_user_source(probing: Any) -> str | None:
    if probing is None:
        return "probing with a per-user source (e.g. 'preferred' or 'leader')"
    if not probing.per_user_source:
        return (f"a per-user probing source (noise needs one); the '{probing.source}' source "
                f"is not one")
    return None


@dataclass(frozen=True)
class Knob:
    """One row of the knob table."""

    name: str
    default: float
    interval: Interval
    meaning: str
    kind: Literal["real", "seed", "per_learner"] = "real"
    symbol: str = ""  # how figures and tables write it (default: the name)
    # needs(probing_spec_or_None) → None if non-default values are allowed, else what they need
    needs: Callable[[Any], str | None] | None = None
    # The dynamics that read the knob (``DYNAMICS``): a config of another dynamics may not set
    # it, and its grid axes and run ids leave it out.
    dynamics: tuple[str, ...] = ("msgd",)

    @property
    def display(self) -> str:
        return self.symbol or self.name

    @property
    def allowed(self) -> str:
        if self.kind == "seed":
            return "integers in [0, 2^31)"
        return f"{self.name} in {self.interval}"


# The dynamics a market can run under (``EngineSpec.dynamics``, ``PopulationSpec.dynamics``).
DYNAMICS: tuple[str, ...] = ("msgd", "population", "equilibrium")
ALL = DYNAMICS

UNIT = Interval(0.0, 1.0)
# Upper bounds keep every value, and 1 + value, finite in float32 (max ≈ 3.4e38): p = 1e300
# would overflow the probe mix (g + p·ĝ)/(1 + p) to inf/inf. 1e6 is far beyond any useful value.
LARGE = 1e6
WEIGHT = Interval(0.0, LARGE)  # p, λ
STEP = Interval(0.0, LARGE, closed="right")  # η: positive
SCALE = Interval(1 / LARGE, LARGE)  # temperature, prior weights: positive, log finite in float32

KNOBS: tuple[Knob, ...] = (
    Knob("seed", 0, Interval(0, 2**31, closed="left"),
         "random seed of the run: initialisation, probe sets, arrivals, choices, probe batches "
         "(population dynamics: the entry jitter and probe noise)", kind="seed", dynamics=ALL),
    Knob("tau", 0.0, UNIT, "preference weight: tau_mixture's probability of picking the "
         "favourite; additive_rank's cost per rank position", symbol="τ"),
    Knob("p", 0.0, WEIGHT, "probing weight: probers step on (g + p·ĝ)/(1 + p); 0 is MSGD "
         "(population dynamics: weight of the probe risk in the prober's objective)",
         needs=_needs_probing, dynamics=ALL),
    Knob("kappa", 0.0, UNIT, "probing noise κ: probability that a probe user's source is a "
         "uniformly random other learner", needs=_needs_per_user_source, symbol="κ",
         dynamics=("msgd", "population")),
    Knob("eta", 0.01, STEP, "step size η (scaled by the schedule; population dynamics: the "
         "gradient_step update's step size)", symbol="η", dynamics=("msgd", "population")),
    Knob("lam", 0.0, WEIGHT, "L2 regularisation λ (added to the gradient after the "
         "probe mix)", symbol="λ"),
    Knob("temperature", 1.0, SCALE, "logit choice: softmax temperature over −loss (the "
         "equilibrium dynamics: the users' logit temperature c)",
         dynamics=("msgd", "equilibrium")),
    Knob("zeta", 0.0, UNIT, "zeta_random choice: probability of a uniformly random learner",
         symbol="ζ"),
    Knob("prior", 1.0, SCALE, "logit choice: prior weight of each learner (a length-n "
         "vector; default uniform)", kind="per_learner", dynamics=("msgd", "equilibrium")),
    Knob("epsilon", 0.1, Interval(0.0, 1.0, closed="neither"), "population dynamics: "
         "multiplicative-weights rate ε, α_ij ← α_ij (1 − ε)^R_j(θ_i) / normaliser",
         symbol="ε", dynamics=("population",)),
)

BY_NAME: dict[str, Knob] = {k.name: k for k in KNOBS}
KNOB_NAMES: tuple[str, ...] = tuple(k.name for k in KNOBS)
# Knobs that form grid axes in configs and columns in the results' runs table (one value each).
SCALAR_KNOBS: tuple[str, ...] = tuple(k.name for k in KNOBS if k.kind != "per_learner")
KNOB_DEFAULTS: dict[str, float] = {k.name: k.default for k in KNOBS if k.kind != "per_learner"}


def knobs_of(dynamics: str) -> tuple[str, ...]:
    """The scalar knobs one dynamics reads, in table order (its grid axes and run-id keys)."""
    return tuple(name for name in SCALAR_KNOBS if dynamics in BY_NAME[name].dynamics)


class Knobs(namedtuple("Knobs", KNOB_NAMES)):
    """Per-run values, each with a leading run axis (per-learner knobs are [R, n]).

    A pytree (a namedtuple), so it can be vmapped over runs. ``Knobs._fields`` is ``KNOB_NAMES``.
    """

    __slots__ = ()

    @property
    def n_runs(self) -> int:
        return int(np.shape(self.seed)[0])

    def run(self, index: int) -> Knobs:
        """One run's knobs, keeping a run axis of length one."""
        return Knobs(*(np.asarray(v)[index : index + 1] for v in self))

    def at(self, index: int) -> Knobs:
        """One run's knobs without the run axis (what ``engine.init_run`` takes)."""
        return Knobs(*(np.asarray(v)[index] for v in self))

    def take(self, indices: Any) -> Knobs:
        """The runs at ``indices`` (a chunk)."""
        return Knobs(*(np.asarray(v)[indices] for v in self))


def make_knobs(n_learners: int, **values: Any) -> Knobs:
    """Knobs for R runs: each value is a scalar (shared) or a length-R sequence.

    Per-learner knobs (``prior``) take a length-n vector (shared) or an [R, n] array.
    Omitted knobs take their default.
    """
    unknown = set(values) - set(KNOB_NAMES)
    if unknown:
        raise ValueError(f"unknown knob(s) {sorted(unknown)}; allowed {list(KNOB_NAMES)}")
    scalar = {k: v for k, v in values.items() if BY_NAME[k].kind != "per_learner"}
    lengths = {k: len(v) for k, v in scalar.items() if np.ndim(v) == 1}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"knob sequences must share one length, got {lengths}")
    n_runs = next(iter(lengths.values()), 1)
    columns: dict[str, np.ndarray] = {}
    for knob in KNOBS:
        value = np.asarray(values.get(knob.name, knob.default))
        if knob.kind == "per_learner":
            value = value.astype(float)
            if value.ndim == 0:
                value = np.full(n_learners, float(value))
            if value.shape == (n_learners,):
                value = np.broadcast_to(value, (n_runs, n_learners)).copy()
            if value.shape != (n_runs, n_learners):
                raise ValueError(f"{knob.name} must have shape [{n_learners}] or "
                                 f"[{n_runs}, {n_learners}], got {value.shape}")
            columns[knob.name] = value
            continue
        if value.ndim > 1:
            raise ValueError(f"knob {knob.name} must be a scalar or 1-D sequence, got shape "
                             f"{value.shape}")
        columns[knob.name] = np.broadcast_to(value, (n_runs,)).copy()
    for knob in KNOBS:
        if knob.kind == "seed":
            seed = columns[knob.name]
            ok = np.all(np.equal(np.mod(seed, 1), 0)) and np.all(knob.interval.contains(seed))
            if not ok:
                raise ValueError(f"{knob.name} must be {knob.allowed}, got {seed.tolist()}")
            columns[knob.name] = seed.astype(np.int64)
    return Knobs(**columns)


def knob_grid(n_learners: int, **axes: Any) -> Knobs:
    """Cartesian product of knob values, e.g. ``knob_grid(5, seed=range(15), p=[0, .2])``.

    A scalar is a one-point axis. Runs are ordered with the last axis varying fastest.
    """
    names = list(axes)
    value_lists = [list(np.atleast_1d(np.asarray(list(v) if isinstance(v, range) else v)))
                   for v in axes.values()]
    combos = list(itertools.product(*value_lists))
    columns = {name: [c[i] for c in combos] for i, name in enumerate(names)}
    return make_knobs(n_learners, **columns)


def validate_knobs(knobs: Knobs, n_learners: int, probing: Any = None) -> None:
    """Reject values outside their interval, or non-default values of a knob whose ``needs``
    the spec does not meet; the message names the knob and what is allowed."""
    for knob in KNOBS:
        values = np.asarray(getattr(knobs, knob.name), dtype=float)
        if knob.kind == "per_learner" and values.shape[-1:] != (n_learners,):
            raise ValueError(f"{knob.name} has {values.shape[-1:]} entries per run; the spec has "
                             f"{n_learners} learners")
        bad = values[~knob.interval.contains(values)]
        if bad.size:
            raise ValueError(f"{knob.name}={float(bad.flat[0])!r} is out of range; allowed "
                             f"{knob.allowed}")
        if knob.needs is not None:
            reason = knob.needs(probing)
            off = values[values != knob.default]
            if reason is not None and off.size:
                raise ValueError(f"{knob.name}={float(off.flat[0])!r} needs {reason}; allowed "
                                 f"{knob.name} = {knob.default:g} here")
    if np.shape(knobs.seed)[0] != np.shape(knobs.tau)[0]:  # pragma: no cover - make_knobs
        raise ValueError("knob columns must share one run count")


def describe() -> str:
    """The table as Markdown (for docs and ``--help``)."""
    rows = ["| knob | default | allowed | meaning |", "|---|---|---|---|"]
    for k in KNOBS:
        default = "uniform" if k.kind == "per_learner" else f"{k.default:g}"
        allowed = "integer in [0, 2^31)" if k.kind == "seed" else str(k.interval)
        rows.append(f"| `{k.name}` | {default} | {allowed} | {k.meaning} |")
    return "\n".join(rows)

