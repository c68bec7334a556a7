"""Offline fits: ERM on each learner's preference partition ("good" init) and pooled baselines.

Least-squares families are solved exactly (ridge normal equations; masked per output);
other families use full-batch gradient descent on the mean training loss.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.data.dataset import Market
from userchoice.models import Family, MaskedMultiSquared, Params, Squared


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    # Minimum-norm solution when the partition leaves directions unidentified (ridge = 0).
    gram = x.T @ x + ridge * x.shape[0] * np.eye(x.shape[1])
    return np.linalg.lstsq(gram, x.T @ y, rcond=None)[0]


def fit(
    family: Family,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    *,
    ridge: float = 0.0,
    steps: int = 1000,
    eta: float = 0.1,
    init: Params | None = None,
    key: jax.Array | None = None,
) -> Params:
    """Fit one learner on (x, y[, w]); returns its parameters (no learner axis).

    Every path minimises mean loss + ``ridge``·|θ|² (exactly for least squares, by full-batch
    gradient descent otherwise).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape[0] == 0:
        raise ValueError("cannot fit a learner on an empty partition (no user prefers it)")
    if isinstance(family, Squared):
        return _ridge(x, y, ridge)
    if isinstance(family, MaskedMultiSquared):
        mask = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
        rows = []
        for k in range(y.shape[1]):
            seen = mask[:, k] > 0
            rows.append(_ridge(x[seen], y[seen, k], ridge) if seen.any() else np.zeros(x.shape[1]))
        return np.stack(rows)
    if steps < 1 or eta <= 0:
        raise ValueError(f"gradient-descent fit needs steps >= 1 and eta > 0, got {steps}, {eta}")
    if init is None:
        key = jax.random.key(0) if key is None else key
        init = jax.tree_util.tree_map(lambda a: a[0], family.init(key, 1, x.shape[1], jnp.float32))
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    wj = None if w is None else jnp.asarray(w, jnp.float32)

    def objective(theta):
        penalty = sum(jnp.sum(a**2) for a in jax.tree_util.tree_leaves(theta))
        return family.loss(family.score(theta, xj), yj, wj).mean() + ridge * penalty

    @jax.jit
    def descend(theta):
        def body(th, _):
            g = jax.grad(objective)(th)
            return jax.tree_util.tree_map(lambda a, b: a - eta * b, th, g), None

        return jax.lax.scan(body, theta, None, length=steps)[0]

    return jax.tree_util.tree_map(np.asarray, descend(init))


def erm_init(market: Market, family: Family, **options: Any) -> Params:
    """Each learner fitted on the training users whose favourite it is; learner axis first."""
    ds = market.dataset
    favourite = market.preferences_train.favourite
    fitted = []
    for i in range(market.n_learners):
        users = favourite == i
        if not users.any():
            raise ValueError(f"learner {i} is nobody's favourite: its ERM partition is empty")
        w = None if ds.w_train is None else np.asarray(ds.w_train)[users]
        fitted.append(fit(family, np.asarray(ds.x_train)[users], np.asarray(ds.y_train)[users],
                          w, **options))
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *fitted)


def pooled_fit(market: Market, family: Family, **options: Any) -> Params:
    """One learner fitted on every training user (the pooled optimum the market could reach)."""
    ds = market.dataset
    return fit(family, ds.x_train, ds.y_train, ds.w_train, **options)


def evaluate_loss(market: Market, family: Family, theta: Params) -> float:
    """Mean reported loss of one learner on the market's test users."""
    ds = market.dataset
    w = None if ds.w_test is None else jnp.asarray(ds.w_test)
    score = family.score(jax.tree_util.tree_map(jnp.asarray, theta), jnp.asarray(ds.x_test))
    return float(family.loss(score, jnp.asarray(ds.y_test), w).mean())
