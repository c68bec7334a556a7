"""Tiny markets shared by the tests (fast to build, small enough for the NumPy reference)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from userchoice.data.dataset import Dataset
from userchoice.market import Market
from userchoice.preferences import Preferences
from userchoice.synthetic import gaussian_mixture_market
from userchoice.theory import trap_market

# Real datasets staged beside the checkout (../shared/data); never part of the repository.
SHARED_DATA = Path(os.environ.get("USERCHOICE_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


def random_preferences(rng: np.random.Generator, n_users: int, n_learners: int) -> Preferences:
    return Preferences.from_scores(rng.random((n_users, n_learners)))


def regression_market(n_learners: int = 3, n_users: int = 160, dim: int = 3,
                      n_outputs: int | None = None, seed: int = 0) -> Market:
    """Linear-regression users (scalar or masked multi-output labels) with random rankings."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_users, dim))
    if n_outputs is None:
        y = x @ rng.standard_normal(dim) + 0.1 * rng.standard_normal(n_users)
        w = None
    else:
        y = rng.integers(1, 6, (n_users, n_outputs)).astype(float)
        w = (rng.random((n_users, n_outputs)) < 0.5).astype(float)
        y *= w  # unrated entries are stored as 0, as in the MovieLens matrix
    test = np.arange(n_users) % 4 == 0
    ds = Dataset(x[~test], y[~test], x[test], y[test],
                 None if w is None else w[~test], None if w is None else w[test])
    return Market(ds, random_preferences(rng, int((~test).sum()), n_learners),
                  random_preferences(rng, int(test.sum()), n_learners))


@pytest.fixture(scope="session")
def mixture_market() -> Market:
    return gaussian_mixture_market(n_learners=3, n_users=400, seed=1)


@pytest.fixture(scope="session")
def small_trap() -> Market:
    return trap_market(gap=3.0, n_users=400, seed=2)
