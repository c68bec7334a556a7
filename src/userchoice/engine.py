"""The engine: MSGD and MSGD-P (SPEC §3–§4) as one jitted ``lax.scan``, ``vmap``-ed over runs.

Static shape (``EngineSpec``) decides compilation; behavioural knobs (``Knobs``: seed, τ, p,
κ, η, λ, temperature, ζ, prior) are traced per run, so one compiled program serves a whole
sweep group. Evaluation runs inside the scan every ``eval_every`` steps and emits small
[evals, n] arrays; parameter trajectories are never stored.

Randomness: ``seed`` → key, split into named streams by ``fold_in`` (init, probe sets,
arrivals, choices, probe batches), and each step folds in its index. A run's numbers depend
only on (spec, market, knobs of that run), never on which batch it runs in.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice import choice as choice_rules
from userchoice.choice import ChoiceDraws, ChoiceKnobs
from userchoice.families import Family, Params, correct, is_classifier, learner_losses
from userchoice.families import learner_scores as _scores
from userchoice.market import Market
from userchoice.probing import ProbeDraws, ProbingSpec, draw_probe_sets, pseudo_labels, source_index

Schedule = Literal["constant", "inv_sqrt", "inv"]
SCHEDULES: tuple[str, ...] = ("constant", "inv_sqrt", "inv")
NORMALISATIONS: tuple[str, ...] = ("mean", "su_dean")
DTYPES: tuple[str, ...] = ("float32", "float64")



def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class EngineSpec:
    """Everything that fixes array shapes and control flow (one compilation per spec)."""

    family: Family
    n_learners: int
    batch_size: int
    steps: int
    eval_every: int = 100
    choice: str = "tau_mixture"
    schedule: Schedule = "constant"
    normalisation: Literal["mean", "su_dean"] = "mean"
    probing: ProbingSpec | None = None
    update_all: bool = True
    dtype: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        for name in ("n_learners", "batch_size", "steps", "eval_every"):
            _positive_int(name, getattr(self, name))
        choice_rules.check_rule(self.choice)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {list(NORMALISATIONS)}, got {self.normalisation!r}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.probing is not None:
            self.probing.validate(self.n_learners)

    @property
    def eval_steps(self) -> np.ndarray:
        """Steps after which metrics are recorded: 0, k, 2k, …, and T if k does not divide T."""
        points = list(range(0, self.steps + 1, self.eval_every))
        if points[-1] != self.steps:
            points.append(self.steps)
        return np.asarray(points)

    @property
    def n_probers(self) -> int:
        return 0 if self.probing is None else len(self.probing.probers)


class Knobs(NamedTuple):
    """Per-run values, each with a leading run axis (``prior`` is [R, n])."""

    seed: Any
    tau: Any
    p: Any
    kappa: Any
    eta: Any
    lam: Any
    temperature: Any
    zeta: Any
    prior: Any

    @property
    def n_runs(self) -> int:
        return int(np.shape(self.seed)[0])

    def run(self, index: int) -> Knobs:
        """One run's knobs, keeping a run axis of length one."""
        return Knobs(*(np.asarray(v)[index : index + 1] for v in self))


KNOB_DEFAULTS: dict[str, float] = {
    "seed": 0,
    "tau": 0.0,
    "p": 0.0,
    "kappa": 0.0,
    "eta": 0.01,
    "lam": 0.0,
    "temperature": 1.0,
    "zeta": 0.0,
}


