"""Groups as sufficient statistics and initial allocations (host side, no compilation)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice.data.dataset import Dataset
from userchoice.population import (
    GroupSet,
    empirical_groups,
    gaussian_groups,
    groups_from_dataset,
    initial_allocation,
    quadratic_groups,
)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.floats(0.0, 3.0), st.integers(0, 2**16))
def test_quadratic_groups_risk_is_distance_plus_noise(g, d, sigma2, seed):
    rng = np.random.default_rng(seed)
    phi, theta = rng.standard_normal((g, d)), rng.standard_normal((3, d))
    groups = quadratic_groups(phi, sigma2=sigma2)
    expected = ((theta[:, None, :] - phi[None]) ** 2).sum(-1) + sigma2
    np.testing.assert_allclose(groups.risk(theta), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(groups.min_risk, sigma2, atol=1e-10)
    np.testing.assert_allclose(groups.optimum, phi, atol=1e-10)
    assert groups.isotropic and groups.kind == "quadratic"


def test_gaussian_groups_draw_phi_as_the_authors():
    groups = gaussian_groups(50, 8, seed=0)
    np.testing.assert_array_equal(groups.b, np.random.default_rng(0).standard_normal((50, 8)))
    assert (groups.n_groups, groups.dim) == (50, 8)
    assert groups.provenance["seed"] == 0


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**16))
def test_empirical_groups_risk_is_mean_squared_error(d, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((90, d)), rng.standard_normal(90)
    labels = rng.integers(0, 2, 90)
    groups = empirical_groups(x, y, labels, min_size=1)
    theta = rng.standard_normal((2, d))
    for j, value in enumerate(np.unique(labels)):
        rows = labels == value
        mse = ((x[rows] @ theta.T - y[rows, None]) ** 2).mean(axis=0)
        np.testing.assert_allclose(groups.risk(theta)[:, j], mse, rtol=1e-10)
        best = np.linalg.lstsq(x[rows], y[rows], rcond=None)[0]
        np.testing.assert_allclose(groups.min_risk[j],
                                   ((x[rows] @ best - y[rows]) ** 2).mean(), rtol=1e-8,
                                   atol=1e-12)
    np.testing.assert_array_equal(groups.counts, [np.sum(labels == v) for v in (0, 1)])


def test_small_groups_merge_together_or_into_the_nearest_size_group():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 2, 6, 7, 9], [100, 50, 12, 10, 9])
    x, y = rng.standard_normal((labels.size, 2)), rng.standard_normal(labels.size)
    groups = empirical_groups(x, y, labels, min_size=30, prefix="RAC1P=")
    assert groups.names == ("RAC1P=1", "RAC1P=2", "RAC1P=6+7+9")  # 31 rows together
    np.testing.assert_array_equal(groups.counts, [100, 50, 31])
    assert "one group" in groups.provenance["merged"][0]
    # together still too small: they join the smallest group that is large enough
    small = empirical_groups(x, y, labels, min_size=40)
    assert small.names == ("1", "2+6+7+9")
    np.testing.assert_array_equal(small.counts, [100, 81])
    assert "smallest large group" in small.provenance["merged"][0]


def test_beta_uniform_count_or_explicit():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], [40, 60])
    x, y = rng.standard_normal((100, 2)), rng.standard_normal(100)
    np.testing.assert_array_equal(empirical_groups(x, y, labels).beta, [1, 1])
    np.testing.assert_array_equal(empirical_groups(x, y, labels, beta="count").beta, [40, 60])
    np.testing.assert_array_equal(empirical_groups(x, y, labels, beta=[2, 3]).beta, [2, 3])
    with pytest.raises(ValueError, match="beta must have one mass per group"):
        empirical_groups(x, y, labels, beta=[1, 2, 3])
    with pytest.raises(ValueError, match="beta"):
        quadratic_groups([[0.0]], beta="count")


def test_groups_from_dataset_by_attribute():
    rng = np.random.default_rng(2)
    race = np.repeat([1, 2, 3], [60, 40, 5])
    ds = Dataset(x_train=rng.standard_normal((105, 3)), y_train=rng.standard_normal(105),
                 x_test=rng.standard_normal((4, 3)), y_test=rng.standard_normal(4),
                 attributes_train={"RAC1P": race}, attributes_test={"RAC1P": race[:4]})
    groups = groups_from_dataset(ds, "RAC1P", min_size=30)
    assert groups.names == ("RAC1P=1", "RAC1P=2+3")
    assert groups.provenance["by"] == "RAC1P"
    with pytest.raises(ValueError, match="by: the dataset has no attribute 'SEX'"):
        groups_from_dataset(ds, "SEX")
    bad = Dataset(x_train=ds.x_train, y_train=rng.standard_normal((105, 2)), x_test=ds.x_test,
                  y_test=rng.standard_normal((4, 2)))
    with pytest.raises(ValueError, match="1-D labels"):
        groups_from_dataset(bad, race)


def test_bad_groups_name_the_argument():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((50, 2)), rng.standard_normal(50)
    labels = np.repeat([0, 1], 25)
    with pytest.raises(ValueError, match=r"groups: \['5'\] have no rows"):
        empirical_groups(x, y, labels, groups=[0, 1, 5], min_size=1)
    with pytest.raises(ValueError, match="labels must have one entry per row"):
        empirical_groups(x, y, labels[:-1])
    with pytest.raises(ValueError, match="x must be a non-empty"):
        empirical_groups(np.zeros((0, 2)), np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="every group has fewer than min_size"):
        empirical_groups(x, y, labels, min_size=100)
    with pytest.raises(ValueError, match="A must be symmetric"):
        GroupSet(np.array([[[1.0, 1.0], [0.0, 1.0]]]), np.zeros((1, 2)), np.zeros(1),
                 np.ones(1), np.ones(1), ("0",), "quadratic")
    with pytest.raises(ValueError, match="positive semi-definite"):
        GroupSet(-np.eye(2)[None], np.zeros((1, 2)), np.zeros(1), np.ones(1), np.ones(1),
                 ("0",), "quadratic")
    with pytest.raises(ValueError, match="phi must be a non-empty 2-D"):
        quadratic_groups([1.0, 2.0])


def test_initial_allocations():
    np.testing.assert_array_equal(initial_allocation("even", 4, 3), np.full((4, 3), 0.25))
    jitter = initial_allocation("jitter", 2, 50, seed=0, scale=1e-4)
    raw = 1 + 1e-4 * np.random.default_rng(0).random((2, 50))
    np.testing.assert_allclose(jitter, raw / raw.sum(0), rtol=1e-15)
    np.testing.assert_allclose(jitter.sum(0), 1.0, rtol=1e-15)
    assert np.abs(jitter - 0.5).max() < 1e-4
    explicit = [[0.496, 0.511, 0.498], [0.504, 0.489, 0.502]]
    np.testing.assert_array_equal(initial_allocation(explicit, 2, 3), explicit)
    with pytest.raises(ValueError, match="group 1 sums to"):
        initial_allocation([[0.5, 0.6], [0.5, 0.5]], 2, 2)
    with pytest.raises(ValueError, match="non-negative"):
        initial_allocation([[1.5, 0.5], [-0.5, 0.5]], 2, 2)
    with pytest.raises(ValueError, match=r"allocation must have shape \[n_learners=3"):
        initial_allocation(explicit, 3, 3)
    with pytest.raises(ValueError, match="allocation must be one of"):
        initial_allocation("uniform", 2, 3)
