"""Choice rules: which learner each arriving user picks.

A rule is an object with three pure, jittable methods (the ``ChoiceRule`` protocol):

- ``draw(key, batch_size, n_learners, dtype)`` → the randomness ``choose`` consumes for one
  batch (a pytree; only what the rule reads is drawn: random bits are a large share of a step);
- ``choose(losses[B, n], favourite[B], rank[B, n], draws, knobs)`` → choice[B] (int32);
- ``probabilities(losses, favourite, rank, knobs)`` → P(user b picks learner i), [B, n], the
  rule's exact probabilities (expected market shares, local losses and the potential).

``knobs`` is one run's ``Knobs`` (scalars): a rule reads the knobs it needs (τ, ζ, temperature,
prior, …). Randomness is passed in as uniform and Gumbel draws, so a NumPy reference fed the same
draws makes the same choices. Ties go to the lowest learner index (``argmin``/``argmax`` return
the first optimum). Rules are registered in ``CHOICE_RULES`` by name; a config names one by name
or by import path (``choice: mypkg.rules:MyRule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from userchoice.registry import Registry


class ChoiceDraws(NamedTuple):
    """Pre-drawn randomness of the built-in rules: coins u, v ~ U[0, 1) per user, Gumbel per
    (user, learner) pair; fields a rule does not read are None."""

    u: jax.Array | None = None  # [B] (tau_mixture, zeta_random)
    v: jax.Array | None = None  # [B] (zeta_random)
    gumbel: jax.Array | None = None  # [B, n] (logit)


class ChoiceRule(Protocol):
    """What the engine needs from a choice rule (hashable: it is part of the static spec)."""

    def draw(self, key: jax.Array, batch_size: int, n_learners: int, dtype: Any) -> Any: ...

    def choose(self, losses: jax.Array, favourite: jax.Array, rank: jax.Array, draws: Any,
               knobs: Any) -> jax.Array: ...

    def probabilities(self, losses: jax.Array, favourite: jax.Array, rank: jax.Array,
                      knobs: Any) -> jax.Array: ...


CHOICE_RULES: Registry[ChoiceRule] = Registry("choice rule")


def get_rule(rule: str | ChoiceRule) -> ChoiceRule:
    """A rule object from a registered name, an import path or the object itself. An import
    path may name a class (instantiated with no arguments) or an instance."""
    if not isinstance(rule, str):
        return rule
    found = CHOICE_RULES.get(rule)
    return found() if isinstance(found, type) else found


def _one_hot_argmin(values: jax.Array) -> jax.Array:
    return jax.nn.one_hot(jnp.argmin(values, axis=-1), values.shape[-1], dtype=values.dtype)


@dataclass(frozen=True)
class _NoDraws:
    """Deterministic rules draw nothing."""

    def draw(self, key: jax.Array, batch_size: int, n_learners: int, dtype: Any) -> ChoiceDraws:
        return ChoiceDraws()


@dataclass(frozen=True)
class TauMixture:
    """The favourite with probability τ, otherwise the learner with the lowest loss."""

    def draw(self, key, batch_size, n_learners, dtype) -> ChoiceDraws:
        return ChoiceDraws(u=jax.random.uniform(key, (batch_size,), dtype))

    def choose(self, losses, favourite, rank, draws, knobs) -> jax.Array:
        best = jnp.argmin(losses, axis=-1)
        return jnp.where(draws.u < knobs.tau, favourite, best).astype(jnp.int32)

    def probabilities(self, losses, favourite, rank, knobs) -> jax.Array:
        n = losses.shape[-1]
        return (knobs.tau * jax.nn.one_hot(favourite, n, dtype=losses.dtype)
                + (1 - knobs.tau) * _one_hot_argmin(losses))


@dataclass(frozen=True)
class Argmin(_NoDraws):
    """The learner with the lowest loss."""

    def choose(self, losses, favourite, rank, draws, knobs) -> jax.Array:
        return jnp.argmin(losses, axis=-1).astype(jnp.int32)

    def probabilities(self, losses, favourite, rank, knobs) -> jax.Array:
        return _one_hot_argmin(losses)


@dataclass(frozen=True)
class ZetaRandom:
    """A uniformly random learner with probability ζ, otherwise the lowest loss."""

    def draw(self, key, batch_size, n_learners, dtype) -> ChoiceDraws:
        ku, kv = jax.random.split(key)
        return ChoiceDraws(u=jax.random.uniform(ku, (batch_size,), dtype),
                           v=jax.random.uniform(kv, (batch_size,), dtype))

    def choose(self, losses, favourite, rank, draws, knobs) -> jax.Array:
        n = losses.shape[-1]
        uniform_pick = jnp.minimum((draws.v * n).astype(jnp.int32), n - 1)
        best = jnp.argmin(losses, axis=-1)
        return jnp.where(draws.u < knobs.zeta, uniform_pick, best).astype(jnp.int32)

    def probabilities(self, losses, favourite, rank, knobs) -> jax.Array:
        return knobs.zeta / losses.shape[-1] + (1 - knobs.zeta) * _one_hot_argmin(losses)


@dataclass(frozen=True)
class Logit:
    """Softmax over −loss/temperature plus log prior weights, sampled by Gumbel-max."""

    @staticmethod
    def logits(losses: jax.Array, knobs: Any) -> jax.Array:
        return -losses / knobs.temperature + jnp.log(knobs.prior)

    def draw(self, key, batch_size, n_learners, dtype) -> ChoiceDraws:
        return ChoiceDraws(gumbel=jax.random.gumbel(key, (batch_size, n_learners), dtype))

    def choose(self, losses, favourite, rank, draws, knobs) -> jax.Array:
        # Gumbel-max samples the softmax exactly and never exponentiates: any loss scale is safe.
        return jnp.argmax(self.logits(losses, knobs) + draws.gumbel, axis=-1).astype(jnp.int32)

    def probabilities(self, losses, favourite, rank, knobs) -> jax.Array:
        return jax.nn.softmax(self.logits(losses, knobs), axis=-1)  # log-sum-exp internally


@dataclass(frozen=True)
class AdditiveRank(_NoDraws):
    """The lowest loss + τ·(rank of the learner in the user's preference order)."""

    def choose(self, losses, favourite, rank, draws, knobs) -> jax.Array:
        return jnp.argmin(losses + knobs.tau * rank, axis=-1).astype(jnp.int32)

    def probabilities(self, losses, favourite, rank, knobs) -> jax.Array:
        return _one_hot_argmin(losses + knobs.tau * rank)


CHOICE_RULES.register("tau_mixture", TauMixture())
CHOICE_RULES.register("argmin", Argmin())
CHOICE_RULES.register("zeta_random", ZetaRandom())
CHOICE_RULES.register("logit", Logit())
CHOICE_RULES.register("additive_rank", AdditiveRank())


# Name-based shorthands (tests, notebooks): the rule looked up once per call.
def choose(rule: str | ChoiceRule, losses, favourite, rank, draws, knobs) -> jax.Array:
    """Index of the learner each user picks, [B] int32."""
    return get_rule(rule).choose(losses, favourite, rank, draws, knobs)


def choice_probabilities(rule: str | ChoiceRule, losses, favourite, rank, knobs) -> jax.Array:
    """P(user b picks learner i), [B, n]; rows sum to one."""
    return get_rule(rule).probabilities(losses, favourite, rank, knobs)


def draw_choice(rule: str | ChoiceRule, key, batch_size: int, n_learners: int, dtype) -> Any:
    """The randomness ``choose`` consumes for one batch, from one key."""
    return get_rule(rule).draw(key, batch_size, n_learners, dtype)
