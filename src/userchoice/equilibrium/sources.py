"""Where a probing provider's pseudo-labels come from, in the share-competition equilibrium
(NEIGHBOURS §D: probing at equilibrium).

A prober j adds −p × its probe risk (its mean training loss against pseudo-labels ỹ(x) on the
same users x) to its share objective. The pseudo-labels are the *predicted labels* of a peer
source, computed from the other providers' current parameters when j's best response starts
(they stay fixed while j responds, as the others do). The names mirror MSGD-P's
(``userchoice.probing.SOURCES``) and the population dynamics' sources:

- ``median``    the label of the median score over all providers, the prober included
  (MSGD-P's ``median``, SPEC §4);
- ``majority``  the label of the median score over the *other* providers (with two
  providers: the peer's label);
- ``leader``    provider ``leader``'s label, or (``leader`` None) that of the other provider
  with the largest share;
- ``subset``    the label of the median score over the providers in ``subset`` other than
  the prober;
- ``preferred`` per user x, the label of the other provider x most likely chooses
  (argmax_k P_k(x), k ≠ j).

A source object has ``check(probing)``, ``validate(probing, n_providers)`` and
``labels(probing, prober, scores, probs, shares, multiclass)`` → [N] int32 (``prober`` a traced
int; ``scores`` [m, N] or [m, N, K]; ``probs`` P_k(x) [m, N]; ``shares`` [m]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from userchoice.choice_losses import predicted_labels
from userchoice.registry import Registry

EQUILIBRIUM_SOURCES: Registry[Any] = Registry("equilibrium probing source")


def get_equilibrium_source(source: Any) -> Any:
    """A source object from a registered name, an import path (a class is instantiated with no
    arguments) or the object itself."""
    if not isinstance(source, str):
        return source
    found = EQUILIBRIUM_SOURCES.get(source)
    return found() if isinstance(found, type) else found


def others(n: int, prober: jax.Array) -> jax.Array:
    """The providers other than ``prober``, [n] bool."""
    return jnp.arange(n) != prober


def masked_median(scores: jax.Array, keep: jax.Array) -> jax.Array:
    """The median over the providers where ``keep`` [m] of ``scores`` [m, N, ...]."""
    mask = keep.reshape((-1,) + (1,) * (scores.ndim - 1))
    return jnp.nanmedian(jnp.where(mask, scores, jnp.nan), axis=0)


def _check_range(name: str, indices: Any, n: int) -> None:
    for i in indices:
        if not 0 <= int(i) < n:
            raise ValueError(f"{name} entry {i} out of range; allowed [0, {n - 1}]")


@dataclass(frozen=True)
class EquilibriumSource:
    """Base of the built-in sources: no fields of their own to check."""

    def check(self, probing: Any) -> None:
        return None

    def validate(self, probing: Any, n_providers: int) -> None:
        return None

    def labels(self, probing: Any, prober: jax.Array, scores: jax.Array, probs: jax.Array,
               shares: jax.Array, multiclass: bool) -> jax.Array:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Median(EquilibriumSource):
    """The median score over all providers, the prober included."""

    def labels(self, probing, prober, scores, probs, shares, multiclass):
        return predicted_labels(jnp.median(scores, axis=0), multiclass)


@dataclass(frozen=True)
class Majority(EquilibriumSource):
    """The median score over the other providers."""

    def labels(self, probing, prober, scores, probs, shares, multiclass):
        keep = others(scores.shape[0], prober)
        return predicted_labels(masked_median(scores, keep), multiclass)


@dataclass(frozen=True)
class Leader(EquilibriumSource):
    """Provider ``leader``, or the other provider with the largest share (ties: lowest)."""

    def validate(self, probing, n_providers):
        if probing.leader is not None:
            _check_range("leader", (probing.leader,), n_providers)

    def labels(self, probing, prober, scores, probs, shares, multiclass):
        if probing.leader is not None:
            index = jnp.asarray(probing.leader)
        else:
            index = jnp.argmax(jnp.where(others(scores.shape[0], prober), shares, -jnp.inf))
        return predicted_labels(scores[index], multiclass)


@dataclass(frozen=True)
class Subset(EquilibriumSource):
    """The median score over the providers in ``subset`` other than the prober."""

    def check(self, probing):
        if not probing.subset:
            raise ValueError("source 'subset' needs a non-empty subset of provider indices")

    def validate(self, probing, n_providers):
        _check_range("subset", probing.subset, n_providers)
        for prober in probing.probers:
            if not any(i != prober for i in probing.subset):
                raise ValueError(f"subset must name a provider other than prober {prober} "
                                 f"(else it has no source)")

    def labels(self, probing, prober, scores, probs, shares, multiclass):
        n = scores.shape[0]
        member = jnp.zeros(n, bool).at[jnp.asarray(probing.subset)].set(True)
        return predicted_labels(masked_median(scores, member & others(n, prober)), multiclass)


@dataclass(frozen=True)
class Preferred(EquilibriumSource):
    """Per user, the other provider the user most likely chooses."""

    def labels(self, probing, prober, scores, probs, shares, multiclass):
        keep = others(scores.shape[0], prober)
        choice = jnp.argmax(jnp.where(keep[:, None], probs, -jnp.inf), axis=0)  # [N]
        own = predicted_labels(scores, multiclass)  # [m, N]
        return jnp.take_along_axis(own, choice[None], axis=0)[0]


EQUILIBRIUM_SOURCES.register("median", Median())
EQUILIBRIUM_SOURCES.register("majority", Majority())
EQUILIBRIUM_SOURCES.register("leader", Leader())
EQUILIBRIUM_SOURCES.register("subset", Subset())
EQUILIBRIUM_SOURCES.register("preferred", Preferred())
