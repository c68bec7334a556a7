"""Peer probing in the population dynamics (NEIGHBOURS §D): p = 0 is the unprobed dynamics, a
prober's exact retrain against a fixed peer is the closed-form weighted mean, the sources name
the learners they should, and probing can start from a segmented equilibrium."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from userchoice.knobs import make_knobs
from userchoice.population import (
    POPULATION_SOURCES,
    MarketState,
    PopulationProbing,
    PopulationSpec,
    advance,
    empirical_groups,
    evaluate,
    group_arrays,
    init_state,
    quadratic_groups,
    simulate_population,
)
from userchoice.population.step import probe_labels

PHI = np.array([[0.0, 1.0], [1.0, 1.0], [0.6, 0.0]])
PERTURBED = np.array([[[0.496, 0.511, 0.498], [0.504, 0.489, 0.502]],
                      [[0.486, 0.505, 0.503], [0.514, 0.495, 0.497]]])


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_zero_probing_weight_is_the_unprobed_dynamics_exactly():
    groups = quadratic_groups(PHI)
    plain = PopulationSpec(n_learners=2, steps=200, eval_every=5)
    probed = PopulationSpec(n_learners=2, steps=200, eval_every=5,
                            probing=PopulationProbing((0,), "leader", refresh_every=1))
    knobs = make_knobs(2, epsilon=0.1, seed=[0, 1])
    a = simulate_population(groups, plain, knobs, PERTURBED)
    b = simulate_population(groups, probed, knobs, PERTURBED)
    for name, values in a.metrics.items():
        np.testing.assert_array_equal(b.metrics[name], values, err_msg=name)
    np.testing.assert_array_equal(b.phase_end, a.phase_end)
    risk = b.metrics["population_probe_risk"]
    assert np.all(np.isnan(risk[:, :, 1])) and np.all(np.isfinite(risk[:, :, 0]))


@functools.lru_cache(maxsize=8)
def _advance(spec):
    return (jax.jit(lambda a, k, al: init_state(spec, a, k, al)),
            jax.jit(lambda a, s, k: advance(spec, a, s, k)))


@pytest.mark.parametrize("kind", ["quadratic", "empirical"])
@pytest.mark.parametrize("p", [0.5, 3.0])
def test_prober_retrains_to_the_closed_form_against_a_fixed_peer(kind, p):
    rng = np.random.default_rng(7)
    if kind == "quadratic":
        groups = quadratic_groups(rng.standard_normal((4, 3)), beta=[1.0, 2.0, 0.5, 1.5])
    else:
        x, y = rng.standard_normal((200, 3)), rng.standard_normal(200)
        groups = empirical_groups(x, y, rng.integers(0, 4, 200), beta=[1.0, 2.0, 0.5, 1.5])
    spec = PopulationSpec(n_learners=2, steps=10, metrics=("total_risk",),
                          probing=PopulationProbing((0,), "leader", leader=1, refresh_every=1))
    knobs = make_knobs(2, p=p).at(0)
    arrays = group_arrays(groups)
    alloc = rng.dirichlet(np.ones(2), size=4).T
    start, step = _advance(spec)
    state = start(arrays, knobs, alloc)
    peer = np.asarray(state.market.theta[1])  # the label source: the peer before the round
    after = step(arrays, state, knobs)
    w = groups.beta * alloc[0]
    bar = groups.beta / groups.beta.sum()
    A, b = groups.A, groups.b
    M = np.einsum("g,gde->de", w, A) + p * np.einsum("g,gde->de", bar, A)
    v = w @ b + p * np.einsum("g,gde,e->d", bar, A, peer)
    np.testing.assert_allclose(after.market.theta[0], np.linalg.solve(M, v), rtol=1e-9,
                               atol=1e-12)
    if kind == "quadratic":  # the weighted mean of the groups' φ and the peer
        mean = (w @ groups.b + p * peer) / (w.sum() + p)
        np.testing.assert_allclose(after.market.theta[0], mean, rtol=1e-10)
    # the non-prober retrains as without probing
    w1 = groups.beta * alloc[1]
    np.testing.assert_allclose(after.market.theta[1], np.linalg.solve(
        np.einsum("g,gde->de", w1, A), w1 @ b), rtol=1e-9, atol=1e-12)


def _market(theta, alpha):
    theta, alpha = jnp.asarray(theta, float), jnp.asarray(alpha, float)
    return MarketState(theta, alpha, jnp.ones(theta.shape[0], bool), jnp.asarray(True),
                       jnp.zeros((1, alpha.shape[1], theta.shape[1])))


def test_sources_name_the_learners_they_should():
    groups = quadratic_groups(np.zeros((3, 2)), beta=[1.0, 1.0, 4.0])
    arrays = group_arrays(groups)
    theta = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [5.0, 5.0]])
    alpha = np.array([[0.1, 0.1, 0.1], [0.6, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.7]])
    market = _market(theta, alpha)

    def labels(source, kappa=0.0, **fields):
        spec = PopulationSpec(n_learners=4, steps=5, metrics=("total_risk",),
                              probing=PopulationProbing((0,), source, **fields))
        return np.asarray(probe_labels(spec, arrays, market, make_knobs(4, kappa=kappa).at(0)))[0]

    others = theta[1:]
    np.testing.assert_allclose(labels("majority"), np.tile(np.median(others, 0), (3, 1)))
    np.testing.assert_allclose(labels("median"), np.tile(np.median(theta, 0), (3, 1)))
    np.testing.assert_allclose(labels("leader"), np.tile(theta[3], (3, 1)))  # largest share
    np.testing.assert_allclose(labels("leader", leader=2), np.tile(theta[2], (3, 1)))
    np.testing.assert_allclose(labels("subset", subset=(0, 1, 2)),
                               np.tile(np.median(theta[1:3], 0), (3, 1)))
    np.testing.assert_allclose(labels("preferred"), theta[[1, 2, 3]])  # argmax α per group
    mixed = labels("preferred", kappa=0.25)
    np.testing.assert_allclose(mixed, 0.75 * theta[[1, 2, 3]] + 0.25 * others.mean(0))
    assert {"majority", "median", "leader", "subset", "preferred"} <= set(POPULATION_SOURCES)


def test_probing_from_equilibrium_starts_after_the_first_phase():
    groups = quadratic_groups(PHI)
    spec = PopulationSpec(n_learners=2, steps=500, eval_every=10,
                          probing=PopulationProbing((0,), "leader", refresh_every=1,
                                                    start="equilibrium"))
    assert spec.n_phases == 2
    knobs = make_knobs(2, epsilon=0.1, p=[0.0, 2.0], seed=[0, 0])
    result = simulate_population(groups, spec, knobs, PERTURBED[0])
    first = result.phase_end[:, 0]
    assert np.all(first > 0) and result.converged[:, 0].all()
    risk = result.metrics["population_probe_risk"][:, :, 0]
    before = result.eval_steps < first[:, None]
    assert np.all(np.isnan(risk[before]))
    after = result.eval_steps > first[:, None]
    assert np.all(np.isfinite(risk[after]))
    # the unprobed first phase is the same for both p; with p = 0 the equilibrium stays put
    np.testing.assert_array_equal(result.equilibrium["total_risk"][0, 0],
                                  result.equilibrium["total_risk"][1, 0])
    np.testing.assert_allclose(result.equilibrium["total_risk"][0, 1],
                               result.equilibrium["total_risk"][0, 0], atol=1e-6)
    assert result.equilibrium["segmentation"][0, 0] == 1.0
    # probing toward the peer pulls learner 0 toward it: a different end state
    assert not np.allclose(result.final_theta[1], result.final_theta[0], atol=1e-3)


def test_probe_risk_metric_is_the_prober_risk_against_its_labels():
    groups = quadratic_groups(PHI, beta=[1.0, 2.0, 3.0])
    arrays = group_arrays(groups)
    spec = PopulationSpec(n_learners=2, steps=5,
                          probing=PopulationProbing((1,), "leader", leader=0))
    knobs = make_knobs(2, p=1.0).at(0)
    start, _ = _advance(spec)
    state = start(arrays, knobs, PERTURBED[0])
    values = jax.jit(lambda s: evaluate(spec, arrays, s, knobs))(state)
    theta = np.asarray(state.market.theta)
    bar = groups.beta / groups.beta.sum()
    expected = (bar * ((theta[1] - theta[0]) ** 2).sum()).sum()
    np.testing.assert_allclose(values["population_probe_risk"][1], expected, rtol=1e-12)
    assert np.isnan(values["population_probe_risk"][0])
