"""Choice losses: the loss a user's choice reads, a part of a market of its own.

A *choice loss* ℓ(f(x), y) is what users compare when they choose (every choice rule reads it:
the streaming engine's rules in ``userchoice.choice``, the logit P_j(x) ∝ w_j e^{−ℓ_j(x)/c} of
the share-competition market of Jagadeesan et al., NeurIPS 2023). The loss users choose by need
not be the one a learner trains on: in the streaming engine ``EngineSpec.choice_loss`` (default:
the family's training loss), in the equilibrium ``EquilibriumSpec.choice_loss`` beside its
``train_loss``, e.g. users judge correctness (``zero_one``) while providers ascend a smooth
surrogate.

Built-in losses (``CHOICE_LOSSES``), with T the loss temperature (``loss_temperature``):

- ``soft01``             |y − σ(f/T)|, binary scores f [N] (the paper's soft 0-1 loss);
- ``soft01_multiclass``  ½‖onehot(y) − softmax(f/T)‖₁ = 1 − softmax(f/T)_y, scores [N, K];
- ``zero_one``           1[predicted label ≠ y] (Ginart-style correctness; not differentiable,
  so providers need a smooth ``train_loss``);
- ``logistic``           −log σ((2y − 1)f/T) (binary) or −log softmax(f/T)_y (multiclass).

A loss is a ``ChoiceLoss``: ``fn(scores, y, T)`` on one provider's scores (binary: [N];
multiclass: [N, K]) and the labels y [N] → losses [N] (the market vmaps it over providers), and
the forms it accepts (``binary``, ``multiclass``).
Register your own with ``CHOICE_LOSSES.register("name", ChoiceLoss(...))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from userchoice.registry import Registry


@dataclass(frozen=True)
class ChoiceLoss:
    """A choice loss and the score forms it accepts (hashable: part of the static spec)."""

    name: str
    fn: Callable[[jax.Array, jax.Array, float], jax.Array]
    binary: bool = True
    multiclass: bool = True
    smooth: bool = True  # differentiable: a provider can ascend its share under it

    def __call__(self, scores: jax.Array, y: jax.Array, temperature: float) -> jax.Array:
        return self.fn(scores, y, temperature)

    def accepts(self, multiclass: bool) -> bool:
        return self.multiclass if multiclass else self.binary


CHOICE_LOSSES: Registry[ChoiceLoss] = Registry("choice loss")


def get_choice_loss(loss: str | ChoiceLoss) -> ChoiceLoss:
    """A loss from a registered name, an import path or the object itself."""
    return loss if isinstance(loss, ChoiceLoss) else CHOICE_LOSSES.get(loss)


def predicted_labels(scores: jax.Array, multiclass: bool) -> jax.Array:
    """The label a score predicts: f > 0 (binary, ties → 0) or argmax_k f_k (ties → lowest)."""
    if multiclass:
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return (scores > 0).astype(jnp.int32)


def _log_softmax_at(scores: jax.Array, y: jax.Array, temperature: float) -> jax.Array:
    logp = jax.nn.log_softmax(scores / temperature, axis=-1)
    # a one-hot product, not a gather: cheaper to differentiate and to compile under vmap
    return jnp.sum(logp * jax.nn.one_hot(y, scores.shape[-1], dtype=logp.dtype), axis=-1)


def _signed(scores: jax.Array, y: jax.Array, temperature: float) -> jax.Array:
    """(2y − 1)·f/T: positive when the score points at the true label."""
    return jnp.where(y == 1, 1.0, -1.0).astype(scores.dtype) * scores / temperature


def soft01(scores: jax.Array, y: jax.Array, temperature: float) -> jax.Array:
    # |y − σ(z)| = σ(−(2y − 1)z): one sigmoid, no cancellation near 0 or 1
    return jax.nn.sigmoid(-_signed(scores, y, temperature))


def soft01_multiclass(scores: jax.Array, y: jax.Array, temperature: float) -> jax.Array:
    # ½‖e_y − s‖₁ = ½((1 − s_y) + Σ_{k≠y} s_k) = 1 − s_y; −expm1(log s_y) keeps it exact near 0
    return -jnp.expm1(_log_softmax_at(scores, y, temperature))


def zero_one(scores: jax.Array, y: jax.Array, temperature: float) -> jax.Array:
    return (predicted_labels(scores, scores.ndim == 2) != y).astype(scores.dtype)


def logistic(scores: jax.Array, y: jax.Array, temperature: float) -> jax.Array:
    if scores.ndim == 2:
        return -_log_softmax_at(scores, y, temperature)
    return jax.nn.softplus(-_signed(scores, y, temperature))


CHOICE_LOSSES.register("soft01", ChoiceLoss("soft01", soft01, multiclass=False))
CHOICE_LOSSES.register("soft01_multiclass",
                       ChoiceLoss("soft01_multiclass", soft01_multiclass, binary=False))
CHOICE_LOSSES.register("zero_one", ChoiceLoss("zero_one", zero_one, smooth=False))
CHOICE_LOSSES.register("logistic", ChoiceLoss("logistic", logistic))


def learner_choice_losses(loss: str | ChoiceLoss, scores: jax.Array, y: jax.Array,
                          temperature: float) -> jax.Array:
    """Every learner's choice loss on the same users: scores [n, N] (binary) or [n, N, K]
    (multiclass) and labels y [N] → [n, N]."""
    fn = get_choice_loss(loss)
    return jax.vmap(lambda s: fn(s, y, temperature))(scores)
