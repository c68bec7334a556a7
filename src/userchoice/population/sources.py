"""Where a probing learner's pseudo-labels come from, in the population (mean-field) dynamics.

In MSGD-P (``userchoice.probing``) a prober labels probe users with a source's *predictions*.
In the mean field there are no users, only each group's sufficient statistics, so a source
names, for every group j, a *source parameter* s_ij [d]: the prober's pseudo-label on group j's
users is what s_ij predicts, and its probe risk on group j is the risk against those labels,
R̃_j(θ) = (θ − s_ij)ᵀA_j(θ − s_ij) (for quadratic groups ‖θ − s_ij‖²).

Built-in sources (``POPULATION_SOURCES``):

- ``majority``  coordinate-wise median of the *other* active learners' parameters (the default;
  with two learners: the peer). A median of parameters, not of predictions: predictions
  per user are not available from sufficient statistics;
- ``median``    the same median over *all* active learners, the prober included (MSGD-P's
  ``median`` source, SPEC §4, so configs can share the name);
- ``leader``    learner ``leader``'s parameters, or (``leader`` None) those of the active learner
  other than the prober with the largest share Σ_j β_j α_kj (ties: lowest index);
- ``subset``    median of the active learners in ``subset`` other than the prober;
- ``preferred`` per group j, the learner group j allocates most to (argmax_k α_kj over the
  active learners other than the prober): the mean-field form of "ask each user's favourite".

Noise κ (sources with ``per_user``: ``leader``, ``preferred``): in MSGD-P each probe user's
source is, with probability κ, a uniformly random other learner. The mean field takes the
expectation: s_ij ← (1 − κ)·s_ij + κ·mean_{k ≠ i active} θ_k. For a quadratic probe risk this is
exact for the minimiser and the gradient (E‖θ − s‖²_A and ‖θ − E s‖²_A differ by a constant).
For logistic groups (a cross-entropy against σ(xᵀs)) mixing parameters is an approximation:
the exact expectation would mix the predicted probabilities.

Adding a source: register an object with ``per_user`` (bool), ``check(probing)``,
``validate(probing, n_learners, max_n)`` and ``labels(probing, prober, theta, alpha, beta,
active)`` → [G, d] (``prober`` a Python int; ``theta`` [N, d], ``alpha`` [N, G], ``beta`` [G],
``active`` [N] bool; inactive learners are not in the market and must be ignored), e.g.

    @POPULATION_SOURCES.register("mean")
    class Mean(PopulationSource):
        def labels(self, probing, prober, theta, alpha, beta, active):
            keep = others(active, prober)
            mean = (theta * keep[:, None]).sum(0) / keep.sum()
            return jnp.broadcast_to(mean, (alpha.shape[1], theta.shape[1]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from userchoice.registry import Registry

POPULATION_SOURCES: Registry[Any] = Registry("population probing source")


def get_population_source(source: Any) -> Any:
    """A source object from a registered name, an import path (a class is instantiated with no
    arguments) or the object itself."""
    if not isinstance(source, str):
        return source
    found = POPULATION_SOURCES.get(source)
    return found() if isinstance(found, type) else found


def others(active: jax.Array, prober: int) -> jax.Array:
    """The active learners other than ``prober``, [N] bool."""
    return active & (jnp.arange(active.shape[0]) != prober)


def masked_median(theta: jax.Array, keep: jax.Array) -> jax.Array:
    """Coordinate-wise median of the rows of ``theta`` [N, d] where ``keep`` [N], [d]."""
    return jnp.nanmedian(jnp.where(keep[:, None], theta, jnp.nan), axis=0)


def _per_group(vector: jax.Array, n_groups: int) -> jax.Array:
    return jnp.broadcast_to(vector, (n_groups, vector.shape[0]))


def _check_range(name: str, indices: Any, limit: int, what: str) -> None:
    for i in indices:
        if not 0 <= int(i) < limit:
            raise ValueError(f"{name} entry {i} out of range; allowed [0, {limit - 1}] ({what})")


@dataclass(frozen=True)
class PopulationSource:
    """Base of the built-in sources: no extra fields to check."""

    per_user = False

    def check(self, probing: Any) -> None:
        return None

    def validate(self, probing: Any, n_learners: int, max_n: int) -> None:
        return None

    def labels(self, probing: Any, prober: int, theta: jax.Array, alpha: jax.Array,
               beta: jax.Array, active: jax.Array) -> jax.Array:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass(frozen=True)
class Majority(PopulationSource):
    """Median of the other active learners' parameters."""

    def labels(self, probing, prober, theta, alpha, beta, active):
        return _per_group(masked_median(theta, others(active, prober)), alpha.shape[1])


@dataclass(frozen=True)
class Median(PopulationSource):
    """Median of all active learners' parameters, the prober included (SPEC §4)."""

    def labels(self, probing, prober, theta, alpha, beta, active):
        return _per_group(masked_median(theta, active), alpha.shape[1])


@dataclass(frozen=True)
class Leader(PopulationSource):
    """Learner ``leader``, or the largest-share active learner other than the prober."""

    per_user = True

    def validate(self, probing, n_learners, max_n):
        if probing.leader is not None:
            _check_range("leader", (probing.leader,), n_learners, "a learner present from the "
                         "start")

    def labels(self, probing, prober, theta, alpha, beta, active):
        if probing.leader is not None:
            index = jnp.asarray(probing.leader)
        else:
            share = jnp.where(others(active, prober), alpha @ beta, -jnp.inf)
            index = jnp.argmax(share)
        return _per_group(theta[index], alpha.shape[1])


@dataclass(frozen=True)
class Subset(PopulationSource):
    """Median of the active learners in ``subset`` other than the prober."""

    def check(self, probing):
        if not probing.subset:
            raise ValueError("source 'subset' needs a non-empty subset of learner indices")

    def validate(self, probing, n_learners, max_n):
        _check_range("subset", probing.subset, max_n, "learners up to the entry cap")
        present = [i for i in probing.subset if i < n_learners]
        for prober in probing.probers:
            if not any(i != prober for i in present):
                raise ValueError(f"subset must name a learner present from the start other "
                                 f"than prober {prober} (else it has no source)")

    def labels(self, probing, prober, theta, alpha, beta, active):
        member = jnp.zeros(active.shape[0], bool).at[jnp.asarray(probing.subset)].set(True)
        return _per_group(masked_median(theta, member & others(active, prober)),
                          alpha.shape[1])


@dataclass(frozen=True)
class Preferred(PopulationSource):
    """Per group, the active learner (other than the prober) it allocates most to."""

    per_user = True

    def labels(self, probing, prober, theta, alpha, beta, active):
        score = jnp.where(others(active, prober)[:, None], alpha, -jnp.inf)
        return theta[jnp.argmax(score, axis=0)]  # [G, d]


POPULATION_SOURCES.register("majority", Majority())
POPULATION_SOURCES.register("median", Median())
POPULATION_SOURCES.register("leader", Leader())
POPULATION_SOURCES.register("subset", Subset())
POPULATION_SOURCES.register("preferred", Preferred())


def with_noise(labels: jax.Array, theta: jax.Array, active: jax.Array, prober: int,
               kappa: jax.Array) -> jax.Array:
    """The expected source under noise κ: (1 − κ)·labels + κ·mean of the other active
    learners' parameters."""
    keep = others(active, prober)
    mean = (theta * keep[:, None]).sum(axis=0) / jnp.maximum(keep.sum(), 1)
    return (1 - kappa) * labels + kappa * mean[None, :]
