"""``simulate_population``: the step API (``population.step``) under ``vmap`` over runs and a
``lax.while_loop`` over rounds, compiled once per static shape, run in chunks on the driver's
pool.

A chunk's program advances all its runs together, one round per iteration, and leaves the loop
as soon as every run is done (converged through its last phase, or diverged); ``end_phase`` runs
only on rounds where some run ended a phase. The host calls the program once per segment of
evaluation points and stops calling it when every run of the chunk is done (their later
evaluation points repeat the final state, which no longer changes). Runs settle at different
rounds, so when at most a quarter of a batch still runs, those runs move on in a batch a
quarter the size (a compilation per size, at most log₄ of the chunk; ``timings
["compactions"]`` counts them).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.engine import compile_cache, driver
from userchoice.engine.spec import as_array
from userchoice.engine.step import cast_knobs
from userchoice.knobs import KNOBS, Knobs, validate_knobs
from userchoice.population.arrays import GroupArrays, group_arrays
from userchoice.population.groups import GroupSet, validate_allocation
from userchoice.population.spec import PopulationSpec
from userchoice.population.step import (
    PopulationState,
    advance,
    end_phase,
    equilibrium_metrics,
    eval_bounds,
    evaluate,
    init_state,
)

SEGMENTS = 10  # calls per chunk, at most: the host checks between calls whether all are done
COMPACT = 4  # a batch shrinks by this factor when at most 1/COMPACT of its runs still run
MIN_BATCH = 16  # ... but never below this many runs (a new size is a new compilation)
MAX_CHUNK = 4096  # runs per compiled call: a run's state is small (learners × groups)


@dataclass
class PopulationResult:
    """Metrics of R runs of the population dynamics.

    ``metrics[name]`` on the evaluation grid ``eval_steps`` (global rounds; 0 = the initial
    state): learner metrics [R, E, max_n] (NaN for learners not yet in the market), market
    [R, E], group [R, E, G], allocation [R, E, max_n, G]. ``equilibrium[name]``: the same
    metrics at the end of each phase, [R, Φ, ...] (NaN: phase not reached). ``phase_end``
    [R, Φ]: the round each phase ended (−1: not reached); ``converged`` [R, Φ]: its stop rule
    held (False: its round budget ran out). ``diverged_step`` [R]: the first round whose state
    was not finite (−1: none; that run's later metrics are NaN). ``final_theta`` [R, max_n, d]
    and ``final_allocation`` [R, max_n, G]: the state at the end.
    """

    metrics: dict[str, np.ndarray]
    eval_steps: np.ndarray
    equilibrium: dict[str, np.ndarray]
    phase_end: np.ndarray
    converged: np.ndarray
    diverged_step: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    final_theta: np.ndarray | None = None
    final_allocation: np.ndarray | None = None

    @property
    def n_runs(self) -> int:
        return int(np.shape(self.diverged_step)[0])

    def run(self, index: int) -> PopulationResult:
        """The result of one run, with a run axis of length one."""
        sl = slice(index, index + 1)
        return PopulationResult(
            {k: v[sl] for k, v in self.metrics.items()}, self.eval_steps,
            {k: v[sl] for k, v in self.equilibrium.items()}, self.phase_end[sl],
            self.converged[sl], self.diverged_step[sl], dict(self.timings),
            None if self.final_theta is None else self.final_theta[sl],
            None if self.final_allocation is None else self.final_allocation[sl])


def run_segment(spec: PopulationSpec, arrays: GroupArrays, state: PopulationState,
                knobs: Knobs, first: jax.Array, length: int
                ) -> tuple[dict[str, jax.Array], PopulationState]:
    """Evaluation points ``first`` … ``first + length − 1`` of a batch of runs (``state`` and
    ``knobs`` with a leading run axis): the rounds up to each, then its metrics ([length, R, …]
    each). Points past the last take no rounds (they pad the last segment)."""
    bounds = jnp.asarray(eval_bounds(spec))
    last = bounds.size - 1
    step_all = jax.vmap(lambda s, k: advance(spec, arrays, s, k))
    end_all = jax.vmap(lambda s, k: end_phase(spec, arrays, s, k))
    evaluate_all = jax.vmap(lambda s, k: evaluate(spec, arrays, s, k))

    def one_round(carry):
        r, s = carry
        s = step_all(s, knobs)
        s = jax.lax.cond(jnp.any(s.pending), lambda x: end_all(x, knobs), lambda x: x, s)
        return r + 1, s

    def advance_and_evaluate(s: PopulationState, e: jax.Array):
        lo = jnp.where(e == 0, 0, bounds[jnp.clip(e - 1, 0, last)])
        hi = bounds[jnp.minimum(e, last)]
        _, s = jax.lax.while_loop(lambda c: (c[0] < hi) & jnp.any(~c[1].done), one_round,
                                  (lo, s))
        return s, evaluate_all(s, knobs)

    final, values = jax.lax.scan(advance_and_evaluate, state,
                                 first + jnp.arange(length, dtype=jnp.int32))
    return values, final


class Programs(NamedTuple):
    start: Any  # (arrays, knobs, allocation, theta0) → state
    segment: Any  # (arrays, state, knobs, first) → (values [K, R, ...], state)
    equilibria: Any  # (arrays, state, knobs) → {name: [R, Φ, ...]}
    length: int


def segment_length(n_evals: int) -> int:
    return -(-n_evals // min(n_evals, SEGMENTS))


@functools.lru_cache(maxsize=32)
def _jitted(spec: PopulationSpec, x64: bool, length: int, with_theta0: bool, tag: str):
    del x64  # part of the cache key only
    named = compile_cache.named
    start = jax.jit(jax.vmap(named(
        lambda arrays, knobs, allocation, theta0: init_state(
            spec, arrays, knobs, allocation, theta0 if with_theta0 else None),
        "population_start" + tag), in_axes=(None, 0, 0, 0 if with_theta0 else None)))
    segment = jax.jit(named(lambda arrays, state, knobs, first: run_segment(
        spec, arrays, state, knobs, first, length), "population_segment" + tag))
    equilibria = jax.jit(jax.vmap(named(lambda arrays, state, knobs: equilibrium_metrics(
        spec, arrays, state, knobs), "population_equilibria" + tag), in_axes=(None, 0, 0)))
    return start, segment, equilibria


_PROGRAMS = compile_cache.ProgramCache("population")


def _programs(spec: PopulationSpec, arrays: GroupArrays, knobs: Knobs, allocation: Any,
              theta0: Any) -> Programs:
    """Ahead-of-time compiled programs for these shapes (cached)."""
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)),
                                    (arrays, knobs, allocation, theta0))
    length = segment_length(len(spec.eval_steps))
    x64 = bool(jax.config.jax_enable_x64)

    def build(tag: str) -> Programs:
        start, segment, equilibria = _jitted(spec, x64, length, theta0 is not None, tag)
        state = jax.eval_shape(start, arrays, knobs, allocation, theta0)
        aside = compile_cache.compile_aside
        start_program = aside(start.lower(arrays, knobs, allocation, theta0))
        segment_program = aside(segment.lower(arrays, state, knobs, jnp.int32(0)))
        equilibria_program = equilibria.lower(arrays, state, knobs).compile()
        return Programs(start_program(), segment_program(), equilibria_program, length)

    return _PROGRAMS.get((spec, x64, repr(shapes), length), build)


def _segment_program(spec: PopulationSpec, arrays: GroupArrays, state: PopulationState,
                     knobs: Knobs, length: int) -> Any:
    """The segment program for a batch of another size (the compacted runs of a chunk)."""
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), (arrays, state, knobs))
    x64 = bool(jax.config.jax_enable_x64)

    def build(tag: str) -> Any:
        segment = _jitted(spec, x64, length, False, tag)[1]
        return segment.lower(arrays, state, knobs, jnp.int32(0)).compile()

    return _PROGRAMS.get(("segment", spec, x64, repr(shapes), length), build)


# Gathers and scatters of whole states, on the host: a handful per chunk, and eager device
# ops would compile one program per shape.
def _take(tree: Any, rows: np.ndarray) -> Any:
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[rows], tree)


def _put(tree: Any, rows: np.ndarray, values: Any) -> Any:
    def put(a: Any, v: Any) -> np.ndarray:
        out = np.array(a)
        out[rows] = np.asarray(v)
        return out

    return jax.tree_util.tree_map(put, tree, values)


# --------------------------------------------------------------------------- validation


def validate_population(groups: GroupSet, spec: PopulationSpec, knobs: Knobs,
                        allocation: Any, theta0: Any = None) -> tuple[np.ndarray, Any]:
    """Every check ``simulate_population`` makes before compiling (errors name the field);
    the allocation [R, n, G] and initial parameters ([R, n, d] or None) per run."""
    if not isinstance(groups, GroupSet):
        raise ValueError(f"groups must be a GroupSet (population.groups), got "
                         f"{type(groups).__name__}")
    if not isinstance(spec, PopulationSpec):
        raise ValueError(f"spec must be a PopulationSpec, got {type(spec).__name__}")
    if not isinstance(knobs, Knobs):
        raise ValueError("knobs must be userchoice.knobs.Knobs (make_knobs(n, ...))")
    width = int(np.shape(knobs.prior)[-1])
    if width not in (spec.n_learners, spec.max_n):
        raise ValueError(f"knobs were made for {width} learners; make them with make_knobs("
                         f"{spec.max_n}, ...) (the entry cap) or make_knobs({spec.n_learners},"
                         f" ...)")
    validate_knobs(knobs, width, spec.probing)
    for knob in KNOBS:
        if spec.dynamics in knob.dynamics:
            continue
        values = np.asarray(getattr(knobs, knob.name), dtype=float)
        if np.any(values != knob.default):
            raise ValueError(f"knob {knob.name} is not read by the population dynamics; leave "
                             f"it at its default {knob.default:g}")
    n_runs = knobs.n_runs
    alloc = np.asarray(allocation, float)
    if alloc.ndim == 2:
        alloc = np.broadcast_to(alloc, (n_runs, *alloc.shape))
    if alloc.ndim != 3 or alloc.shape[0] != n_runs:
        raise ValueError(f"allocation must have shape [n_learners={spec.n_learners}, "
                         f"G={groups.n_groups}] (shared) or [R={n_runs}, n_learners, G], got "
                         f"{list(np.shape(allocation))}")
    if np.ndim(allocation) == 2:
        validate_allocation(alloc[0], spec.n_learners, groups.n_groups)
    else:
        for r in range(n_runs):
            validate_allocation(alloc[r], spec.n_learners, groups.n_groups,
                                name=f"allocation[{r}]")
    if theta0 is not None:
        theta = np.asarray(theta0, float)
        if theta.ndim == 2:
            theta = np.broadcast_to(theta, (n_runs, *theta.shape))
        if theta.shape != (n_runs, spec.n_learners, groups.dim) or not np.all(
                np.isfinite(theta)):
            raise ValueError(f"theta0 must be finite, of shape [n_learners={spec.n_learners}, "
                             f"d={groups.dim}] or [R, n_learners, d], got "
                             f"{list(np.shape(theta0))}")
        theta0 = theta
    return alloc, theta0


def _chunking(n_runs: int, chunk_size: int | None, workers: int) -> int:
    if chunk_size is not None:
        return min(n_runs, chunk_size)
    # a multiple of the workers (none idles at the end), each at most MAX_CHUNK runs
    needed = -(-n_runs // MAX_CHUNK)
    n_chunks = min(n_runs, workers * -(-needed // workers))
    return -(-n_runs // n_chunks)


def _inputs(groups: GroupSet, spec: PopulationSpec, knobs: Knobs, alloc: np.ndarray,
            theta0: Any, chunk: int):
    dtype = jnp.dtype(spec.dtype)
    arrays = group_arrays(groups, dtype)
    n_runs = knobs.n_runs

    def part(lo: int):
        idx = np.minimum(np.arange(lo, lo + chunk), n_runs - 1)  # pad with the last run
        return (cast_knobs(knobs.take(idx), dtype), as_array(alloc[idx], dtype),
                None if theta0 is None else as_array(theta0[idx], dtype))

    return arrays, part


def _run_evaluations(spec: PopulationSpec, arrays: GroupArrays, programs: Programs,
                     full: PopulationState, knobs: Knobs, n_evals: int
                     ) -> tuple[PopulationState, dict[str, np.ndarray], int]:
    """Every evaluation point of one chunk: its final state, metrics [chunk, E, ...] and how
    many times its batch was compacted.

    Runs finish at different rounds, and a batch computes every round until its last run is
    done. So when at most a quarter of the batch is still running, those runs move to a
    batch a quarter the size (``COMPACT``; padded with a finished run, whose rounds are
    no-ops), and the finished runs' later points repeat their final values (their state no
    longer changes). Every run's numbers are those of the whole batch (batch invariance)."""
    length = programs.length
    size = int(full.done.shape[0])
    rows = np.arange(size)  # the chunk rows the current batch holds
    batch, batch_knobs, segment = full, knobs, programs.segment
    last: dict[str, np.ndarray] = {}
    parts: list[dict[str, np.ndarray]] = []
    compactions = 0
    for first in range(0, n_evals, length):
        live = ~np.asarray(batch.done)  # before the segment: rows whose values may change
        values, batch = segment(arrays, batch, batch_knobs, np.int32(first))
        values = {k: np.moveaxis(np.asarray(v), 0, 1) for k, v in values.items()}
        if len(rows) == size:
            part = values
        else:  # the rows outside the batch, and those done before it, keep their values
            part = {k: np.repeat(last[k][:, None], v.shape[1], axis=1) for k, v in
                    values.items()}
            for k, v in values.items():
                part[k][rows[live]] = v[live]
        parts.append(part)
        last = {k: v[:, -1] for k, v in part.items()}
        done = np.asarray(batch.done)
        if done.all() or first + length >= n_evals:
            break
        running = np.flatnonzero(~done)
        if len(running) <= len(rows) // COMPACT and len(rows) // COMPACT >= MIN_BATCH:
            new_size = len(rows) // COMPACT
            while new_size // COMPACT >= max(MIN_BATCH, len(running)):
                new_size //= COMPACT
            pick = np.concatenate([running, np.full(new_size - len(running),
                                                    np.flatnonzero(done)[0])])
            full = _put(full, rows, batch)
            rows = rows[pick]
            batch, batch_knobs = _take(full, rows), _take(knobs, rows)
            segment = _segment_program(spec, arrays, batch, batch_knobs, length)
            compactions += 1
    if len(rows) < size:
        full = _put(full, rows, batch)
    else:
        full = batch
    metrics = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
    if metrics[next(iter(metrics))].shape[1] < n_evals:  # all done: the final state repeats
        rest = n_evals - metrics[next(iter(metrics))].shape[1]
        metrics = {k: np.concatenate([v, np.repeat(v[:, -1:], rest, axis=1)], axis=1)
                   for k, v in metrics.items()}
    return full, {k: v[:, :n_evals] for k, v in metrics.items()}, compactions


