"""Choice rules (SPEC §1): deterministic rules, random rules' frequencies, probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from scipy.stats import chisquare

from userchoice.choice import (
    CHOICE_RULES,
    ChoiceDraws,
    choice_probabilities,
    choose,
    draw_choice,
    get_rule,
)
from userchoice.knobs import make_knobs
from userchoice.preferences import Preferences

# Significance level of every goodness-of-fit test below. Seeds are fixed, so each test is
# deterministic; the level says how unlikely a pass/fail flip would be under a correct sampler.
ALPHA = 1e-3


def _knobs(n, tau=0.0, zeta=0.0, temperature=1.0, log_prior=None, dtype=jnp.float32):
    """One run's knobs (what a rule reads), as the engine passes them."""
    prior = np.ones(n) if log_prior is None else np.exp(np.asarray(log_prior, float))
    knobs = make_knobs(n, tau=tau, zeta=zeta, temperature=temperature, prior=prior).at(0)
    return type(knobs)(*(jnp.asarray(v, jnp.int32 if k == "seed" else dtype)
                         for k, v in knobs._asdict().items()))


def _random_market(rng, b, n):
    losses = rng.random((b, n)).astype(np.float32)
    favourite = rng.integers(0, n, b)
    rank = Preferences.from_scores(rng.random((b, n)), favourite=favourite).rank
    return jnp.asarray(losses), jnp.asarray(favourite, jnp.int32), jnp.asarray(rank)


def _draws(key, b, n):
    """Every field filled, so one set of draws can drive any rule."""
    ku, kv, kg = jax.random.split(key, 3)
    return ChoiceDraws(
        jax.random.uniform(ku, (b,)), jax.random.uniform(kv, (b,)), jax.random.gumbel(kg, (b, n))
    )


# ------------------------------------------------------------------------------ tau-mixture


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_tau_one_always_picks_favourite(seed):
    rng = np.random.default_rng(seed)
    b, n = 64, 5
    losses, fav, rank = _random_market(rng, b, n)
    # Any coins in [0, 1), including the extremes.
    u = jnp.asarray(np.concatenate([[0.0, np.nextafter(np.float32(1), np.float32(0))],
                                    rng.random(b - 2)]), jnp.float32)
    draws = ChoiceDraws(u=u, v=jnp.asarray(rng.random(b), jnp.float32), gumbel=None)
    choice = choose("tau_mixture", losses, fav, rank, draws, _knobs(n, tau=1.0))
    np.testing.assert_array_equal(np.asarray(choice), np.asarray(fav))
    probs = choice_probabilities("tau_mixture", losses, fav, rank, _knobs(n, tau=1.0))
    np.testing.assert_array_equal(np.asarray(probs), np.eye(n)[np.asarray(fav)])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_tau_zero_is_argmin(seed):
    rng = np.random.default_rng(seed)
    b, n = 64, 5
    losses, fav, rank = _random_market(rng, b, n)
    draws = _draws(jax.random.key(seed), b, n)
    draws = draws._replace(u=draws.u.at[0].set(0.0))  # a zero coin must not pick the favourite
    knobs = _knobs(n, tau=0.0)
    want = np.argmin(np.asarray(losses), axis=1)
    mix = np.asarray(choose("tau_mixture", losses, fav, rank, draws, knobs))
    plain = np.asarray(choose("argmin", losses, fav, rank, draws, knobs))
    np.testing.assert_array_equal(mix, want)
    np.testing.assert_array_equal(plain, want)
    np.testing.assert_array_equal(
        np.asarray(choice_probabilities("tau_mixture", losses, fav, rank, knobs)),
        np.asarray(choice_probabilities("argmin", losses, fav, rank, knobs)),
    )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), tau=st.floats(0.0, 1.0))
