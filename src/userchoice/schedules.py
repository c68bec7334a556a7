"""How large a step each learner takes: step-size schedules and batch normalisations.

- A schedule is a function ``(eta, t) → step size`` (t the step index, a float array).
- A normalisation is a function ``(chosen[B, n], counts[n], batch_size) → weights[B, n]``: the
  weight of each arriving user in each learner's gradient.

Both are registered by name (``SCHEDULES``, ``NORMALISATIONS``); a config names one by name or
import path. Adding one: a function and a ``register`` line.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from userchoice.registry import Registry

Schedule = Callable[[jax.Array, jax.Array], jax.Array]
Normalisation = Callable[[jax.Array, jax.Array, int], jax.Array]

SCHEDULES: Registry[Schedule] = Registry("schedule")
NORMALISATIONS: Registry[Normalisation] = Registry("normalisation")


@SCHEDULES.register("constant")
def constant(eta: jax.Array, t: jax.Array) -> jax.Array:
    """η at every step."""
    return eta


@SCHEDULES.register("inv_sqrt")
def inv_sqrt(eta: jax.Array, t: jax.Array) -> jax.Array:
    """η/√(t+1)."""
    return eta / jnp.sqrt(t + 1.0)


@SCHEDULES.register("inv")
def inv(eta: jax.Array, t: jax.Array) -> jax.Array:
    """η/(t+1), t counted from 0: Su & Dean's θ ← θ − η·g/(t+1) (their η = 1)."""
    return eta / (t + 1.0)


@NORMALISATIONS.register("mean")
def mean(chosen: jax.Array, counts: jax.Array, batch_size: int) -> jax.Array:
    """Each learner steps on the mean gradient over the users who chose it."""
    return chosen / jnp.maximum(counts, 1.0)


@NORMALISATIONS.register("su_dean")
def su_dean(chosen: jax.Array, counts: jax.Array, batch_size: int) -> jax.Array:
    """Su & Dean: the sum over the users who chose the learner, divided by the batch size B
    (with their B = 1, the one arriving user's gradient for the learner it chose, as ``mean``)."""
    return chosen / batch_size
