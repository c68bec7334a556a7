"""Population dynamics against theory: Dean et al.'s experiment (a) in closed form, monotone
total risk, least squares, the ε → 0 limit, market entry, the stop rule, batch invariance."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice.knobs import make_knobs
from userchoice.population import (
    PopulationSpec,
    advance,
    empirical_groups,
    end_phase,
    evaluate,
    group_arrays,
    init_state,
    quadratic_groups,
    round_step,
    simulate_population,
)
from userchoice.population.step import stop_count

PHI = np.array([[0.0, 1.0], [1.0, 1.0], [0.6, 0.0]])
EVEN = np.full((2, 3), 0.5)
PERTURBED = [  # NEIGHBOURS §B(a): rows = learners, columns = groups
    [[0.496, 0.511, 0.498], [0.504, 0.489, 0.502]],
    [[0.501, 0.491, 0.494], [0.499, 0.509, 0.506]],
    [[0.486, 0.505, 0.503], [0.514, 0.495, 0.497]],
]
SPEC_A = PopulationSpec(n_learners=2, steps=500)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def closed_form_total(segments: list[list[int]], sigma2: float = 1.0) -> float:
    """Σ_j (σ² + ‖φ_j − mean of its segment's φ‖²): each segment served at its groups' mean."""
    total = 0.0
    for groups in segments:
        if groups:
            phi = PHI[groups]
            total += len(groups) * sigma2 + ((phi - phi.mean(0)) ** 2).sum()
    return total


@pytest.fixture(scope="module")
def experiment_a():
    allocation = np.stack([EVEN, *np.asarray(PERTURBED)])
    knobs = make_knobs(2, epsilon=0.1, seed=[0, 1, 2, 3])
    return simulate_population(quadratic_groups(PHI), SPEC_A, knobs, allocation), allocation


def test_even_split_is_a_fixed_point_with_the_papers_total_risk(experiment_a):
    result, _ = experiment_a
    even = closed_form_total([[0, 1, 2]])  # both learners at the mean of all three φ
    assert even == pytest.approx(4.173, abs=1e-3)  # the paper's number
    np.testing.assert_allclose(result.metrics["total_risk"][0], even, rtol=1e-12)
    # identical learners: each one's global risk is the average user's risk
    np.testing.assert_allclose(result.metrics["global_risk"][0],
                               np.repeat(result.metrics["average_risk"][0][:, None], 2, 1),
                               rtol=1e-12)
    np.testing.assert_allclose(result.final_allocation[0], EVEN, atol=1e-15)
    assert result.converged[0, 0] and result.phase_end[0, 0] == SPEC_A.patience + 1


def test_perturbations_reach_distinct_segmented_equilibria_in_closed_form(experiment_a):
    result, _ = experiment_a
    partitions = set()
    for run in (1, 2, 3):
        alloc = result.final_allocation[run]
        assert result.converged[run, 0]
        assert result.metrics["segmentation"][run, -1] == 1.0
        owner = alloc.argmax(axis=0)
        segments = [list(np.flatnonzero(owner == i)) for i in range(2)]
        assert all(segments)  # both learners serve someone
        np.testing.assert_allclose(result.metrics["total_risk"][run, -1],
                                   closed_form_total(segments), atol=1e-3)
        np.testing.assert_allclose(result.equilibrium["total_risk"][run, 0],
                                   closed_form_total(segments), atol=1e-3)
        for i, groups in enumerate(segments):  # a segment's learner: the mean of its φ
            np.testing.assert_allclose(result.final_theta[run, i], PHI[groups].mean(0),
                                       atol=1e-5)
            # its global risk: every group's risk ‖θ_i − φ_j‖² + σ² at that mean, averaged
            centre = PHI[groups].mean(0)
            np.testing.assert_allclose(result.metrics["global_risk"][run, -1, i],
                                       (((PHI - centre) ** 2).sum(1) + 1.0).mean(), atol=1e-4)
        partitions.add(frozenset(frozenset(s) for s in segments))
    assert len(partitions) == 3  # each perturbation: a different equilibrium
    optimum = min(closed_form_total([list(a), [j for j in range(3) if j not in a]])
                  for r in (1, 2) for a in itertools.combinations(range(3), r))
    assert result.metrics["total_risk"][1:, -1].min() == pytest.approx(optimum, abs=1e-3)


def test_batch_invariance(experiment_a):
    """A run's numbers alone equal its numbers in a batch of runs."""
    result, allocation = experiment_a
    knobs = make_knobs(2, epsilon=0.1, seed=[0, 1, 2, 3])
    alone = simulate_population(quadratic_groups(PHI), SPEC_A, knobs.run(2), allocation[2])
    np.testing.assert_array_equal(alone.phase_end[0], result.phase_end[2])
    np.testing.assert_array_equal(alone.final_allocation[0], result.final_allocation[2])
    for name, values in result.metrics.items():
        np.testing.assert_allclose(alone.metrics[name][0], values[2], rtol=1e-12, atol=1e-13,
                                   err_msg=name)


def test_compacting_a_batch_keeps_every_runs_numbers(experiment_a):
    """77 runs settle at round 21 and 3 run on: those move to a batch a quarter the size
    (``simulate.COMPACT``); every run's numbers stay those of the small batch."""
    result, allocation = experiment_a
    rows = [0] * 77 + [1, 2, 3]
    knobs = make_knobs(2, epsilon=0.1, seed=[0, 1, 2, 3])
    big = simulate_population(quadratic_groups(PHI), SPEC_A, knobs.take(rows), allocation[rows],
                              chunk_size=80, workers=1)
    assert big.timings["compactions"] == 1
    np.testing.assert_array_equal(big.phase_end, result.phase_end[rows])
    np.testing.assert_array_equal(big.converged, result.converged[rows])
    np.testing.assert_allclose(big.final_allocation, result.final_allocation[rows], rtol=1e-12,
                               atol=1e-15)
    for name, values in result.metrics.items():
        np.testing.assert_allclose(big.metrics[name], values[rows], rtol=1e-12, atol=1e-13,
                                   err_msg=name)
        np.testing.assert_allclose(big.equilibrium[name], result.equilibrium[name][rows],
                                   rtol=1e-12, atol=1e-13, err_msg=name)


@functools.lru_cache(maxsize=16)
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


SHAPES = [(1, 1, 1), (3, 2, 2), (5, 3, 3), (4, 2, 4)]  # (G, d, n): few shapes, few compiles


def _instance(draw_shape, seed, epsilon, sigma2=1.0):
    g, d, n = draw_shape
    rng = np.random.default_rng(seed)
    groups = quadratic_groups(rng.standard_normal((g, d)) * rng.uniform(0.1, 3),
                              sigma2=sigma2, beta=rng.uniform(0.2, 3.0, g))
    alloc = rng.dirichlet(np.full(n, 0.7), size=g).T
    spec = PopulationSpec(n_learners=n, steps=10_000, metrics=("total_risk",))
    knobs = make_knobs(n, epsilon=epsilon).at(0)
    return groups, alloc, spec, knobs


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(SHAPES), st.integers(0, 2**31 - 1), st.floats(0.01, 0.9))
def test_total_risk_never_increases_under_retraining_and_multiplicative_weights(
        shape, seed, epsilon):
    groups, alloc, spec, knobs = _instance(shape, seed, epsilon)
    totals, _ = _rounds_program(spec, 40)(group_arrays(groups), knobs, alloc)
    totals = np.asarray(totals)
    assert np.all(np.isfinite(totals))
    assert np.all(np.diff(totals) <= 1e-10 * max(1.0, totals[0])), totals


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(SHAPES), st.integers(0, 2**31 - 1))
def test_vanishing_epsilon_leaves_the_allocation_unchanged(shape, seed):
    groups, alloc, spec, knobs = _instance(shape, seed, 1e-12)
    _, alphas = _rounds_program(spec, 40)(group_arrays(groups), knobs, alloc)
    np.testing.assert_allclose(np.asarray(alphas), np.broadcast_to(alloc, alphas.shape),
                               atol=1e-9)