def test_tau_mixture_matches_numpy_reference_on_same_draws(seed, tau):
    rng = np.random.default_rng(seed)
    b, n = 64, 4
    losses, fav, rank = _random_market(rng, b, n)
    draws = _draws(jax.random.key(seed), b, n)
    knobs = _knobs(n, tau=tau)
    got = np.asarray(choose("tau_mixture", losses, fav, rank, draws, knobs))
    u = np.asarray(draws.u)
    want = np.where(u < np.float32(tau), np.asarray(fav), np.argmin(np.asarray(losses), axis=1))
    np.testing.assert_array_equal(got, want)
    probs = np.asarray(choice_probabilities("tau_mixture", losses, fav, rank, knobs))
    want_p = np.float32(tau) * np.eye(n)[np.asarray(fav)] + (1 - np.float32(tau)) * np.eye(n)[
        np.argmin(np.asarray(losses), axis=1)
    ]
    np.testing.assert_allclose(probs, want_p, atol=1e-6)


def test_ties_go_to_lowest_index():
    losses = jnp.asarray(
        [[1.0, 0.0, 0.0], [2.0, 2.0, 2.0], [0.5, 3.0, 0.5], [4.0, 1.0, 1.0]], jnp.float32
    )
    want = np.array([1, 0, 0, 1])
    b, n = losses.shape
    fav = jnp.asarray([2, 2, 1, 0], jnp.int32)
    rank = jnp.zeros((b, n), jnp.int32)  # all-zero rank: additive_rank reduces to argmin
    draws = ChoiceDraws(u=jnp.full(b, 0.5), v=jnp.full(b, 0.5), gumbel=None)
    for rule, knobs in [
        ("argmin", _knobs(n)),
        ("tau_mixture", _knobs(n, tau=0.0)),
        ("zeta_random", _knobs(n, zeta=0.0)),
        ("additive_rank", _knobs(n, tau=3.0)),
    ]:
        np.testing.assert_array_equal(
            np.asarray(choose(rule, losses, fav, rank, draws, knobs)), want, err_msg=rule
        )
        np.testing.assert_array_equal(
            np.asarray(choice_probabilities(rule, losses, fav, rank, knobs)),
            np.eye(n)[want],
            err_msg=rule,
        )


# ------------------------------------------------------------------------------ zeta-random


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_zeta_zero_is_argmin(seed):
    rng = np.random.default_rng(seed)
    b, n = 64, 5
    losses, fav, rank = _random_market(rng, b, n)
    draws = _draws(jax.random.key(seed), b, n)
    got = np.asarray(choose("zeta_random", losses, fav, rank, draws, _knobs(n, zeta=0.0)))
    np.testing.assert_array_equal(got, np.argmin(np.asarray(losses), axis=1))


def test_zeta_one_is_uniform():
    b, n = 30_000, 6
    rng = np.random.default_rng(0)
    losses, fav, rank = _random_market(rng, b, n)
    draws = _draws(jax.random.key(0), b, n)
    knobs = _knobs(n, zeta=1.0)
    choice = np.asarray(choose("zeta_random", losses, fav, rank, draws, knobs))
    counts = np.bincount(choice, minlength=n)
    assert counts.size == n
    assert chisquare(counts).pvalue > ALPHA
    probs = np.asarray(choice_probabilities("zeta_random", losses, fav, rank, knobs))
    np.testing.assert_allclose(probs, 1.0 / n, rtol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 5, 7, 9])
def test_zeta_random_uses_top_bin_for_v_near_one(n):
    losses = jnp.zeros((2, n), jnp.float32)
    v = jnp.asarray([0.0, np.nextafter(np.float32(1), np.float32(0))], jnp.float32)
    draws = ChoiceDraws(u=jnp.zeros(2), v=v, gumbel=None)
    got = choose("zeta_random", losses, jnp.zeros(2, jnp.int32), jnp.zeros((2, n), jnp.int32),
                 draws, _knobs(n, zeta=1.0))
    np.testing.assert_array_equal(np.asarray(got), [0, n - 1])


# ------------------------------------------------------------------------------------ logit


