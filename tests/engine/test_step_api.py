"""The public step API: a loop written by hand with init_run / step / evaluate gives the numbers
``simulate`` gives (it composes exactly these), and a loop can intervene mid-run."""

from __future__ import annotations

import functools

import jax
import numpy as np

from userchoice.engine import (
    EngineSpec,
    evaluate,
    init_run,
    knob_grid,
    market_arrays,
    simulate,
    step,
    step_drawn,
    step_draws,
)
from userchoice.families import Logistic, Squared
from userchoice.fitting import erm_init
from userchoice.probing import ProbingSpec


def manual_loop(market, spec, knobs, index, init_params=None):
    """One run by hand: evaluate at 0 and every eval_every steps (and at T)."""
    data = market_arrays(market, spec.dtype)
    ctx, state = init_run(spec, data, knobs.at(index), init_params)
    step_fn = jax.jit(functools.partial(step, spec))
    evaluate_fn = jax.jit(functools.partial(evaluate, spec))
    rows, values = [], None
    values, state = evaluate_fn(data, ctx, state)
    rows.append(values)
    for t in range(spec.steps):
        state = step_fn(data, ctx, state, t)
        if (t + 1) % spec.eval_every == 0 or t + 1 == spec.steps:
            values, state = evaluate_fn(data, ctx, state)
            rows.append(values)
    stacked = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
    return stacked, state


def test_hand_written_loop_equals_simulate(mixture_market):
    """float64, so any difference in what is computed shows (float32 batch invariance is
    tested in test_simulate.py); probing with κ noise, online refresh and a ragged last window
    exercise every part of the state."""
    family, dtype, rtol = Logistic(), "float64", 1e-10
    spec = EngineSpec(family, 3, batch_size=16, steps=25, eval_every=10, dtype=dtype,
                      probing=ProbingSpec((1,), "preferred", n_probe=20, probe_batch=8,
                                          refresh_every=7))
    knobs = knob_grid(3, seed=[3], p=[0.0, 0.7], kappa=0.3, tau=0.4, eta=0.2, lam=1e-3)
    init = erm_init(mixture_market, family, steps=30, eta=0.5)
    result = simulate(mixture_market, spec, knobs, init_params=init)
    for index in range(knobs.n_runs):
        with jax.enable_x64(dtype == "float64"):
            values, state = manual_loop(mixture_market, spec, knobs, index, init)
        assert set(values) == set(result.metrics)
        for name, got in values.items():
            np.testing.assert_allclose(got, result.metrics[name][index], rtol=rtol, atol=1e-6,
                                       err_msg=name)
        np.testing.assert_allclose(np.asarray(state.theta), result.final_params[index],
                                   rtol=rtol, atol=1e-6)


def test_a_loop_can_intervene_mid_run(small_trap):
    """Resetting a learner to its start half-way gives a different trajectory from then on,
    and the same one before (the state is a plain pytree the caller may edit)."""
    spec = EngineSpec(Squared(), 2, batch_size=20, steps=20, eval_every=20, update_all=False)
    knobs = knob_grid(2, seed=[0], tau=0.5, eta=0.05)
    data = market_arrays(small_trap)
    ctx, plain = init_run(spec, data, knobs.at(0))
    edited = plain
    step_fn = jax.jit(step, static_argnums=0)
    for t in range(spec.steps):
        plain = step_fn(spec, data, ctx, plain, t)
        edited = step_fn(spec, data, ctx, edited, t)
        if t == 9:
            np.testing.assert_array_equal(np.asarray(plain.theta), np.asarray(edited.theta))
            edited = edited._replace(theta=edited.theta.at[1].set(ctx.theta0[1]))
    risk_plain, _ = evaluate(spec, data, ctx, plain)
    risk_edited, _ = evaluate(spec, data, ctx, edited)
    assert not np.allclose(np.asarray(risk_plain["test_loss"]),
                           np.asarray(risk_edited["test_loss"]))
    final = simulate(small_trap, spec, knobs).final("test_loss")[0]
    np.testing.assert_allclose(np.asarray(risk_plain["test_loss"]), final, rtol=2e-5)


def test_a_step_on_its_own_draws_is_the_step(mixture_market):
    """``step_drawn`` on ``step_draws(t)`` is ``step`` bit for bit (``simulate`` carries each
    step's draws through its loop that way), and it does use the draws it is given."""
    spec = EngineSpec(Logistic(), 3, batch_size=16, steps=5, eval_every=5,
                      probing=ProbingSpec((1,), "median", n_probe=20, probe_batch=8))
    knobs = knob_grid(3, seed=[4], p=0.5, kappa=0.2, tau=0.3, eta=0.2)
    data = market_arrays(mixture_market)
    ctx, state = init_run(spec, data, knobs.at(0))
    for t in range(3):
        own = step_drawn(spec, data, ctx, state, t, step_draws(spec, data, ctx, t))
        other = step_drawn(spec, data, ctx, state, t, step_draws(spec, data, ctx, t + 1))
        state = step(spec, data, ctx, state, t)
        np.testing.assert_array_equal(np.asarray(own.theta), np.asarray(state.theta))
        assert not np.array_equal(np.asarray(other.theta), np.asarray(state.theta))