def compile_population(groups: GroupSet, spec: PopulationSpec, knobs: Knobs,
                       allocation: Any, *, theta0: Any = None) -> float:
    """Compile (or find in the caches) the programs ``simulate_population(groups, spec, knobs,
    allocation, chunk_size=knobs.n_runs)`` runs; its seconds."""
    started = time.perf_counter()
    with jax.enable_x64(spec.dtype == "float64"):
        alloc, theta = validate_population(groups, spec, knobs, allocation, theta0)
        arrays, part = _inputs(groups, spec, knobs, alloc, theta, knobs.n_runs)
        _programs(spec, arrays, *part(0))
    return time.perf_counter() - started


def simulate_population(groups: GroupSet, spec: PopulationSpec, knobs: Knobs,
                        allocation: Any, *, chunk_size: int | None = None,
                        workers: int | None = None, theta0: Any = None) -> PopulationResult:
    """Run R = ``knobs.n_runs`` independent population dynamics on ``groups``.

    ``knobs``: ``userchoice.knobs.make_knobs(n, ...)`` (n = ``spec.max_n`` or
    ``spec.n_learners``): per run ε (``epsilon``), η (``eta``, gradient_step), p and κ
    (probing) and the seed (the entry jitter); knobs the population dynamics do not read must
    stay at their defaults. ``allocation``: α⁰, [n_learners, G] shared or [R, n_learners, G]
    per run (``initial_allocation``). ``theta0``: initial parameters [n_learners, d] or
    [R, n_learners, d] (default: exact retraining on α⁰). Runs go through the compiled program
    in chunks of ``chunk_size`` (default: one per worker, at most 4096 runs each), ``workers``
    chunks at a time (default: one per CPU core); the last chunk is padded, so every chunk
    reuses one compilation. Logistic groups default to one worker (see the code: a hang of
    concurrent chunks in XLA:CPU).
    """
    driver.check_positive("chunk_size", chunk_size)
    driver.check_positive("workers", workers)
    with jax.enable_x64(spec.dtype == "float64"):
        alloc, theta = validate_population(groups, spec, knobs, allocation, theta0)
        # Logistic groups: one worker by default. Two concurrent chunks of the nested Newton
        # while loops hung in XLA:CPU here (200 runs, 2 workers; 10-run chunks did not), and
        # one chunk already keeps both cores busy (intra-op threads).
        default = 1 if groups.loss == "logistic" else driver.default_workers()
        return _simulate(groups, spec, knobs, alloc, theta, chunk_size, workers or default)


