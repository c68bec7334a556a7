"""The public, pure step API of the population dynamics (one run), in the style of gymnax.

    arrays = group_arrays(groups)                      # inside jax.enable_x64 for float64
    state = init_state(spec, arrays, knobs.at(0), allocation)
    metrics = evaluate(spec, arrays, state, knobs.at(0))            # round 0
    while not state.done and state.t < spec.total_rounds:
        state = round_step(spec, arrays, state, knobs.at(0))

A round (``advance``):

0. probers refresh their source parameters s_ij when due (``refresh_every``);
1. every active learner updates on its current allocation: ``retrain`` sets θ_i to the exact
   minimiser of Σ_j w_ij R_j(θ) (+ p × probe risk for a prober), w_ij = β_j α_ij (or
   β_j N_j α_ij with ``weighting="beta_count"``); ``gradient_step`` takes one step of size η
   on that objective. A learner with (near-)zero total weight (below √tiny × Σ_j w_j, i.e.
   ≈ 1e-154 of the population in float64) keeps its parameters; where the objective's matrix
   is singular (a group with collinear features), retraining moves θ_i to the nearest
   minimiser (θ_i + M⁺(v − Mθ_i)), so directions no group constrains keep their values;
   logistic groups: the weighted logistic regression's minimiser by Newton's method from θ_i
   (``population.logistic.minimise``; a probe term adds the prober's rows with the source's
   predicted probabilities as soft labels), ``gradient_step`` one step on that objective;
2. every group updates its allocation by multiplicative weights over the active learners,
   α_ij ← α_ij (1 − ε)^{R_j(θ_i)} / Σ_k α_kj (1 − ε)^{R_j(θ_k)}, with the exponents shifted by
   the group's smallest risk (stable for large risks; an allocation that underflows to 0
   stays 0, as in floating point anywhere);
3. the stop rule: a round whose allocations are allclose(rtol, atol) to the previous round's
   counts (``consecutive``: a round that is not resets the count; ``cumulative``: never
   reset); the phase ends when the count exceeds ``patience`` or after ``steps`` rounds.

Then ``end_phase`` (a no-op unless the round ended a phase) records the equilibrium (the market
at the end of the phase) and starts the next phase: probing switches on (``probing.start ==
"equilibrium"``, after the first phase), or a learner enters, or — after the last phase — the
run is done and later rounds are no-ops. Entry splits a parent learner (``entry``): the new
learner copies θ_parent and takes a share h_j = clip(½ + ξ_j, 0, 1), ξ_j ~ N(0, 0.001²), of
each group's allocation to the parent (drawn from the run's seed knob and the entry's index);
the two parts sum to the parent's allocation exactly, in floating point.

The initial parameters (round 0) are the learners' exact retraining minimisers on α⁰ (or
``theta0``), so metrics at round 0 describe the initial allocation served by fitted learners.
``round_step = end_phase ∘ advance``; ``simulate_population`` composes the two under ``vmap``
and calls ``end_phase`` only on rounds where some run ended a phase (the same numbers).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice import metrics as metric_table
from userchoice.knobs import Knobs
from userchoice.population import logistic
from userchoice.population.arrays import GroupArrays, MarketState, apply_A, risks_fast
from userchoice.population.metrics import PopulationEvaluation
from userchoice.population.sources import with_noise
from userchoice.population.spec import PopulationSpec

ENTRY_STREAM = 0x656E  # folded into the run's key: the entry jitter's stream
JITTER = 1e-3  # standard deviation of the entry split's jitter


class PopulationState(NamedTuple):
    """One run's state: the market, the round counters and the equilibria reached."""

    market: MarketState
    t: jax.Array  # [] int32: rounds run so far (the global round index)
    phase: jax.Array  # [] int32
    phase_round: jax.Array  # [] int32: rounds run in this phase
    count: jax.Array  # [] int32: the stop rule's count of unchanged rounds
    probe_round: jax.Array  # [] int32: rounds run with probing on
    pending: jax.Array  # [] bool: this round ended its phase (``end_phase`` handles it)
    done: jax.Array  # [] bool: the last phase ended, or the run diverged
    diverged_at: jax.Array  # [] int32: the round whose state was not finite (−1: none)
    phase_end: jax.Array  # [Φ] int32: the round each phase ended (−1: not reached)
    converged: jax.Array  # [Φ] bool: the phase's stop rule held (False: its budget ran out)
    equilibria: MarketState  # each leaf with a leading [Φ] axis: the market at each phase end


def _dtype(spec: PopulationSpec) -> Any:
    return jnp.dtype(spec.dtype)