def test_one_group_one_learner_is_least_squares():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((80, 5)), rng.standard_normal(80)
    groups = empirical_groups(x, y, np.zeros(80, int))
    spec = PopulationSpec(n_learners=1, steps=5)
    knobs = make_knobs(1).at(0)
    arrays = group_arrays(groups)
    programs = _phase_programs(spec)
    state = programs["init"](arrays, knobs, np.ones((1, 1)))
    best = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(state.market.theta[0], best, rtol=1e-8, atol=1e-10)
    state = programs["round"](arrays, state, knobs)  # retraining again: still the optimum
    np.testing.assert_allclose(state.market.theta[0], best, rtol=1e-8, atol=1e-10)
    risk = programs["evaluate"](arrays, state, knobs)
    np.testing.assert_allclose(risk["total_risk"], ((x @ best - y) ** 2).mean(), rtol=1e-8)
    np.testing.assert_allclose(risk["relative_excess_risk"], 0.0, atol=1e-6)


def test_singular_group_retrains_to_the_nearest_minimiser():
    """A group that constrains only some directions: retraining moves θ to the minimiser
    nearest its current value (the others keep theirs)."""
    rng = np.random.default_rng(5)
    x = np.column_stack([rng.standard_normal(60), np.ones(60), np.ones(60)])  # collinear
    y = rng.standard_normal(60)
    groups = empirical_groups(x, y, np.zeros(60, int))
    spec = PopulationSpec(n_learners=1, steps=5)
    knobs = make_knobs(1).at(0)
    arrays = group_arrays(groups)
    theta0 = np.array([[0.3, 2.0, -1.0]])
    programs = _phase_programs(spec)
    state = programs["round"](arrays, programs["init"](arrays, knobs, np.ones((1, 1)), theta0),
                              knobs)
    theta = np.asarray(state.market.theta[0])
    best = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(x @ theta, x @ best, atol=1e-8)  # a minimiser
    null = np.array([0.0, 1.0, -1.0]) / np.sqrt(2)
    np.testing.assert_allclose(theta @ null, theta0[0] @ null, atol=1e-8)  # kept


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(["largest", "index"]))
def test_entry_conserves_each_groups_allocation_and_clones_the_parent(seed, entry):
    rng = np.random.default_rng(seed)
    groups = quadratic_groups(rng.standard_normal((6, 3)))
    spec = PopulationSpec(n_learners=2, steps=50, max_learners=4, entry=entry,
                          metrics=("total_risk",))
    knobs = make_knobs(4, seed=seed % 2**31).at(0)
    arrays = group_arrays(groups)
    alloc = rng.dirichlet(np.ones(2), size=6).T
    programs = _phase_programs(spec)
    state = programs["init"](arrays, knobs, alloc)
    for k in range(2):  # two entries: learners 2 and 3
        before = jax.tree_util.tree_map(np.asarray, state.market)
        share = before.alpha @ np.asarray(arrays.beta)
        parent = int(np.argmax(share[: 2 + k])) if entry == "largest" else k
        after = programs["end"](arrays, state._replace(pending=jnp.asarray(True)), knobs)
        alpha = np.asarray(after.market.alpha)
        child = 2 + k
        a_old, a_par, a_new = before.alpha[parent], alpha[parent], alpha[child]
        np.testing.assert_array_equal(a_par + a_new, a_old)  # exact, in floating point
        assert np.all(a_par >= 0) and np.all(a_new >= 0)
        np.testing.assert_allclose(a_new, a_old / 2, atol=a_old.max() * 0.01)  # about half
        np.testing.assert_array_equal(np.asarray(after.market.theta)[child],
                                      before.theta[parent])
        others = [i for i in range(4) if i not in (parent, child)]
        np.testing.assert_array_equal(alpha[others], before.alpha[others])
        np.testing.assert_allclose(alpha.sum(0), 1.0, rtol=1e-14)
        assert bool(after.market.active[child]) and int(after.phase) == k + 1
        assert int(after.phase_end[k]) == int(state.t)
        total_before = programs["total"](arrays, state, knobs)
        total_after = programs["total"](arrays, after, knobs)
        np.testing.assert_allclose(total_after, total_before, rtol=1e-13)  # a clone: same risk
        state = programs["advance"](arrays, after, knobs)