def make_knobs(n_learners: int, **values: Any) -> Knobs:
    """Knobs for R runs: each value is a scalar (shared) or a length-R sequence.

    ``prior`` is a length-n weight vector (shared) or an [R, n] array; default uniform.
    """
    unknown = set(values) - set(KNOB_DEFAULTS) - {"prior"}
    if unknown:
        raise ValueError(
            f"unknown knob(s) {sorted(unknown)}; allowed {[*KNOB_DEFAULTS, 'prior']}"
        )
    lengths = {k: len(v) for k, v in values.items() if k != "prior" and np.ndim(v) == 1}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"knob sequences must share one length, got {lengths}")
    n_runs = next(iter(lengths.values()), 1)
    columns = {}
    for name, default in KNOB_DEFAULTS.items():
        value = np.asarray(values.get(name, default))
        if value.ndim > 1:
            raise ValueError(
                f"knob {name} must be a scalar or 1-D sequence, got shape {value.shape}"
            )
        columns[name] = np.broadcast_to(value, (n_runs,)).copy()
    prior = np.asarray(values.get("prior", np.ones(n_learners)), dtype=float)
    if prior.shape == (n_learners,):
        prior = np.broadcast_to(prior, (n_runs, n_learners)).copy()
    if prior.shape != (n_runs, n_learners):
        raise ValueError(
            f"prior must have shape [{n_learners}] or [{n_runs}, {n_learners}], got {prior.shape}"
        )
    seed = columns.pop("seed")
    if not np.all(np.equal(np.mod(seed, 1), 0)) or np.any(seed < 0) or np.any(seed >= 2**31):
        raise ValueError(f"seed must be integers in [0, 2^31), got {seed.tolist()}")
    return Knobs(seed=seed.astype(np.int64), prior=prior, **columns)


def knob_grid(n_learners: int, **axes: Any) -> Knobs:
    """Cartesian product of knob values, e.g. ``knob_grid(5, seed=range(15), p=[0, .2])``.

    A scalar is a one-point axis. Runs are ordered with the last axis varying fastest.
    """
    names = list(axes)
    value_lists = [list(np.atleast_1d(np.asarray(list(v) if isinstance(v, range) else v)))
                   for v in axes.values()]
    combos = list(itertools.product(*value_lists))
    columns = {name: [c[i] for c in combos] for i, name in enumerate(names)}
    return make_knobs(n_learners, **columns)


def validate_knobs(knobs: Knobs, spec: EngineSpec) -> None:
    """Reject values outside their allowed range, naming the knob and the range."""

    def check(name: str, ok: np.ndarray, allowed: str) -> None:
        values = np.asarray(getattr(knobs, name), dtype=float)
        bad = values[~ok(values)]
        if bad.size:
            raise ValueError(f"{name}={float(bad.flat[0])!r} is out of range; allowed {allowed}")

    check("tau", lambda v: (v >= 0) & (v <= 1), "[0, 1]")
    check("kappa", lambda v: (v >= 0) & (v <= 1), "[0, 1]")
    check("zeta", lambda v: (v >= 0) & (v <= 1), "[0, 1]")
    check("p", lambda v: (v >= 0) & np.isfinite(v), "p >= 0")
    check("eta", lambda v: (v > 0) & np.isfinite(v), "eta > 0")
    check("lam", lambda v: (v >= 0) & np.isfinite(v), "lam >= 0")
    check("temperature", lambda v: (v > 0) & np.isfinite(v), "temperature > 0")
    check("prior", lambda v: (v > 0) & np.isfinite(v), "prior weights > 0")
    if spec.probing is None:
        check("p", lambda v: v == 0, "p = 0 when the spec has no probing (set EngineSpec.probing)")
        check("kappa", lambda v: v == 0, "kappa = 0 when the spec has no probing")
    elif not spec.probing.per_user_source:
        check("kappa", lambda v: v == 0,
              f"kappa = 0 for the '{spec.probing.source}' source (noise needs a per-user source)")


