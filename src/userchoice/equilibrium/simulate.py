"""``simulate_equilibrium``: round-robin best responses (``equilibrium.step``) under ``vmap``
over runs and a ``lax.while_loop`` over rounds, compiled once per static shape, run in chunks
on the driver's pool.

Two programs per static shape: ``begin`` (θ⁰ and the Bayes risk) and ``advance`` (up to
``SEGMENT_ROUNDS`` rounds, then the metrics). ``advance`` steps all the chunk's runs one round
per iteration — a run that is done is carried along unchanged — and leaves its loop as soon as
every run is done (converged, or ``max_rounds`` spent); the host stops calling it then. Data
shared by every run enter the programs once (their Bayes risk: once per chunk); per-run data
(``EquilibriumData`` with a run axis) are vmapped with the runs.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice import metrics as metric_table
from userchoice.engine import compile_cache, driver
from userchoice.engine.spec import as_array
from userchoice.engine.step import cast_knobs
from userchoice.equilibrium.data import DataArrays, EquilibriumData
from userchoice.equilibrium.metrics import EquilibriumEvaluation
from userchoice.equilibrium.spec import EQUILIBRIUM_KNOBS, EquilibriumSpec
from userchoice.equilibrium.step import EquilibriumState, bayes_risk, init_state, round_step
from userchoice.knobs import KNOBS, Knobs, validate_knobs

SEGMENT_ROUNDS = 10  # rounds per call: the host checks between calls whether all are done
MAX_CHUNK = 256  # runs per compiled call (a run holds its data only when data are per run)


@dataclass
class EquilibriumResult:
    """Metrics of R runs of the best-response equilibrium.

    ``metrics[name]`` at each run's final profile: market metrics [R], learner metrics [R, m].
    ``converged`` [R] (bool): the stop rule held (False: ``max_rounds`` ran out; never an
    exception). ``rounds`` [R]: rounds run. ``share_history`` [R, max_rounds + 1, m] and
    ``social_history`` [R, max_rounds + 1]: shares and social loss after each round (row 0: at
    θ⁰; NaN after the run stopped). ``final_theta`` [R, m, d] or [R, m, d, K].
    """

    metrics: dict[str, np.ndarray]
    converged: np.ndarray
    rounds: np.ndarray
    share_history: np.ndarray
    social_history: np.ndarray
    final_theta: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return int(np.shape(self.converged)[0])

    def run(self, index: int) -> EquilibriumResult:
        """The result of one run, with a run axis of length one."""
        sl = slice(index, index + 1)
        return EquilibriumResult({k: v[sl] for k, v in self.metrics.items()},
                                 self.converged[sl], self.rounds[sl], self.share_history[sl],
                                 self.social_history[sl], self.final_theta[sl],
                                 dict(self.timings))


def solve(spec: EquilibriumSpec, data: DataArrays, state: EquilibriumState, knobs: Knobs,
          limit: jax.Array, data_axis: int | None) -> EquilibriumState:
    """Up to ``limit`` rounds of a batch of runs (``state``, ``knobs`` and — ``data_axis`` 0 —
    ``data`` with a leading run axis), leaving early once every run is done."""
    step_all = jax.vmap(lambda d, s, k: round_step(spec, d, s, k), in_axes=(data_axis, 0, 0))

    def body(carry):
        i, s = carry
        return i + 1, step_all(data, s, knobs)

    _, state = jax.lax.while_loop(lambda c: (c[0] < limit) & jnp.any(~c[1].done), body,
                                  (jnp.asarray(0, jnp.int32), state))
    return state


def finish(spec: EquilibriumSpec, data: DataArrays, state: EquilibriumState, knobs: Knobs,
           bayes: jax.Array) -> dict[str, jax.Array]:
    """The spec's metrics of one run's final state."""
    ev = EquilibriumEvaluation(spec, data, state, knobs, bayes)
    return metric_table.evaluate_metrics(spec.metrics, ev)


def begin(spec: EquilibriumSpec, data: DataArrays, knobs: Knobs, theta0: jax.Array | None,
          shape: tuple[int, ...], data_axis: int | None
          ) -> tuple[EquilibriumState, jax.Array]:
    """Round 0 of a batch of runs and their Bayes risks [R] (shared data: computed once)."""
    state = jax.vmap(lambda d, k, t: init_state(spec, d, k, shape, t),
                     in_axes=(data_axis, 0, None if theta0 is None else 0))(data, knobs, theta0)
    n = knobs.seed.shape[0]
    if data_axis is None:
        bayes = jnp.broadcast_to(bayes_risk(spec, data, shape), (n,))
    else:
        bayes = jax.vmap(lambda d: bayes_risk(spec, d, shape))(data)
    return state, bayes


def advance(spec: EquilibriumSpec, data: DataArrays, state: EquilibriumState, knobs: Knobs,
            bayes: jax.Array, limit: jax.Array, data_axis: int | None
            ) -> tuple[EquilibriumState, dict[str, jax.Array]]:
    """``solve`` for up to ``limit`` rounds, then the metrics of where the runs are ([R, ...]
    each): one program, so a run costs two compilations (``begin`` and this)."""
    state = solve(spec, data, state, knobs, limit, data_axis)
    values = jax.vmap(lambda d, s, k, b: finish(spec, d, s, k, b),
                      in_axes=(data_axis, 0, 0, 0))(data, state, knobs, bayes)
    return state, values


class Programs(NamedTuple):
    begin: Any  # (data, knobs, theta0) → (state, bayes [R])
    advance: Any  # (data, state, knobs, bayes, limit) → (state, {name: [R, ...]})


@functools.lru_cache(maxsize=32)
def _jitted(spec: EquilibriumSpec, x64: bool, shape: tuple[int, ...], per_run: bool, tag: str):
    del x64  # part of the cache key only
    axis = 0 if per_run else None
    named = compile_cache.named
    return (jax.jit(named(lambda data, knobs, theta0: begin(spec, data, knobs, theta0, shape,
                                                            axis), "equilibrium_begin" + tag)),
            jax.jit(named(lambda data, state, knobs, bayes, limit: advance(
                spec, data, state, knobs, bayes, limit, axis), "equilibrium_advance" + tag)))


_PROGRAMS = compile_cache.ProgramCache("equilibrium")


def _programs(spec: EquilibriumSpec, data: DataArrays, knobs: Knobs, theta0: Any,
              shape: tuple[int, ...], per_run: bool) -> Programs:
    """Ahead-of-time compiled programs for these shapes (cached)."""
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), (data, knobs, theta0))
    x64 = bool(jax.config.jax_enable_x64)

    def build(tag: str) -> Programs:
        start, step = _jitted(spec, x64, shape, per_run, tag)
        state, bayes = jax.eval_shape(start, data, knobs, theta0)
        start_program = compile_cache.compile_aside(start.lower(data, knobs, theta0))
        step_program = step.lower(data, state, knobs, bayes, jnp.int32(0)).compile()
        return Programs(start_program(), step_program)

    return _PROGRAMS.get((spec, x64, repr(shapes), shape, per_run), build)


# --------------------------------------------------------------------------- validation


def validate_equilibrium(data: EquilibriumData, spec: EquilibriumSpec, knobs: Knobs,
                         theta0: Any = None) -> tuple[tuple[int, ...], Any]:
    """Every check ``simulate_equilibrium`` makes before compiling (errors name the field);
    one provider's parameter shape and the initial parameters per run ([R, m, *shape] or
    None)."""
    if not isinstance(data, EquilibriumData):
        raise ValueError(f"data must be an EquilibriumData (equilibrium.data), got "
                         f"{type(data).__name__}")
    if not isinstance(spec, EquilibriumSpec):
        raise ValueError(f"spec must be an EquilibriumSpec, got {type(spec).__name__}")
    if not isinstance(knobs, Knobs):
        raise ValueError("knobs must be userchoice.knobs.Knobs (make_knobs(m, ...))")
    m = spec.n_providers
    width = int(np.shape(knobs.prior)[-1])
    if width != m:
        raise ValueError(f"knobs were made for {width} learners; the spec has n_providers={m}: "
                         f"make them with make_knobs({m}, ...)")
    validate_knobs(knobs, m, spec.probing)
    for knob in KNOBS:
        if knob.name in EQUILIBRIUM_KNOBS:
            continue
        values = np.asarray(getattr(knobs, knob.name), dtype=float)
        if np.any(values != knob.default):
            raise ValueError(f"knob {knob.name} is not read by the equilibrium dynamics "
                             f"(it reads {list(EQUILIBRIUM_KNOBS)}); leave it at its default "
                             f"{knob.default:g}")
    n_runs = knobs.n_runs
    if data.per_run and data.n_runs != n_runs:
        raise ValueError(f"data carry a run axis of {data.n_runs} runs; the knobs have "
                         f"{n_runs} runs")
    shape = spec.param_shape(data.dim, data.n_classes)
    if theta0 is not None:
        theta = np.asarray(theta0, float)
        if theta.shape == (m, *shape):
            theta = np.broadcast_to(theta, (n_runs, *theta.shape))
        if theta.shape != (n_runs, m, *shape) or not np.all(np.isfinite(theta)):
            raise ValueError(f"theta0 must be finite, of shape {[m, *shape]} or "
                             f"{[n_runs, m, *shape]}, got {list(np.shape(theta0))}")
        theta0 = theta
    return shape, theta0


def _chunking(n_runs: int, chunk_size: int | None, workers: int) -> int:
    if chunk_size is not None:
        return min(n_runs, chunk_size)
    n_chunks = min(n_runs, max(workers, -(-n_runs // MAX_CHUNK)))
    return -(-n_runs // n_chunks)


def _inputs(data: EquilibriumData, spec: EquilibriumSpec, knobs: Knobs, theta0: Any,
            chunk: int):
    dtype = jnp.dtype(spec.dtype)
    arrays = data.arrays(dtype)
    n_runs = knobs.n_runs

    def part(lo: int):
        idx = np.minimum(np.arange(lo, lo + chunk), n_runs - 1)  # pad with the last run
        chunk_data = jax.tree_util.tree_map(lambda a: a[idx], arrays) if data.per_run \
            else arrays
        return (chunk_data, cast_knobs(knobs.take(idx), dtype),
                None if theta0 is None else as_array(theta0[idx], dtype))

    return part


def compile_equilibrium(data: EquilibriumData, spec: EquilibriumSpec, knobs: Knobs, *,
                        theta0: Any = None) -> float:
    """Compile (or find in the caches) the programs ``simulate_equilibrium(data, spec, knobs,
    chunk_size=knobs.n_runs)`` runs; its seconds."""
    started = time.perf_counter()
    with jax.enable_x64(spec.dtype == "float64"):
        shape, theta = validate_equilibrium(data, spec, knobs, theta0)
        part = _inputs(data, spec, knobs, theta, knobs.n_runs)
        _programs(spec, *part(0), shape, data.per_run)
    return time.perf_counter() - started


def simulate_equilibrium(data: EquilibriumData, spec: EquilibriumSpec, knobs: Knobs, *,
                         chunk_size: int | None = None, workers: int | None = None,
                         theta0: Any = None) -> EquilibriumResult:
    """Run R = ``knobs.n_runs`` independent best-response dynamics to equilibrium.

    ``data``: ``EquilibriumData``, shared by every run or with a leading run axis of R
    (``stack_data``). ``knobs``: ``make_knobs(m, ...)`` (``settings.paper_knobs`` sets the
    paper's c = 0.3): per run the seed (θ⁰), ``temperature`` c, ``prior`` w and ``p``
    (probing); other knobs must stay at their defaults. ``theta0``: initial parameters
    [m, *shape] or [R, m, *shape] (default N(0, init_scale²) from the seed). Runs go through
    the compiled program in chunks of ``chunk_size`` (default: one per worker, at most 256 runs
    each), ``workers`` chunks at a time (default: one per CPU core); the last chunk is padded,
    so every chunk reuses one compilation.
    """
    driver.check_positive("chunk_size", chunk_size)
    driver.check_positive("workers", workers)
    with jax.enable_x64(spec.dtype == "float64"):
        shape, theta = validate_equilibrium(data, spec, knobs, theta0)
        return _simulate(data, spec, knobs, theta, shape, chunk_size,
                         workers or driver.default_workers())


def _simulate(data: EquilibriumData, spec: EquilibriumSpec, knobs: Knobs, theta0: Any,
              shape: tuple[int, ...], chunk_size: int | None, workers: int
              ) -> EquilibriumResult:
    n_runs = knobs.n_runs
    chunk = _chunking(n_runs, chunk_size, workers)
    part = _inputs(data, spec, knobs, theta0, chunk)
    started = time.perf_counter()
    programs = _programs(spec, *part(0), shape, data.per_run)
    compiled = time.perf_counter()
    x64 = bool(jax.config.jax_enable_x64)

    def run_chunk(bound: tuple[int, int]):
        lo, hi = bound
        with jax.enable_x64(x64):  # thread-local mode: workers match the caller
            data_c, knobs_c, theta_c = part(lo)
            state, bayes = programs.begin(data_c, knobs_c, theta_c)
            for _ in range(-(-spec.max_rounds // SEGMENT_ROUNDS)):
                state, values = programs.advance(data_c, state, knobs_c, bayes,
                                                 np.int32(SEGMENT_ROUNDS))
                if bool(np.all(np.asarray(state.done))):
                    break
            keep = {"converged": state.converged, "rounds": state.round,
                    "shares": state.share_history, "social": state.social_history,
                    "theta": state.theta}
            return ({k: np.asarray(v)[: hi - lo] for k, v in values.items()},
                    {k: np.asarray(v)[: hi - lo] for k, v in keep.items()})

    bounds = driver.chunk_bounds(n_runs, chunk)
    outputs = driver.map_ordered(run_chunk, bounds, workers)
    metrics, keep = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outputs)
    finished = time.perf_counter()
    return EquilibriumResult(
        metrics=dict(metrics), converged=keep["converged"].astype(bool),
        rounds=keep["rounds"].astype(np.int64), share_history=keep["shares"],
        social_history=keep["social"], final_theta=keep["theta"],
        timings={"compile_seconds": compiled - started, "run_seconds": finished - compiled,
                 "chunk_size": chunk, "workers": min(workers, len(bounds)),
                 "max_round": int(np.max(keep["rounds"]))})
