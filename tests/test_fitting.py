"""Offline fits (SPEC §5): exact least squares, ERM on preference partitions, pooled baseline."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import log_expit

from userchoice import fitting
from userchoice.families import MLP, Logistic, MaskedMultiSquared, Squared
from userchoice.fitting import erm_init, fit, pooled_fit
from userchoice.market import Market
from userchoice.preferences import Preferences
from userchoice.synthetic import gaussian_mixture_market
from userchoice.theory import trap_market

# ------------------------------------------------------------------------ exact least squares


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(8, 60),
    d=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    rank_deficient=st.booleans(),
)
def test_squared_fit_equals_lstsq(n, d, seed, rank_deficient):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    if rank_deficient and d > 1:
        x[:, -1] = x[:, 0] - 2 * x[:, 1 % (d - 1)]  # an unidentified direction
    y = rng.normal(size=n)
    theta = fit(Squared(), x, y)
    want = np.linalg.lstsq(x, y, rcond=None)[0]  # minimum-norm least squares
    assert theta.shape == (d,)
    np.testing.assert_allclose(theta, want, rtol=1e-6, atol=1e-8)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), ridge=st.floats(1e-4, 10.0))
def test_squared_ridge_solves_normal_equations(seed, ridge):
    rng = np.random.default_rng(seed)
    n, d = 40, 4
    x, y = rng.normal(size=(n, d)), rng.normal(size=n)
    theta = fit(Squared(), x, y, ridge=ridge)
    # Stationary point of mean (xᵀθ − y)² + ridge·|θ|² ("ridge is the weight per user").
    grad = 2 * x.T @ (x @ theta - y) / n + 2 * ridge * theta
    np.testing.assert_allclose(grad, 0.0, atol=1e-9)


def test_masked_fit_solves_each_output_on_its_rated_users():
    rng = np.random.default_rng(0)
    n, d, m = 80, 3, 4
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, m))
    w = (rng.random((n, m)) < 0.5).astype(float)
    w[:, 3] = 0.0  # an output nobody rated
    y_poisoned = np.where(w > 0, y, 1e6)  # unrated values must not leak into the fit
    theta = fit(MaskedMultiSquared(n_outputs=m), x, y_poisoned, w)
    assert theta.shape == (m, d)
    for k in range(3):
        seen = w[:, k] > 0
        want = np.linalg.lstsq(x[seen], y[seen, k], rcond=None)[0]
        np.testing.assert_allclose(theta[k], want, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(theta[3], 0.0)


# ---------------------------------------------------- the ERM ridge convention (SPEC §5, issue 11)

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "userchoice" / "configs"
MOVIELENS_GOOD = sorted(CONFIGS.glob("*/movielens_good*.yaml"))


def _masked_market(seed: int = 0, n_train: int = 150, d: int = 5, m: int = 7,
                   n_learners: int = 3) -> Market:
    """A small MovieLens-shaped market: ratings y [n, m] with a rated mask w, no rater of
    movie m-1 among learner 2's users and few raters of movie 0."""
    from userchoice.data.dataset import Dataset

    rng = np.random.default_rng(seed)
    n = n_train + 30
    x = rng.normal(size=(n, d))
    w = (rng.random((n, m)) < 0.5).astype(float)
    w[:, 0] = rng.random(n) < 0.08
    favourite = rng.integers(0, n_learners, n)
    w[(favourite == 2), m - 1] = 0.0
    y = np.where(w > 0, np.clip(np.round(x @ rng.normal(size=(d, m)) + 3), 1, 5), 0.0)
    ds = Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], w_train=w[:n_train],
                 w_test=w[n_train:])
    return Market(ds, Preferences.from_favourite(favourite[:n_train], n_learners),
                  Preferences.from_favourite(favourite[n_train:], n_learners))


