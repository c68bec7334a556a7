"""The groups as device arrays, the market's state, and the risk every part of the dynamics
reads.

The metrics evaluate risks in centred form, R_j(θ) = (θ − θ*_j)ᵀA_j(θ − θ*_j) + min_j (θ*_j:
the group's own minimiser, min_j its minimal risk, both computed once on the host in float64):
the same quadratic as θᵀA_jθ − 2b_jᵀθ + c_j, without its cancellation near the optimum. The
rounds use the expanded form as matrix products (``risks_fast``), several times cheaper.
Logistic groups (``x`` not None) have no such form: both evaluate the mean logistic loss on the
groups' rows (``population.logistic``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.engine.spec import as_array
from userchoice.population import logistic
from userchoice.population.groups import GroupSet


class GroupArrays(NamedTuple):
    """A ``GroupSet`` as the dynamics read it. ``A`` is None when every A_j is a multiple
    a_j·I (``scale`` [G] holds a_j; quadratic groups): retraining is then a weighted mean."""

    A: jax.Array | None  # [G, d, d]
    scale: jax.Array | None  # [G] (isotropic groups only)
    b: jax.Array  # [G, d]
    center: jax.Array  # [G, d] θ*_j
    floor: jax.Array  # [G] min_θ R_j
    beta: jax.Array  # [G]
    counts: jax.Array  # [G]
    # logistic groups only (None for squared ones): the rows, shared by every run
    x: jax.Array | None = None  # [R, d]
    y: jax.Array | None = None  # [R] in {0, 1}
    member: jax.Array | None = None  # [R, G] one-hot: row r belongs to group g(r)
    ridge: jax.Array | None = None  # []

    @property
    def logistic(self) -> bool:
        return self.x is not None


def group_arrays(groups: GroupSet, dtype: Any = jnp.float64) -> GroupArrays:
    """The device arrays of ``groups`` in ``dtype`` (call inside the x64 mode the spec needs)."""

    def f(a):
        return as_array(a, dtype)

    iso = groups.isotropic
    scale = groups.A.trace(axis1=1, axis2=2) / groups.dim
    rows = {}
    if groups.loss == "logistic":
        rows = dict(x=f(groups.x), y=f(groups.y), member=f(np.eye(groups.n_groups)[
            groups.row_group]), ridge=f(groups.ridge))
    return GroupArrays(None if iso else f(groups.A), f(scale) if iso else None, f(groups.b),
                       f(groups.optimum), f(groups.min_risk), f(groups.beta), f(groups.counts),
                       **rows)


class MarketState(NamedTuple):
    """What the metrics read of one run: parameters, allocation and who is in the market."""

    theta: jax.Array  # [N, d]; learners not yet in the market hold zeros
    alpha: jax.Array  # [N, G]; α_ij, each group's column sums to 1 over the active learners
    active: jax.Array  # [N] bool (a prefix: learners 0 … n_active − 1)
    probing_on: jax.Array  # [] bool
    labels: jax.Array | None  # [|S|, G, d] source parameters s_ij of each prober (probing only)


def quad(arrays: GroupArrays, diff: jax.Array) -> jax.Array:
    """(Δ_j)ᵀA_j(Δ_j) for differences ``diff`` [..., G, d]: [..., G]."""
    if arrays.A is None:
        return arrays.scale * jnp.sum(diff * diff, axis=-1)
    return jnp.einsum("...gd,gde,...ge->...g", diff, arrays.A, diff)


def risks(arrays: GroupArrays, theta: jax.Array) -> jax.Array:
    """R_j(θ_i) for parameters [N, d]: [N, G], in centred form (accurate near the optimum: the
    metrics use it)."""
    if arrays.logistic:
        return logistic_risks(arrays, theta)
    return quad(arrays, theta[:, None, :] - arrays.center[None]) + arrays.floor


def risks_fast(arrays: GroupArrays, theta: jax.Array) -> jax.Array:
    """R_j(θ_i) = θᵀA_jθ − 2 b_jᵀθ + c_j as matrix products, [N, G]: what the rounds use (a
    fraction of the cost; absolute rounding ≈ eps·c_j, which the multiplicative weights and
    the stop rule do not notice)."""
    if arrays.logistic:
        return logistic_risks(arrays, theta)
    c = jnp.sum(arrays.b * arrays.center, axis=-1) + arrays.floor
    if arrays.A is None:
        square = jnp.sum(theta * theta, axis=-1)[:, None] * arrays.scale[None, :]
    else:
        outer = (theta[:, :, None] * theta[:, None, :]).reshape(theta.shape[0], -1)
        square = outer @ arrays.A.reshape(arrays.A.shape[0], -1).T
    return square - 2.0 * theta @ arrays.b.T + c[None, :]


def apply_A(arrays: GroupArrays, vectors: jax.Array) -> jax.Array:
    """A_j v_j for vectors [..., G, d]: [..., G, d]."""
    if arrays.A is None:
        return arrays.scale[:, None] * vectors
    return jnp.einsum("gde,...ge->...gd", arrays.A, vectors)


def logistic_risks(arrays: GroupArrays, theta: jax.Array) -> jax.Array:
    """Logistic groups' R_j(θ_i) = mean_{r ∈ j} ℓ(x_rᵀθ_i, y_r) + ridge·‖θ_i‖², [N, G]."""
    return logistic.group_risks(arrays.x, arrays.y, arrays.member, arrays.counts, arrays.ridge,
                                theta)
