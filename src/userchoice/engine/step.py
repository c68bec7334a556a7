"""The public, pure step API (MSGD / MSGD-P for one run), in the style of gymnax.

    data = market_arrays(market, spec.dtype)
    ctx, state = init_run(spec, data, knobs.at(0), init_params)   # one run's knobs
    metrics, state = evaluate(spec, data, ctx, state)             # step 0
    for t in range(spec.steps):
        state = step(spec, data, ctx, state, t)
        if (t + 1) % spec.eval_every == 0:
            metrics, state = evaluate(spec, data, ctx, state)

Keys are explicit (derived from the run's seed knob, ``streams.run_keys``) and the state is a
pytree, so a loop written with these functions — to intervene mid-run, log, or couple the market
with another model — gives the numbers ``simulate`` gives (which composes exactly these under
``vmap`` and ``lax.scan``). ``jax.jit(step, static_argnums=0)`` compiles a step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from userchoice import metrics as metric_table
from userchoice.engine.spec import EngineSpec, MarketArrays, as_array
from userchoice.engine.streams import (
    RunKeys,
    StepDraws,
    arrival_order,
    draw_init,
    draw_step,
    run_keys,
)
from userchoice.families import Params, learner_scores
from userchoice.knobs import KNOB_NAMES, Knobs
from userchoice.probing import draw_probe_sets, pseudo_labels, source_index
from userchoice.schedules import NORMALISATIONS, SCHEDULES


class Accumulators(NamedTuple):
    """Realised batch statistics since the last evaluation point."""

    share: jax.Array  # [n] Σ over steps of batch fraction choosing i
    local_loss: jax.Array  # [n] Σ loss of users who chose i
    chosen: jax.Array  # [n] number of users who chose i
    steps: jax.Array  # []


class RunState(NamedTuple):
    theta: Params
    theta_update_all: Params | None
    probe_labels: jax.Array | None  # [|S|, N_probe, ...]
    diverged_at: jax.Array  # [] int32, −1 while finite
    acc: Accumulators
    # [n] Σ_s ‖θ_{s+1} − θ_s‖ per learner so far (only when the spec records path_length)
    path_length: jax.Array | None = None


class RunContext(NamedTuple):
    """Per-run constants fixed at the start of a run."""

    keys: RunKeys
    knobs: Knobs  # scalars for this run
    theta0: Params
    probe_x: jax.Array | None  # [|S|, N_probe, d]
    probe_w: jax.Array | None  # [|S|, N_probe, m]
    probe_source: jax.Array | None  # [|S|, N_probe] learner index (per-user sources)
    arrival_order: jax.Array | None = None  # [n_train] the users' order (arrival="shuffle")


def cast_knobs(knobs: Knobs, dtype: Any) -> Knobs:
    """One run's (or a chunk's) knobs as device arrays: the seed int32, the rest ``dtype``."""
    return Knobs(**{name: as_array(getattr(knobs, name), jnp.int32 if name == "seed" else dtype)
                    for name in KNOB_NAMES})


def zero_accumulators(n: int, dtype: Any) -> Accumulators:
    z = jnp.zeros((n,), dtype)
    return Accumulators(z, z, z, jnp.zeros((), dtype))


def _all_finite(tree: Params) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _take_learners(tree: Params, idx: tuple[int, ...]) -> Params:
    return jax.tree_util.tree_map(lambda a: a[jnp.asarray(idx)], tree)


def _set_learners(tree: Params, idx: tuple[int, ...], values: Params) -> Params:
    return jax.tree_util.tree_map(lambda a, v: a.at[jnp.asarray(idx)].set(v), tree, values)


def init_run(spec: EngineSpec, data: MarketArrays, knobs: Knobs,
             init_params: Params | None = None) -> tuple[RunContext, RunState]:
    """Constants and initial state of one run (``knobs``: that run's scalars, ``Knobs.at``).

    ``init_params`` (a pytree with a learner axis, e.g. ``erm_init``) replaces the random
    initialisation from the run's ``init`` stream (the family's, or U[0, 1) with
    ``spec.init == "uniform"``).
    """
    family = spec.family
    dtype = jnp.dtype(spec.dtype)
    knobs = cast_knobs(knobs, dtype)
    n, d = spec.n_learners, data.x_train.shape[1]
    keys = run_keys(knobs.seed)
    if init_params is None:
        theta0 = draw_init(spec, keys.init, n, d, dtype)
    else:
        theta0 = jax.tree_util.tree_map(lambda a: as_array(a, dtype), init_params)

    probe_x = probe_w = source = labels = None
    if spec.probing is not None:
        pdraws = draw_probe_sets(keys.probe_set, spec.probing, data.x_train.shape[0], dtype)
        probe_x = data.x_train[pdraws.users]
        probe_w = None if data.w_train is None else data.w_train[pdraws.users]
        if spec.probing.per_user_source:
            source = source_index(
                spec.probing, data.favourite_train[pdraws.users], pdraws, knobs.kappa, n)
        labels = pseudo_labels(family, spec.probing, theta0, probe_x, source)

    ctx = RunContext(keys, knobs, theta0, probe_x, probe_w, source,
                     arrival_order(spec, keys, data.x_train.shape[0]))
    state = RunState(
        theta=theta0,
        theta_update_all=theta0 if spec.update_all else None,
        probe_labels=labels,
        diverged_at=jnp.asarray(-1, jnp.int32),
        acc=zero_accumulators(n, dtype),
        path_length=jnp.zeros((n,), dtype) if records_path(spec) else None,
    )
    return ctx, state


def records_path(spec: EngineSpec) -> bool:
    """Whether the state carries the path length (only when a metric reads it)."""
    return "path_length" in spec.metrics


def step_lengths(old: Params, new: Params) -> jax.Array:
    """‖θ_new − θ_old‖ per learner over every parameter leaf, [n]."""
    sq = jax.tree_util.tree_map(lambda a, b: ((b - a) ** 2).reshape(a.shape[0], -1).sum(axis=1),
                                old, new)
    return jnp.sqrt(sum(jax.tree_util.tree_leaves(sq)))


def _probe_gradient(spec: EngineSpec, theta: Params, ctx: RunContext, labels: jax.Array,
                    probe_idx: jax.Array) -> Params:
    """Mean training-loss gradient of each prober on its P probe points: [|S|, ...]."""
    family = spec.family
    rows = jnp.arange(spec.n_probers)[:, None]
    px = ctx.probe_x[rows, probe_idx]
    py = labels[rows, probe_idx]
    pw = None if ctx.probe_w is None else ctx.probe_w[rows, probe_idx]

    def objective(theta_s):
        per_prober = jax.vmap(
            lambda th, x, y, w: family.loss(family.score(th, x), y, w).mean(),
            in_axes=(0, 0, 0, None if pw is None else 0),
        )(theta_s, px, py, pw)
        return family.train_scale * per_prober.sum()

    return jax.grad(objective)(_take_learners(theta, spec.probing.probers))


def step_draws(spec: EngineSpec, data: MarketArrays, ctx: RunContext, t: jax.Array | int
               ) -> StepDraws:
    """Every random input step ``t`` of this run consumes (a pure function of the run's keys
    and ``t``; ``streams.draw_step``)."""
    return draw_step(spec, ctx.keys, jnp.asarray(t, jnp.int32), data.x_train.shape[0],
                     ctx.arrival_order)


def step(spec: EngineSpec, data: MarketArrays, ctx: RunContext, state: RunState,
         t: jax.Array | int) -> RunState:
    """One MSGD(-P) step ``t``: B users arrive, choose, and each learner steps on its users
    (probers mixing in their probe gradient with weight p); update-all copies step on all."""
    return step_drawn(spec, data, ctx, state, t, step_draws(spec, data, ctx, t))


def step_drawn(spec: EngineSpec, data: MarketArrays, ctx: RunContext, state: RunState,
               t: jax.Array | int, draws: StepDraws) -> RunState:
    """``step`` given its draws (``step_draws(spec, data, ctx, t)``): a loop can draw step
    t + 1 while it steps t, so the draws are materialised once per step (XLA on CPU otherwise
    fuses the Threefry rounds into every consumer and recomputes them per element)."""
    family, n, knobs = spec.family, spec.n_learners, ctx.knobs
    dtype = jnp.dtype(spec.dtype)
    t = jnp.asarray(t, jnp.int32)
    xb, yb = data.x_train[draws.batch], data.y_train[draws.batch]
    wb = None if data.w_train is None else data.w_train[draws.batch]

    # Learners and update-all copies share one forward/backward pass: stacking them along the
    # learner axis turns two small matmuls into one (this loop is overhead-bound).
    params = state.theta
    if spec.update_all:
        params = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), params,
                                        state.theta_update_all)
    def scored_losses(th):  # the scores ride along as aux: a choice loss reads them
        scores = learner_scores(family, th, xb)
        return family.loss(scores, yb, wb), scores

    all_losses, pullback, all_scores = jax.vjp(scored_losses, params, has_aux=True)
    losses = all_losses[:n]  # [n, B]
    by = spec.choosing_losses(all_scores[:n], yb, losses)
    choice = spec.choice_rule.choose(
        by.T, data.favourite_train[draws.batch], data.rank_train[draws.batch].astype(dtype),
        draws.choice, knobs)
    chosen = jax.nn.one_hot(choice, n, dtype=dtype)  # [B, n]
    counts = chosen.sum(axis=0)
    weights = NORMALISATIONS.get(spec.normalisation)(chosen, counts, spec.batch_size)
    cotangent = weights.T
    if spec.update_all:  # each copy: mean over the whole batch
        cotangent = jnp.concatenate([cotangent, jnp.full_like(cotangent, 1.0 / spec.batch_size)])
    (all_grads,) = pullback(family.train_scale * cotangent)
    grad = jax.tree_util.tree_map(lambda g: g[:n], all_grads)

    if spec.probing is not None:
        probe_grad = _probe_gradient(spec, state.theta, ctx, state.probe_labels, draws.probe)
        own = _take_learners(grad, spec.probing.probers)
        mixed = jax.tree_util.tree_map(lambda g, h: (g + knobs.p * h) / (1.0 + knobs.p), own,
                                       probe_grad)
        grad = _set_learners(grad, spec.probing.probers, mixed)

    lr = SCHEDULES.get(spec.schedule)(knobs.eta, t.astype(dtype))
    theta = jax.tree_util.tree_map(lambda th, g: th - lr * (g + knobs.lam * th), state.theta,
                                   grad)

    theta_ua = state.theta_update_all
    if spec.update_all:
        theta_ua = jax.tree_util.tree_map(lambda th, g: th - lr * (g[n:] + knobs.lam * th),
                                          theta_ua, all_grads)

    labels = state.probe_labels
    if spec.probing is not None and spec.probing.refresh_every > 0:
        # The predicate depends on t only (shared by all runs), so under vmap it stays a branch.
        labels = jax.lax.cond(
            (t + 1) % spec.probing.refresh_every == 0,
            lambda: pseudo_labels(family, spec.probing, theta, ctx.probe_x, ctx.probe_source),
            lambda: labels,
        )

    finite = _all_finite(theta) if theta_ua is None else _all_finite((theta, theta_ua))
    diverged_at = jnp.where((state.diverged_at < 0) & ~finite, t, state.diverged_at)
    acc = Accumulators(
        share=state.acc.share + counts / spec.batch_size,
        local_loss=state.acc.local_loss + (chosen * losses.T).sum(axis=0),
        chosen=state.acc.chosen + counts,
        steps=state.acc.steps + 1,
    )
    path = state.path_length
    if path is not None:
        path = path + step_lengths(state.theta, theta)
    return RunState(theta, theta_ua, labels, diverged_at.astype(jnp.int32), acc, path)


def evaluate(spec: EngineSpec, data: MarketArrays, ctx: RunContext, state: RunState
             ) -> tuple[dict[str, jax.Array], RunState]:
    """The spec's metrics (``spec.metrics``, from the metric table) at this point, and the state
    with its batch accumulators restarted for the next evaluation window. Once a run's
    parameters have stopped being finite, every metric of it is NaN (a diverged run has no
    meaningful share, loss or accuracy)."""
    values = metric_table.evaluate_metrics(spec.metrics,
                                           metric_table.Evaluation(spec, data, ctx, state))
    diverged = state.diverged_at >= 0
    values = {name: jnp.where(diverged, jnp.nan, value) for name, value in values.items()}
    fresh = zero_accumulators(spec.n_learners, jnp.dtype(spec.dtype))
    return values, state._replace(acc=fresh)