def weights(spec: PopulationSpec, arrays: GroupArrays, alpha: jax.Array) -> jax.Array:
    """Retraining weights w_ij, [N, G]."""
    w = arrays.beta if spec.weighting == "beta" else arrays.beta * arrays.counts
    return alpha * w[None, :]


def probe_labels(spec: PopulationSpec, arrays: GroupArrays, market: MarketState,
                 knobs: Knobs) -> jax.Array:
    """Every prober's source parameters s_ij from the current learners, [|S|, G, d]."""
    probing = spec.probing
    source = probing.source_object
    out = []
    for prober in probing.probers:
        labels = source.labels(probing, prober, market.theta, market.alpha, arrays.beta,
                               market.active)
        if source.per_user:
            labels = with_noise(labels, market.theta, market.active, prober, knobs.kappa)
        out.append(jnp.asarray(labels, market.theta.dtype))
    return jnp.stack(out)


def _objective(spec: PopulationSpec, arrays: GroupArrays, market: MarketState,
               knobs: Knobs) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each learner's objective Σ_j w_ij R_j(θ) (+ p × probe risk) as (W, M, v): total weight
    [N], the quadratic's matrix M (isotropic groups: its scale [N]; else [N, d, d]) and
    linear term v [N, d] (objective = θᵀMθ − 2vᵀθ + const)."""
    w = weights(spec, arrays, market.alpha)  # [N, G]
    total = w.sum(axis=1)
    v = w @ arrays.b
    M = w @ arrays.scale if arrays.A is None else jnp.einsum("ng,gde->nde", w, arrays.A)
    if spec.probing is not None:
        probers = jnp.asarray(spec.probing.probers)
        on = market.probing_on & market.active[probers]
        q = jnp.where(on, knobs.p, 0.0).astype(w.dtype)  # [|S|]
        bar = arrays.beta / arrays.beta.sum()  # the probe risk's group weights
        total = total.at[probers].add(q)
        v = v.at[probers].add(q[:, None] * jnp.einsum(
            "g,sgd->sd", bar, apply_A(arrays, market.labels)))
        if arrays.A is None:
            M = M.at[probers].add(q * (bar @ arrays.scale))
        else:
            M = M.at[probers].add(q[:, None, None] * jnp.einsum("g,gde->de", bar, arrays.A))
    return total, M, v


def _nearest_minimiser(M: jax.Array, v: jax.Array, theta: jax.Array) -> jax.Array:
    """θ + M⁺(v − Mθ) per learner (M [N, d, d] symmetric PSD): the exact minimiser when M is
    invertible, else the minimiser nearest θ."""
    lam, vec = jnp.linalg.eigh(M)
    cutoff = M.shape[-1] * jnp.finfo(M.dtype).eps * jnp.max(jnp.abs(lam), axis=-1,
                                                            keepdims=True)
    inv = jnp.where(lam > cutoff, 1.0 / jnp.where(lam > cutoff, lam, 1.0), 0.0)
    residual = v - jnp.einsum("nde,ne->nd", M, theta)
    return theta + jnp.einsum("nde,ne->nd", vec, inv * jnp.einsum("nde,nd->ne", vec, residual))


def probe_targets(arrays: GroupArrays, labels: jax.Array) -> jax.Array:
    """Logistic groups: each row's probability under its group's source parameter,
    σ(x_rᵀs_i,g(r)), for source parameters ``labels`` [|S|, G, d]: [|S|, R]."""
    logits = jnp.einsum("rd,sgd->srg", arrays.x, labels)
    return jax.nn.sigmoid(jnp.sum(logits * arrays.member[None], axis=-1))


def _logistic_objective(spec: PopulationSpec, arrays: GroupArrays, market: MarketState,
                        knobs: Knobs) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Logistic groups' objectives Σ_j w_ij R_j(θ) (+ p × probe risk) in the solver's form
    (``population.logistic``): total weight [N], row coefficients c and targets t [N, R],
    ridge ρ [N]. The probe risk on group j is the cross-entropy against the source's
    probabilities σ(x_rᵀs_ij) on j's rows (its minimiser alone: θ = s_ij), with no ridge."""
    w = weights(spec, arrays, market.alpha)  # [N, G]
    total = w.sum(axis=1)
    c = (w / arrays.counts[None, :]) @ arrays.member.T
    t = c * arrays.y[None, :]
    rho = arrays.ridge * total
    if spec.probing is not None:
        probers = jnp.asarray(spec.probing.probers)
        on = market.probing_on & market.active[probers]
        q = jnp.where(on, knobs.p, 0.0).astype(w.dtype)  # [|S|]
        bar = arrays.beta / arrays.beta.sum()
        row = arrays.member @ (bar / arrays.counts)  # [R]: β̄_g(r) / N_g(r)
        c = c.at[probers].add(q[:, None] * row[None, :])
        t = t.at[probers].add(q[:, None] * row[None, :] * probe_targets(arrays, market.labels))
        total = total.at[probers].add(q)
    return total, c, t, rho