def test_logit_gumbel_max_frequencies_match_probabilities():
    n, reps = 4, 20_000
    rows = np.array(
        [[0.0, 0.5, 1.0, 2.0], [3.0, 3.0, 0.2, 1.0], [0.1, 0.1, 0.1, 0.1]], np.float32
    )
    log_prior = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    for temperature, lp in [(1.0, None), (0.5, log_prior)]:
        losses = jnp.asarray(np.repeat(rows, reps, axis=0))
        b = losses.shape[0]
        fav = jnp.zeros(b, jnp.int32)
        rank = jnp.zeros((b, n), jnp.int32)
        knobs = _knobs(n, temperature=temperature, log_prior=lp)
        draws = draw_choice("logit", jax.random.key(7), b, n, jnp.float32)
        assert draws.gumbel.shape == (b, n)
        choice = np.asarray(choose("logit", losses, fav, rank, draws, knobs)).reshape(-1, reps)
        probs = np.asarray(choice_probabilities("logit", losses, fav, rank, knobs))
        for r in range(rows.shape[0]):
            p = probs[r * reps].astype(np.float64)
            counts = np.bincount(choice[r], minlength=n)
            assert chisquare(counts, reps * p / p.sum()).pvalue > ALPHA, (temperature, r)


@pytest.mark.parametrize("scale", [1e-3, 1e-1, 1.0, 1e2, 1e4, 1e6])
def test_logit_probabilities_stable_across_loss_scales(scale):
    rng = np.random.default_rng(int(np.log10(scale)) + 10)
    b, n = 32, 5
    base = rng.random((b, n))
    base[0] = [0.0, 1e-3, 0.5, 0.9, 1.0]  # a row with a near-tie at the top
    temperature = 0.7
    log_prior = np.log(rng.dirichlet(np.ones(n)))
    fav = jnp.zeros(b, jnp.int32)
    rank = jnp.zeros((b, n), jnp.int32)
    with jax.enable_x64(True):
        losses = scale * base
        knobs = _knobs(n, temperature=temperature, log_prior=log_prior, dtype=jnp.float64)
        got = np.asarray(choice_probabilities("logit", jnp.asarray(losses), fav, rank, knobs))
    logits = -losses / temperature + log_prior
    want = softmax(logits - logits.max(axis=1, keepdims=True), axis=1)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)
    # float32 (the engine's default dtype) must stay finite and normalised as well.
    losses32 = jnp.asarray(losses, jnp.float32)
    p32 = np.asarray(choice_probabilities("logit", losses32, fav, rank,
                                          _knobs(n, temperature=temperature, log_prior=log_prior)))
    assert np.all(np.isfinite(p32)) and np.all(p32 >= 0)
    np.testing.assert_allclose(p32.sum(axis=1), 1.0, atol=1e-5)
    if scale <= 1:  # beyond that, float32 rounding of the losses themselves moves the logits
        np.testing.assert_allclose(p32, want, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(p32, axis=1), np.argmax(want, axis=1))
    draws = _draws(jax.random.key(1), b, n)
    choice = np.asarray(choose("logit", losses32, fav, rank, draws, _knobs(n)))
    assert np.all((choice >= 0) & (choice < n))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), temperature=st.floats(0.05, 20.0))
def test_logit_prior_shifts_by_log_prior(seed, temperature):
    rng = np.random.default_rng(seed)
    b, n = 8, 4
    prior = rng.dirichlet(np.ones(n))
    with jax.enable_x64(True):
        losses = jnp.asarray(rng.random((b, n)) * 3)
        fav, rank = jnp.zeros(b, jnp.int32), jnp.zeros((b, n), jnp.int32)

        def probs(lp):
            knobs = _knobs(n, temperature=temperature, log_prior=lp, dtype=jnp.float64)
            return np.asarray(choice_probabilities("logit", losses, fav, rank, knobs))

        flat = probs(None)
        with_prior = probs(np.log(prior))
        shifted = probs(np.log(prior) + 5.0)  # a constant shift of the log-prior is irrelevant
    want = flat * prior
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(with_prior, want, rtol=1e-10)
    np.testing.assert_allclose(shifted, with_prior, rtol=1e-10)
    # Without a prior the probabilities are softmax(−loss / temperature).
    np.testing.assert_allclose(flat, softmax(-np.asarray(losses) / temperature, axis=1),
                               rtol=1e-10)


