"""The static spec of the share-competition equilibrium (what fixes shapes and control flow:
one compilation each) and its probing section."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from userchoice import metrics as metric_table
from userchoice.choice_losses import ChoiceLoss, get_choice_loss
from userchoice.equilibrium import metrics as _equilibrium_metrics  # noqa: F401  (registers)
from userchoice.equilibrium.sources import get_equilibrium_source

DTYPES: tuple[str, ...] = ("float32", "float64")
STARTS: tuple[str, ...] = ("peers", "flip")
# The knobs the equilibrium reads (every other knob must stay at its default): the seed (θ⁰),
# the users' temperature c, the prior weights w and the probing weight p.
EQUILIBRIUM_KNOBS: tuple[str, ...] = ("seed", "temperature", "prior", "p")


def _int(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
        what = "a positive integer" if low == 1 else f"an integer ≥ {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _positive(name: str, value: Any, zero_ok: bool = False) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(float(value)) and (value >= 0 if zero_ok else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'≥' if zero_ok else '>'} 0, got "
                         f"{value!r}")
    return float(value)


def _indices(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a sequence of provider indices, e.g. {name}=(0,), got "
                         f"{value!r}")
    out = []
    for i in value:
        if not isinstance(i, int | np.integer) or isinstance(i, bool) or i < 0:
            raise ValueError(f"{name} must hold provider indices (integers ≥ 0), got {value!r}")
        out.append(int(i))
    return tuple(out)


@dataclass(frozen=True)
class EquilibriumProbing:
    """Probing at equilibrium (NEIGHBOURS §D): each prober j ∈ ``probers`` best-responds to
    S_j(θ) − p · R_j(θ), R_j its mean training loss against pseudo-labels from ``source`` (a
    name in ``EQUILIBRIUM_SOURCES``: ``median``, ``majority``, ``leader``, ``subset``,
    ``preferred``; an import path; or a source object), recomputed from the others' current
    parameters at the start of each of its best responses. p is the knob ``p``; p = 0 is no
    probing."""

    probers: tuple[int, ...]
    source: Any = "median"
    leader: int | None = None
    subset: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "probers", _indices("probers", self.probers))
        if self.subset is not None:
            object.__setattr__(self, "subset", _indices("subset", self.subset))
        if self.leader is not None:
            object.__setattr__(self, "leader", _int("leader", self.leader, 0))
        if not self.probers:
            raise ValueError("probers must name at least one provider (use probing=None for "
                             "no probing)")
        if len(set(self.probers)) != len(self.probers):
            raise ValueError(f"probers must not repeat a provider, got {self.probers}")
        self.source_object.check(self)  # an unknown name fails in get, naming the known ones

    @property
    def source_object(self) -> Any:
        return get_equilibrium_source(self.source)

    @property
    def per_user_source(self) -> bool:
        """No source here admits probe noise κ (the knob must stay 0)."""
        return False

    @property
    def n_probers(self) -> int:
        return len(self.probers)

    def validate(self, n_providers: int) -> None:
        if n_providers < 2:
            raise ValueError(f"probing needs at least 2 providers, the market has {n_providers}")
        for i in self.probers:
            if not 0 <= i < n_providers:
                raise ValueError(f"probers entry {i} out of range; allowed [0, "
                                 f"{n_providers - 1}]")
        self.source_object.validate(self, n_providers)


@dataclass(frozen=True)
class EquilibriumSpec:
    """Everything that fixes shapes and control flow of the best-response equilibrium (one
    compilation per spec and data shape).

    ``n_providers`` m. Users choose provider j with probability ∝ w_j e^{−ℓ_j(x)/c}, ℓ the
    ``choice_loss`` (a name in ``CHOICE_LOSSES`` or a ``ChoiceLoss``) at loss temperature
    ``loss_temperature`` T; c and w are the knobs ``temperature`` and ``prior``. Providers
    ascend their share computed with ``train_loss`` (default: the choice loss, which must then
    be differentiable; the metrics always use the choice loss).

    Round-robin best responses: provider j = 0 … m − 1 in turn runs ``steps`` full-batch
    gradient-ascent steps of size ``lr`` on its objective, warm-started, keeping the best
    iterate it visits (so a best response never lowers its objective); a round is one pass.
    Gradient ascent is local: a provider at a local optimum never finds a better, distant one
    (e.g. predicting the minority label in setting 1). ``extra_starts`` adds starting points to
    every best response — ``"peers"`` (each other provider's θ_k: imitation), ``"flip"``
    (−θ_j: the opposite predictions) — and ``random_starts`` fresh N(0, ``init_scale``²)
    draws; the best end point wins (ties: the warm start). The default, the warm start alone,
    is the paper's procedure.
    The run has converged when every provider's share moved by ≤ ``tol`` in a round; after
    ``max_rounds`` rounds without that it stops, recorded as not converged. θ⁰ ~
    N(0, ``init_scale``²) from the run's seed.

    Bayes risk: the best single linear model's mean choice loss, by ``bayes_steps`` (default
    ``steps``) gradient-descent steps of size ``lr`` on the mean training loss from a logistic
    fit and from ``bayes_restarts`` random starts N(0, 1) (a fixed seed: a property of the
    data); the lowest choice loss among them. ``dtype``: ``"float32"`` (default: the fast one
    on CPU) or ``"float64"``. ``metrics``: metric-table names (default: every metric of
    dynamics ``"equilibrium"`` that applies).
    """

    n_providers: int
    choice_loss: Any = "soft01"
    train_loss: Any = None
    loss_temperature: float = 0.1
    lr: float = 0.1
    steps: int = 5000
    tol: float = 1e-3
    max_rounds: int = 100
    init_scale: float = 0.1
    extra_starts: tuple[str, ...] = ()
    random_starts: int = 0
    bayes_restarts: int = 4
    bayes_steps: int | None = None
    probing: EquilibriumProbing | None = None
    dtype: str = "float32"
    metrics: tuple[str, ...] | None = None

    dynamics = "equilibrium"  # class constant: the metric and knob tables' name for it

    def __post_init__(self) -> None:
        _int("n_providers (m)", self.n_providers, 1)
        _int("steps", self.steps, 1)
        _int("max_rounds", self.max_rounds, 1)
        _int("bayes_restarts", self.bayes_restarts, 0)
        _int("random_starts", self.random_starts, 0)
        if isinstance(self.extra_starts, str) or not hasattr(self.extra_starts, "__iter__"):
            raise ValueError(f"extra_starts must be a sequence of names in {list(STARTS)}, got "
                             f"{self.extra_starts!r}")
        object.__setattr__(self, "extra_starts", tuple(self.extra_starts))
        for name in self.extra_starts:
            if name not in STARTS:
                raise ValueError(f"extra_starts entries must be in {list(STARTS)}, got {name!r}")
        if self.bayes_steps is not None:
            _int("bayes_steps", self.bayes_steps, 1)
        _positive("loss_temperature (T)", self.loss_temperature)
        _positive("lr", self.lr)
        _positive("tol", self.tol, zero_ok=True)
        _positive("init_scale", self.init_scale, zero_ok=True)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        for name in ("choice_loss", "train_loss"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str | ChoiceLoss):
                raise ValueError(f"{name} must be a name in CHOICE_LOSSES, an import path or a "
                                 f"ChoiceLoss, got {value!r}")
        choice = self.choice_object  # unknown names fail here, naming the known ones
        train = self.train_object
        if not train.smooth:
            which = "train_loss" if self.train_loss is not None else "choice_loss"
            raise ValueError(f"{which} {train.name!r} is not differentiable: providers cannot "
                             f"ascend their share under it; set train_loss to a smooth loss "
                             f"(e.g. 'soft01', 'soft01_multiclass' or 'logistic')")
        if not (choice.binary and train.binary) and not (choice.multiclass and train.multiclass):
            raise ValueError(f"choice_loss {choice.name!r} and train_loss {train.name!r} share "
                             f"no score form (binary or multiclass)")
        if self.probing is not None:
            if not isinstance(self.probing, EquilibriumProbing):
                raise ValueError(f"probing must be an EquilibriumProbing or None, got "
                                 f"{self.probing!r}")
            self.probing.validate(self.n_providers)
        object.__setattr__(self, "metrics", metric_table.select(self, self.metrics))

    @property
    def choice_object(self) -> ChoiceLoss:
        return get_choice_loss(self.choice_loss)

    @property
    def train_object(self) -> ChoiceLoss:
        return self.choice_object if self.train_loss is None else get_choice_loss(self.train_loss)

    @property
    def n_bayes_steps(self) -> int:
        return int(self.bayes_steps or self.steps)

    def multiclass(self, n_classes: int) -> bool:
        """Whether providers have K score columns (θ_j [d, K]) rather than one (θ_j [d]):
        when there are more than two classes, or a loss takes only multiclass scores. Raises
        when a loss cannot serve ``n_classes``."""
        choice, train = self.choice_object, self.train_object
        multi = n_classes > 2 or not (choice.binary and train.binary)
        for name, loss in (("choice_loss", choice), ("train_loss", train)):
            if not loss.accepts(multi):
                raise ValueError(f"{name} {loss.name!r} takes only binary labels; the data have "
                                 f"{n_classes} classes (use 'soft01_multiclass')")
        return multi

    def param_shape(self, dim: int, n_classes: int) -> tuple[int, ...]:
        """One provider's parameters: (d,) or (d, K)."""
        return (dim, n_classes) if self.multiclass(n_classes) else (dim,)