@functools.lru_cache(maxsize=4)
def _phase_programs(spec: PopulationSpec) -> dict:
    return {"init": jax.jit(lambda a, k, al, th=None: init_state(spec, a, k, al, th)),
            "round": jax.jit(lambda a, s, k: round_step(spec, a, s, k)),
            "evaluate": jax.jit(lambda a, s, k: evaluate(spec, a, s, k)),
            "end": jax.jit(lambda a, s, k: end_phase(spec, a, s, k)),
            "advance": jax.jit(lambda a, s, k: advance(spec, a, s, k)),
            "total": jax.jit(lambda a, s, k: evaluate(spec, a, s, k)["total_risk"])}


def test_entry_to_the_cap_then_the_run_stops():
    groups = quadratic_groups(np.random.default_rng(0).standard_normal((8, 2)))
    spec = PopulationSpec(n_learners=2, steps=300, max_learners=4, eval_every=10,
                          metrics=("total_risk", "n_learners", "share"))
    alloc = np.random.default_rng(1).dirichlet(np.ones(2), size=8).T
    result = simulate_population(groups, spec, make_knobs(4, seed=[3, 4]), alloc)
    assert result.phase_end.shape == (2, 3) and np.all(result.phase_end >= 0)
    np.testing.assert_array_equal(result.equilibrium["n_learners"], [[2, 3, 4]] * 2)
    totals = result.equilibrium["total_risk"]
    assert np.all(np.diff(totals, axis=1) <= 1e-9)  # entry never raises total risk
    assert np.all(np.diff(result.metrics["total_risk"], axis=1) <= 1e-9)
    done = result.eval_steps > result.phase_end[:, -1:]  # after the last phase: frozen
    last = result.metrics["total_risk"][np.arange(2), -1]
    np.testing.assert_array_equal(np.where(done, result.metrics["total_risk"], last[:, None]),
                                  np.broadcast_to(last[:, None], done.shape))
    share = result.metrics["share"]
    assert np.all(np.isnan(share[:, 0, 2:]))  # learners not yet in the market
    np.testing.assert_allclose(np.nansum(share, axis=2), 1.0, rtol=1e-12)


