"""``simulate``: the step API composed under ``lax.scan`` (over evaluation points) and ``vmap``
(over runs), compiled once per static shape, run in chunks on the driver's pool.

Evaluation runs inside the scan every ``eval_every`` steps and emits small [evals, n] arrays;
parameter trajectories are never stored.
"""

from __future__ import annotations

import difflib
import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.engine import compile_cache, driver
from userchoice.engine.spec import (
    EngineSpec,
    MarketArrays,
    as_array,
    check_init_params,
    market_arrays,
    validate_market,
)
from userchoice.engine.step import (
    RunContext,
    RunState,
    cast_knobs,
    evaluate,
    init_run,
    step_drawn,
    step_draws,
)
from userchoice.engine.streams import StepDraws
from userchoice.families import Params
from userchoice.frames import (
    FrameKind,
    metric_kind,
    simulation_dataset,
    simulation_frame,
    table_order,
)
from userchoice.knobs import KNOBS, SCALAR_KNOBS, Knobs, validate_knobs
from userchoice.market import Market
from userchoice.reprs import SummaryRepr, short_list
from userchoice.stats import seed_stats

if TYPE_CHECKING:  # pandas and xarray are imported on first use
    import pandas as pd
    import xarray as xr


# Evaluation points per compiled call, at most: a chunk goes through ⌈E / K⌉ calls of one
# program, so progress is reported between calls, from the host. (A host callback inside the
# program would do it too, but JAX never writes a program with one to the persistent
# compilation cache, and every later process would compile it again.)
SEGMENTS = 10


def segment_length(n_evals: int) -> int:
    """K, the evaluation points one call covers: ⌈E / min(E, SEGMENTS)⌉."""
    return -(-n_evals // min(n_evals, SEGMENTS))


def run_segment(spec: EngineSpec, data: MarketArrays, ctx: RunContext, state: RunState,
                first: jax.Array, length: int) -> tuple[dict[str, jax.Array], RunState]:
    """Evaluation points ``first`` … ``first + length − 1`` of one run: the steps up to each,
    then its metrics ([length, ...] each). Points past the last take no steps (they pad the
    last segment; the caller drops their values)."""
    bounds = jnp.asarray(spec.eval_steps, jnp.int32)
    last = bounds.size - 1

    def stepped(t: jax.Array, carry: tuple[RunState, StepDraws]):
        # Step t on the carried draws while drawing t + 1: the loop carry materialises each
        # step's draws once (bit-identical: draws are a pure function of (keys, t)).
        state, draws = carry
        return step_drawn(spec, data, ctx, state, t, draws), step_draws(spec, data, ctx, t + 1)

    def advance_and_evaluate(state: RunState, e: jax.Array):
        # Steps between eval points e−1 and e (none before the first); the bounds are the same
        # for every run, so under vmap this stays one loop and step/evaluate are traced once.
        lo = jnp.where(e == 0, 0, bounds[jnp.clip(e - 1, 0, last)])
        hi = bounds[jnp.minimum(e, last)]
        state, _ = jax.lax.fori_loop(lo, hi, stepped, (state, step_draws(spec, data, ctx, lo)))
        values, state = evaluate(spec, data, ctx, state)
        return state, values

    final, values = jax.lax.scan(advance_and_evaluate, state,
                                 first + jnp.arange(length, dtype=jnp.int32))
    return values, final


def run_scan(spec: EngineSpec, data: MarketArrays, init_params: Params | None, knobs: Knobs
             ) -> tuple[dict[str, jax.Array], RunState]:
    """One run in one piece: metrics at every evaluation point ([E, ...] each), final state."""
    ctx, state = init_run(spec, data, knobs, init_params)
    return run_segment(spec, data, ctx, state, jnp.int32(0), len(spec.eval_steps))


class Programs(NamedTuple):
    """The compiled programs of one static shape (vmapped over a chunk's runs)."""

    start: Any  # (data, init, knobs) → (ctx, state)
    segment: Any  # (data, ctx, state, first) → (values [runs, K, ...], state)
    length: int  # K


@functools.lru_cache(maxsize=64)
def _jitted(spec: EngineSpec, x64: bool, length: int, tag: str) -> tuple[Callable, Callable]:
    del x64  # part of the cache key only: x64 mode changes the traced program
    named = compile_cache.named
    start = jax.jit(jax.vmap(named(lambda data, init, knobs: init_run(spec, data, knobs, init),
                                   "engine_start" + tag), in_axes=(None, None, 0)))
    segment = jax.jit(jax.vmap(named(
        lambda data, ctx, state, first: run_segment(spec, data, ctx, state, first, length),
        "engine_segment" + tag), in_axes=(None, 0, 0, None)))
    return start, segment


_PROGRAMS = compile_cache.ProgramCache("engine")


def _executable(spec: EngineSpec, data: MarketArrays, init: Params | None, part: Knobs
                ) -> Programs:
    """Ahead-of-time compiled programs for these shapes (cached), so compile time is
    measurable."""
    shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), (data, init, part))
    length = segment_length(len(spec.eval_steps))
    x64 = bool(jax.config.jax_enable_x64)

    def build(tag: str) -> Programs:
        start, segment = _jitted(spec, x64, length, tag)
        ctx, state = jax.eval_shape(start, data, init, part)
        start_program = compile_cache.compile_aside(start.lower(data, init, part))
        segment_program = segment.lower(data, ctx, state, jnp.int32(0)).compile()
        return Programs(start_program(), segment_program, length)

    return _PROGRAMS.get((spec, x64, repr(shapes), length), build)


