"""Learner families as pure functions.

A family describes one kind of learner: how to initialise parameters, how one learner scores
users, the per-user loss, and how a peer's score becomes a pseudo-label. Parameters of all n
learners share one pytree with a leading learner axis, so the engine can ``vmap`` over learners.

Scores are logits for classification and predictions for regression. ``loss`` is the
*reported* per-user loss; training steps use ``train_scale * loss`` (SPEC §2: the MovieLens
reference steps with the gradient of the un-divided sum).

Families are registered in ``FAMILIES`` by name; a config names one by name or by import path
(``family: mypkg.models:Hinge``). A family class may define ``data_options(dataset)``: options
read off the data (e.g. the number of outputs) that a config need not spell out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.registry import Registry

Params = Any  # a pytree of arrays whose leaves carry a leading learner axis
Task = Literal["classification", "regression"]

FAMILIES: Registry[type] = Registry("family")


@jax.custom_jvp
def softplus(score: jax.Array) -> jax.Array:
    """log(1 + eˢ), finite for any s, with a derivative σ(s) that reuses the forward's e^{−|s|}:
    ``jnp.logaddexp(0, s)``'s rule spends two more exponentials (exp(x − out) per argument),
    and the logistic loss is most of the transcendental work of a Census step."""
    return jnp.maximum(score, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(score)))


@softplus.defjvp
def _softplus_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]
                  ) -> tuple[jax.Array, jax.Array]:
    (score,), (tangent,) = primals, tangents
    e = jnp.exp(-jnp.abs(score))
    inverse = 1.0 / (1.0 + e)
    sigmoid = jnp.where(score >= 0, inverse, e * inverse)
    return jnp.maximum(score, 0.0) + jnp.log1p(e), sigmoid * tangent


class Family(Protocol):
    """What the engine needs from a learner family (all methods are pure and jittable)."""

    name: str
    task: Task

    @property
    def train_scale(self) -> float: ...

    def init(self, key: jax.Array, n_learners: int, n_features: int, dtype: Any) -> Params: ...

    def score(self, theta: Params, x: jax.Array) -> jax.Array: ...

    def loss(self, score: jax.Array, y: jax.Array, w: jax.Array | None) -> jax.Array: ...

    def pseudo_label(self, score: jax.Array) -> jax.Array: ...


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class _Linear:
    """Shared by the scalar linear families: θ ∈ R^d, score θᵀx, θ ~ N(0, init_std²)."""

    init_std: float = 0.01

    @property
    def train_scale(self) -> float:
        return 1.0

    def init(self, key: jax.Array, n_learners: int, n_features: int, dtype: Any) -> Params:
        return self.init_std * jax.random.normal(key, (n_learners, n_features), dtype)

    def score(self, theta: Params, x: jax.Array) -> jax.Array:
        return x @ theta


@FAMILIES.register("logistic")
@dataclass(frozen=True)
class Logistic(_Linear):
    """Linear logistic regression: score = θᵀx, label 1[score > 0] (Census, Amazon)."""

    name: str = "logistic"
    task: Task = "classification"

    def loss(self, score: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
        # −[y log σ(s) + (1−y) log(1−σ(s))] = softplus(s) − y·s, finite for any s.
        return softplus(score) - y * score

    def pseudo_label(self, score: jax.Array) -> jax.Array:
        return (score > 0).astype(score.dtype)


@FAMILIES.register("squared")
@dataclass(frozen=True)
class Squared(_Linear):
    """Linear least squares: prediction θᵀx, loss (θᵀx − y)² (synthetic markets, theory)."""

    name: str = "squared"
    task: Task = "regression"

    def loss(self, score: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
        return (score - y) ** 2

    def pseudo_label(self, score: jax.Array) -> jax.Array:
        return score


@FAMILIES.register("masked_multi_squared")
@dataclass(frozen=True)
class MaskedMultiSquared:
    """Multi-output least squares with a rated mask (MovieLens): ŷ = Θx, Θ ∈ R^{m×d}.

    Reported loss (1/m) Σ_k w_k (ŷ_k − y_k)². ``gradient_scaling="paper"`` steps with the
    gradient of the un-divided sum (the reference scripts' scaling, under which η = 5 was
    tuned); ``"consistent"`` steps with the gradient of the reported loss.
    """

    n_outputs: int = 200
    gradient_scaling: Literal["paper", "consistent"] = "paper"
    init_kind: Literal["uniform", "normal"] = "uniform"
    init_std: float = 0.01
    name: str = "masked_multi_squared"
    task: Task = "regression"

    def __post_init__(self) -> None:
        _check_positive_int("n_outputs", self.n_outputs)
        if self.gradient_scaling not in ("paper", "consistent"):
            raise ValueError(
                f"gradient_scaling must be 'paper' or 'consistent', got {self.gradient_scaling!r}"
            )
        if self.init_kind not in ("uniform", "normal"):
            raise ValueError(f"init_kind must be 'uniform' or 'normal', got {self.init_kind!r}")

    @classmethod
    def data_options(cls, dataset: Any) -> dict[str, Any]:
        return {"n_outputs": int(np.shape(dataset.y_train)[1])}

    @property
    def train_scale(self) -> float:
        return float(self.n_outputs) if self.gradient_scaling == "paper" else 1.0

    def init(self, key: jax.Array, n_learners: int, n_features: int, dtype: Any) -> Params:
        shape = (n_learners, self.n_outputs, n_features)
        if self.init_kind == "uniform":  # SPEC §5: MovieLens random init is U[0, 1)
            return jax.random.uniform(key, shape, dtype)
        return self.init_std * jax.random.normal(key, shape, dtype)

    def score(self, theta: Params, x: jax.Array) -> jax.Array:
        return x @ theta.T

    def loss(self, score: jax.Array, y: jax.Array, w: jax.Array | None) -> jax.Array:
        sq = (score - y) ** 2
        if w is None:
            return jnp.sum(sq, axis=-1) / self.n_outputs
        # A contraction, not sum(w * sq): XLA on the CPU lowers it as a dot, where the
        # broadcast-multiply-reduce form became a slow library reduce (1.5x per MovieLens step).
        return jnp.einsum("...k,...k->...", sq, w) / self.n_outputs

    def pseudo_label(self, score: jax.Array) -> jax.Array:
        return score


@FAMILIES.register("mlp")
@dataclass(frozen=True)
class MLP:
    """Two-layer ReLU network → logit, logistic loss (Census NN). PyTorch-style uniform init."""

    hidden: int = 64
    name: str = "mlp"
    task: Task = "classification"

    def __post_init__(self) -> None:
        _check_positive_int("hidden", self.hidden)

    @property
    def train_scale(self) -> float:
        return 1.0

    def init(self, key: jax.Array, n_learners: int, n_features: int, dtype: Any) -> Params:
        k1, k2, k3, k4 = jax.random.split(key, 4)
        b1 = 1.0 / jnp.sqrt(n_features)
        b2 = 1.0 / jnp.sqrt(self.hidden)
        h = self.hidden

        def u(k, shape, bound):
            return jax.random.uniform(k, shape, dtype, -bound, bound)

        return {
            "w1": u(k1, (n_learners, n_features, h), b1),
            "b1": u(k2, (n_learners, h), b1),
            "w2": u(k3, (n_learners, h), b2),
            "b2": u(k4, (n_learners,), b2),
        }

    def score(self, theta: Params, x: jax.Array) -> jax.Array:
        hidden = jax.nn.relu(x @ theta["w1"] + theta["b1"])
        return hidden @ theta["w2"] + theta["b2"]

    def loss(self, score: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
        return softplus(score) - y * score

    def pseudo_label(self, score: jax.Array) -> jax.Array:
        return (score > 0).astype(score.dtype)


def make_family(name: str, dataset: Any = None, **options: Any) -> Family:
    """Build a family by registered name or import path, e.g. ``make_family("mlp", hidden=32)``.

    With ``dataset``, the family's ``data_options(dataset)`` fill options not given.
    """
    cls = FAMILIES.get(name)
    if dataset is not None and hasattr(cls, "data_options"):
        options = {**cls.data_options(dataset), **options}
    try:
        return cls(**options)
    except TypeError as error:
        raise ValueError(f"options {sorted(options)} for family {name!r}: {error}") from None


def is_classifier(family: Family | type[Family] | str) -> bool:
    """Whether a family (an instance, a class or a registered name) classifies labels 0/1."""
    if isinstance(family, str):
        family = FAMILIES.get(family)
    return family.task == "classification"


def correct(family: Family, score: jax.Array, y: jax.Array) -> jax.Array:
    """Per-user 0/1 correctness of the thresholded score (classification families only)."""
    return ((score > 0) == (y > 0.5)).astype(score.dtype)


def learner_scores(family: Family, theta: Params, x: jax.Array) -> jax.Array:
    """Scores of every learner on the same users: [n, B] or [n, B, m]."""
    return jax.vmap(family.score, in_axes=(0, None))(theta, x)


def learner_losses(
    family: Family, theta: Params, x: jax.Array, y: jax.Array, w: jax.Array | None
) -> jax.Array:
    """Reported loss of every learner on the same users: [n, B]."""
    return family.loss(learner_scores(family, theta, x), y, w)