class MarketArrays(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    w_train: jax.Array | None
    favourite_train: jax.Array
    rank_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    w_test: jax.Array | None
    favourite_test: jax.Array
    rank_test: jax.Array


def market_arrays(market: Market, dtype: Any) -> MarketArrays:
    ds = market.dataset

    def f(a):
        return None if a is None else jnp.asarray(a, dtype)

    def i(a):
        return jnp.asarray(a, jnp.int32)

    return MarketArrays(
        f(ds.x_train), f(ds.y_train), f(ds.w_train),
        i(market.preferences_train.favourite), i(market.preferences_train.rank),
        f(ds.x_test), f(ds.y_test), f(ds.w_test),
        i(market.preferences_test.favourite), i(market.preferences_test.rank),
    )


def validate_market(spec: EngineSpec, market: Market) -> None:
    ds = market.dataset
    if market.n_learners != spec.n_learners:
        raise ValueError(
            f"n_learners={spec.n_learners} but the market's preferences rank "
            f"{market.n_learners} learners"
        )
    if spec.batch_size > ds.n_train:
        raise ValueError(
            f"batch_size B={spec.batch_size} is larger than the training population "
            f"({ds.n_train} users); allowed [1, {ds.n_train}]"
        )
    y_shape = np.shape(ds.y_train)[1:]
    n_outputs = getattr(spec.family, "n_outputs", None)
    expected = (n_outputs,) if n_outputs is not None else ()
    if y_shape != expected:
        raise ValueError(
            f"family {spec.family.name!r} expects labels y of trailing shape {expected}, "
            f"got {y_shape}"
        )


# --------------------------------------------------------------------------- randomness


class StepDraws(NamedTuple):
    batch: jax.Array  # [B] training-user indices
    choice: ChoiceDraws
    probe: jax.Array | None  # [|S|, P] probe-set indices


class RunKeys(NamedTuple):
    init: jax.Array
    probe_set: jax.Array
    arrival: jax.Array
    choice: jax.Array
    probe_batch: jax.Array


def run_keys(seed: jax.Array) -> RunKeys:
    """Named streams, ``fold_in(key(seed), i)`` in RunKeys field order (init 0 … probe_batch 4).

    Renumbering them would change every run's numbers.
    """
    key = jax.random.key(seed)
    return RunKeys(*(jax.random.fold_in(key, s) for s in range(5)))


def uniform_indices(key: jax.Array, shape: tuple[int, ...], n: int | jax.Array) -> jax.Array:
    """Indices in [0, n) from one 32-bit word each (``randint`` spends two).

    The modulo bias is below n/2³² relative (1e-5 for 40k users), far below sampling noise.
    """
    bits = jax.random.bits(key, shape, jnp.uint32)
    return (bits % jnp.asarray(n, jnp.uint32)).astype(jnp.int32)


def draw_step(spec: EngineSpec, keys: RunKeys, t: jax.Array, n_train: int) -> StepDraws:
    """All randomness step ``t`` consumes; a pure function of (keys, t)."""
    dtype = jnp.dtype(spec.dtype)
    batch = uniform_indices(jax.random.fold_in(keys.arrival, t), (spec.batch_size,), n_train)
    choice = choice_rules.draw_choice(
        spec.choice, jax.random.fold_in(keys.choice, t), spec.batch_size, spec.n_learners, dtype
    )
    probe = None
    if spec.probing is not None:
        probe = uniform_indices(
            jax.random.fold_in(keys.probe_batch, t),
            (spec.n_probers, spec.probing.probe_batch),
            spec.probing.n_probe,
        )
    return StepDraws(batch, choice, probe)


def learning_rate(schedule: str, eta: jax.Array, t: jax.Array) -> jax.Array:
    if schedule == "constant":
        return eta
    if schedule == "inv_sqrt":
        return eta / jnp.sqrt(t + 1.0)
    return eta / (t + 1.0)


# --------------------------------------------------------------------------- one run


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


class RunContext(NamedTuple):
    """Per-run constants fixed at the start of a run."""

    keys: RunKeys
    knobs: Knobs  # scalars for this run
    theta0: Params
    probe_x: jax.Array | None  # [|S|, N_probe, d]
    probe_w: jax.Array | None  # [|S|, N_probe, m]
    probe_source: jax.Array | None  # [|S|, N_probe] learner index (per-user sources)


def _choice_knobs(knobs: Knobs) -> ChoiceKnobs:
    return ChoiceKnobs(knobs.tau, knobs.zeta, knobs.temperature, jnp.log(knobs.prior))


def _zero_acc(n: int, dtype: Any) -> Accumulators:
    z = jnp.zeros((n,), dtype)
    return Accumulators(z, z, z, jnp.zeros((), dtype))


def _all_finite(tree: Params) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def _take_learners(tree: Params, idx: tuple[int, ...]) -> Params:
    return jax.tree_util.tree_map(lambda a: a[jnp.asarray(idx)], tree)


def _set_learners(tree: Params, idx: tuple[int, ...], values: Params) -> Params:
    return jax.tree_util.tree_map(lambda a, v: a.at[jnp.asarray(idx)].set(v), tree, values)


def _probe_gradient(
    spec: EngineSpec, theta: Params, ctx: RunContext, labels: jax.Array, probe_idx: jax.Array
) -> Params:
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


def _step(
    spec: EngineSpec, data: MarketArrays, ctx: RunContext, state: RunState, t: jax.Array
) -> RunState:
    family, n, knobs = spec.family, spec.n_learners, ctx.knobs
    dtype = jnp.dtype(spec.dtype)
    draws = draw_step(spec, ctx.keys, t, data.x_train.shape[0])
    xb, yb = data.x_train[draws.batch], data.y_train[draws.batch]
    wb = None if data.w_train is None else data.w_train[draws.batch]

    # Learners and update-all copies share one forward/backward pass: stacking them along the
    # learner axis turns two small matmuls into one (this loop is overhead-bound).
    params = state.theta
    if spec.update_all:
        params = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), params,
                                        state.theta_update_all)
    all_losses, pullback = jax.vjp(lambda th: learner_losses(family, th, xb, yb, wb), params)
    losses = all_losses[:n]  # [n, B]
    choice = choice_rules.choose(
        spec.choice,
        losses.T,
        data.favourite_train[draws.batch],
        data.rank_train[draws.batch].astype(dtype),
        draws.choice,
        _choice_knobs(knobs),
    )
    chosen = jax.nn.one_hot(choice, n, dtype=dtype)  # [B, n]
    counts = chosen.sum(axis=0)
    if spec.normalisation == "mean":
        weights = chosen / jnp.maximum(counts, 1.0)
    else:  # Su & Dean: Σ over chosen users / B
        weights = chosen / spec.batch_size
    cotangent = weights.T
    if spec.update_all:  # each copy: mean over the whole batch
        cotangent = jnp.concatenate([cotangent, jnp.full_like(cotangent, 1.0 / spec.batch_size)])
    (all_grads,) = pullback(family.train_scale * cotangent)
    grad = jax.tree_util.tree_map(lambda g: g[:n], all_grads)

    if spec.probing is not None:
        probe_grad = _probe_gradient(spec, state.theta, ctx, state.probe_labels, draws.probe)
        own = _take_learners(grad, spec.probing.probers)
        mixed = jax.tree_util.tree_map(
            lambda g, h: (g + knobs.p * h) / (1.0 + knobs.p), own, probe_grad
        )
        grad = _set_learners(grad, spec.probing.probers, mixed)

    lr = learning_rate(spec.schedule, knobs.eta, t.astype(dtype))
    theta = jax.tree_util.tree_map(
        lambda th, g: th - lr * (g + knobs.lam * th), state.theta, grad
    )

    theta_ua = state.theta_update_all
    if spec.update_all:
        theta_ua = jax.tree_util.tree_map(
            lambda th, g: th - lr * (g[n:] + knobs.lam * th), theta_ua, all_grads
        )

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
    return RunState(theta, theta_ua, labels, diverged_at.astype(jnp.int32), acc)


