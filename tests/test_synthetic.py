"""Synthetic markets: the overspecialisation trap and the Gaussian-mixture classification market."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from userchoice.synthetic import gaussian_mixture_market
from userchoice.theory import trap_market

# ------------------------------------------------------------------------------------ trap


def _groups(market, split):
    ds = market.dataset
    x = np.asarray(getattr(ds, f"x_{split}"))
    d = x.shape[1] // 2
    return (np.abs(x[:, d:]).sum(axis=1) > 0).astype(int)


def _theta_star(gap, dim):
    beta0 = np.zeros(dim)
    beta0[0] = 1.0
    u = np.zeros(dim)
    u[1] = 1.0
    return np.concatenate([beta0, gap * u])


def _mse_tolerance(noise, count):
    # Mean of `count` squared N(0, noise²) residuals: mean noise², sd noise²·√(2/count).
    # Five standard deviations keeps false failures below ~1e-6 per check.
    return 5 * noise**2 * np.sqrt(2 / count)


@settings(max_examples=12, deadline=None)
@given(
    gap=st.floats(0.0, 5.0),
    noise=st.floats(0.05, 1.0),
    dim=st.integers(2, 5),
    minority_share=st.floats(0.2, 0.8),
    seed=st.integers(0, 10_000),
)
def test_trap_theta_star_fits_both_groups_to_noise_level(gap, noise, dim, minority_share, seed):
    market = trap_market(gap=gap, noise=noise, n_users=4000, dim=dim,
                         minority_share=minority_share, seed=seed)
    ds = market.dataset
    theta = _theta_star(gap, dim)
    for split in ("train", "test"):
        x, y = np.asarray(getattr(ds, f"x_{split}")), np.asarray(getattr(ds, f"y_{split}"))
        group = _groups(market, split)
        resid = x @ theta - y
        assert abs(np.mean(resid**2) - noise**2) < _mse_tolerance(noise, len(y))
        for g in (0, 1):
            r = resid[group == g]
            assert r.size > 100
            assert abs(np.mean(r**2) - noise**2) < _mse_tolerance(noise, r.size), (split, g)


def test_trap_noiseless_is_exact_and_group0_model_misses_by_gap():
    gap, dim = 2.0, 3
    market = trap_market(gap=gap, noise=0.0, dim=dim, seed=1)
    ds = market.dataset
    x, y = np.asarray(ds.x_train), np.asarray(ds.y_train)
    np.testing.assert_allclose(x @ _theta_star(gap, dim), y, atol=1e-12)
    # The group-0 model [β₀, 0] errs by Γ·zᵀu on group 1: mean squared error ≈ Γ².
    group = _groups(market, "train")
    theta0 = _theta_star(0.0, dim)
    np.testing.assert_allclose((x @ theta0 - y)[group == 0], 0.0, atol=1e-12)
    err1 = np.mean((x @ theta0 - y)[group == 1] ** 2)
    n1 = int(group.sum())
    assert abs(err1 - gap**2) < 5 * gap**2 * np.sqrt(2 / n1)


@settings(max_examples=10, deadline=None)
@given(
    dim=st.integers(2, 4),
    minority_share=st.floats(0.1, 0.9),
    test_fraction=st.floats(0.1, 0.5),
    seed=st.integers(0, 10_000),
)
def test_trap_shapes_groups_and_preferences(dim, minority_share, test_fraction, seed):
    n_users = 3000
    market = trap_market(n_users=n_users, dim=dim, minority_share=minority_share,
                         test_fraction=test_fraction, seed=seed)
    ds = market.dataset
    n_train, n_test = ds.x_train.shape[0], ds.x_test.shape[0]
    assert n_train + n_test == n_users
    assert ds.x_train.shape == (n_train, 2 * dim) and ds.x_test.shape == (n_test, 2 * dim)
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    assert ds.w_train is None and len(ds.feature_names) == 2 * dim
    assert market.n_learners == 2
    # Binomial counts within 5 standard deviations.
    assert abs(n_test / n_users - test_fraction) < 5 * np.sqrt(
        test_fraction * (1 - test_fraction) / n_users
    )
    for split, prefs in (("train", market.preferences_train),
                         ("test", market.preferences_test)):
        group = _groups(market, split)
        np.testing.assert_array_equal(prefs.favourite, group)
        x = np.asarray(getattr(ds, f"x_{split}"))
        # The second block is g·z: equal to the first block for group 1, zero for group 0.
        np.testing.assert_array_equal(x[group == 1, dim:], x[group == 1, :dim])
        assert np.all(x[group == 0, dim:] == 0)
    share = np.mean(np.concatenate([_groups(market, "train"), _groups(market, "test")]))
    assert abs(share - minority_share) < 5 * np.sqrt(
        minority_share * (1 - minority_share) / n_users
    )


def test_trap_is_reproducible_and_seeded():
    a, b, c = trap_market(seed=3), trap_market(seed=3), trap_market(seed=4)
    np.testing.assert_array_equal(a.dataset.x_train, b.dataset.x_train)
    np.testing.assert_array_equal(a.dataset.y_test, b.dataset.y_test)
    assert a.dataset.x_train.shape != c.dataset.x_train.shape or not np.array_equal(
        a.dataset.x_train, c.dataset.x_train
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dim": 1}, "dim"),
        ({"minority_share": 0.0}, "minority_share"),
        ({"minority_share": 1.0}, "minority_share"),
        ({"noise": -0.1}, "noise"),
        ({"gap": -1.0}, "gap"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_trap_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        trap_market(**kwargs)


# ------------------------------------------------------------------------- Gaussian mixture


def _all_users(market):
    ds = market.dataset
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    fav = np.concatenate([market.preferences_train.favourite, market.preferences_test.favourite])
    return x, y, fav


def _linearly_separable_through_origin(z, y):
    """Is there θ with (2y − 1)·zᵀθ ≥ 1 for every user? (LP feasibility.)"""
    sign = 2 * y - 1
    res = linprog(np.zeros(z.shape[1]), A_ub=-(sign[:, None] * z), b_ub=-np.ones(len(y)),
                  bounds=[(None, None)] * z.shape[1], method="highs")
    assert res.status in (0, 2), res.message
    return res.status == 0


@pytest.mark.parametrize(("n_learners", "dim"), [(3, 4), (5, 2)])
def test_gaussian_mixture_shapes_labels_and_preferences(n_learners, dim):
    n_users = 3000
    market = gaussian_mixture_market(n_learners=n_learners, n_users=n_users, dim=dim,
                                     separation=3.0, seed=1)
    ds = market.dataset
    assert market.n_learners == n_learners
    assert ds.x_train.shape[1] == dim + 1 and ds.x_test.shape[1] == dim + 1
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == n_users
    assert len(ds.feature_names) == dim + 1 and ds.feature_names[-1] == "intercept"
    x, y, fav = _all_users(market)
    np.testing.assert_array_equal(x[:, -1], 1.0)
    assert set(np.unique(y)) == {0.0, 1.0}
    assert set(np.unique(fav)) == set(range(n_learners))
    for prefs in (market.preferences_train, market.preferences_test):
        assert prefs.rank.shape[1] == n_learners
    # Each blob is centred at distance `separation` from the origin with unit-variance noise:
    # the blob's mean lies within 5 standard errors per coordinate of a point of that norm.
    for k in range(n_learners):
        z = x[fav == k, :dim]
        mean_norm = np.linalg.norm(z.mean(axis=0))
        assert abs(mean_norm - 3.0) < 5 * np.sqrt(dim / len(z))
        np.testing.assert_allclose(z.std(axis=0), 1.0, atol=5 / np.sqrt(len(z)))
    # After the favourite, learners are ranked by distance to their blob's centre. Centres are
    # estimated by blob means (error ≲ 0.3 here), so only pairs whose distances differ by more
    # than 1 are compared.
    centres = np.stack([x[fav == k, :dim].mean(axis=0) for k in range(n_learners)])
    rank = np.concatenate([market.preferences_train.rank, market.preferences_test.rank])
    dist = np.linalg.norm(x[:, None, :dim] - centres[None], axis=2)
    np.testing.assert_array_equal(rank[np.arange(len(fav)), fav], 0)
    checked = 0
    for a in range(n_learners):
        for b in range(n_learners):
            clear = (fav != a) & (fav != b) & (dist[:, a] + 1.0 < dist[:, b])
            assert np.all(rank[clear, a] < rank[clear, b])
            checked += int(clear.sum())
    assert checked > 0 or n_learners < 3


def test_gaussian_mixture_label_noise():
    clean = gaussian_mixture_market(n_users=4000, label_noise=0.0, seed=2)
    xc, yc, _ = _all_users(clean)
    # Noiseless labels come from one linear rule on z (no intercept): exactly separable.
    assert _linearly_separable_through_origin(xc[:, :-1], yc)
    noise = 0.1
    noisy = gaussian_mixture_market(n_users=4000, label_noise=noise, seed=2)
    xn, yn, _ = _all_users(noisy)
    assert not _linearly_separable_through_origin(xn[:, :-1], yn)
    # Same seed, same users: labels differ exactly where flipped; flip rate ≈ label_noise
    # (binomial, 5 standard deviations).
    np.testing.assert_array_equal(xn, xc)
    flipped = np.mean(yn != yc)
    assert abs(flipped - noise) < 5 * np.sqrt(noise * (1 - noise) / len(yn))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_learners": 0}, "n_learners"),
        ({"n_users": 5, "n_learners": 3}, "n_users"),
        ({"label_noise": 0.5}, "label_noise"),
        ({"label_noise": -0.1}, "label_noise"),
        ({"test_fraction": 1.5}, "test_fraction"),
    ],
)
def test_gaussian_mixture_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        gaussian_mixture_market(**kwargs)
