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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from userchoice.families import Family, Params, learner_scores

Source = Literal["median", "leader", "subset", "preferred"]
SOURCES: tuple[str, ...] = ("median", "leader", "subset", "preferred")


@dataclass(frozen=True)
class ProbingSpec:
    """Static description of who probes, whom they ask, and how much they collect."""

    probers: tuple[int, ...]
    source: Source = "preferred"
    leader: int | None = None
    subset: tuple[int, ...] | None = None
    n_probe: int = 100
    probe_batch: int = 150
    refresh_every: int = 0  # 0: offline, labels from Θ⁰ only

    def __post_init__(self) -> None:
        object.__setattr__(self, "probers", tuple(int(i) for i in self.probers))
        if self.subset is not None:
            object.__setattr__(self, "subset", tuple(int(i) for i in self.subset))
        if self.source not in SOURCES:
            raise ValueError(f"probing source must be one of {list(SOURCES)}, got {self.source!r}")
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
        if self.source == "leader" and self.leader is None:
            raise ValueError("source 'leader' needs leader=<index of the market leader>")
        if self.source == "subset" and not self.subset:
            raise ValueError("source 'subset' needs a non-empty subset G of learner indices")

    def validate(self, n_learners: int) -> None:
        """Check indices against the market size (raises ValueError naming the field)."""
        if n_learners < 2:
            raise ValueError(f"probing needs at least 2 learners, the market has {n_learners}")
        allowed = f"[0, {n_learners - 1}]"
        for i in self.probers:
            if not 0 <= i < n_learners:
                raise ValueError(f"probers entry {i} out of range; allowed {allowed}")
        if self.source == "leader" and not 0 <= int(self.leader) < n_learners:
            raise ValueError(f"leader {self.leader} out of range; allowed {allowed}")
        if self.source == "subset":
            for i in self.subset:
                if not 0 <= i < n_learners:
                    raise ValueError(f"subset entry {i} out of range; allowed {allowed}")

    @property
    def per_user_source(self) -> bool:
        """Sources that name one learner per probe user (these admit noise κ)."""
        return self.source in ("leader", "preferred")

    def group(self, n_learners: int) -> tuple[int, ...]:
        """Learners whose median is the source (median-type sources)."""
        return tuple(range(n_learners)) if self.source == "median" else tuple(self.subset)


class ProbeDraws(NamedTuple):
    """Randomness of probe-set collection, [|S|, N_probe] each."""

    users: jax.Array  # training-user index of each probe user
    noise_coin: jax.Array  # U[0, 1): noisy source when < κ
    noise_pick: jax.Array  # U[0, 1): which other learner


def draw_probe_sets(key: jax.Array, spec: ProbingSpec, n_train: int, dtype) -> ProbeDraws:
    shape = (len(spec.probers), spec.n_probe)
    ku, kc, kp = jax.random.split(key, 3)
    return ProbeDraws(
        users=jax.random.randint(ku, shape, 0, n_train, dtype=jnp.int32),
        noise_coin=jax.random.uniform(kc, shape, dtype),
        noise_pick=jax.random.uniform(kp, shape, dtype),
    )


def source_index(
    spec: ProbingSpec,
    probe_favourite: jax.Array,
    draws: ProbeDraws,
    kappa: jax.Array,
    n_learners: int,
) -> jax.Array:
    """Learner asked about each probe user, [|S|, N_probe] (per-user sources only)."""
    if spec.source == "preferred":
        intended = probe_favourite
    else:
        intended = jnp.full(probe_favourite.shape, spec.leader, jnp.int32)
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
        chosen = jnp.median(scores[jnp.asarray(spec.group(n))], axis=0)
    return family.pseudo_label(chosen)
