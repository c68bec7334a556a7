"""The static spec (what fixes shapes and control flow: one compilation each) and the market's
arrays as the engine reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice import metrics as metric_table
from userchoice.choice import ChoiceRule, get_rule
from userchoice.choice_losses import ChoiceLoss, get_choice_loss, learner_choice_losses
from userchoice.families import Family
from userchoice.market import Market
from userchoice.probing import ProbingSpec
from userchoice.schedules import NORMALISATIONS, SCHEDULES

DTYPES: tuple[str, ...] = ("float32", "float64")
# How users arrive (``EngineSpec.arrival``): i.i.d. with replacement (``uniform``), or one pass
# without replacement over the training users in their order (``stream``, Su & Dean's protocol)
# or in a random order drawn once per run (``shuffle``).
ARRIVALS: tuple[str, ...] = ("uniform", "stream", "shuffle")
# Where the learners start when no ``init_params`` are given (``EngineSpec.init``): the
# family's random init, or Θ ~ U[0, 1) for every parameter leaf (Su & Dean).
INITS: tuple[str, ...] = ("family", "uniform")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class EngineSpec:
    """Everything that fixes array shapes and control flow (one compilation per spec).

    ``choice``, ``schedule`` and ``normalisation`` are registered names (or import paths, or
    for ``choice`` a rule object); ``metrics`` are the metric-table names to compute (default:
    every registered metric that applies to this spec and is recorded by default, fixed when
    the spec is made).
    ``arrival`` (one of ``ARRIVALS``): ``uniform`` draws each step's B users i.i.d. with
    replacement; ``stream`` takes training users t·B … t·B + B − 1 at step t (one pass in
    dataset order, no random bits); ``shuffle`` does the same over a random permutation drawn
    once per run from its arrival stream. Both one-pass arrivals need T·B ≤ the training
    population (``validate_market``). ``init`` (one of ``INITS``): the family's random
    initialisation, or ``uniform`` (every parameter U[0, 1)), drawn from the run's init stream.
    ``choice_loss``: the loss users choose by (a name in ``choice_losses.CHOICE_LOSSES``, e.g.
    ``zero_one`` for users who judge correctness, or a ``ChoiceLoss``) at ``loss_temperature``
    T; None: the family's training loss (the paper's market). Learners train on, and metrics
    report, the family's loss either way; the choice rule and every choice-weighted metric
    (market share, local loss, potential) read the choice loss.
    """

    family: Family
    n_learners: int
    batch_size: int
    steps: int
    eval_every: int = 100
    choice: str | ChoiceRule = "tau_mixture"
    schedule: str = "constant"
    normalisation: str = "mean"
    probing: ProbingSpec | None = None
    update_all: bool = True
    dtype: Literal["float32", "float64"] = "float32"
    metrics: tuple[str, ...] | None = None
    arrival: Literal["uniform", "stream", "shuffle"] = "uniform"
    init: Literal["family", "uniform"] = "family"
    choice_loss: str | ChoiceLoss | None = None
    loss_temperature: float = 1.0

    dynamics = "msgd"  # class constant: the metric and knob tables' name for this dynamics

    def __post_init__(self) -> None:
        for name in ("n_learners", "batch_size", "steps", "eval_every"):
            _positive_int(name, getattr(self, name))
        get_rule(self.choice)  # unknown names fail here, naming the known ones
        SCHEDULES.get(self.schedule)
        NORMALISATIONS.get(self.normalisation)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {list(ARRIVALS)}, got {self.arrival!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got {self.init!r}")
        if self.choice_loss is not None:
            loss = get_choice_loss(self.choice_loss)  # unknown names fail here
            if self.family.task != "classification":
                raise ValueError(f"choice_loss {loss.name!r} reads class labels: family "
                                 f"{type(self.family).__name__} is a {self.family.task} "
                                 f"family; leave choice_loss None (its training loss)")
            if not loss.binary:
                raise ValueError(f"choice_loss {loss.name!r} takes multiclass scores; the "
                                 f"engine's classifiers score one logit per user")
            if not (isinstance(self.loss_temperature, int | float)
                    and self.loss_temperature > 0):
                raise ValueError(f"loss_temperature must be > 0, got {self.loss_temperature!r}")
        if self.probing is not None and not isinstance(self.probing, ProbingSpec):
            raise ValueError(f"probing must be a ProbingSpec or None, got {self.probing!r}")
        if self.probing is not None:
            self.probing.validate(self.n_learners)
        object.__setattr__(self, "metrics", metric_table.select(self, self.metrics))

    @property
    def choice_rule(self) -> ChoiceRule:
        return get_rule(self.choice)

    def choosing_losses(self, scores: jax.Array, y: jax.Array, losses: jax.Array) -> jax.Array:
        """What users choose by, [n, N]: ``losses`` (the training loss) or the choice loss of
        every learner's ``scores`` [n, N]."""
        if self.choice_loss is None:
            return losses
        return learner_choice_losses(self.choice_loss, scores, y, self.loss_temperature)

    @property
    def eval_steps(self) -> np.ndarray:
        """Steps after which metrics are recorded: 0, k, 2k, …, and T if k does not divide T."""
        points = list(range(0, self.steps + 1, self.eval_every))
        if points[-1] != self.steps:
            points.append(self.steps)
        return np.asarray(points)

    @property
    def n_probers(self) -> int:
        return 0 if self.probing is None else len(self.probing.probers)