def _predictive_metrics(
    family: Family, theta: Params, data: MarketArrays, prefix: str
) -> tuple[dict[str, jax.Array], jax.Array]:
    scores = _scores(family, theta, data.x_test)  # [n, Nt, ...]
    losses = family.loss(scores, data.y_test, data.w_test)  # [n, Nt]
    out = {f"{prefix}test_loss": losses.mean(axis=1)}
    if is_classifier(family):
        out[f"{prefix}test_accuracy"] = correct(family, scores, data.y_test).mean(axis=1)
    return out, losses


def _evaluate(
    spec: EngineSpec, data: MarketArrays, ctx: RunContext, state: RunState
) -> dict[str, jax.Array]:
    family, knobs = spec.family, ctx.knobs
    dtype = jnp.dtype(spec.dtype)
    out, losses = _predictive_metrics(family, state.theta, data, "")

    ens_score = jnp.median(_scores(family, state.theta, data.x_test), axis=0)
    out["ensemble_test_loss"] = family.loss(ens_score, data.y_test, data.w_test).mean()
    if is_classifier(family):
        out["ensemble_test_accuracy"] = correct(family, ens_score, data.y_test).mean()

    if spec.update_all:
        ua, _ = _predictive_metrics(family, state.theta_update_all, data, "update_all_")
        out.update(ua)

    probs = choice_rules.choice_probabilities(
        spec.choice, losses.T, data.favourite_test, data.rank_test.astype(dtype),
        _choice_knobs(knobs),
    )  # [Nt, n]
    weighted = probs * losses.T
    out["market_share"] = probs.mean(axis=0)
    out["local_loss"] = weighted.sum(axis=0) / probs.sum(axis=0)
    out["potential"] = weighted.sum(axis=1).mean()

    acc = state.acc
    out["batch_share"] = acc.share / acc.steps
    out["batch_local_loss"] = acc.local_loss / acc.chosen

    sq = jax.tree_util.tree_map(lambda a, b: ((a - b) ** 2).reshape(a.shape[0], -1).sum(axis=1),
                                state.theta, ctx.theta0)
    out["distance_to_init"] = jnp.sqrt(sum(jax.tree_util.tree_leaves(sq)))

    if spec.probing is not None:
        def probe_risk(th, x, y, w):
            return family.loss(family.score(th, x), y, w).mean()

        risk = jax.vmap(probe_risk, in_axes=(0, 0, 0, None if ctx.probe_w is None else 0))(
            _take_learners(state.theta, spec.probing.probers),
            ctx.probe_x, state.probe_labels, ctx.probe_w,
        )
        out["probe_risk"] = risk
        out["psi"] = out["potential"] + knobs.p * risk.sum()
    return out


