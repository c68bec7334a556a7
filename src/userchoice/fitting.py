"""Offline fits: ERM on each learner's preference partition ("good" init) and pooled baselines.

Least-squares families are solved exactly (ridge normal equations; masked per output);
other families use full-batch gradient descent on the mean training loss.

Two conventions for the ridge weight λ (``ridge_convention``), for n the users a fit sees (for
MovieLens: the raters of one movie in the learner's partition):

- ``"per_user"`` (the library's default): minimise mean loss + λ·|θ|², i.e. λ is a weight per
  user; least squares solves (XᵀX + λ·n·I)θ = Xᵀy. The penalty's strength relative to the data
  does not depend on how many users a partition has, as for the engine's online ``lam``.
- ``"paper"``: minimise summed loss + λ·|θ|² (mean loss + (λ/n)·|θ|²); least squares solves
  (XᵀX + λI)θ = Xᵀy, the paper's scripts' per-movie ridge (SPEC §5). The paper configs say so
  (``init: {kind: erm, options: {ridge: 0.001, ridge_convention: paper}}``).

They agree for λ = 0.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.families import Family, Logistic, MaskedMultiSquared, Params, Squared
from userchoice.market import Market

RIDGE_CONVENTIONS = ("per_user", "paper")


def _ridge_scale(convention: str, n: int) -> float:
    """The factor s in (XᵀX + λ·s·I)θ = Xᵀy for n users: n (per_user) or 1 (paper)."""
    if convention not in RIDGE_CONVENTIONS:
        raise ValueError(f"ridge_convention must be one of {list(RIDGE_CONVENTIONS)}, got "
                         f"{convention!r}")
    return float(n) if convention == "per_user" else 1.0


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float, convention: str = "per_user"
           ) -> np.ndarray:
    """Solve (XᵀX + λ·s·I)θ = Xᵀy, s = n (per_user) or 1 (paper). Minimum-norm solution when
    the partition leaves directions unidentified (ridge = 0)."""
    gram = x.T @ x + ridge * _ridge_scale(convention, x.shape[0]) * np.eye(x.shape[1])
    return np.linalg.lstsq(gram, x.T @ y, rcond=None)[0]


def fit(
    family: Family,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    *,
    ridge: float = 0.0,
    ridge_convention: str = "per_user",
    steps: int = 1000,
    eta: float = 0.1,
    batch_size: int | None = None,
    epochs: int = 5,
    init: Params | None = None,
    key: jax.Array | None = None,
) -> Params:
    """Fit one learner on (x, y[, w]); returns its parameters (no learner axis).

    Every path minimises mean loss + ``ridge``·|θ|² (``ridge_convention="per_user"``) or
    summed loss + ``ridge``·|θ|² (``"paper"``; see the module docstring): exactly for least
    squares (per output over its rated users for the masked family); otherwise by full-batch
    gradient descent (``steps`` steps of size ``eta``) or, with ``batch_size``, minibatch SGD
    for ``epochs`` epochs over a seeded shuffle (SPEC §5: the MLP uses 5 epochs of batch 512).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape[0] == 0:
        raise ValueError("cannot fit a learner on an empty partition (no user prefers it)")
    _ridge_scale(ridge_convention, 1)  # a bad name is an error on every path
    if isinstance(family, Squared):
        return _ridge(x, y, ridge, ridge_convention)
    if isinstance(family, MaskedMultiSquared):
        mask = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
        rows = []
        for k in range(y.shape[1]):
            seen = mask[:, k] > 0
            rows.append(_ridge(x[seen], y[seen, k], ridge, ridge_convention) if seen.any()
                        else np.zeros(x.shape[1]))
        return np.stack(rows)
    if steps < 1 or eta <= 0 or epochs < 1:
        raise ValueError(f"gradient-descent fit needs steps >= 1, epochs >= 1 and eta > 0, "
                         f"got steps={steps}, epochs={epochs}, eta={eta}")
    key = jax.random.key(0) if key is None else key
    if init is None:
        init = jax.tree_util.tree_map(lambda a: a[0], family.init(key, 1, x.shape[1], jnp.float32))
    xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    wj = None if w is None else jnp.asarray(w, jnp.float32)
    # mean loss + weight·|θ|²: weight = λ (per_user) or λ/n (paper: summed loss + λ·|θ|²)
    weight = ridge if ridge_convention == "per_user" else ridge / x.shape[0]

    def objective(theta, rows):
        penalty = sum(jnp.sum(a**2) for a in jax.tree_util.tree_leaves(theta))
        loss = family.loss(family.score(theta, xj[rows]), yj[rows], None if wj is None
                           else wj[rows])
        return loss.mean() + weight * penalty

    def descend(theta, rows):
        g = jax.grad(objective)(theta, rows)
        return jax.tree_util.tree_map(lambda a, b: a - eta * b, theta, g), None

    if batch_size is None:
        every = jnp.arange(x.shape[0])
        run = jax.jit(lambda th: jax.lax.scan(lambda t, _: descend(t, every), th, None,
                                              length=steps)[0])
        return jax.tree_util.tree_map(np.asarray, run(init))
    n_batches = max(1, x.shape[0] // batch_size)
    order = np.concatenate([np.random.default_rng(epoch).permutation(x.shape[0])
                            [: n_batches * batch_size] for epoch in range(epochs)])
    batches = jnp.asarray(order.reshape(epochs * n_batches, -1))
    run = jax.jit(lambda th: jax.lax.scan(descend, th, batches)[0])
    return jax.tree_util.tree_map(np.asarray, run(init))


def erm_init(market: Market, family: Family, **options: Any) -> Params:
    """Each learner fitted on the training users whose favourite it is; learner axis first.

    ``options`` are ``fit``'s (``ridge``, ``ridge_convention``, ``steps``, ``eta``, ...); the
    paper's MovieLens init is ``ridge=1e-3, ridge_convention="paper"``, i.e. per movie k and
    learner (XᵀX + λI)θ = Xᵀy over the partition's raters of k."""
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
    return evaluate_metrics(market, family, theta)["test_loss"]


def pooled_baseline(market: Market, family: Family, **options: Any) -> tuple[Params, dict]:
    """The pooled model and its test metrics (SPEC §7).

    Logistic: scikit-learn L2 logistic regression on every training user, no intercept
    (``C`` option, default 1.0). Other families: ``pooled_fit`` (exact least squares per output
    for MovieLens, gradient descent for the MLP).
    """
    ds = market.dataset
    if isinstance(family, Logistic):
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=options.get("C", 1.0), fit_intercept=False, max_iter=2000)
        model.fit(np.asarray(ds.x_train), np.asarray(ds.y_train).astype(int))
        theta = model.coef_[0].astype(float)
    else:
        theta = pooled_fit(market, family, **options)
    return theta, evaluate_metrics(market, family, theta)


def evaluate_metrics(market: Market, family: Family, theta: Params) -> dict[str, float]:
    """Test loss (and accuracy for classifiers) of one learner on the market's test users."""
    ds = market.dataset
    w = None if ds.w_test is None else jnp.asarray(ds.w_test)
    params = jax.tree_util.tree_map(jnp.asarray, theta)
    score = family.score(params, jnp.asarray(ds.x_test))
    y = jnp.asarray(ds.y_test)
    out = {"test_loss": float(family.loss(score, y, w).mean())}
    if family.task == "classification":
        out["test_accuracy"] = float(((score > 0) == (y > 0.5)).mean())
    return out