class MarketArrays(NamedTuple):
    """A market's arrays as device arrays of the spec's dtype (the engine's ``data``)."""

    x_train: jax.Array
    y_train: jax.Array
    w_train: jax.Array | None
    favourite_train: jax.Array
    rank_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    w_test: jax.Array | None
    favourite_test: jax.Array
    rank_test: jax.Array


def as_array(a: Any, dtype: Any) -> jax.Array:
    """``a`` as a ``dtype`` array; host data is converted on the host and copied in, since
    ``jnp.asarray`` compiles a small program per shape and dtype (≈ 0.1 s of a warm start)."""
    if isinstance(a, jax.Array):  # traced or already on the device: cast in the program
        return jnp.asarray(a, dtype)
    return jax.device_put(np.asarray(a, jnp.dtype(dtype)))


def market_arrays(market: Market, dtype: Any = jnp.float32) -> MarketArrays:
    ds = market.dataset

    def f(a):
        return None if a is None else as_array(a, dtype)

    def i(a):
        return as_array(a, jnp.int32)

    return MarketArrays(
        f(ds.x_train), f(ds.y_train), f(ds.w_train),
        i(market.preferences_train.favourite), i(market.preferences_train.rank),
        f(ds.x_test), f(ds.y_test), f(ds.w_test),
        i(market.preferences_test.favourite), i(market.preferences_test.rank),
    )


def validate_market(spec: EngineSpec, market: Market) -> None:
    ds = market.dataset
    if market.n_learners != spec.n_learners:
        raise ValueError(
            f"n_learners={spec.n_learners} but the market's preferences rank "
            f"{market.n_learners} learners"
        )
    if spec.batch_size > ds.n_train:
        raise ValueError(
            f"batch_size B={spec.batch_size} is larger than the training population "
            f"({ds.n_train} users); allowed [1, {ds.n_train}]"
        )
    check_population(spec, ds.n_train)
    y_shape = np.shape(ds.y_train)[1:]
    n_outputs = getattr(spec.family, "n_outputs", None)
    expected = (n_outputs,) if n_outputs is not None else ()
    if y_shape != expected:
        raise ValueError(
            f"family {spec.family.name!r} expects labels y of trailing shape {expected}, "
            f"got {y_shape}"
        )


def check_population(spec: EngineSpec, n_train: int) -> None:
    """A one-pass arrival (``stream``, ``shuffle``) consumes T·B distinct training users."""
    if spec.arrival == "uniform":
        return
    needed = spec.steps * spec.batch_size
    if needed > n_train:
        raise ValueError(
            f"arrival={spec.arrival!r} visits each training user at most once, but steps "
            f"T={spec.steps} × batch_size B={spec.batch_size} = {needed} users exceeds the "
            f"training population ({n_train} users); lower steps or batch_size so that T·B ≤ "
            f"{n_train}, or use arrival='uniform' (sampling with replacement)"
        )


def check_init_params(spec: EngineSpec, n_features: int, init_params: Any) -> None:
    """``init_params`` must have the family's pytree structure and leaf shapes."""
    dtype = jnp.dtype(spec.dtype)
    expected = jax.eval_shape(
        lambda k: spec.family.init(k, spec.n_learners, n_features, dtype), jax.random.key(0))
    exp_struct = jax.tree_util.tree_structure(expected)
    got_struct = jax.tree_util.tree_structure(init_params)
    if exp_struct != got_struct:
        raise ValueError(f"init_params must have structure {exp_struct}, got {got_struct}")
    for e, g in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(init_params),
                    strict=True):
        if tuple(e.shape) != tuple(np.shape(g)):
            raise ValueError(
                f"init_params leaf has shape {np.shape(g)}; the family expects {tuple(e.shape)}")


def working_bytes(n_learners: int, rows: int, width: int, n_features: int, itemsize: int) -> int:
    """Working memory of one run from its shapes (a rough upper bound): ``rows`` users seen at
    once (test users + batch + probe sets and batches), ``width`` outputs or hidden units. The
    one formula behind chunk sizes here and the config's size bounds."""
    return int(6 * n_learners * rows * (width + n_features) * itemsize)


def _width_and_itemsize(spec: EngineSpec, market: Market) -> tuple[int, int]:
    """A learner's widest array per user (its outputs or hidden units) and the bytes per
    number: what both working-memory estimates below scale with."""
    outputs = int(np.prod(np.shape(market.dataset.y_train)[1:], dtype=int))
    return (max(outputs, getattr(spec.family, "hidden", 1)),
            8 if spec.dtype == "float64" else 4)


def step_bytes_per_run(spec: EngineSpec, market: Market) -> int:
    """Bytes of one run's largest per-step arrays: the scores (or hidden units) of the
    learners and their update-all copies on the batch, and the probers' on their probe batch.
    What one step streams through memory, so what decides whether a chunk stays in cache."""
    width, itemsize = _width_and_itemsize(spec, market)
    rows = spec.batch_size * spec.n_learners * (2 if spec.update_all else 1)
    if spec.probing is not None:
        rows += spec.n_probers * spec.probing.probe_batch
    return rows * width * itemsize


def bytes_per_run(spec: EngineSpec, market: Market) -> int:
    """Working memory of one run (a rough upper bound, for chunk sizes)."""
    ds = market.dataset
    width, itemsize = _width_and_itemsize(spec, market)
    rows = np.shape(ds.x_test)[0] + spec.batch_size
    if spec.probing is not None:
        rows += spec.n_probers * (spec.probing.n_probe + spec.probing.probe_batch)
    return working_bytes(spec.n_learners, rows, width, ds.n_features, itemsize)