def _retrain_logistic(spec: PopulationSpec, arrays: GroupArrays, market: MarketState,
                      knobs: Knobs, update: str) -> jax.Array:
    total, c, t, rho = _logistic_objective(spec, arrays, market, knobs)
    theta = market.theta
    if update == "gradient_step":
        return theta - knobs.eta * logistic.gradient(arrays.x, c, t, rho, theta)
    scale = weights(spec, arrays, jnp.ones_like(market.alpha[:1]))[0].sum()
    keep = total <= jnp.sqrt(jnp.finfo(theta.dtype).tiny) * scale
    safe = jnp.where(keep, 1.0, total)[:, None]  # normalised: the tolerance is relative
    rho = jnp.where(keep, 1.0, rho / safe[:, 0])
    return logistic.minimise(arrays.x, c / safe, t / safe, rho, theta, done=keep)


def retrain(spec: PopulationSpec, arrays: GroupArrays, market: MarketState,
            knobs: Knobs, update: str | None = None) -> jax.Array:
    """The learners' parameters after one update (``update``, default ``spec.update``),
    [N, d]."""
    if arrays.logistic:
        return _retrain_logistic(spec, arrays, market, knobs, update or spec.update)
    total, M, v = _objective(spec, arrays, market, knobs)
    theta = market.theta
    if (update or spec.update) == "gradient_step":  # ∇ = 2(Mθ − v)
        Mtheta = M[:, None] * theta if arrays.A is None else jnp.einsum("nde,ne->nd", M, theta)
        return theta - knobs.eta * 2.0 * (Mtheta - v)
    scale = weights(spec, arrays, jnp.ones_like(market.alpha[:1]))[0].sum()
    keep = total <= jnp.sqrt(jnp.finfo(theta.dtype).tiny) * scale
    safe = jnp.where(keep, 1.0, total)
    if arrays.A is None:  # a weighted mean: θ = Σ_j w_j b_j / Σ_j w_j a_j
        new = v / jnp.where(keep, 1.0, M)[:, None]
    else:
        new = _nearest_minimiser(M / safe[:, None, None], v / safe[:, None], theta)
    return jnp.where(keep[:, None], theta, new)


def multiplicative_weights(alpha: jax.Array, risk: jax.Array, epsilon: jax.Array) -> jax.Array:
    """α_ij (1 − ε)^{R_ij} / Σ_k α_kj (1 − ε)^{R_kj}; zero entries stay zero.

    The factors are taken relative to each group's smallest risk among the learners it uses,
    (1 − ε)^{R_ij − min_k R_kj} ∈ (0, 1]: the same ratio, with no overflow however large the
    risks (the exponent of log-space weights, shifted), and one exponential per entry.
    """
    used = alpha > 0
    best = jnp.min(jnp.where(used, risk, jnp.inf), axis=0, keepdims=True)
    factor = jnp.exp(jnp.where(used, risk - best, 0.0) * jnp.log1p(-epsilon))
    weighted = jnp.where(used, alpha * factor, 0.0)
    return weighted / weighted.sum(axis=0, keepdims=True)


def _initial_theta(spec: PopulationSpec, arrays: GroupArrays, market: MarketState,
                   knobs: Knobs) -> jax.Array:
    """Exact retraining on the initial allocation, without probing (sources need θ first)."""
    bare = market._replace(probing_on=jnp.asarray(False))
    return retrain(spec, arrays, bare, knobs, update="retrain")


