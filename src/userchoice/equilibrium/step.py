"""The pure functions of one run of the share-competition equilibrium: scores, the logit
choice, a provider's best response, a round of best responses, the Bayes risk.

Shapes: θ [m, d] (binary scores, f_j(x) = θ_jᵀx) or [m, d, K] (multiclass); data x [N, d],
y [N], weight [N] (sums to 1: E_x[·] = Σ_x weight(x)·…). Everything is traced per run and
vmapped over runs by ``simulate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from userchoice.choice_losses import ChoiceLoss, logistic
from userchoice.equilibrium.data import DataArrays
from userchoice.knobs import Knobs

if TYPE_CHECKING:  # the spec imports the metrics, which import this module
    from userchoice.equilibrium.spec import EquilibriumSpec

INIT_STREAM = 1  # fold_in tag of θ⁰'s key (fixed, so θ⁰ depends on the seed alone)
RESTART_STREAM = 2  # fold_in tag of the best responses' random starts
BAYES_SEED = 20231  # the Bayes risk's random restarts: a property of the data, not of a run


class EquilibriumState(NamedTuple):
    """One run between rounds."""

    theta: jax.Array  # [m, d] or [m, d, K]
    shares: jax.Array  # [m]: the choice-loss shares after the last round (round 0: at θ⁰)
    round: jax.Array  # [] int32: rounds run
    converged: jax.Array  # [] bool: the last round moved every share by ≤ tol
    done: jax.Array  # [] bool: converged, or max_rounds spent
    share_history: jax.Array  # [max_rounds + 1, m]: shares after each round (NaN: not run)
    social_history: jax.Array  # [max_rounds + 1]: social loss after each round (NaN: not run)


# --------------------------------------------------------------------------- the market


def provider_scores(theta: jax.Array, x: jax.Array) -> jax.Array:
    """f_j(x) for every provider: [m, N] (θ [m, d]) or [m, N, K] (θ [m, d, K])."""
    return jnp.einsum("nd,md...->mn...", x, theta)


def provider_losses(loss: ChoiceLoss, scores: jax.Array, y: jax.Array,
                    temperature: float) -> jax.Array:
    """ℓ_j(x) for every provider, [m, N]."""
    return jax.vmap(lambda s: loss(s, y, temperature))(scores)


def log_prior(prior: jax.Array) -> jax.Array:
    """log w_j with the weights normalised to sum to 1, [m]."""
    return jnp.log(prior) - jnp.log(jnp.sum(prior))


def _utilities(losses: jax.Array, prior: jax.Array, temperature: jax.Array) -> jax.Array:
    return log_prior(prior)[:, None] - losses / temperature


def log_choice_probabilities(losses: jax.Array, prior: jax.Array,
                             temperature: jax.Array) -> jax.Array:
    """log P_j(x) = log w_j − ℓ_j(x)/c − log Σ_k w_k e^{−ℓ_k(x)/c}, [m, N] (shifted by the
    largest utility before the log-sum-exp: finite for any finite losses and c > 0)."""
    return jax.nn.log_softmax(_utilities(losses, prior, temperature), axis=0)


def choice_probabilities(losses: jax.Array, prior: jax.Array, temperature: jax.Array
                         ) -> jax.Array:
    """P_j(x) for losses [m, N], prior weights w [m] and user temperature c: [m, N], each
    column summing to 1 (a softmax of the shifted utilities: normalised after the shift, so
    the sum is 1 to rounding even where the utilities are ~1e7 in float32)."""
    return jax.nn.softmax(_utilities(losses, prior, temperature), axis=0)


class Market(NamedTuple):
    """What users and metrics see of a profile θ (under one loss)."""

    scores: jax.Array  # [m, N] or [m, N, K]
    losses: jax.Array  # [m, N]
    probs: jax.Array  # [m, N]
    shares: jax.Array  # [m]


def market(spec: EquilibriumSpec, data: DataArrays, theta: jax.Array, knobs: Knobs,
           loss: ChoiceLoss | None = None) -> Market:
    """Scores, losses (``loss``, default the choice loss), choice probabilities and shares."""
    loss = spec.choice_object if loss is None else loss
    scores = provider_scores(theta, data.x)
    losses = provider_losses(loss, scores, data.y, spec.loss_temperature)
    probs = choice_probabilities(losses, knobs.prior, knobs.temperature)
    return Market(scores, losses, probs, probs @ data.weight)


def social_loss(data: DataArrays, mk: Market) -> jax.Array:
    """E_x[Σ_j P_j(x) ℓ_j(x)]."""
    return jnp.sum(mk.probs * mk.losses, axis=0) @ data.weight


# --------------------------------------------------------------------------- best responses


def is_multiclass(theta: jax.Array) -> bool:
    """Whether a profile θ [m, d, K] has multiclass scores (binary: [m, d])."""
    return theta.ndim == 3


def probe_labels(spec: EquilibriumSpec, data: DataArrays, theta: jax.Array, j: jax.Array,
                 knobs: Knobs) -> jax.Array:
    """Provider j's pseudo-labels from its source, at profile θ, [N] int32."""
    mk = market(spec, data, theta, knobs)
    source = spec.probing.source_object
    return source.labels(spec.probing, j, mk.scores, mk.probs, mk.shares, is_multiclass(theta))