# ---------------------------------------------------------------------------- additive rank


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), tau=st.floats(0.0, 2.0))
def test_additive_rank_is_argmin_of_loss_plus_tau_rank(seed, tau):
    rng = np.random.default_rng(seed)
    b, n = 64, 5
    losses, fav, rank = _random_market(rng, b, n)
    knobs = _knobs(n, tau=tau)
    draws = _draws(jax.random.key(seed), b, n)
    got = np.asarray(choose("additive_rank", losses, fav, rank, draws, knobs))
    score = np.asarray(losses) + np.float32(tau) * np.asarray(rank).astype(np.float32)
    want = np.argmin(score, axis=1)
    np.testing.assert_array_equal(got, want)
    if tau > 1.0:  # losses lie in [0, 1): the rank cost dominates and the favourite wins
        np.testing.assert_array_equal(got, np.asarray(fav))


# ------------------------------------------------------------------------------- every rule

DETERMINISTIC = {"argmin", "additive_rank"}


@settings(max_examples=40, deadline=None)
@given(
    rule=st.sampled_from(CHOICE_RULES.names()),
    seed=st.integers(0, 2**31 - 1),
    n=st.sampled_from([2, 5]),
    tau=st.floats(0.0, 1.0),
    zeta=st.floats(0.0, 1.0),
    temperature=st.floats(0.01, 100.0),
    ties=st.booleans(),
)
def test_probabilities_are_distributions_and_consistent_with_choose(
    rule, seed, n, tau, zeta, temperature, ties
):
    rng = np.random.default_rng(seed)
    b = 16
    losses, fav, rank = _random_market(rng, b, n)
    if ties:  # coarse losses produce exact ties
        losses = jnp.round(losses * 2) / 2
    log_prior = np.log(rng.dirichlet(np.ones(n)))
    knobs = _knobs(n, tau=tau, zeta=zeta, temperature=temperature, log_prior=log_prior)
    probs = np.asarray(choice_probabilities(rule, losses, fav, rank, knobs))
    assert probs.shape == (b, n)
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    draws = _draws(jax.random.key(seed), b, n)
    choice = np.asarray(choose(rule, losses, fav, rank, draws, knobs))
    assert choice.dtype == np.int32 and np.all((choice >= 0) & (choice < n))
    picked = probs[np.arange(b), choice]
    assert np.all(picked > 0), "choose picked a learner of probability zero"
    deterministic = rule in DETERMINISTIC or (
        (rule == "tau_mixture" and tau in (0.0, 1.0)) or (rule == "zeta_random" and zeta == 0.0)
    )
    if deterministic:
        np.testing.assert_array_equal(choice, np.argmax(probs, axis=1))
        np.testing.assert_allclose(picked, 1.0)


def test_get_rule_rejects_unknown_names():
    for rule in CHOICE_RULES:
        get_rule(rule)
    with pytest.raises(ValueError) as err:
        get_rule("softmin")
    assert "softmin" in str(err.value)
    for rule in CHOICE_RULES:
        assert rule in str(err.value)
    n = 3
    losses = jnp.zeros((2, n))
    fav, rank = jnp.zeros(2, jnp.int32), jnp.zeros((2, n), jnp.int32)
    draws = ChoiceDraws(u=jnp.zeros(2), v=jnp.zeros(2), gumbel=None)
    with pytest.raises(ValueError, match="choice rule"):
        choose("softmin", losses, fav, rank, draws, _knobs(n))
    with pytest.raises(ValueError, match="choice rule"):
        choice_probabilities("softmin", losses, fav, rank, _knobs(n))


@pytest.mark.parametrize(
    ("rule", "fields"),
    [("tau_mixture", {"u"}), ("zeta_random", {"u", "v"}), ("logit", {"gumbel"}),
     ("argmin", set()), ("additive_rank", set())],
)
def test_draw_choice_draws_exactly_what_the_rule_reads(rule, fields):
    draws = draw_choice(rule, jax.random.key(0), 8, 3, jnp.float32)
    assert {name for name, value in draws._asdict().items() if value is not None} == fields
    losses = jnp.asarray(np.random.default_rng(0).random((8, 3)), jnp.float32)
    choice = choose(rule, losses, jnp.zeros(8, jnp.int32), jnp.zeros((8, 3)), draws,
                    _knobs(3))
    assert choice.shape == (8,)