def init_state(spec: PopulationSpec, arrays: GroupArrays, knobs: Knobs, allocation: Any,
               theta0: Any = None) -> PopulationState:
    """The state of one run at round 0 (``knobs``: that run's scalars, ``Knobs.at``;
    ``allocation``: α⁰ [n_learners, G]; ``theta0``: initial parameters [n_learners, d], default
    the exact retraining minimisers on α⁰)."""
    dtype = _dtype(spec)
    knobs = _cast(knobs, dtype)
    n, big = spec.n_learners, spec.max_n
    g, d = arrays.b.shape
    alpha = jnp.zeros((big, g), dtype).at[:n].set(jnp.asarray(allocation, dtype))
    active = jnp.arange(big) < n
    n_probers = 0 if spec.probing is None else spec.probing.n_probers
    labels = None if spec.probing is None else jnp.zeros((n_probers, g, d), dtype)
    probing_on = jnp.asarray(spec.probing is not None and spec.probing.start == "start")
    market = MarketState(jnp.zeros((big, d), dtype), alpha, active, probing_on, labels)
    if theta0 is None:
        theta = _initial_theta(spec, arrays, market, knobs)
    else:
        theta = jnp.zeros((big, d), dtype).at[:n].set(jnp.asarray(theta0, dtype))
    market = market._replace(theta=theta)
    if spec.probing is not None:
        market = market._replace(labels=jnp.where(
            probing_on, probe_labels(spec, arrays, market, knobs), labels))
    phases = spec.n_phases
    zero = jnp.asarray(0, jnp.int32)
    return PopulationState(
        market=market, t=zero, phase=zero, phase_round=zero, count=zero, probe_round=zero,
        pending=jnp.asarray(False), done=jnp.asarray(False),
        diverged_at=jnp.asarray(-1, jnp.int32),
        phase_end=jnp.full((phases,), -1, jnp.int32), converged=jnp.zeros((phases,), bool),
        equilibria=jax.tree_util.tree_map(lambda a: jnp.zeros((phases, *a.shape), a.dtype),
                                          market))


def _cast(knobs: Knobs, dtype: Any) -> Knobs:
    from userchoice.engine.step import cast_knobs

    return cast_knobs(knobs, dtype)


def _finite(*arrays: jax.Array) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def stop_count(stop: str, count: jax.Array, close: jax.Array) -> jax.Array:
    """The stop rule's count after a round whose allocations were (``close``) or were not
    unchanged: ``consecutive`` resets it on a changed round, ``cumulative`` (the authors')
    never does."""
    return jnp.where(close, count + 1, count if stop == "cumulative" else 0)


def advance(spec: PopulationSpec, arrays: GroupArrays, state: PopulationState,
            knobs: Knobs) -> PopulationState:
    """One round: refresh probe labels when due, update the learners, multiplicative weights,
    the stop rule (sets ``pending`` when the phase is over). A done run is returned as it is."""
    knobs = _cast(knobs, _dtype(spec))
    market = state.market
    if spec.probing is not None and spec.probing.refresh_every > 0:
        due = market.probing_on & (state.probe_round % spec.probing.refresh_every == 0)
        market = market._replace(labels=jnp.where(
            due, probe_labels(spec, arrays, market, knobs), market.labels))
    theta = retrain(spec, arrays, market, knobs)
    alpha = multiplicative_weights(market.alpha, risks_fast(arrays, theta), knobs.epsilon)
    alpha = jnp.where(market.active[:, None], alpha, 0.0)
    close = jnp.all(jnp.abs(alpha - market.alpha) <= spec.atol + spec.rtol * jnp.abs(
        market.alpha))
    count = stop_count(spec.stop, state.count, close)
    t = state.t + 1
    phase_round = state.phase_round + 1
    finite = _finite(theta, alpha)
    diverged_at = jnp.where(finite, state.diverged_at, t)
    new = state._replace(
        market=market._replace(theta=theta, alpha=alpha), t=t, phase_round=phase_round,
        count=count.astype(jnp.int32),
        probe_round=state.probe_round + market.probing_on.astype(jnp.int32),
        pending=finite & ((count > spec.patience) | (phase_round >= spec.steps)),
        done=~finite, diverged_at=diverged_at.astype(jnp.int32))
    return _pick(state.done, state, new)