def probe_weight(spec: EquilibriumSpec, j: jax.Array, knobs: Knobs) -> jax.Array:
    """p for a prober, 0 for everyone else."""
    is_prober = jnp.any(jnp.asarray(spec.probing.probers) == j)
    return jnp.where(is_prober, knobs.p, 0.0)


def response_objective(spec: EquilibriumSpec, data: DataArrays, theta: jax.Array, j: jax.Array,
                       knobs: Knobs) -> Any:
    """Provider j's objective θ_j ↦ S_j(θ_j; θ_−j) − q·R_j(θ_j) with the others fixed at θ
    (training loss; q = p for a prober, none without probing)."""
    train = spec.train_object
    T = spec.loss_temperature
    m = theta.shape[0]
    lw = log_prior(knobs.prior)
    losses = provider_losses(train, provider_scores(theta, data.x), data.y, T)
    z = _utilities(losses, knobs.prior, knobs.temperature)
    # the others' log-sum-exp is fixed during the response: computed once (−inf when m = 1)
    rest = logsumexp(jnp.where((jnp.arange(m) == j)[:, None], -jnp.inf, z), axis=0)
    if spec.probing is not None:
        labels = probe_labels(spec, data, theta, j, knobs)
        q = probe_weight(spec, j, knobs)

    def objective(th: jax.Array) -> jax.Array:
        s = provider_scores(th[None], data.x)[0]
        u = lw[j] - train(s, data.y, T) / knobs.temperature
        value = jax.nn.sigmoid(u - rest) @ data.weight  # P_j = e^u / (e^u + e^rest)
        if spec.probing is not None:
            value = value - q * (train(s, labels, T) @ data.weight)
        return value

    return objective


def ascend(objective: Any, start: jax.Array, lr: float, steps: int
           ) -> tuple[jax.Array, jax.Array]:
    """``steps`` gradient-ascent steps of size ``lr`` from ``start``: the best iterate visited
    (the start included, so the objective never ends below its start) and its value."""
    value_and_grad = jax.value_and_grad(objective)

    def body(_, carry):
        th, best, best_value = carry
        value, grad = value_and_grad(th)
        better = value > best_value
        return (th + lr * grad, jnp.where(better, th, best), jnp.where(better, value, best_value))

    init = (start, start, jnp.asarray(-jnp.inf, start.dtype))
    th, best, best_value = jax.lax.fori_loop(0, steps, body, init)
    last = objective(th)
    return jnp.where(last > best_value, th, best), jnp.maximum(last, best_value)


def response_starts(spec: EquilibriumSpec, theta: jax.Array, j: jax.Array, knobs: Knobs,
                    round_index: jax.Array) -> jax.Array:
    """Where provider j's ascent starts, [C, *shape]; the warm start θ_j first: ``peers``
    adds every other provider's θ_k, ``flip`` −θ_j, ``random_starts`` fresh N(0,
    init_scale²) draws (keyed by the seed, the round and j)."""
    if "peers" in spec.extra_starts:
        starts = [jnp.roll(theta, -j, axis=0)]  # row 0: θ_j
    else:
        starts = [theta[j][None]]
    if "flip" in spec.extra_starts:
        starts.append(-theta[j][None])
    if spec.random_starts:
        key = jax.random.fold_in(jax.random.fold_in(
            jax.random.fold_in(jax.random.key(knobs.seed), RESTART_STREAM), round_index), j)
        starts.append(spec.init_scale * jax.random.normal(
            key, (spec.random_starts, *theta.shape[1:]), theta.dtype))
    return jnp.concatenate(starts)


def best_response(spec: EquilibriumSpec, data: DataArrays, theta: jax.Array, j: jax.Array,
                  knobs: Knobs, round_index: jax.Array | int = 0) -> jax.Array:
    """Provider j's new parameters, with the others fixed: gradient ascent from each start
    (``response_starts``), the best end point (ties: the warm start)."""
    objective = response_objective(spec, data, theta, j, knobs)
    starts = response_starts(spec, theta, j, knobs, jnp.asarray(round_index))
    if starts.shape[0] == 1:
        return ascend(objective, starts[0], spec.lr, spec.steps)[0]
    ends, values = jax.vmap(lambda s: ascend(objective, s, spec.lr, spec.steps))(starts)
    return ends[jnp.argmax(values)]


# --------------------------------------------------------------------------- one run


