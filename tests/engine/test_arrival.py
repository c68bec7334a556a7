"""How users arrive (``EngineSpec.arrival``) and where learners start (``EngineSpec.init``):
one-pass arrivals visit each training user at most once (``stream`` in dataset order,
``shuffle`` along one permutation per seed), a population too small for T·B is a clear error,
``init="uniform"`` draws U[0, 1) for every family, and the engine still equals the NumPy
reference (float64) and gives a run the same numbers alone or in a batch."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import regression_market
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice.engine import (
    EngineSpec,
    init_run,
    make_knobs,
    market_arrays,
    predraw,
    simulate,
    validate_market,
)
from userchoice.engine.spec import check_population
from userchoice.engine.streams import draw_init
from userchoice.families import MLP, Logistic, MaskedMultiSquared, Squared
from userchoice.knobs import Knobs
from userchoice.probing import ProbingSpec
from userchoice.reference import run_reference

FAMILIES = [Logistic(), Squared(), MaskedMultiSquared(n_outputs=4, init_kind="normal"),
            MLP(hidden=3)]


def batches(market, spec, seed: int) -> np.ndarray:
    return predraw(market, spec, seed).steps.batch


def test_stream_takes_the_training_users_once_in_order(mixture_market):
    spec = EngineSpec(Logistic(), 3, batch_size=4, steps=7, arrival="stream")
    for seed in (0, 5):  # no random bits: every seed sees the same users
        np.testing.assert_array_equal(batches(mixture_market, spec, seed),
                                      np.arange(28).reshape(7, 4))


def test_shuffle_is_one_pass_over_a_permutation_per_seed(mixture_market):
    n_train = mixture_market.dataset.n_train
    assert n_train % 2 == 0
    spec = EngineSpec(Logistic(), 3, batch_size=2, steps=n_train // 2, arrival="shuffle")
    orders = [batches(mixture_market, spec, seed).ravel() for seed in (0, 1)]
    for order in orders:  # T·B = n_train: every user exactly once
        np.testing.assert_array_equal(np.sort(order), np.arange(n_train))
    assert not np.array_equal(orders[0], orders[1])
    np.testing.assert_array_equal(orders[0], batches(mixture_market, spec, 0).ravel())


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(1, 50), batch=st.integers(1, 50), n_train=st.integers(1, 2500),
       arrival=st.sampled_from(["stream", "shuffle"]))
def test_a_one_pass_arrival_needs_t_times_b_users(steps, batch, n_train, arrival):
    spec = EngineSpec(Squared(), 2, batch_size=batch, steps=steps, arrival=arrival)
    if steps * batch <= n_train:
        check_population(spec, n_train)
        return
    with pytest.raises(ValueError) as caught:
        check_population(spec, n_train)
    message = str(caught.value)
    for part in (f"T={steps}", f"B={batch}", f"= {steps * batch} users",
                 f"({n_train} users)", arrival, "arrival='uniform'"):
        assert part in message


def test_too_small_a_population_fails_before_compiling(small_trap):
    n_train = small_trap.dataset.n_train
    spec = EngineSpec(Squared(), 2, batch_size=10, steps=n_train // 10 + 1, arrival="stream")
    with pytest.raises(ValueError, match=r"exceeds the training population"):
        validate_market(spec, small_trap)
    with pytest.raises(ValueError, match=r"exceeds the training population"):
        simulate(small_trap, spec, make_knobs(2, seed=0))
    # uniform arrival samples with replacement: any T·B
    validate_market(EngineSpec(Squared(), 2, batch_size=10, steps=10 * n_train), small_trap)


def test_spec_names_the_allowed_arrivals_and_inits():
    with pytest.raises(ValueError, match=r"arrival must be one of \['uniform', 'stream', "
                                         r"'shuffle'\], got 'sequential'"):
        EngineSpec(Squared(), 2, 4, 4, arrival="sequential")
    with pytest.raises(ValueError, match=r"init must be one of \['family', 'uniform'\]"):
        EngineSpec(Squared(), 2, 4, 4, init="zeros")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_uniform_init_draws_every_leaf_from_the_unit_interval(family):
    key = jax.random.key(3)
    spec = EngineSpec(family, 3, 4, 4, init="uniform")
    theta = draw_init(spec, key, 3, 5, np.float32)
    expected = family.init(key, 3, 5, np.float32)
    assert jax.tree_util.tree_structure(theta) == jax.tree_util.tree_structure(expected)
    for leaf, like in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(expected),
                          strict=True):
        leaf = np.asarray(leaf)
        assert leaf.shape == like.shape
        assert leaf.min() >= 0.0 and leaf.max() < 1.0 and leaf.std() > 0.05
    again = draw_init(spec, key, 3, 5, np.float32)  # a pure function of the init stream
    for a, b in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(again),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_uniform_init_of_a_uniform_family_is_the_family_init():
    """One leaf: the init stream's own key, so MovieLens' U[0, 1) init is unchanged."""
    key = jax.random.key(8)
    family = MaskedMultiSquared(n_outputs=4)  # init_kind="uniform"
    np.testing.assert_array_equal(
        draw_init(EngineSpec(family, 3, 4, 4, init="uniform"), key, 3, 5, np.float32),
        family.init(key, 3, 5, np.float32))


def test_uniform_init_depends_on_the_seed_only(mixture_market):
    """θ⁰ of a run is the same alone and in a batch (vmapped), and is what predraw hands the
    reference."""
    spec = EngineSpec(MLP(hidden=3), 3, 4, 4, init="uniform", update_all=False)
    data = market_arrays(mixture_market)
    knobs = make_knobs(3, seed=[4, 9, 2])
    batched = jax.vmap(lambda k: init_run(spec, data, k)[0].theta0)(knobs)
    for index, seed in enumerate((4, 9, 2)):
        alone = init_run(spec, data, knobs.at(index))[0].theta0
        drawn = predraw(mixture_market, spec, seed).theta0
        for a, b, c in zip(*(jax.tree_util.tree_leaves(t) for t in (batched, alone, drawn)),
                           strict=True):
            np.testing.assert_array_equal(np.asarray(a)[index], b)
            np.testing.assert_array_equal(b, c)


def assert_matches_reference(market, spec, knobs: Knobs) -> None:
    result = simulate(market, spec, knobs)
    ref = run_reference(market, spec, knobs, predraw(market, spec, int(knobs.seed[0])))
    assert set(result.metrics) == set(ref.metrics)
    for name, expected in ref.metrics.items():
        np.testing.assert_allclose(result.metrics[name][0], expected, rtol=1e-8, atol=1e-12,
                                   equal_nan=True, err_msg=name)
    for got, expected in zip(jax.tree_util.tree_leaves(result.final_params),
                             jax.tree_util.tree_leaves(ref.final_params), strict=True):
        np.testing.assert_allclose(got[0], expected, rtol=1e-8, atol=1e-12)


def test_engine_matches_reference_su_dean_protocol(mixture_market):
    """Su & Dean: B = 1 in dataset order, ζ-random choice, θ − g/(t+1), Θ ~ U[0, 1)."""
    spec = EngineSpec(Logistic(), 3, batch_size=1, steps=40, eval_every=7,
                      choice="zeta_random", schedule="inv", normalisation="su_dean",
                      arrival="stream", init="uniform", dtype="float64")
    assert {"zeta_potential", "update_all_zeta_potential", "oracle_choice_accuracy",
            "path_length"} <= set(spec.metrics)
    assert_matches_reference(mixture_market, spec, make_knobs(3, seed=2, zeta=0.3, eta=1.0))


def test_engine_matches_reference_shuffle_uniform_init_probing():
    market = regression_market(n_outputs=4, seed=5)
    spec = EngineSpec(MaskedMultiSquared(n_outputs=4, init_kind="normal"), 3, batch_size=5,
                      steps=20, eval_every=6, arrival="shuffle", init="uniform",
                      probing=ProbingSpec((1,), "preferred", n_probe=10, probe_batch=4,
                                          refresh_every=5), dtype="float64")
    assert_matches_reference(market, spec, make_knobs(3, seed=7, tau=0.3, p=0.5, eta=0.01,
                                                      kappa=0.2))


@pytest.mark.parametrize("arrival", ["stream", "shuffle"])
def test_run_alone_equals_run_in_a_batch(mixture_market, arrival):
    spec = EngineSpec(Logistic(), 3, batch_size=2, steps=30, eval_every=10, arrival=arrival,
                      init="uniform", choice="zeta_random", schedule="inv", dtype="float64")
    batch = make_knobs(3, seed=[0, 3, 8, 1], zeta=[0.0, 0.5, 1.0, 0.2], eta=1.0)
    together = simulate(mixture_market, spec, batch)
    for index in (1, 3):
        alone = simulate(mixture_market, spec, batch.run(index))
        for name, values in together.metrics.items():
            np.testing.assert_allclose(alone.metrics[name][0], values[index], rtol=1e-12,
                                       atol=1e-14, equal_nan=True, err_msg=name)