def _pick(condition: jax.Array, if_true: Any, if_false: Any) -> Any:
    """``where(condition, ·, ·)`` over two pytrees of one structure."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


def _split(spec: PopulationSpec, arrays: GroupArrays, market: MarketState, knobs: Knobs,
           k: jax.Array) -> MarketState:
    """Market entry number ``k``: a new learner (slot n_learners + k) splits off a parent."""
    if spec.entry == "index":  # the authors': learners 0, 1, 2, … in turn
        parent = k
    elif isinstance(spec.entry, tuple):
        parent = jnp.asarray(spec.entry, jnp.int32)[k]
    else:  # the largest share Σ_j β_j α_ij among the active learners (ties: lowest index)
        parent = jnp.argmax(jnp.where(market.active, market.alpha @ arrays.beta, -jnp.inf))
    child = spec.n_learners + k
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(knobs.seed), ENTRY_STREAM), k)
    a = market.alpha[parent]
    h = jnp.clip(0.5 + JITTER * jax.random.normal(key, a.shape, a.dtype), 0.0, 1.0)
    # Exact conservation: big = a − a·min(h, 1 − h) lies in [a/2, a], so a − big is exact
    # (Sterbenz) and the parent's and child's parts sum to a in floating point.
    big = a - a * jnp.minimum(h, 1.0 - h)
    small = a - big
    to_child = jnp.where(h < 0.5, small, big)
    alpha = market.alpha.at[parent].set(jnp.where(h < 0.5, big, small)).at[child].set(to_child)
    return market._replace(theta=market.theta.at[child].set(market.theta[parent]), alpha=alpha,
                           active=market.active.at[child].set(True))


def end_phase(spec: PopulationSpec, arrays: GroupArrays, state: PopulationState,
              knobs: Knobs) -> PopulationState:
    """If the last round ended a phase (``state.pending``): record its equilibrium, then start
    the next phase (probing on, or a learner enters) or finish the run. Else a no-op."""
    knobs = _cast(knobs, _dtype(spec))
    phases = spec.n_phases
    slot = jnp.where(state.pending, state.phase, phases)  # out of range: nothing recorded
    record = dict(
        phase_end=state.phase_end.at[slot].set(state.t, mode="drop"),
        converged=state.converged.at[slot].set(state.count > spec.patience, mode="drop"),
        equilibria=jax.tree_util.tree_map(lambda rec, now: rec.at[slot].set(now, mode="drop"),
                                          state.equilibria, state.market))
    market = state.market
    last = state.phase >= phases - 1
    if spec.probe_phase:
        starts_probing = state.phase == 0
        on = market._replace(probing_on=jnp.asarray(True))
        on = on._replace(labels=probe_labels(spec, arrays, on, knobs))
        market_next = _pick(starts_probing, on, _entered(spec, arrays, market, knobs, state))
        probe_round = jnp.where(starts_probing, 0, state.probe_round)
    else:
        market_next = _entered(spec, arrays, market, knobs, state)
        probe_round = state.probe_round
    moved = state.pending & ~last
    zero = jnp.asarray(0, jnp.int32)
    return state._replace(
        **record,
        market=_pick(moved, market_next, market),
        phase=jnp.where(moved, state.phase + 1, state.phase).astype(jnp.int32),
        phase_round=jnp.where(moved, zero, state.phase_round),
        count=jnp.where(moved, zero, state.count),
        probe_round=jnp.where(moved, probe_round, state.probe_round).astype(jnp.int32),
        pending=jnp.asarray(False),
        done=state.done | (state.pending & last))


def _entered(spec: PopulationSpec, arrays: GroupArrays, market: MarketState, knobs: Knobs,
             state: PopulationState) -> MarketState:
    """The market after the next entry (unchanged when the spec has no entry)."""
    if spec.n_entries == 0:
        return market
    k = jnp.clip(state.phase - int(spec.probe_phase), 0, spec.n_entries - 1)
    return _split(spec, arrays, market, knobs, k.astype(jnp.int32))


def round_step(spec: PopulationSpec, arrays: GroupArrays, state: PopulationState,
               knobs: Knobs) -> PopulationState:
    """One round of one run: ``end_phase(advance(state))``."""
    return end_phase(spec, arrays, advance(spec, arrays, state, knobs), knobs)


def evaluate(spec: PopulationSpec, arrays: GroupArrays, state: PopulationState,
             knobs: Knobs) -> dict[str, jax.Array]:
    """The spec's metrics (``spec.metrics``) of the run's current market; NaN once the run has
    diverged."""
    return evaluate_market(spec, arrays, state.market, knobs, state.diverged_at >= 0)


def evaluate_market(spec: PopulationSpec, arrays: GroupArrays, market: MarketState,
                    knobs: Knobs, invalid: jax.Array | bool = False) -> dict[str, jax.Array]:
    """The spec's metrics of a market state (NaN where ``invalid``)."""
    knobs = _cast(knobs, _dtype(spec))
    values = metric_table.evaluate_metrics(spec.metrics,
                                           PopulationEvaluation(spec, arrays, market, knobs))
    return {name: jnp.where(invalid, jnp.nan, value) for name, value in values.items()}


def equilibrium_metrics(spec: PopulationSpec, arrays: GroupArrays, state: PopulationState,
                        knobs: Knobs) -> dict[str, jax.Array]:
    """The spec's metrics at the end of each phase, [Φ, ...] (NaN: phase not reached)."""
    return jax.vmap(lambda market, missing: evaluate_market(spec, arrays, market, knobs,
                                                            missing))(
        state.equilibria, state.phase_end < 0)


def eval_bounds(spec: PopulationSpec) -> np.ndarray:
    """The global round of each evaluation point, as int32 (``spec.eval_steps``)."""
    return np.asarray(spec.eval_steps, np.int32)
