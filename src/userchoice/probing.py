"""Peer-model probing (MSGD-P, SPEC §4): probe sets, pseudo-label sources, noise, refresh.

A probing learner i ∈ S owns a probe set: N_probe users drawn (with replacement) from the
training population, whose labels it never sees. It asks a *source* for each probe user's
score and turns it into a pseudo-label:

- ``median``    median score over all n learners (majority-good scenario)
- ``leader``    learner ``leader``'s score (known market leader)
- ``subset``    median score over the learners in ``subset`` (partial knowledge)
- ``preferred`` the score of the user's favourite learner π(u) (preference-aware)

With noise κ (per-user sources), each probe user's source is, with probability κ, a
uniformly random *other* learner. The source assignment is drawn once with the probe set; an
online refresh (every ``refresh_every`` steps) re-labels the same users from current peers.

A source is an object registered in ``SOURCES`` (the ``Source`` protocol): ``per_user`` says
whether it names one learner per probe user (then it has ``intended(spec, favourite)``, and
admits κ noise) or combines all learners' scores (``combine(spec, scores)``); ``check(spec)`` and
``validate(spec, n_learners)`` reject a spec it cannot serve, naming the field. A config names a
source by name or by import path (``source: mypkg.sources:Mean``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from userchoice.families import Family, Params, learner_scores
from userchoice.registry import Registry


class Source(Protocol):
    """Where a prober's pseudo-labels come from (hashable: part of the static spec)."""

    per_user: bool  # names one learner per probe user (admits κ noise)

    def check(self, spec: ProbingSpec) -> None: ...

    def validate(self, spec: ProbingSpec, n_learners: int) -> None: ...

    # per-user sources: the learner asked about each probe user, [|S|, N_probe] int32
    def intended(self, spec: ProbingSpec, favourite: jax.Array) -> jax.Array: ...

    # other sources: the score each probe user gets from all learners' [n, |S|, N_probe, ...]
    def combine(self, spec: ProbingSpec, scores: jax.Array) -> jax.Array: ...


SOURCES: Registry[Any] = Registry("probing source")


def get_source(source: str | Source) -> Source:
    """A source object from a registered name, an import path (a class is instantiated with no
    arguments) or the object itself."""
    if not isinstance(source, str):
        return source
    found = SOURCES.get(source)
    return found() if isinstance(found, type) else found


def _check_indices(name: str, indices: Any, n_learners: int) -> None:
    for i in indices:
        if not 0 <= int(i) < n_learners:
            raise ValueError(f"{name} entry {i} out of range; allowed [0, {n_learners - 1}]")


@dataclass(frozen=True)
class _Base:
    per_user = False

    def check(self, spec: ProbingSpec) -> None:
        return None

    def validate(self, spec: ProbingSpec, n_learners: int) -> None:
        return None


@dataclass(frozen=True)
class Median(_Base):
    """Median score over all n learners (majority-good scenario)."""

    def combine(self, spec: ProbingSpec, scores: jax.Array) -> jax.Array:
        return jnp.median(scores, axis=0)


@dataclass(frozen=True)
class Subset(_Base):
    """Median score over the learners in ``subset`` (partial knowledge)."""

    def check(self, spec: ProbingSpec) -> None:
        if not spec.subset:
            raise ValueError("source 'subset' needs a non-empty subset G of learner indices")

    def validate(self, spec: ProbingSpec, n_learners: int) -> None:
        _check_indices("subset", spec.subset, n_learners)

    def combine(self, spec: ProbingSpec, scores: jax.Array) -> jax.Array:
        return jnp.median(scores[jnp.asarray(spec.subset)], axis=0)


@dataclass(frozen=True)
class Leader(_Base):
    """Learner ``leader``'s score (known market leader)."""

    per_user = True

    def check(self, spec: ProbingSpec) -> None:
        if spec.leader is None:
            raise ValueError("source 'leader' needs leader=<index of the market leader>")

    def validate(self, spec: ProbingSpec, n_learners: int) -> None:
        if not 0 <= int(spec.leader) < n_learners:
            raise ValueError(f"leader {spec.leader} out of range; allowed [0, {n_learners - 1}]")

    def intended(self, spec: ProbingSpec, favourite: jax.Array) -> jax.Array:
        return jnp.full(favourite.shape, spec.leader, jnp.int32)


@dataclass(frozen=True)
class Preferred(_Base):
    """The score of each probe user's favourite learner π(u) (preference-aware)."""

    per_user = True

    def intended(self, spec: ProbingSpec, favourite: jax.Array) -> jax.Array:
        return favourite


SOURCES.register("median", Median())
SOURCES.register("leader", Leader())
SOURCES.register("subset", Subset())
SOURCES.register("preferred", Preferred())