def _initial(
    spec: EngineSpec, data: MarketArrays, knobs: Knobs, init_params: Params | None
) -> tuple[RunContext, RunState]:
    family = spec.family
    dtype = jnp.dtype(spec.dtype)
    n, d = spec.n_learners, data.x_train.shape[1]
    keys = run_keys(knobs.seed)
    if init_params is None:
        theta0 = family.init(keys.init, n, d, dtype)
    else:
        theta0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), init_params)

    probe_x = probe_w = source = labels = None
    if spec.probing is not None:
        pdraws = draw_probe_sets(keys.probe_set, spec.probing, data.x_train.shape[0], dtype)
        probe_x = data.x_train[pdraws.users]
        probe_w = None if data.w_train is None else data.w_train[pdraws.users]
        if spec.probing.per_user_source:
            source = source_index(
                spec.probing, data.favourite_train[pdraws.users], pdraws, knobs.kappa, n
            )
        labels = pseudo_labels(family, spec.probing, theta0, probe_x, source)

    ctx = RunContext(keys, knobs, theta0, probe_x, probe_w, source)
    state = RunState(
        theta=theta0,
        theta_update_all=theta0 if spec.update_all else None,
        probe_labels=labels,
        diverged_at=jnp.asarray(-1, jnp.int32),
        acc=_zero_acc(n, dtype),
    )
    return ctx, state