def _simulate(groups: GroupSet, spec: PopulationSpec, knobs: Knobs, alloc: np.ndarray,
              theta0: Any, chunk_size: int | None, workers: int) -> PopulationResult:
    n_runs = knobs.n_runs
    chunk = _chunking(n_runs, chunk_size, workers)
    arrays, part = _inputs(groups, spec, knobs, alloc, theta0, chunk)
    started = time.perf_counter()
    programs = _programs(spec, arrays, *part(0))
    compiled = time.perf_counter()
    x64 = bool(jax.config.jax_enable_x64)
    n_evals = len(spec.eval_steps)

    def run_chunk(bound: tuple[int, int]):
        lo, hi = bound
        with jax.enable_x64(x64):  # thread-local mode: workers match the caller
            knobs_c, alloc_c, theta_c = part(lo)
            full = programs.start(arrays, knobs_c, alloc_c, theta_c)
            full, values, compactions = _run_evaluations(spec, arrays, programs, full, knobs_c,
                                                         n_evals)
            values = {k: v[: hi - lo] for k, v in values.items()}
            eq = {k: np.asarray(v)[: hi - lo]
                  for k, v in programs.equilibria(arrays, full, knobs_c).items()}
            keep = {"phase_end": full.phase_end, "converged": full.converged,
                    "diverged": full.diverged_at, "theta": full.market.theta,
                    "alpha": full.market.alpha, "rounds": full.t}
            kept = {k: np.asarray(v)[: hi - lo] for k, v in keep.items()}
            return values, eq, kept, np.asarray([compactions])

    bounds = driver.chunk_bounds(n_runs, chunk)
    outputs = driver.map_ordered(run_chunk, bounds, workers)
    metrics, eq, keep, compactions = jax.tree_util.tree_map(lambda *a: np.concatenate(a),
                                                            *outputs)
    finished = time.perf_counter()
    return PopulationResult(
        metrics=dict(metrics), eval_steps=np.asarray(spec.eval_steps), equilibrium=dict(eq),
        phase_end=keep["phase_end"], converged=keep["converged"].astype(bool),
        diverged_step=keep["diverged"],
        timings={"compile_seconds": compiled - started, "run_seconds": finished - compiled,
                 "chunk_size": chunk, "workers": min(workers, len(bounds)),
                 "max_round": int(np.max(keep["rounds"])),
                 "compactions": int(compactions.sum())},
        final_theta=keep["theta"], final_allocation=keep["alpha"])