@dataclass(frozen=True)
class ProbingSpec:
    """Static description of who probes, whom they ask, and how much they collect."""

    probers: tuple[int, ...]
    source: str | Source = "preferred"  # a registered name, an import path or a Source
    leader: int | None = None
    subset: tuple[int, ...] | None = None
    n_probe: int = 100
    probe_batch: int = 150
    refresh_every: int = 0  # 0: offline, labels from Θ⁰ only

    def __post_init__(self) -> None:
        for name in ("probers", "subset"):
            value = getattr(self, name)
            if value is None and name == "subset":
                continue
            if isinstance(value, str) or not hasattr(value, "__iter__"):
                raise ValueError(f"{name} must be a sequence of learner indices, e.g. "
                                 f"{name}=({value!r},), got {value!r}")
            object.__setattr__(self, name, tuple(int(i) for i in value))
        get_source(self.source)  # an unknown name fails here, naming the known ones
        if len(self.probers) == 0:
            raise ValueError("probers must name at least one learner (use probing=None for MSGD)")
        if len(set(self.probers)) != len(self.probers):
            raise ValueError(f"probers must not repeat a learner, got {self.probers}")
        for name in ("n_probe", "probe_batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        refresh = self.refresh_every
        if not isinstance(refresh, int) or isinstance(refresh, bool) or refresh < 0:
            raise ValueError(
                f"refresh_every must be an integer >= 0 (0 = offline), got {self.refresh_every!r}"
            )
        self.source_object.check(self)

    def validate(self, n_learners: int) -> None:
        """Check indices against the market size (raises ValueError naming the field)."""
        if n_learners < 2:
            raise ValueError(f"probing needs at least 2 learners, the market has {n_learners}")
        _check_indices("probers", self.probers, n_learners)
        self.source_object.validate(self, n_learners)

    @property
    def source_object(self) -> Source:
        return get_source(self.source)

    @property
    def per_user_source(self) -> bool:
        """Whether the source names one learner per probe user (these admit noise κ)."""
        return bool(self.source_object.per_user)


class ProbeDraws(NamedTuple):
    """Randomness of probe-set collection, [|S|, N_probe] each."""

    users: jax.Array  # training-user index of each probe user
    noise_coin: jax.Array  # U[0, 1): noisy source when < κ
    noise_pick: jax.Array  # U[0, 1): which other learner


def draw_probe_sets(key: jax.Array, spec: ProbingSpec, n_train: int, dtype) -> ProbeDraws:
    shape = (len(spec.probers), spec.n_probe)
    ku, kc, kp = jax.random.split(key, 3)
    # The two uniforms as one vectorised draw (the same numbers; one Threefry kernel to
    # compile instead of two).
    coin, pick = jax.vmap(lambda k: jax.random.uniform(k, shape, dtype))(jnp.stack([kc, kp]))
    return ProbeDraws(
        users=jax.random.randint(ku, shape, 0, n_train, dtype=jnp.int32),
        noise_coin=coin,
        noise_pick=pick,
    )


def source_index(
    spec: ProbingSpec,
    probe_favourite: jax.Array,
    draws: ProbeDraws,
    kappa: jax.Array,
    n_learners: int,
) -> jax.Array:
    """Learner asked about each probe user, [|S|, N_probe] (per-user sources only)."""
    intended = spec.source_object.intended(spec, probe_favourite)
    # Uniform over the n−1 learners other than `intended`: draw from 0..n−2 and skip it.
    other = jnp.minimum((draws.noise_pick * (n_learners - 1)).astype(jnp.int32), n_learners - 2)
    other = other + (other >= intended)
    return jnp.where(draws.noise_coin < kappa, other, intended).astype(jnp.int32)


def pseudo_labels(
    family: Family,
    spec: ProbingSpec,
    theta: Params,
    probe_x: jax.Array,
    source: jax.Array | None,
) -> jax.Array:
    """Pseudo-labels of every probe set from peers' parameters ``theta``: [|S|, N_probe, ...]."""
    n = jax.tree_util.tree_leaves(theta)[0].shape[0]
    n_sets, n_probe = probe_x.shape[:2]
    flat_x = probe_x.reshape(n_sets * n_probe, -1)
    scores = learner_scores(family, theta, flat_x)  # [n, S·Np, ...]
    scores = scores.reshape((n, n_sets, n_probe, *scores.shape[2:]))
    if spec.per_user_source:
        idx = source.reshape((1, n_sets, n_probe) + (1,) * (scores.ndim - 3))
        chosen = jnp.take_along_axis(scores, idx, axis=0)[0]
    else:
        chosen = spec.source_object.combine(spec, scores)
    return family.pseudo_label(chosen)
