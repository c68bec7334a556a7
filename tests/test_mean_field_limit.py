"""Streaming MSGD and population dynamics on one market: the streaming run converges to the
population dynamics' fixed point as the batch grows.

The market: M users in three groups, a user of group j has label y ~ φ_j + N(0, s²) and one
constant feature, so a linear least-squares learner θ predicts θ for everyone and group j's
risk is the quadratic group risk (θ − φ_j)² + s² of the population dynamics. From the
segmented equilibrium the population dynamics reach from a perturbed start, the streaming
learners (users choose the lowest loss, step sizes η/(t+1)) keep serving the same segments and
converge to the segment means, the population fixed point θ*_i = Σ_j β_j α*_ij φ_j / Σ_j β_j α*_ij.

Stated test and tolerance: over 4 seeds, the mean distance ‖θ_stream − θ*‖ after T = 400 steps
shrinks as B grows (B = 4, 64, 1024: each at most 0.6 × the previous), and at B = 1024 it is
below 0.02 (the users' noise s = 0.1 (small enough that no user prefers another segment's learner:
the nearest boundary is 7.5 s away) gives a standard error of the segment means of about
s/√(B·T·share) ≈ 1e-3, plus the bias of the early large steps).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from userchoice.data.dataset import Dataset
from userchoice.engine import EngineSpec, make_knobs, simulate
from userchoice.families import Squared
from userchoice.market import Market
from userchoice.population import (
    PopulationSpec,
    initial_allocation,
    quadratic_groups,
    simulate_population,
)
from userchoice.preferences import Preferences

PHI = np.array([0.0, 1.0, 3.0])
NOISE = 0.1
BATCHES = (4, 64, 1024)


def population_fixed_point() -> tuple[np.ndarray, np.ndarray]:
    """(θ* [n], α* [n, G]) of exact retraining + multiplicative weights from a perturbed
    even split of two learners."""
    groups = quadratic_groups(PHI[:, None], sigma2=NOISE**2)
    spec = PopulationSpec(n_learners=2, steps=2000, eval_every=2000)
    start = initial_allocation([[0.51, 0.50, 0.48], [0.49, 0.50, 0.52]], 2, 3)
    result = simulate_population(groups, spec, make_knobs(2, epsilon=0.1), start)
    alpha = result.metrics["allocation"][0, -1]  # [n, G]
    weights = alpha * groups.beta[None, :]
    theta = (weights @ PHI) / weights.sum(axis=1)
    return theta, alpha


def streaming_market(alpha: np.ndarray, n_users: int = 30_000, seed: int = 0) -> Market:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, len(PHI), n_users)
    y = PHI[group] + NOISE * rng.standard_normal(n_users)
    x = np.ones((n_users, 1))
    dataset = Dataset(x_train=x, y_train=y, x_test=x[:500], y_test=y[:500])
    prefs = Preferences.from_favourite(alpha.argmax(axis=0)[group], 2)  # unused by argmin
    return Market(dataset, prefs, Preferences.from_favourite(
        alpha.argmax(axis=0)[group[:500]], 2))


@pytest.fixture(scope="module")
def distances() -> dict[int, float]:
    theta_star, alpha = population_fixed_point()
    assert np.allclose(alpha, alpha.round()), "the population dynamics should segment"
    market = streaming_market(alpha)
    out = {}
    for batch in BATCHES:
        spec = EngineSpec(Squared(), 2, batch, 400, eval_every=400, choice="argmin",
                          schedule="inv", update_all=False, dtype="float64",
                          metrics=("test_loss",))
        knobs = make_knobs(2, seed=list(range(4)), eta=2.0)
        result = simulate(market, spec, knobs, init_params=theta_star[:, None].copy())
        final = np.asarray(result.final_params)[:, :, 0]  # [R, n]
        out[batch] = float(np.linalg.norm(final - theta_star[None], axis=1).mean())
    return out


def test_the_population_fixed_point_is_segmented_at_the_segment_means():
    theta, alpha = population_fixed_point()
    owner = alpha.argmax(axis=0)
    for i in range(2):
        assert theta[i] == pytest.approx(PHI[owner == i].mean(), abs=1e-9)


def test_streaming_converges_to_the_population_fixed_point_as_the_batch_grows(distances):
    values = [distances[b] for b in BATCHES]
    for small, large in itertools.pairwise(values):
        assert large <= 0.6 * small, distances
    assert values[-1] < 0.02, distances
