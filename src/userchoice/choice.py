"""Choice rules: which learner each arriving user picks.

Every rule has the same shape: ``choose(rule, losses[B, n], favourite[B], rank[B, n], draws,
knobs) -> choice[B]``, and ``choice_probabilities`` gives the rule's exact probabilities
(used for expected market shares and the potential). Randomness is passed in as uniform and
Gumbel draws, so a NumPy reference fed the same draws makes the same choices. Ties go to the
lowest learner index (``argmin``/``argmax`` return the first optimum).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

ChoiceRule = Literal["tau_mixture", "argmin", "zeta_random", "logit", "additive_rank"]
CHOICE_RULES: tuple[str, ...] = ("tau_mixture", "argmin", "zeta_random", "logit", "additive_rank")


class ChoiceKnobs(NamedTuple):
    """Per-run behavioural parameters (traced, so one compiled engine serves any values)."""

    tau: jax.Array  # preference weight (tau_mixture: P(pick favourite); additive_rank: rank cost)
    zeta: jax.Array  # zeta_random: P(uniformly random learner)
    temperature: jax.Array  # logit: softmax temperature over −loss
    log_prior: jax.Array  # logit: [n] log prior weight per learner


class ChoiceDraws(NamedTuple):
    """Pre-drawn randomness for one batch: coins u, v ~ U[0, 1) per user, Gumbel per pair."""

    u: jax.Array | None  # [B] (tau_mixture, zeta_random)
    v: jax.Array | None  # [B] (zeta_random)
    gumbel: jax.Array | None  # [B, n] (logit)


def check_rule(rule: str) -> None:
    if rule not in CHOICE_RULES:
        raise ValueError(f"choice rule must be one of {list(CHOICE_RULES)}, got {rule!r}")


def _logits(losses: jax.Array, knobs: ChoiceKnobs) -> jax.Array:
    return -losses / knobs.temperature + knobs.log_prior


def choose(
    rule: str,
    losses: jax.Array,
    favourite: jax.Array,
    rank: jax.Array,
    draws: ChoiceDraws,
    knobs: ChoiceKnobs,
) -> jax.Array:
    """Index of the learner each user picks, [B] int32."""
    n = losses.shape[-1]
    best = jnp.argmin(losses, axis=-1)
    if rule == "tau_mixture":
        choice = jnp.where(draws.u < knobs.tau, favourite, best)
    elif rule == "argmin":
        choice = best
    elif rule == "zeta_random":
        uniform_pick = jnp.minimum((draws.v * n).astype(jnp.int32), n - 1)
        choice = jnp.where(draws.u < knobs.zeta, uniform_pick, best)
    elif rule == "logit":
        # Gumbel-max samples the softmax exactly and never exponentiates, so any loss scale is safe.
        choice = jnp.argmax(_logits(losses, knobs) + draws.gumbel, axis=-1)
    elif rule == "additive_rank":
        choice = jnp.argmin(losses + knobs.tau * rank, axis=-1)
    else:
        check_rule(rule)
    return choice.astype(jnp.int32)


def choice_probabilities(
    rule: str,
    losses: jax.Array,
    favourite: jax.Array,
    rank: jax.Array,
    knobs: ChoiceKnobs,
) -> jax.Array:
    """P(user b picks learner i), [B, n]; rows sum to one."""
    n = losses.shape[-1]
    dtype = losses.dtype
    best = jax.nn.one_hot(jnp.argmin(losses, axis=-1), n, dtype=dtype)
    if rule == "tau_mixture":
        return knobs.tau * jax.nn.one_hot(favourite, n, dtype=dtype) + (1 - knobs.tau) * best
    if rule == "argmin":
        return best
    if rule == "zeta_random":
        return knobs.zeta / n + (1 - knobs.zeta) * best
    if rule == "logit":
        return jax.nn.softmax(_logits(losses, knobs), axis=-1)  # log-sum-exp internally
    if rule == "additive_rank":
        return jax.nn.one_hot(jnp.argmin(losses + knobs.tau * rank, axis=-1), n, dtype=dtype)
    check_rule(rule)
    raise AssertionError  # unreachable


def draw_choice(
    rule: str, key: jax.Array, batch_size: int, n_learners: int, dtype: jax.typing.DTypeLike
) -> ChoiceDraws:
    """The randomness ``choose`` consumes for one batch, from one key.

    Only what the rule reads is drawn (random bits are a large share of a step's cost);
    the rest is None.
    """
    u = v = gumbel = None
    if rule == "tau_mixture":
        u = jax.random.uniform(key, (batch_size,), dtype)
    elif rule == "zeta_random":
        ku, kv = jax.random.split(key)
        u = jax.random.uniform(ku, (batch_size,), dtype)
        v = jax.random.uniform(kv, (batch_size,), dtype)
    elif rule == "logit":
        gumbel = jax.random.gumbel(key, (batch_size, n_learners), dtype)
    return ChoiceDraws(u, v, gumbel)
