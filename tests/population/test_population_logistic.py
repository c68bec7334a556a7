"""Logistic groups: Newton retraining against scikit-learn, weighted retraining as one weighted
regression, monotone total risk under retraining + multiplicative weights, the ε → 0 limit,
gradient steps and probing as derivatives of their objectives, bad labels."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from userchoice.knobs import make_knobs
from userchoice.population import (
    PopulationProbing,
    PopulationSpec,
    empirical_groups,
    evaluate,
    group_arrays,
    init_state,
    round_step,
    simulate_population,
)
from userchoice.population.groups import LOGISTIC_RIDGE
from userchoice.population.logistic import group_risks
from userchoice.population.step import probe_targets, retrain

ROWS, DIM = 90, 3


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _data(seed: int, n_groups: int = 3, rows: int = ROWS, dim: int = DIM):
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % n_groups
    x = rng.standard_normal((rows, dim))
    shift = rng.standard_normal((n_groups, dim)) * 2
    logits = np.einsum("rd,rd->r", x, shift[labels]) + 0.3
    y = (rng.random(rows) < 1 / (1 + np.exp(-logits))).astype(float)
    return x, y, labels


def _sklearn(x, y, weight, ridge):
    """argmin Σ_r weight_r·ℓ_r + ridge·‖θ‖² (sklearn: ½‖θ‖² + C·Σ weight_r ℓ_r)."""
    model = LogisticRegression(C=1 / (2 * ridge), fit_intercept=False, solver="lbfgs",
                               tol=1e-14, max_iter=100_000)
    return model.fit(x, y, sample_weight=weight).coef_[0]


@functools.lru_cache(maxsize=8)
def _programs(spec: PopulationSpec):
    return {"init": jax.jit(lambda a, k, alloc: init_state(spec, a, k, alloc)),
            "round": jax.jit(lambda a, s, k: round_step(spec, a, s, k)),
            "evaluate": jax.jit(lambda a, s, k: evaluate(spec, a, s, k))}


def test_one_group_one_learner_is_sklearns_logistic_regression():
    x, y, _ = _data(0, 1)
    groups = empirical_groups(x, y, np.zeros(ROWS, int), loss="logistic")
    assert groups.loss == "logistic" and groups.ridge == LOGISTIC_RIDGE
    best = _sklearn(x, y, np.full(ROWS, 1 / ROWS), LOGISTIC_RIDGE)
    np.testing.assert_allclose(groups.optimum[0], best, atol=1e-6)
    spec = PopulationSpec(n_learners=1, steps=5)
    knobs = make_knobs(1).at(0)
    arrays = group_arrays(groups)
    programs = _programs(spec)
    state = programs["init"](arrays, knobs, np.ones((1, 1)))  # Newton from θ = 0
    np.testing.assert_allclose(state.market.theta[0], best, atol=1e-6)
    np.testing.assert_allclose(state.market.theta[0], groups.optimum[0], atol=1e-9)
    state = programs["round"](arrays, state, knobs)  # warm start at the optimum: stays
    np.testing.assert_allclose(state.market.theta[0], groups.optimum[0], atol=1e-9)
    values = programs["evaluate"](arrays, state, knobs)
    z = x @ best
    loss = np.mean(np.logaddexp(0, z) - y * z) + LOGISTIC_RIDGE * best @ best
    np.testing.assert_allclose(values["total_risk"], loss, rtol=1e-8)
    np.testing.assert_allclose(groups.min_risk[0], loss, rtol=1e-8)
    np.testing.assert_allclose(values["relative_excess_risk"], 0.0, atol=1e-7)
    # the surrogate A, b, c: the same minimiser and minimal risk
    np.testing.assert_allclose(groups.A[0] @ groups.optimum[0], groups.b[0], atol=1e-12)
    np.testing.assert_allclose(groups.risk(best)[0, 0], loss, rtol=1e-10)


@pytest.mark.parametrize("weighting", ["beta", "beta_count"])
def test_weighted_retraining_is_the_weighted_concatenation_of_rows(weighting):
    x, y, labels = _data(1, 3)
    labels = np.where(np.arange(ROWS) < 50, 0, labels)  # unequal groups: N_j matter
    beta = np.array([1.0, 2.5, 0.4])
    groups = empirical_groups(x, y, labels, loss="logistic", beta=beta, min_size=1,
                              ridge=1e-3)
    alloc = np.array([[0.9, 0.2, 0.55], [0.1, 0.8, 0.45]])
    spec = PopulationSpec(n_learners=2, steps=5, weighting=weighting)
    state = _programs(spec)["init"](group_arrays(groups), make_knobs(2).at(0), alloc)
    counts = np.bincount(labels)
    for i in range(2):
        w = beta * alloc[i] * (counts if weighting == "beta_count" else 1)
        # Σ_j w_j [mean_j ℓ + ridge‖θ‖²] = Σ w ⋅ (Σ_r (w_g(r)/N_g(r))/Σw ⋅ ℓ_r + ridge‖θ‖²)
        best = _sklearn(x, y, w[labels] / counts[labels] / w.sum(), 1e-3)
        np.testing.assert_allclose(state.market.theta[i], best, atol=1e-6)


@functools.lru_cache(maxsize=4)
def _rounds_program(spec: PopulationSpec, rounds: int):
    def run(arrays, knobs, allocation):
        state = init_state(spec, arrays, knobs, allocation)

        def body(s, _):
            s = round_step(spec, arrays, s, knobs)
            return s, (evaluate(spec, arrays, s, knobs)["total_risk"], s.market.alpha)

        first = evaluate(spec, arrays, state, knobs)["total_risk"]
        _, (totals, alphas) = jax.lax.scan(body, state, None, length=rounds)
        return jnp.concatenate([first[None], totals]), alphas

    return jax.jit(run)


SPEC_3 = PopulationSpec(n_learners=3, steps=10_000, metrics=("total_risk",))


def _instance(seed: int, epsilon: float):
    x, y, labels = _data(seed, 4, rows=48, dim=2)
    rng = np.random.default_rng(seed + 1)
    groups = empirical_groups(x * rng.uniform(0.5, 4), y, labels, loss="logistic", min_size=1,
                              beta=rng.uniform(0.2, 3.0, 4))
    alloc = rng.dirichlet(np.full(3, 0.7), size=4).T
    return groups, alloc, make_knobs(3, epsilon=epsilon).at(0)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.05, 0.9))
def test_total_risk_never_increases_under_retraining_and_multiplicative_weights(seed, epsilon):
    """Both half-steps descend one potential: retraining minimises each learner's share of
    Σ β_j α_ij R_j(θ_i) exactly, and multiplicative weights move mass to lower risks."""
    groups, alloc, knobs = _instance(seed, epsilon)
    totals, _ = _rounds_program(SPEC_3, 25)(group_arrays(groups), knobs, alloc)
    totals = np.asarray(totals)
    assert np.all(np.isfinite(totals))
    assert np.all(np.diff(totals) <= 1e-10 * max(1.0, totals[0])), totals


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_vanishing_epsilon_leaves_the_allocation_unchanged(seed):
    groups, alloc, knobs = _instance(seed, 1e-12)
    _, alphas = _rounds_program(SPEC_3, 25)(group_arrays(groups), knobs, alloc)
    np.testing.assert_allclose(np.asarray(alphas), np.broadcast_to(alloc, alphas.shape),
                               atol=1e-9)


def _objective(arrays, alpha, theta, beta, p=0.0, labels=None):
    """Σ_j β_j α_j R_j(θ) (+ p × cross-entropy against σ(x s_g(r)), group weights β̄)."""
    value = jnp.sum(beta * alpha * group_risks(arrays.x, arrays.y, arrays.member,
                                               arrays.counts, arrays.ridge, theta[None])[0])
    if p:
        target = probe_targets(arrays, labels[None])[0]
        ce = jax.nn.softplus(arrays.x @ theta) - target * (arrays.x @ theta)
        value += p * jnp.sum((ce @ arrays.member / arrays.counts) * beta / beta.sum())
    return value


def test_gradient_step_and_probed_retraining_match_their_objective():
    x, y, labels = _data(2, 3)
    groups = empirical_groups(x, y, labels, loss="logistic", beta=[1.0, 2.0, 0.5], min_size=1)
    arrays = group_arrays(groups)
    alloc = np.array([[0.7, 0.2, 0.5], [0.3, 0.8, 0.5]])
    probing = PopulationProbing(probers=(0,), source="leader", leader=1)
    spec = PopulationSpec(n_learners=2, steps=5, probing=probing)
    knobs = make_knobs(2, p=0.7, eta=0.05).at(0)
    state = _programs(spec)["init"](arrays, knobs, alloc)  # probing on: labels = θ_1
    market = state.market._replace(theta=state.market.theta + 0.3)
    beta = arrays.beta
    labels = market.labels[0]
    step = retrain(spec, arrays, market, knobs, update="gradient_step")
    for i, p in ((0, 0.7), (1, 0.0)):
        grad = jax.grad(lambda th, i=i, p=p: _objective(arrays, market.alpha[i], th, beta, p,
                                                        labels))(market.theta[i])
        np.testing.assert_allclose(step[i], market.theta[i] - 0.05 * grad, atol=1e-12)
    new = retrain(spec, arrays, market, knobs)  # exact: a stationary point of the objective
    for i, p in ((0, 0.7), (1, 0.0)):
        grad = jax.grad(lambda th, i=i, p=p: _objective(arrays, market.alpha[i], th, beta, p,
                                                        labels))(new[i])
        np.testing.assert_allclose(grad, 0.0, atol=1e-10)
    assert not np.allclose(new[0], new[1])
    probe = _programs(spec)["evaluate"](arrays, state._replace(
        market=market._replace(theta=new)), knobs)["population_probe_risk"]
    assert probe[0] > 0 and np.isnan(probe[1])
    at_source = _programs(spec)["evaluate"](arrays, state._replace(market=market._replace(
        theta=market.theta.at[0].set(labels[0]))), knobs)["population_probe_risk"]
    np.testing.assert_allclose(at_source[0], 0.0, atol=1e-14)  # KL is 0 at the source


def test_zero_weight_learner_keeps_its_parameters_and_simulate_runs():
    x, y, labels = _data(3, 2)
    groups = empirical_groups(x, y, labels, loss="auto", min_size=1)
    assert groups.loss == "logistic"
    spec = PopulationSpec(n_learners=3, steps=40, metrics=("total_risk", "share"))
    alloc = np.array([[0.6, 0.3], [0.4, 0.7], [0.0, 0.0]])
    knobs = make_knobs(3, epsilon=0.2, seed=[0, 1])
    result = simulate_population(groups, spec, knobs, alloc)
    assert np.all(np.isfinite(result.metrics["total_risk"]))
    np.testing.assert_array_equal(result.final_theta[:, 2], 0.0)  # never had users
    np.testing.assert_array_equal(result.metrics["share"][:, :, 2], 0.0)


def test_bad_labels_and_ridge_are_clear_errors():
    x, y, labels = _data(4, 2)
    with pytest.raises(ValueError, match=r"y: logistic groups need labels in \{0, 1\}.*2\.0"):
        empirical_groups(x, np.where(y > 0, 2.0, 0.0), labels, loss="logistic", min_size=1)
    with pytest.raises(ValueError, match="ridge must be > 0 for logistic"):
        empirical_groups(x, y, labels, loss="logistic", min_size=1, ridge=0.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        empirical_groups(x, y, labels, loss="hinge", min_size=1)
    assert empirical_groups(x, y + 0.5, labels, loss="auto", min_size=1).loss == "squared"