class UnknownMetricError(KeyError, ValueError):
    """A metric name the result does not hold; the message lists those it does."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(repr=False)
class SimulationResult(SummaryRepr):
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

    def metric(self, name: str) -> np.ndarray:
        """``metrics[name]``, with an error naming the metrics this result holds."""
        if name not in self.metrics:
            close = difflib.get_close_matches(name, list(self.metrics), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownMetricError(f"no metric {name!r} in this result{hint} It holds "
                                     f"{sorted(self.metrics)} (see userchoice.metrics)")
        return self.metrics[name]

    def final(self, name: str) -> np.ndarray:
        """The metric at the last evaluation point, [R, ...]."""
        return self.metric(name)[:, -1]

    @property
    def probers(self) -> tuple[int, ...]:
        """The probing learners (empty without probing)."""
        return () if self.spec.probing is None else tuple(self.spec.probing.probers)

    def to_dataframe(self, kind: FrameKind = "all") -> pd.DataFrame:
        """A tidy pandas frame: one row per (run, evaluation step, learner).

        Columns: ``run`` (index into this result), every knob (``prior``: the row learner's
        own value), ``step``, ``learner``, ``is_prober``, then one column per metric in the
        metric table's order — learner metrics, prober metrics (NaN on the rows of learners
        that do not probe) and market metrics (the run's value, repeated on each learner's
        row). ``kind="learner"`` / ``"prober"`` (one row per probing learner) / ``"market"``
        (one row per run and step, scalar knobs only) give the metrics of one kind alone. Rows
        are ordered run, step, learner: ``frame[m].to_numpy().reshape(metrics[m].shape)``
        gives back ``metrics[m]``. See ``userchoice.frames``.
        """
        return simulation_frame(self.knobs, self.eval_steps, self.metrics,
                                self.spec.n_learners, self.probers, kind)

    def to_xarray(self) -> xr.Dataset:
        """The metrics as an ``xarray.Dataset``: dims ``run``, ``step``, ``learner`` (learner
        metrics), ``prober`` (prober metrics; coordinate: the prober's learner index),
        (``run``, ``step``) for market metrics; knobs and ``diverged_step`` as coordinates
        along ``run`` (``prior`` along ``run`` × ``learner``); each metric's label, meaning,
        kind and direction in its ``attrs``; the spec in the Dataset's ``attrs``."""
        return simulation_dataset(self.knobs, self.eval_steps, self.metrics,
                                  self.spec.n_learners, self.probers, self.diverged_step,
                                  _spec_attrs(self.spec))

    def summarise(self, metric: str, by: Sequence[str] = ("p",), step: int = -1
                  ) -> pd.DataFrame:
        """Mean ± standard error over the runs sharing the knob values ``by``, at evaluation
        index ``step`` (default: the last), per learner (per prober for prober metrics).

        A DataFrame with the columns ``by``, ``learner`` (not for market metrics), then
        ``mean``, ``sem`` (ddof 1; NaN for one run), ``std`` and ``n`` (runs with a value),
        sorted by those keys: ``stats.seed_stats`` over :meth:`to_dataframe`, as every other
        mean ± s.e. in the package.
        """
        by = list(by)
        unknown = set(by) - set(SCALAR_KNOBS)
        if unknown:
            raise ValueError(f"by must name knobs from {list(SCALAR_KNOBS)}, got "
                             f"{sorted(unknown)}")
        self.metric(metric)  # an unknown metric: the error lists the ones held
        kind = metric_kind(metric)
        frame = self.to_dataframe(kind)
        frame = frame[frame["step"] == int(self.eval_steps[step])]
        return seed_stats(frame, [*by, *([] if kind == "market" else ["learner"])], metric)

    def _summary_rows(self) -> list[tuple[str, str]]:
        spec, steps = self.spec, self.eval_steps
        rows = [("runs", f"{self.n_runs:,}"),
                ("evals", f"{len(steps)} (steps {steps[0]}–{steps[-1]}, every "
                          f"{spec.eval_every})"),
                ("learners", f"{spec.n_learners}"
                             + (f" (probers {list(self.probers)})" if self.probers else "")),
                ("spec", _describe_spec(spec)),
                ("knobs", _describe_knobs(self.knobs)),
                ("metrics", short_list(table_order(self.metrics))),
                ("diverged", f"{int(np.sum(np.asarray(self.diverged_step) >= 0))} runs")]
        timed = [f"{name.removesuffix('_seconds')} {self.timings[name]:.2f} s"
                 for name in ("compile_seconds", "run_seconds") if name in self.timings]
        if timed:
            rows.append(("timings", ", ".join(timed)))
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


def _name_of(thing: Any) -> str:
    return thing if isinstance(thing, str) else str(getattr(thing, "name", type(thing).__name__))


def _spec_attrs(spec: EngineSpec) -> dict[str, Any]:
    """The spec as netCDF-friendly attributes (strings and numbers)."""
    attrs: dict[str, Any] = {
        "family": spec.family.name, "n_learners": spec.n_learners,
        "batch_size": spec.batch_size, "steps": spec.steps, "eval_every": spec.eval_every,
        "choice": _name_of(spec.choice), "schedule": spec.schedule,
        "normalisation": spec.normalisation, "update_all": int(spec.update_all),
        "dtype": spec.dtype, "arrival": spec.arrival, "init": spec.init}
    if spec.probing is not None:
        probing = spec.probing
        attrs.update(probers=list(probing.probers), source=_name_of(probing.source),
                     n_probe=probing.n_probe, probe_batch=probing.probe_batch,
                     refresh_every=probing.refresh_every)
    return attrs


def _describe_spec(spec: EngineSpec) -> str:
    text = (f"{spec.family.name}, B={spec.batch_size}, T={spec.steps}, "
            f"choice {_name_of(spec.choice)}")
    if spec.arrival != "uniform":
        text += f", arrival {spec.arrival}"
    if spec.init != "family":
        text += f", init {spec.init}"
    if spec.probing is not None:
        text += f", probing {_name_of(spec.probing.source)} (N_probe={spec.probing.n_probe})"
    return text + ("" if spec.dtype == "float32" else f", {spec.dtype}")


def _describe_knobs(knobs: Knobs) -> str:
    """Knobs that vary (their values, or how many) and those set off their default."""
    parts = []
    for knob in KNOBS:
        values = np.asarray(getattr(knobs, knob.name))
        if knob.kind == "per_learner":
            distinct = np.unique(values, axis=0)
            if len(distinct) > 1:
                parts.append(f"{knob.name}: {len(distinct)} vectors")
            elif not np.all(distinct == knob.default):
                parts.append(f"{knob.name}={short_list(f'{v:g}' for v in distinct[0])}")
            continue
        distinct = np.unique(values)
        shown = [f"{v:g}" for v in distinct]
        if len(distinct) > 1:
            parts.append(f"{knob.name}: {len(distinct)} values" if knob.kind == "seed"
                         else f"{knob.name}: {short_list(shown)}")
        elif distinct[0] != knob.default or knob.kind == "seed":
            parts.append(f"{knob.name}={shown[0]}")
    return "; ".join(parts)


def validate(market: Market, spec: EngineSpec, knobs: Knobs,
             init_params: Params | None = None) -> None:
    """Every check ``simulate`` makes before compiling (errors name the field)."""
    validate_market(spec, market)
    validate_knobs(knobs, spec.n_learners, spec.probing)
    if init_params is not None:
        check_init_params(spec, market.dataset.n_features, init_params)


def simulate(
    market: Market,
    spec: EngineSpec,
    knobs: Knobs,
    init_params: Params | None = None,
    chunk_size: int | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    step_progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Run R = ``knobs.n_runs`` independent markets; each is a pure function of its knobs.

    ``init_params`` (one pytree with a learner axis, shared by every run, e.g. ERM) replaces
    random initialisation. Runs go through the compiled program in chunks of ``chunk_size``
    runs (default: memory-bounded, ≤ 64 on CPU), ``workers`` chunks at a time (default: one per
    CPU core on CPU, 1 on accelerators); the last chunk is padded so every chunk reuses one
    compilation. ``progress(done, total)`` is called as chunks finish (runs);
    ``step_progress(done, total)`` as each chunk's runs pass the end of each of their
    ⌈E / K⌉ segments of evaluation points (run-steps, of R × T; a chunk runs as a sequence of
    calls of one program, ``run_segment``: the same numbers, see
    ``benchmarks/bench_progress.py`` for the cost).
    ``timings`` separates compilation from simulation.
    """
    driver.check_positive("chunk_size", chunk_size)
    driver.check_positive("workers", workers)
    with jax.enable_x64(spec.dtype == "float64"):
        validate(market, spec, knobs, init_params)
        return _simulate_chunks(market, spec, knobs, init_params, chunk_size,
                                workers or driver.default_workers(), progress, step_progress)


def _chunk_inputs(market: Market, spec: EngineSpec, knobs: Knobs, init_params: Params | None,
                  chunk: int) -> tuple[MarketArrays, Params | None, Callable[[int], Knobs]]:
    """The program's arguments: market arrays, initial parameters, and the knobs of the chunk
    starting at run ``lo`` (padded with the last run to ``chunk`` runs)."""
    n_runs = knobs.n_runs
    dtype = jnp.dtype(spec.dtype)
    data = market_arrays(market, dtype)
    init = None if init_params is None else jax.tree_util.tree_map(
        lambda a: as_array(a, dtype), init_params)

    def chunk_knobs(lo: int) -> Knobs:
        idx = np.minimum(np.arange(lo, lo + chunk), n_runs - 1)  # pad with the last run
        return cast_knobs(knobs.take(idx), dtype)

    return data, init, chunk_knobs


def compile_chunk(market: Market, spec: EngineSpec, knobs: Knobs,
                  init_params: Params | None = None) -> float:
    """Compile (or find in the caches) the programs that ``simulate(market, spec, knobs,
    init_params, chunk_size=knobs.n_runs)`` runs, so a caller can show and time compilation
    on its own; its seconds."""
    started = time.perf_counter()
    with jax.enable_x64(spec.dtype == "float64"):
        validate(market, spec, knobs, init_params)
        data, init, chunk_knobs = _chunk_inputs(market, spec, knobs, init_params, knobs.n_runs)
        _executable(spec, data, init, chunk_knobs(0))
    return time.perf_counter() - started


def _simulate_chunks(market: Market, spec: EngineSpec, knobs: Knobs,
                     init_params: Params | None, chunk_size: int | None, workers: int,
                     progress: Callable[[int, int], None] | None,
                     step_progress: Callable[[int, int], None] | None = None
                     ) -> SimulationResult:
    n_runs = knobs.n_runs
    chunk = min(n_runs, chunk_size or driver.default_chunk_size(spec, market, n_runs, workers))
    data, init, chunk_knobs = _chunk_inputs(market, spec, knobs, init_params, chunk)
    bounds = driver.chunk_bounds(n_runs, chunk)
    started = time.perf_counter()
    programs = _executable(spec, data, init, chunk_knobs(0))
    compiled = time.perf_counter()
    x64 = bool(jax.config.jax_enable_x64)
    eval_steps, total_steps = spec.eval_steps, n_runs * spec.steps
    n_evals, length = len(eval_steps), programs.length
    steps_done = dict.fromkeys(bounds, 0)  # per chunk: its real runs × steps reached
    steps_lock = threading.Lock()

    def run_chunk(bound: tuple[int, int]):
        lo, hi = bound
        with jax.enable_x64(x64):  # the mode is thread-local; workers must match the caller
            ctx, state = programs.start(data, init, chunk_knobs(lo))
            parts = []
            for first in range(0, n_evals, length):
                values, state = programs.segment(data, ctx, state, np.int32(first))
                parts.append(values)
                if step_progress is not None:
                    jax.block_until_ready(values)
                    reached = int(eval_steps[min(first + length, n_evals) - 1])
                    with steps_lock:  # the counts the caller sees never go down
                        steps_done[bound] = (hi - lo) * reached
                        step_progress(sum(steps_done.values()), total_steps)
            metrics = {name: np.concatenate([np.asarray(p[name]) for p in parts], axis=1)
                       [: hi - lo, :n_evals] for name in parts[0]}
            return metrics, jax.tree_util.tree_map(lambda a: np.asarray(a)[: hi - lo], state)

    done = 0

    def report(bound: tuple[int, int], _: Any) -> None:
        nonlocal done
        done += bound[1] - bound[0]
        if progress is not None:
            progress(done, n_runs)

    outputs = driver.map_ordered(run_chunk, bounds, workers, on_done=report)
    metrics, state = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *outputs)
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
                 "chunk_size": chunk, "workers": min(workers, len(bounds))},
    )