def _run(
    spec: EngineSpec, data: MarketArrays, init_params: Params | None, knobs: Knobs
) -> tuple[dict[str, jax.Array], RunState]:
    ctx, state = _initial(spec, data, knobs, init_params)
    step = functools.partial(_step, spec, data, ctx)
    zero_acc = _zero_acc(spec.n_learners, jnp.dtype(spec.dtype))
    bounds = jnp.asarray(spec.eval_steps, jnp.int32)

    def advance_and_evaluate(state: RunState, e: jax.Array):
        # Steps between eval points e−1 and e (none before the first); the bounds are the same
        # for every run, so under vmap this stays one loop and step/evaluate are traced once.
        lo = jnp.where(e == 0, 0, bounds[jnp.maximum(e - 1, 0)])
        state = jax.lax.fori_loop(lo, bounds[e], lambda t, s: step(s, t),
                                  state._replace(acc=zero_acc))
        return state, _evaluate(spec, data, ctx, state)

    return jax.lax.scan(advance_and_evaluate, state, jnp.arange(bounds.size))[::-1]


@functools.lru_cache(maxsize=64)
def _compiled(spec: EngineSpec, x64: bool) -> Callable:
    del x64  # part of the cache key only: x64 mode changes the traced program
    batched = jax.vmap(functools.partial(_run, spec), in_axes=(None, None, 0))
    return jax.jit(batched)


# --------------------------------------------------------------------------- public API


@dataclass
class SimulationResult:
    """Metrics at each evaluation point for R runs.

    ``metrics[name]`` has shape [R, E, n] (per learner), [R, E, |S|] (per prober) or [R, E]
    (market-wide). ``diverged_step[r]`` is the first step whose parameters were not finite
    (−1 if none); that run's later metrics are NaN, other runs are unaffected.
    """

    spec: EngineSpec
    knobs: Knobs
    eval_steps: np.ndarray
    metrics: dict[str, np.ndarray]
    diverged_step: np.ndarray
    final_params: Params
    final_update_all: Params | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return self.knobs.n_runs

    def final(self, name: str) -> np.ndarray:
        """The metric at the last evaluation point, [R, ...]."""
        return self.metrics[name][:, -1]

    def summarise(
        self, metric: str, by: tuple[str, ...] = ("p",), step: int = -1
    ) -> list[dict[str, Any]]:
        """Mean and standard error over the runs sharing the knob values ``by``.

        One row per distinct combination (in first-seen order) with ``mean`` and ``sem``
        (NaN with a single run) of ``metric`` at eval index ``step``, plus ``n_runs``.
        """
        unknown = set(by) - set(Knobs._fields)
        if unknown:
            raise ValueError(
                f"by must name knobs from {list(Knobs._fields)}, got {sorted(unknown)}"
            )
        values = self.metrics[metric][:, step]
        columns = {name: np.asarray(getattr(self.knobs, name)) for name in by}
        groups: dict[tuple, list[int]] = {}
        for r in range(self.n_runs):
            groups.setdefault(tuple(columns[name][r].item() for name in by), []).append(r)
        rows = []
        for group_key, runs in groups.items():
            group = values[runs]
            sem = group.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else \
                np.full(group.shape[1:], np.nan)
            rows.append({**dict(zip(by, group_key, strict=True)), "n_runs": len(runs),
                         "mean": group.mean(axis=0), "sem": sem})
        return rows

    def run(self, index: int) -> SimulationResult:
        """The result of one run, with a run axis of length one."""
        sl = slice(index, index + 1)
        return SimulationResult(
            spec=self.spec,
            knobs=self.knobs.run(index),
            eval_steps=self.eval_steps,
            metrics={k: v[sl] for k, v in self.metrics.items()},
            diverged_step=self.diverged_step[sl],
            final_params=jax.tree_util.tree_map(lambda a: a[sl], self.final_params),
            final_update_all=None
            if self.final_update_all is None
            else jax.tree_util.tree_map(lambda a: a[sl], self.final_update_all),
        )