def init_theta(spec: EquilibriumSpec, knobs: Knobs, shape: tuple[int, ...], dtype: Any
               ) -> jax.Array:
    """θ⁰ ~ N(0, init_scale²), [m, *shape], from the run's seed."""
    key = jax.random.fold_in(jax.random.key(knobs.seed), INIT_STREAM)
    return spec.init_scale * jax.random.normal(key, (spec.n_providers, *shape), dtype)


def init_state(spec: EquilibriumSpec, data: DataArrays, knobs: Knobs, shape: tuple[int, ...],
               theta0: jax.Array | None = None) -> EquilibriumState:
    """Round 0 of one run (``knobs``: that run's scalars; ``shape``: one provider's
    parameters, ``spec.param_shape``; ``theta0``: [m, *shape], default drawn from the seed)."""
    dtype = data.x.dtype
    theta = init_theta(spec, knobs, shape, dtype) if theta0 is None else theta0.astype(dtype)
    mk = market(spec, data, theta, knobs)
    rows = spec.max_rounds + 1
    shares = jnp.full((rows, spec.n_providers), jnp.nan, dtype).at[0].set(mk.shares)
    social = jnp.full((rows,), jnp.nan, dtype).at[0].set(social_loss(data, mk))
    zero = jnp.asarray(0, jnp.int32)
    false = jnp.asarray(False)
    return EquilibriumState(theta, mk.shares, zero, false, false, shares, social)


def round_step(spec: EquilibriumSpec, data: DataArrays, state: EquilibriumState, knobs: Knobs
               ) -> EquilibriumState:
    """One round: providers 0 … m − 1 best-respond in turn; then the stop rule. A done run is
    returned as it is."""

    def respond(j, theta):
        return theta.at[j].set(best_response(spec, data, theta, j, knobs, state.round))

    theta = jax.lax.fori_loop(0, spec.n_providers, respond, state.theta)
    mk = market(spec, data, theta, knobs)
    converged = jnp.all(jnp.abs(mk.shares - state.shares) <= spec.tol)
    r = state.round + 1
    new = EquilibriumState(
        theta, mk.shares, r, converged, converged | (r >= spec.max_rounds),
        state.share_history.at[r].set(mk.shares),
        state.social_history.at[r].set(social_loss(data, mk)))
    return jax.tree_util.tree_map(lambda a, b: jnp.where(state.done, a, b), state, new)


# --------------------------------------------------------------------------- Bayes risk


def bayes_candidates(spec: EquilibriumSpec, data: DataArrays, shape: tuple[int, ...]
                     ) -> jax.Array:
    """Starting points of the Bayes-risk descent, [1 + restarts, *shape]: a logistic fit
    (gradient descent on the convex log-loss of f/T, at a step its curvature allows) and
    N(0, 1) draws."""
    dtype = data.x.dtype
    T = spec.loss_temperature

    # φ = θ/T: the log-loss of φᵀx has curvature ≤ ½ E|x|², so 1/(½ E|x|²) is a stable step
    curvature = 0.5 * (jnp.sum(data.x**2, axis=1) @ data.weight)
    step = 1.0 / jnp.maximum(curvature, jnp.finfo(dtype).tiny)

    def mean_log_loss(phi):
        return logistic(provider_scores(phi[None], data.x)[0], data.y, 1.0) @ data.weight

    grad = jax.grad(mean_log_loss)
    phi = jax.lax.fori_loop(0, spec.n_bayes_steps, lambda _, p: p - step * grad(p),
                            jnp.zeros(shape, dtype))
    # drawn on the host: a constant of the program (no random-number kernel to compile)
    draws = np.random.default_rng(BAYES_SEED).standard_normal((spec.bayes_restarts, *shape))
    return jnp.concatenate([(T * phi)[None], jnp.asarray(draws, dtype)])


def bayes_risk(spec: EquilibriumSpec, data: DataArrays, shape: tuple[int, ...]) -> jax.Array:
    """min over starts of the best mean choice loss visited by gradient descent on the mean
    training loss: the best single linear model's risk (an upper bound on it; the default
    starts find it on the paper's settings)."""
    T = spec.loss_temperature
    train, choice = spec.train_object, spec.choice_object

    def mean(loss, th):
        return loss(provider_scores(th[None], data.x)[0], data.y, T) @ data.weight

    grad = jax.grad(lambda th: mean(train, th))

    def descend(start):
        def body(_, carry):
            th, best = carry
            return th - spec.lr * grad(th), jnp.minimum(best, mean(choice, th))

        th, best = jax.lax.fori_loop(0, spec.n_bayes_steps, body,
                                     (start, jnp.asarray(jnp.inf, start.dtype)))
        return jnp.minimum(best, mean(choice, th))

    return jnp.min(jax.vmap(descend)(bayes_candidates(spec, data, shape)))