def _closed_form(market: Market, lam: float, per_rater: bool) -> np.ndarray:
    """Per learner i and movie k: solve (XᵀX + λ·s·I)θ = Xᵀy over the learner's users who
    rated k, s = 1 (the paper) or their number (per user); zeros for a movie nobody rated."""
    ds, fav = market.dataset, market.preferences_train.favourite
    x, y, w = np.asarray(ds.x_train), np.asarray(ds.y_train), np.asarray(ds.w_train)
    out = np.zeros((market.n_learners, y.shape[1], x.shape[1]))
    for i in range(market.n_learners):
        for k in range(y.shape[1]):
            rows = (fav == i) & (w[:, k] > 0)
            if rows.any():
                xs = x[rows]
                scale = rows.sum() if per_rater else 1.0
                out[i, k] = np.linalg.solve(xs.T @ xs + lam * scale * np.eye(x.shape[1]),
                                            xs.T @ y[rows, k])
    return out


@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_erm_init_paper_convention_is_the_papers_per_movie_ridge(lam):
    market = _masked_market()
    family = MaskedMultiSquared(n_outputs=7)
    paper = erm_init(market, family, ridge=lam, ridge_convention="paper")
    per_user = erm_init(market, family, ridge=lam, ridge_convention="per_user")
    assert paper.shape == (3, 7, 5)
    np.testing.assert_allclose(paper, _closed_form(market, lam, per_rater=False),
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(per_user, _closed_form(market, lam, per_rater=True),
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(erm_init(market, family, ridge=lam), per_user)  # default
    np.testing.assert_array_equal(paper[2, 6], 0.0)  # no rater of that movie: zeros
    if lam == 0.5:  # the conventions really differ (λ·n_k vs λ)
        assert np.abs(paper - per_user).max() > 1e-2


@pytest.mark.parametrize("path", MOVIELENS_GOOD, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_movielens_good_configs_start_from_the_papers_erm(path):
    import yaml

    init = yaml.safe_load(path.read_text(encoding="utf-8"))["init"]
    assert init["kind"] == "erm"
    assert init["options"] == {"ridge": 1e-3, "ridge_convention": "paper"}
    market = _masked_market(seed=1)
    theta = erm_init(market, MaskedMultiSquared(n_outputs=7), **init["options"])
    np.testing.assert_allclose(theta, _closed_form(market, 1e-3, per_rater=False),
                               rtol=1e-7, atol=1e-9)


def test_ridge_conventions_on_the_other_paths():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    lam = 0.7
    np.testing.assert_allclose(fit(Squared(), x, y, ridge=lam, ridge_convention="paper"),
                               np.linalg.solve(x.T @ x + lam * np.eye(3), x.T @ y), rtol=1e-9)
    # gradient descent: summed loss + λ|θ|² is mean loss + (λ/n)|θ|²
    labels = (x[:, 0] + 0.3 * rng.normal(size=50) > 0).astype(float)
    paper = fit(Logistic(), x, labels, ridge=lam * 50, ridge_convention="paper", steps=200)
    mean = fit(Logistic(), x, labels, ridge=lam, steps=200)
    np.testing.assert_allclose(paper, mean, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ridge_convention must be one of"):
        fit(Squared(), x, y, ridge=lam, ridge_convention="per_rater")
    with pytest.raises(ValueError, match="ridge_convention must be one of"):
        fit(Logistic(), x, labels, ridge_convention="sum")


def test_fit_rejects_empty_data_and_bad_gd_options():
    with pytest.raises(ValueError, match="empty"):
        fit(Squared(), np.zeros((0, 3)), np.zeros(0))
    x, y = np.ones((4, 2)), np.ones(4)
    with pytest.raises(ValueError, match="steps"):
        fit(Logistic(), x, y, steps=0)
    with pytest.raises(ValueError, match="eta"):
        fit(Logistic(), x, y, eta=0.0)


# ----------------------------------------------------------------- gradient-descent families


def _logistic_objective(theta, x, y, ridge):
    s = x @ theta
    return np.mean(-(y * log_expit(s) + (1 - y) * log_expit(-s))) + ridge * theta @ theta


def test_logistic_gd_fit_reaches_regularised_optimum():
    market = gaussian_mixture_market(n_users=1200, seed=3)
    x, y = np.asarray(market.dataset.x_train), np.asarray(market.dataset.y_train)
    ridge = 0.05
    theta = fit(Logistic(), x, y, ridge=ridge, steps=800, eta=0.5)
    assert theta.shape == (x.shape[1],)
    opt = minimize(_logistic_objective, np.zeros(x.shape[1]), args=(x, y, ridge),
                   method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-14})
    # Strongly convex objective (modulus ≥ ridge), so GD converges linearly; float32 resolves
    # the objective to ~1e-7. An objective gap of 1e-6 bounds the parameter error by
    # √(2·1e-6/ridge) ≈ 6e-3.
    gap = _logistic_objective(theta, x, y, ridge) - opt.fun
    assert -1e-6 < gap < 1e-6
    np.testing.assert_allclose(theta, opt.x, atol=6e-3)


def test_mlp_fit_returns_single_learner_params_and_lowers_loss():
    market = gaussian_mixture_market(n_users=600, seed=4)
    x, y = np.asarray(market.dataset.x_train), np.asarray(market.dataset.y_train)
    fam = MLP(hidden=8)
    init = fit(fam, x, y, steps=1, eta=1e-12)
    theta = fit(fam, x, y, steps=300, eta=0.2)
    assert {k: v.shape for k, v in theta.items()} == {
        "w1": (x.shape[1], 8), "b1": (8,), "w2": (8,), "b2": ()
    }

    def loss(th):
        t = {k: jnp.asarray(v) for k, v in th.items()}
        return float(fam.loss(fam.score(t, jnp.asarray(x, jnp.float32)),
                              jnp.asarray(y, jnp.float32)).mean())

    assert loss(theta) < 0.7 * loss(init)


# ------------------------------------------------------------------------------ ERM and pool


def _mse(theta, x, y):
    return float(np.mean((x @ theta - y) ** 2))


@pytest.mark.parametrize("gap", [1.0, 3.0])
def test_erm_init_fits_each_partition_on_trap(gap):
    noise, dim = 0.1, 2
    market = trap_market(gap=gap, noise=noise, dim=dim, seed=5)
    ds = market.dataset
    theta = erm_init(market, Squared())
    assert theta.shape == (2, 2 * dim)
    x, y = np.asarray(ds.x_train), np.asarray(ds.y_train)
    fav = market.preferences_train.favourite
    for i in range(2):
        part = fav == i
        own = _mse(theta[i], x[part], y[part])
        for j in range(2):
            assert own <= _mse(theta[j], x[part], y[part]) + 1e-12
        np.testing.assert_allclose(theta[i], np.linalg.lstsq(x[part], y[part], rcond=None)[0],
                                   rtol=1e-6, atol=1e-9)
    # The trap: learner 0 never sees the second block and misses group 1 by ≈ Γ² (+ noise²);
    # the squared residual Γ·zᵀu + ε has mean σ² = Γ² + noise² and sd σ²·√2 per user.
    xt, yt = np.asarray(ds.x_test), np.asarray(ds.y_test)
    g1 = market.preferences_test.favourite == 1
    sigma2 = gap**2 + noise**2
    err = _mse(theta[0], xt[g1], yt[g1])
    assert abs(err - sigma2) < 5 * sigma2 * np.sqrt(2 / g1.sum())
    # Learner 1 fits its own group to the noise level.
    own_err = _mse(theta[1], xt[g1], yt[g1])
    assert abs(own_err - noise**2) < 5 * noise**2 * np.sqrt(2 / g1.sum()) + 1e-3 * noise**2


def test_erm_init_gd_family_minimises_each_partition_objective():
    market = gaussian_mixture_market(n_learners=3, n_users=1500, seed=6)
    ds = market.dataset
    ridge = 0.05
    theta = erm_init(market, Logistic(), ridge=ridge, steps=800, eta=0.5)
    assert theta.shape == (3, ds.x_train.shape[1])
    x, y = np.asarray(ds.x_train), np.asarray(ds.y_train)
    fav = market.preferences_train.favourite
    for i in range(3):
        part = fav == i
        own = _logistic_objective(theta[i], x[part], y[part], ridge)
        for j in range(3):
            # Each learner (near-)minimises its own partition's regularised objective; the
            # slack covers float32 gradient descent (see the single-fit optimum test).
            assert own <= _logistic_objective(theta[j], x[part], y[part], ridge) + 1e-6


def test_erm_init_rejects_empty_partition():
    base = trap_market(n_users=400, seed=0)
    ds = base.dataset
    n_train, n_test = ds.x_train.shape[0], ds.x_test.shape[0]
    # Nobody prefers learner 2 of 3.
    market = Market(
        ds,
        Preferences.from_favourite(np.arange(n_train) % 2, 3),
        Preferences.from_favourite(np.zeros(n_test, int), 3),
    )
    with pytest.raises(ValueError, match="learner 2"):
        erm_init(market, Squared())


@pytest.mark.parametrize("gap", [0.5, 2.0])
def test_pooled_fit_on_trap_reaches_noise_level(gap):
    noise, dim = 0.2, 3
    market = trap_market(gap=gap, noise=noise, dim=dim, seed=7)
    theta = pooled_fit(market, Squared())
    assert theta.shape == (2 * dim,)
    n_test = market.dataset.x_test.shape[0]
    test_mse = fitting.evaluate_loss(market, Squared(), theta)
    # Noise floor plus estimation error ≈ noise²·(2·dim)/n_train, far inside 5 sd of the
    # test-sample fluctuation noise²·√(2/n_test).
    assert abs(test_mse - noise**2) < 5 * noise**2 * np.sqrt(2 / n_test)
    # The pooled solution recovers θ* = [β₀, Γu] (standard error ≈ noise/√n_group ≈ 0.005).
    beta0, u = np.eye(dim)[0], np.eye(dim)[1]
    np.testing.assert_allclose(theta, np.concatenate([beta0, gap * u]), atol=0.03)
    # ... and beats either partition-fitted learner globally (the overspecialisation gap).
    erm = erm_init(market, Squared())
    assert test_mse < min(fitting.evaluate_loss(market, Squared(), erm[i]) for i in range(2))


def test_pooled_logistic_baseline_is_near_bayes_and_the_regularised_optimum():
    from userchoice.families import Logistic
    from userchoice.fitting import evaluate_metrics, pooled_baseline
    from userchoice.synthetic import gaussian_mixture_market

    market = gaussian_mixture_market(n_learners=3, n_users=3000, seed=5)
    theta, metrics = pooled_baseline(market, Logistic())
    assert set(metrics) == {"test_loss", "test_accuracy"}
    erm = erm_init(market, Logistic(), steps=300, eta=0.5)
    specialists = [evaluate_metrics(market, Logistic(), erm[i])["test_accuracy"]
                   for i in range(3)]
    # Labels follow one linear rule with 5% flips (Bayes accuracy 0.95).
    assert metrics["test_accuracy"] > 0.9
    assert metrics["test_accuracy"] > min(specialists) + 0.05
    # It is the L2-regularised optimum: the penalised gradient vanishes there.
    x, y = market.dataset.x_train, market.dataset.y_train
    s = x @ theta
    grad = x.T @ (1 / (1 + np.exp(-s)) - y) + theta  # sklearn: C·Σ loss + |θ|²/2, C = 1
    assert np.abs(grad).max() < 1e-2 * len(y) ** 0.5


def test_minibatch_sgd_fit_is_seeded_and_learns():
    from userchoice.families import MLP
    from userchoice.fitting import evaluate_metrics
    from userchoice.synthetic import gaussian_mixture_market

    market = gaussian_mixture_market(n_learners=2, n_users=2000, seed=6)
    ds = market.dataset
    first = fit(MLP(hidden=16), ds.x_train, ds.y_train, batch_size=64, epochs=5, eta=0.2)
    again = fit(MLP(hidden=16), ds.x_train, ds.y_train, batch_size=64, epochs=5, eta=0.2)
    for a, b in zip(first.values(), again.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    untrained = fit(MLP(hidden=16), ds.x_train, ds.y_train, batch_size=64, epochs=1, eta=1e-9)
    assert evaluate_metrics(market, MLP(hidden=16), first)["test_accuracy"] > 0.85
    assert (evaluate_metrics(market, MLP(hidden=16), first)["test_loss"]
            < evaluate_metrics(market, MLP(hidden=16), untrained)["test_loss"])