def _bytes_per_run(spec: EngineSpec, market: Market) -> int:
    ds = market.dataset
    outputs = int(np.prod(np.shape(ds.y_train)[1:], dtype=int))
    width = max(outputs, getattr(spec.family, "hidden", 1))
    rows = np.shape(ds.x_test)[0] + spec.batch_size
    if spec.probing is not None:
        rows += spec.n_probers * (spec.probing.n_probe + spec.probing.probe_batch)
    itemsize = 8 if spec.dtype == "float64" else 4
    return int(6 * spec.n_learners * rows * (width + ds.n_features) * itemsize)


CPU_CHUNK_RUNS = 64  # small chunks stay in cache; measured fastest on 2 cores at 40–64


def default_chunk_size(spec: EngineSpec, market: Market, n_runs: int) -> int:
    """Runs per compiled call: memory-bounded (USERCHOICE_CHUNK_BYTES, default 1 GiB), at most
    64 on CPU, and balanced so the last chunk needs little padding."""
    budget = int(os.environ.get("USERCHOICE_CHUNK_BYTES", 2**30))
    limit = max(1, budget // max(1, _bytes_per_run(spec, market)))
    if jax.default_backend() == "cpu":
        limit = min(limit, CPU_CHUNK_RUNS)
    n_chunks = -(-n_runs // limit)
    return -(-n_runs // n_chunks)


def default_workers() -> int:
    """Chunks run concurrently on CPU (one per core; XLA releases the GIL while it runs)."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _check_init_params(spec: EngineSpec, market: Market, init_params: Params) -> None:
    dtype = jnp.dtype(spec.dtype)
    expected = jax.eval_shape(
        lambda k: spec.family.init(k, spec.n_learners, market.dataset.n_features, dtype),
        jax.random.key(0),
    )
    exp_struct = jax.tree_util.tree_structure(expected)
    got_struct = jax.tree_util.tree_structure(init_params)
    if exp_struct != got_struct:
        raise ValueError(f"init_params must have structure {exp_struct}, got {got_struct}")
    for e, g in zip(
        jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(init_params), strict=True
    ):
        if tuple(e.shape) != tuple(np.shape(g)):
            raise ValueError(
                f"init_params leaf has shape {np.shape(g)}; the family expects {tuple(e.shape)}"
            )


_EXECUTABLES: dict[tuple, Any] = {}
_COMPILE_LOCKS: dict[tuple, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _executable(spec: EngineSpec, data: MarketArrays, init: Params | None, part: Knobs) -> Any:
    """Ahead-of-time compiled program for these shapes (cached), so compile time is measurable.

    One lock per shape: threads running chunks of the same group compile it once.
    """
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), (data, init, part))
    key = (spec, jax.config.jax_enable_x64, repr(shapes))
    with _LOCKS_GUARD:
        lock = _COMPILE_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _EXECUTABLES:
            fn = _compiled(spec, bool(jax.config.jax_enable_x64))
            _EXECUTABLES[key] = fn.lower(data, init, part).compile()
    return _EXECUTABLES[key]


def simulate(
    market: Market,
    spec: EngineSpec,
    knobs: Knobs,
    init_params: Params | None = None,
    chunk_size: int | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Run R = ``knobs.n_runs`` independent markets; each is a pure function of its knobs.

    ``init_params`` (one pytree with a learner axis, shared by every run, e.g. ERM) replaces
    random initialisation. Runs go through the compiled program in chunks of ``chunk_size``
    runs (default: memory-bounded, ≤ 64 on CPU), ``workers`` chunks at a time (default: one per
    CPU core on CPU, 1 on accelerators); the last chunk is padded so every chunk reuses one
    compilation. ``progress(done, total)`` is called as chunks finish.
    ``timings`` separates compilation from simulation.
    """
    for name, value in (("chunk_size", chunk_size), ("workers", workers)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    with jax.enable_x64(spec.dtype == "float64"):
        validate_market(spec, market)
        validate_knobs(knobs, spec)
        if init_params is not None:
            _check_init_params(spec, market, init_params)
        return _simulate_chunks(market, spec, knobs, init_params, chunk_size,
                                workers or default_workers(), progress)


def _simulate_chunks(
    market: Market,
    spec: EngineSpec,
    knobs: Knobs,
    init_params: Params | None,
    chunk_size: int | None,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> SimulationResult:
    n_runs = knobs.n_runs
    chunk = min(n_runs, chunk_size or default_chunk_size(spec, market, n_runs))
    dtype = jnp.dtype(spec.dtype)
    data = market_arrays(market, dtype)
    init = None if init_params is None else jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype), init_params)

    def chunk_knobs(lo: int) -> Knobs:
        idx = np.minimum(np.arange(lo, lo + chunk), n_runs - 1)  # pad with the last run
        return Knobs(
            seed=jnp.asarray(np.asarray(knobs.seed)[idx], jnp.int32),
            **{k: jnp.asarray(np.asarray(v)[idx], dtype)
               for k, v in knobs._asdict().items() if k != "seed"},
        )

    starts = list(range(0, n_runs, chunk))
    started = time.perf_counter()
    executable = _executable(spec, data, init, chunk_knobs(0))
    compiled = time.perf_counter()

    x64 = bool(jax.config.jax_enable_x64)

    def run_chunk(lo: int, part: Knobs):
        with jax.enable_x64(x64):  # the mode is thread-local; workers must match the caller
            out = executable(data, init, part)
            keep = min(chunk, n_runs - lo)
            return jax.tree_util.tree_map(lambda a: np.asarray(a)[:keep], out)

    outputs: dict[int, Any] = {}
    with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
        futures = {pool.submit(run_chunk, lo, chunk_knobs(lo)): lo for lo in starts}
        done = 0
        for future in as_completed(futures):
            lo = futures[future]
            outputs[lo] = future.result()
            done += min(chunk, n_runs - lo)
            if progress is not None:
                progress(done, n_runs)
    metrics, state = jax.tree_util.tree_map(lambda *a: np.concatenate(a),
                                            *(outputs[lo] for lo in starts))
    return SimulationResult(
        spec=spec,
        knobs=knobs,
        eval_steps=spec.eval_steps,
        metrics=dict(metrics),
        diverged_step=state.diverged_at,
        final_params=state.theta,
        final_update_all=state.theta_update_all,
        timings={"compile_seconds": compiled - started,
                 "run_seconds": time.perf_counter() - compiled,
                 "chunk_size": chunk, "workers": min(workers, len(starts))},
    )


class RunDraws(NamedTuple):
    """Every random input of one run, materialised (for the NumPy reference and for audits)."""

    theta0: Params
    probe: ProbeDraws | None
    steps: StepDraws  # each field stacked over steps: [T, ...]


def predraw(
    market: Market, spec: EngineSpec, seed: int, init_params: Params | None = None
) -> RunDraws:
    """The exact random inputs the engine consumes for ``seed`` (same functions, same keys)."""
    with jax.enable_x64(spec.dtype == "float64"):
        dtype = jnp.dtype(spec.dtype)
        keys = run_keys(jnp.asarray(seed, jnp.int32))
        n_train = market.dataset.n_train
        if init_params is None:
            theta0 = spec.family.init(keys.init, spec.n_learners, market.dataset.n_features, dtype)
        else:
            theta0 = init_params
        probe = None
        if spec.probing is not None:
            probe = draw_probe_sets(keys.probe_set, spec.probing, n_train, dtype)
        ts = jnp.arange(spec.steps, dtype=jnp.int32)
        steps = jax.jit(jax.vmap(lambda t: draw_step(spec, keys, t, n_train)))(ts)
        return jax.tree_util.tree_map(np.asarray, RunDraws(theta0, probe, steps))
