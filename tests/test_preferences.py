"""Inherent preferences (SPEC §1, §6): rankings built from favourites and from costs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from userchoice.preferences import Preferences


@st.composite
def favourites(draw):
    n = draw(st.integers(1, 8))
    fav = draw(st.lists(st.integers(0, n - 1), min_size=0, max_size=30))
    return np.asarray(fav, dtype=np.int64), n


@st.composite
def costs(draw, ties=False):
    n_users = draw(st.integers(1, 20))
    n = draw(st.integers(1, 7))
    elements = (
        st.integers(0, 3).map(float) if ties else st.floats(-1e6, 1e6, allow_nan=False)
    )
    return draw(arrays(np.float64, (n_users, n), elements=elements))


def _is_permutation_rows(rank):
    n = rank.shape[1]
    return np.array_equal(np.sort(rank, axis=1), np.broadcast_to(np.arange(n), rank.shape))


@settings(max_examples=60, deadline=None)
@given(favourites())
def test_from_favourite_puts_favourite_first_and_keeps_index_order(case):
    fav, n = case
    prefs = Preferences.from_favourite(fav, n)
    rank = prefs.rank
    assert rank.shape == (fav.size, n) and rank.dtype == np.int32
    assert len(prefs) == fav.size and prefs.n_learners == n
    assert _is_permutation_rows(rank)
    np.testing.assert_array_equal(rank[np.arange(fav.size), fav], 0)
    np.testing.assert_array_equal(prefs.favourite, fav)
    for u in range(fav.size):
        others = [i for i in range(n) if i != fav[u]]
        order = np.argsort(rank[u])
        np.testing.assert_array_equal(order, [fav[u], *others])


def _check_cost_order(rank, cost, forced=None):
    """Rows of ``rank`` order learners by ascending cost, ties by index, ``forced`` first."""
    for u in range(rank.shape[0]):
        order = list(np.argsort(rank[u]))
        if forced is not None:
            assert order[0] == forced[u]
            order = order[1:]
        c = cost[u, order]
        assert np.all(np.diff(c) >= 0), (u, order, c)
        for a, b in itertools.pairwise(order):
            if cost[u, a] == cost[u, b]:
                assert a < b  # stable: equal costs keep index order


@settings(max_examples=60, deadline=None)
@given(st.one_of(costs(), costs(ties=True)))
def test_from_scores_orders_by_cost(cost):
    prefs = Preferences.from_scores(cost)
    assert prefs.rank.shape == cost.shape and _is_permutation_rows(prefs.rank)
    _check_cost_order(prefs.rank, cost)
    # Favourite = lowest cost (first index among ties).
    np.testing.assert_array_equal(prefs.favourite, np.argmin(cost, axis=1))


@settings(max_examples=60, deadline=None)
@given(st.one_of(costs(), costs(ties=True)), st.integers(0, 2**31 - 1))
def test_from_scores_forces_given_favourite_first(cost, seed):
    rng = np.random.default_rng(seed)
    fav = rng.integers(0, cost.shape[1], cost.shape[0])
    before = cost.copy()
    prefs = Preferences.from_scores(cost, favourite=fav)
    np.testing.assert_array_equal(cost, before)  # the caller's array is not modified
    assert _is_permutation_rows(prefs.rank)
    np.testing.assert_array_equal(prefs.favourite, fav)
    _check_cost_order(prefs.rank, cost, forced=fav)


def test_rank_must_be_permutations():
    Preferences(np.array([[1, 0, 2], [2, 1, 0]]))
    with pytest.raises(ValueError, match="permutation"):
        Preferences(np.array([[0, 0, 2]]))
    with pytest.raises(ValueError, match="permutation"):
        Preferences(np.array([[1, 2, 3]]))
    with pytest.raises(ValueError, match="shape"):
        Preferences(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        Preferences(np.zeros((3, 0), int))


def test_from_favourite_rejects_invalid_input():
    with pytest.raises(ValueError, match="favourite"):
        Preferences.from_favourite(np.array([[0, 1]]), 2)
    with pytest.raises(ValueError, match="favourite"):
        Preferences.from_favourite(np.array([0, 2]), 2)
    with pytest.raises(ValueError, match="favourite"):
        Preferences.from_favourite(np.array([-1, 0]), 2)
    with pytest.raises(ValueError, match="n_learners"):
        Preferences.from_favourite(np.array([], int), 0)


def test_from_scores_rejects_non_matrix_cost():
    with pytest.raises(ValueError, match="cost"):
        Preferences.from_scores(np.array([0.1, 0.2]))


@pytest.mark.parametrize(
    "favourite",
    [np.array([-1, 0]), np.array([0]), np.array([3, 0])],
    ids=["negative", "wrong-length", "out-of-range"],
)
def test_from_scores_rejects_invalid_favourite(favourite):
    cost = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    with pytest.raises(ValueError, match="favourite"):
        Preferences.from_scores(cost, favourite=favourite)
