"""THE metric table: what is measured at each evaluation point, and how.

Each metric is declared once: its name, its kind (``learner``: one value per learner;
``prober``: one per probing learner; ``market``: one for the whole market), which specs it
applies to, what it means, how figures label it, and the pure function computing it from an
``Evaluation`` (the state of one run at one evaluation point, with the quantities most metrics
share computed once, lazily, while the engine traces). The engine computes exactly the spec's
metrics (``EngineSpec.metrics``: by default every registered metric that applies); the results
store writes every metric the engine returns into the table its kind names; figures and the
report list them from here. A metric computed but not stored is impossible by construction.

Adding a metric: one ``register`` call (here, or in your own module), e.g.

    @register("worst_test_loss", kind="market", meaning="largest learner test loss")
    def worst_test_loss(ev):
        return ev.test_losses.mean(axis=1).max()
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp

from userchoice.families import correct, is_classifier, learner_scores
from userchoice.registry import Registry

Kind = Literal["learner", "prober", "market", "group", "allocation"]
# What one value is per evaluation point: per learner [n], per probing learner [|S|], one for
# the market [], per sub-population [G] (population dynamics), per learner and group [n, G].
KINDS: tuple[str, ...] = ("learner", "prober", "market", "group", "allocation")


def always(spec: Any) -> bool:
    return True


def classifier(spec: Any) -> bool:
    return is_classifier(spec.family)


def update_all(spec: Any) -> bool:
    return bool(spec.update_all)


def probing(spec: Any) -> bool:
    return spec.probing is not None


@dataclass(frozen=True)
class Metric:
    """One row of the metric table."""

    name: str
    kind: Kind
    compute: Callable[[Evaluation], jax.Array]
    meaning: str
    applies: Callable[[Any], bool] = always
    label: str = ""  # how figures name it (default: the name)
    higher_is_better: bool = False
    dynamics: tuple[str, ...] = ("msgd",)  # the dynamics that compute it (knobs.DYNAMICS)
    # Whether a spec that names no metrics records it (an applicable metric that is not a
    # default is recorded only when asked for, e.g. one that costs work at every step).
    default: Callable[[Any], bool] = always

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {list(KINDS)}, "
                             f"got {self.kind!r}")

    @property
    def display(self) -> str:
        return self.label or self.name.replace("_", " ")


METRICS: Registry[Metric] = Registry("metric")


def dynamics_of(spec: Any) -> str:
    """The dynamics a spec runs (``EngineSpec``: ``"msgd"``; ``PopulationSpec``:
    ``"population"``)."""
    return str(getattr(spec, "dynamics", "msgd"))


def register(name: str, *, kind: Kind, meaning: str, applies: Callable[[Any], bool] = always,
             label: str = "", higher_is_better: bool = False,
             requires: tuple[Callable[[Any], bool], ...] = (),
             dynamics: tuple[str, ...] = ("msgd",),
             default: Callable[[Any], bool] = always) -> Callable:
    """Decorator: register ``compute(ev)`` as metric ``name``. ``requires`` adds further
    applicability conditions (all must hold); ``dynamics`` names the dynamics whose
    evaluation object ``ev`` is (the streaming engine's ``Evaluation`` for ``"msgd"``)."""
    tests = (applies, *requires)

    def applies_all(spec: Any) -> bool:
        return dynamics_of(spec) in dynamics and all(test(spec) for test in tests)

    def add(compute: Callable[[Evaluation], jax.Array]) -> Callable:
        METRICS.register(name, Metric(name, kind, compute, meaning, applies_all, label,
                                      higher_is_better, tuple(dynamics), default))
        return compute

    return add


def get_metric(name: str) -> Metric:
    return METRICS.get(name)


def applicable(spec: Any, defaults_only: bool = False) -> tuple[str, ...]:
    """Names of the registered metrics that apply to ``spec``, in table order (only those it
    records by default with ``defaults_only``: what a spec naming no metrics records)."""
    return tuple(name for name, metric in METRICS.items() if metric.applies(spec)
                 and (not defaults_only or metric.default(spec)))


def select(spec: Any, names: Any = None) -> tuple[str, ...]:
    """The metrics a spec records: ``names`` (each must apply to it; the error lists those
    that do) or, when None, every applicable metric it records by default. Every dynamics'
    spec calls this in its ``__post_init__``."""
    if names is None:
        return applicable(spec, defaults_only=True)
    if isinstance(names, str):
        raise ValueError(f"metrics must be a sequence of names, got {names!r}")
    chosen = tuple(names)
    for name in chosen:
        if not get_metric(name).applies(spec):
            raise ValueError(f"metric {name!r} does not apply to this spec (it applies to: "
                             f"{list(applicable(spec))}; e.g. it needs probing, update-all "
                             f"copies, a classifier or another dynamics)")
    return chosen


def of_kind(kind: str, names: Any = None) -> tuple[str, ...]:
    """Registered metric names of one kind (restricted to ``names`` when given)."""
    chosen = METRICS.names() if names is None else tuple(names)
    return tuple(n for n in chosen if n in METRICS and METRICS.get(n).kind == kind)


# Up to this many learners the median is a sorting network of elementwise min/max; XLA's
# generic sort costs ~300 ns per column on the CPU (a tenth of a MovieLens run's time).
NETWORK_MEDIAN_MAX = 16


def median_of_learners(x: jax.Array) -> jax.Array:
    """``jnp.median(x, axis=0)``, the same numbers (NaN anywhere in a column → NaN; the mean
    of the middle two for an even count), by odd-even transposition of the n slices."""
    n = x.shape[0]
    if n > NETWORK_MEDIAN_MAX:
        return jnp.median(x, axis=0)
    nan = jnp.isnan(x).any(axis=0)  # min/max pass NaN through unevenly; mark it once
    rows = [x[i] for i in range(n)]
    for r in range(n):
        for i in range(r % 2, n - 1, 2):
            rows[i], rows[i + 1] = (jnp.minimum(rows[i], rows[i + 1]),
                                    jnp.maximum(rows[i], rows[i + 1]))
    mid = n // 2
    median = rows[mid] if n % 2 else (rows[mid - 1] + rows[mid]) / 2
    return jnp.where(nan, jnp.nan, median)


class Evaluation:
    """One run at one evaluation point: ``spec``, ``data`` (the market arrays), ``ctx`` (the
    run's constants: knobs, θ⁰, probe sets) and ``state`` (parameters, probe labels, batch
    accumulators). Shared quantities are computed on first use and reused by every metric."""

    def __init__(self, spec: Any, data: Any, ctx: Any, state: Any) -> None:
        self.spec, self.data, self.ctx, self.state = spec, data, ctx, state
        self.family = spec.family
        self.knobs = ctx.knobs

    @functools.cached_property
    def test_scores(self) -> jax.Array:
        """Every learner's scores on the test users, [n, Nt, ...]."""
        return learner_scores(self.family, self.state.theta, self.data.x_test)

    @functools.cached_property
    def test_losses(self) -> jax.Array:
        """Every learner's loss on each test user, [n, Nt]."""
        return self.family.loss(self.test_scores, self.data.y_test, self.data.w_test)

    @functools.cached_property
    def update_all_scores(self) -> jax.Array:
        return learner_scores(self.family, self.state.theta_update_all, self.data.x_test)

    @functools.cached_property
    def ensemble_score(self) -> jax.Array:
        """The median-score ensemble's scores on the test users."""
        return median_of_learners(self.test_scores)

    @functools.cached_property
    def choice_probabilities(self) -> jax.Array:
        """P(test user picks learner i) under the spec's choice rule, [Nt, n]."""
        dtype = self.test_losses.dtype
        by = self.spec.choosing_losses(self.test_scores, self.data.y_test, self.test_losses)
        return self.spec.choice_rule.probabilities(
            by.T, self.data.favourite_test, self.data.rank_test.astype(dtype), self.knobs)

    @functools.cached_property
    def chosen_losses(self) -> jax.Array:
        """Choice-weighted losses, [Nt, n]."""
        return self.choice_probabilities * self.test_losses.T

    @functools.cached_property
    def probe_risk(self) -> jax.Array:
        """Each prober's mean loss on its probe set against its current pseudo-labels, [|S|]."""
        family = self.family

        def risk(th, x, y, w):
            return family.loss(family.score(th, x), y, w).mean()

        probers = jnp.asarray(self.spec.probing.probers)
        theta_s = jax.tree_util.tree_map(lambda a: a[probers], self.state.theta)
        return jax.vmap(risk, in_axes=(0, 0, 0, None if self.ctx.probe_w is None else 0))(
            theta_s, self.ctx.probe_x, self.state.probe_labels, self.ctx.probe_w)


# --------------------------------------------------------------------------- the table


@register("test_loss", kind="learner", label="global test loss (global risk)",
          meaning="mean loss over the test users (global performance)")
def _test_loss(ev: Evaluation) -> jax.Array:
    return ev.test_losses.mean(axis=1)


@register("test_accuracy", kind="learner", applies=classifier, label="global test accuracy",
          higher_is_better=True, meaning="share of test users classified correctly")
def _test_accuracy(ev: Evaluation) -> jax.Array:
    return correct(ev.family, ev.test_scores, ev.data.y_test).mean(axis=1)


@register("update_all_test_loss", kind="learner", applies=update_all,
          label="update-all test loss",
          meaning="test loss of the update-all copy (initialised like the learner, stepping on "
                  "every user of every batch: no choice)")
def _update_all_test_loss(ev: Evaluation) -> jax.Array:
    return ev.family.loss(ev.update_all_scores, ev.data.y_test, ev.data.w_test).mean(axis=1)


@register("update_all_test_accuracy", kind="learner", applies=update_all,
          requires=(classifier,), label="update-all test accuracy", higher_is_better=True,
          meaning="test accuracy of the update-all copy")
def _update_all_test_accuracy(ev: Evaluation) -> jax.Array:
    return correct(ev.family, ev.update_all_scores, ev.data.y_test).mean(axis=1)


@register("market_share", kind="learner", label="market share",
          meaning="expected share of the test users choosing the learner under the choice rule")
def _market_share(ev: Evaluation) -> jax.Array:
    return ev.choice_probabilities.mean(axis=0)


@register("batch_share", kind="learner", label="batch share",
          meaning="realised share of the arriving training users choosing the learner since "
                  "the previous evaluation (NaN at step 0)")
def _batch_share(ev: Evaluation) -> jax.Array:
    return ev.state.acc.share / ev.state.acc.steps


@register("local_loss", kind="learner", label="local loss",
          meaning="expected loss on the test users who choose the learner")
def _local_loss(ev: Evaluation) -> jax.Array:
    return ev.chosen_losses.sum(axis=0) / ev.choice_probabilities.sum(axis=0)


@register("batch_local_loss", kind="learner", label="batch local loss",
          meaning="realised mean loss of the training users who chose the learner since the "
                  "previous evaluation")
def _batch_local_loss(ev: Evaluation) -> jax.Array:
    return ev.state.acc.local_loss / ev.state.acc.chosen


@register("distance_to_init", kind="learner", label="‖θ − θ⁰‖",
          meaning="Euclidean distance of the learner's parameters from their initial value")
def _distance_to_init(ev: Evaluation) -> jax.Array:
    sq = jax.tree_util.tree_map(lambda a, b: ((a - b) ** 2).reshape(a.shape[0], -1).sum(axis=1),
                                ev.state.theta, ev.ctx.theta0)
    return jnp.sqrt(sum(jax.tree_util.tree_leaves(sq)))


@register("probe_risk", kind="prober", applies=probing, label="probe risk",
          meaning="the prober's loss on its probe set against its current pseudo-labels")
def _probe_risk(ev: Evaluation) -> jax.Array:
    return ev.probe_risk


@register("ensemble_test_loss", kind="market", label="ensemble test loss",
          meaning="test loss of the median-score ensemble of all learners")
def _ensemble_test_loss(ev: Evaluation) -> jax.Array:
    return ev.family.loss(ev.ensemble_score, ev.data.y_test, ev.data.w_test).mean()


@register("ensemble_test_accuracy", kind="market", applies=classifier,
          label="ensemble test accuracy", higher_is_better=True,
          meaning="test accuracy of the median-score ensemble")
def _ensemble_test_accuracy(ev: Evaluation) -> jax.Array:
    return correct(ev.family, ev.ensemble_score, ev.data.y_test).mean()


@register("potential", kind="market", label="potential Φ",
          meaning="Φ: the choice-weighted loss on the test users")
def _potential(ev: Evaluation) -> jax.Array:
    return ev.chosen_losses.sum(axis=1).mean()


@register("psi", kind="market", applies=probing, label="Ψ",
          meaning="Ψ = Φ + p·Σ probe risks (probing only)")
def _psi(ev: Evaluation) -> jax.Array:
    return _potential(ev) + ev.knobs.p * ev.probe_risk.sum()


# Su & Dean's streaming protocol (ICML 2024; NEIGHBOURS.md §A)


def zeta_rule(spec: Any) -> bool:
    """The users choose by the ``zeta_random`` rule (whose knob ζ the ζ-potential reads)."""
    from userchoice.choice import ZetaRandom

    return isinstance(spec.choice_rule, ZetaRandom)


def zeta_mix(losses: jax.Array, zeta: jax.Array) -> jax.Array:
    """(1−ζ)·E_u[min_i ℓ_i(u)] + ζ·E_u[(1/n)Σ_i ℓ_i(u)] of losses [n, Nt]."""
    return (1 - zeta) * losses.min(axis=0).mean() + zeta * losses.mean()


@register("zeta_potential", kind="market", applies=zeta_rule, label="ζ-potential",
          meaning="Su & Dean's ζ-potential (1−ζ)·E[min_i ℓ_i] + ζ·E[mean_i ℓ_i] on the test "
                  "users (equals Φ under zeta_random)")
def _zeta_potential(ev: Evaluation) -> jax.Array:
    return zeta_mix(ev.test_losses, ev.knobs.zeta)


@register("update_all_zeta_potential", kind="market", applies=zeta_rule,
          requires=(update_all,), label="update-all ζ-potential",
          meaning="the ζ-potential of the update-all copies")
def _update_all_zeta_potential(ev: Evaluation) -> jax.Array:
    losses = ev.family.loss(ev.update_all_scores, ev.data.y_test, ev.data.w_test)
    return zeta_mix(losses, ev.knobs.zeta)


@register("oracle_choice_accuracy", kind="market", applies=classifier, default=zeta_rule,
          label="oracle-choice accuracy", higher_is_better=True,
          meaning="accuracy on the test users, each classified by its lowest-loss learner "
                  "(chosen with the true label)")
def _oracle_choice_accuracy(ev: Evaluation) -> jax.Array:
    best = jnp.argmin(ev.test_losses, axis=0)  # ties: the lowest index, as the choice rules
    score = jnp.take_along_axis(ev.test_scores, best[None], axis=0)[0]
    return correct(ev.family, score, ev.data.y_test).mean()


# Recorded by default under Su & Dean's protocol (the zeta_random rule) only: it adds a norm
# of every parameter change to every step.
@register("path_length", kind="learner", label="path length Σ‖Δθ‖", default=zeta_rule,
          meaning="Σ_s ‖θ_{s+1} − θ_s‖: the length of the learner's parameter path so far "
                  "(accumulated at every step)")
def _path_length(ev: Evaluation) -> jax.Array:
    return ev.state.path_length


def evaluate_metrics(names: tuple[str, ...], ev: Evaluation) -> dict[str, jax.Array]:
    """``{name: value}`` for each metric in ``names`` (the spec's), in table order."""
    return {name: METRICS.get(name).compute(ev) for name in names}


def describe() -> str:
    """The table as Markdown (for docs)."""
    rows = ["| metric | kind | meaning |", "|---|---|---|"]
    rows += [f"| `{m.name}` | {m.kind} | {m.meaning} |" for _, m in METRICS.items()]
    return "\n".join(rows)
