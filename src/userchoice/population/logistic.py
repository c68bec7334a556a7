"""Logistic groups: weighted logistic risks on the groups' rows, and their Newton solver (JAX).

A logistic group j has no sufficient statistics: its risk R_j(θ) = mean_{r ∈ j} ℓ(x_rᵀθ, y_r)
+ ridge·‖θ‖², ℓ(z, y) = log(1 + eᶻ) − y·z, y ∈ {0, 1}, reads its rows. The rows are kept flat,
x [R, d] with a one-hot membership matrix [R, G], not padded to [G, N_max, d]: census groups are
very unequal (RAC1P: 3,651 rows against 30), so padding would multiply the work by G·N_max/R,
while every per-group sum here is one dense matrix product (losses [n, R] @ member [R, G]),
which batches under ``vmap`` over runs as a plain GEMM (a segment sum would become a batched
scatter). The rows are shared by every run (not batched), so they cost memory once.

Every learner's objective has the form

    f_n(θ) = Σ_r c_nr·softplus(x_rᵀθ) − t_nr·x_rᵀθ + ρ_n·‖θ‖²

(retraining: c_nr = w_n,g(r) / N_g(r), t_nr = c_nr·y_r, ρ_n = ridge·Σ_j w_nj; a probe term adds
rows with soft targets, the source's predicted probabilities). ``minimise`` runs Newton's
method on it with a backtracking line search over a fixed grid of step sizes (never an
increase of f; the full step near the optimum, so convergence is quadratic), each learner
stopping once converged (see ``minimise``) — a converged learner no longer moves, so results
do not depend on the other learners or runs in a batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

MAX_NEWTON = 50  # Newton steps at most (a well-posed problem converges in well under 20)
STEPS = tuple(0.5**k for k in range(12))  # the line search's step lengths, largest first
ARMIJO = 1e-4


def tolerance(dtype: Any) -> float:
    """The Newton stopping tolerance on max|Δθ| / max(1, max|θ|): 1e-10 in float64, the
    precision float32 allows otherwise."""
    return max(1e-10, 100 * float(jnp.finfo(dtype).eps))


def row_losses(x: jax.Array, y: jax.Array, theta: jax.Array) -> jax.Array:
    """ℓ(x_rᵀθ_n, y_r) = softplus(z) − y·z for parameters [n, d]: [n, R] (y may be soft)."""
    z = theta @ x.T
    return jax.nn.softplus(z) - y[None, :] * z


def group_risks(x: jax.Array, y: jax.Array, member: jax.Array, counts: jax.Array,
                ridge: jax.Array, theta: jax.Array) -> jax.Array:
    """R_j(θ_n) = mean_{r ∈ j} ℓ(x_rᵀθ_n, y_r) + ridge·‖θ_n‖², [n, G]."""
    means = row_losses(x, y, theta) @ member / counts[None, :]
    return means + ridge * jnp.sum(theta * theta, axis=-1)[:, None]


def objective(x: jax.Array, c: jax.Array, t: jax.Array, rho: jax.Array,
              theta: jax.Array) -> jax.Array:
    """f_n(θ_n), [n]."""
    z = theta @ x.T
    return jnp.sum(c * jax.nn.softplus(z) - t * z, axis=-1) + rho * jnp.sum(theta * theta, -1)


def gradient(x: jax.Array, c: jax.Array, t: jax.Array, rho: jax.Array,
             theta: jax.Array) -> jax.Array:
    """∇f_n(θ_n) = Σ_r (c_nr σ(x_rᵀθ) − t_nr) x_r + 2ρ_nθ_n, [n, d]."""
    z = theta @ x.T
    return (c * jax.nn.sigmoid(z) - t) @ x + 2.0 * rho[:, None] * theta


def minimise(x: jax.Array, c: jax.Array, t: jax.Array, rho: jax.Array, theta: jax.Array,
             done: jax.Array | None = None, max_steps: int = MAX_NEWTON) -> jax.Array:
    """argmin_θ f_n(θ) for every learner n by Newton's method from ``theta`` [n, d] (a warm
    start); learners where ``done`` [n] keep their parameters. f must be strictly convex
    (ρ_n > 0, or rows spanning ℝᵈ with c_nr > 0).

    Each step halves its length until it decreases f enough (Armijo; at most
    ``len(STEPS)`` halvings, else no move). The logits and f of the current iterate are
    carried, so a step costs one Hessian product, one solve and one loss evaluation per
    halving (near the optimum: none). A learner stops after a full step of length at most
    √tol·0.1 (relative): Newton's quadratic convergence leaves an error of order its square,
    so one further step would not change θ measurably; or after a step below ``tol``."""
    n, d = theta.shape
    tol = tolerance(theta.dtype)
    quadratic = 0.1 * tol**0.5
    # Σ_r h_r x_r x_rᵀ for all learners as one product: the rows' outer products [R, d²]
    outer = (x[:, :, None] * x[:, None, :]).reshape(x.shape[0], d * d)
    eye = jnp.eye(d, dtype=theta.dtype)
    done = jnp.zeros(n, bool) if done is None else done
    slack_scale = 8 * jnp.finfo(theta.dtype).eps  # rounding of f at the optimum

    def loss_at(z: jax.Array, th: jax.Array) -> jax.Array:
        return jnp.sum(c * jax.nn.softplus(z) - t * z, axis=-1) + rho * jnp.sum(th * th, -1)

    def body(carry):
        k, th, z, f0, fin = carry
        p = jax.nn.sigmoid(z)
        g = (c * p - t) @ x + 2.0 * rho[:, None] * th
        h = ((c * p * (1.0 - p)) @ outer).reshape(n, d, d) + 2.0 * rho[:, None, None] * eye
        delta = -jnp.linalg.solve(h, g[..., None])[..., 0]
        delta = jnp.where((fin | ~jnp.all(jnp.isfinite(delta), axis=-1))[:, None], 0.0, delta)
        u = delta @ x.T
        slope = jnp.sum(g * delta, axis=-1)  # ≤ 0: a descent direction
        slack = slack_scale * jnp.abs(f0)

        def accept(size, f):
            return f <= f0 + ARMIJO * size * slope + slack

        def halve(inner):
            j, size, f, ok = inner
            size = jnp.where(ok, size, 0.5 * size)
            f = jnp.where(ok, f, loss_at(z + size[:, None] * u, th + size[:, None] * delta))
            return j + 1, size, f, ok | accept(size, f)

        size = jnp.ones(n, theta.dtype)
        f1 = loss_at(z + u, th + delta)
        _, size, f1, ok = jax.lax.while_loop(
            lambda inner: (inner[0] < len(STEPS)) & ~jnp.all(inner[3]), halve,
            (jnp.asarray(1), size, f1, accept(size, f1)))
        size = jnp.where(ok, size, 0.0)
        new = th + size[:, None] * delta
        length = jnp.max(jnp.abs(size[:, None] * delta), axis=-1) / jnp.maximum(
            1.0, jnp.max(jnp.abs(th), axis=-1))
        stop = ~ok | (length <= tol) | ((size == 1.0) & (length <= quadratic))
        return (k + 1, new, z + size[:, None] * u, jnp.where(ok, f1, f0), fin | stop)

    def cond(carry):
        return (carry[0] < max_steps) & ~jnp.all(carry[4])

    z0 = theta @ x.T
    carry = (jnp.asarray(0), theta, z0, loss_at(z0, theta), done)
    return jax.lax.while_loop(cond, body, carry)[1]


@jax.jit
def fit_groups(x: jax.Array, y: jax.Array, member: jax.Array, counts: jax.Array,
               ridge: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each group's own minimiser θ*_j [G, d], minimal risk R_j(θ*_j) [G] and Hessian
    ∇²R_j(θ*_j) [G, d, d], by ``minimise`` from θ = 0 (call in float64)."""
    c = member.T / counts[:, None]  # one "learner" per group, weighted 1 on its own rows
    g, d = member.shape[1], x.shape[1]
    rho = jnp.full((g,), ridge, x.dtype)
    theta = minimise(x, c, c * y[None, :], rho, jnp.zeros((g, d), x.dtype))
    p = jax.nn.sigmoid(theta @ x.T)
    hessian = jnp.einsum("gr,rd,re->gde", c * p * (1 - p), x, x) + 2 * ridge * jnp.eye(d)
    return theta, group_risks(x, y, member, counts, ridge, theta).diagonal(), hessian