def test_stop_rule_counts_consecutive_or_cumulative_rounds():
    closes = [True, False, True, True, False, True, True, True]
    counts = {}
    for stop in ("consecutive", "cumulative"):
        count, seq = jnp.asarray(0), []
        for close in closes:
            count = stop_count(stop, count, jnp.asarray(close))
            seq.append(int(count))
        counts[stop] = seq
    assert counts["consecutive"] == [1, 0, 1, 2, 0, 1, 2, 3]
    assert counts["cumulative"] == [1, 1, 2, 3, 3, 4, 5, 6]
    # with patience 2, cumulative converges at round 4, consecutive only at round 8
    first = {s: next(i + 1 for i, c in enumerate(seq) if c > 2) for s, seq in counts.items()}
    assert first == {"consecutive": 8, "cumulative": 4}


def test_a_diverging_run_is_marked_and_its_later_metrics_are_nan():
    spec = PopulationSpec(n_learners=2, steps=200, update="gradient_step", patience=1000,
                          metrics=("total_risk", "share"))
    knobs = make_knobs(2, eta=[0.05, 1e5], seed=[0, 0])
    result = simulate_population(quadratic_groups(PHI), spec, knobs, np.asarray(PERTURBED[0]))
    ok, bad = result.diverged_step
    assert ok == -1 and 0 < bad < 200
    steps = result.eval_steps
    assert np.all(np.isnan(result.metrics["total_risk"][1, steps >= bad]))
    assert np.all(np.isfinite(result.metrics["total_risk"][1, steps < bad]))
    assert np.all(np.isfinite(result.metrics["total_risk"][0]))
    assert result.phase_end[1, 0] == -1 and not result.converged[1, 0]
    assert np.isnan(result.equilibrium["total_risk"][1, 0])
