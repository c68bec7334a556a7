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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.engine import driver
from userchoice.engine.spec import (
    EngineSpec,
    MarketArrays,
    check_init_params,
    market_arrays,
    validate_market,
)
from userchoice.engine.step import RunState, cast_knobs, evaluate, init_run, step
from userchoice.families import Params
from userchoice.knobs import KNOB_NAMES, Knobs, validate_knobs
from userchoice.market import Market
from userchoice.stats import seed_stats


def run_scan(spec: EngineSpec, data: MarketArrays, init_params: Params | None, knobs: Knobs
             ) -> tuple[dict[str, jax.Array], RunState]:
    """One run: metrics at every evaluation point ([E, ...] each) and the final state."""
    ctx, state = init_run(spec, data, knobs, init_params)
    bounds = jnp.asarray(spec.eval_steps, jnp.int32)

    def advance_and_evaluate(state: RunState, e: jax.Array):
        # Steps between eval points e−1 and e (none before the first); the bounds are the same
        # for every run, so under vmap this stays one loop and step/evaluate are traced once.
        lo = jnp.where(e == 0, 0, bounds[jnp.maximum(e - 1, 0)])
        state = jax.lax.fori_loop(lo, bounds[e], lambda t, s: step(spec, data, ctx, s, t), state)
        values, state = evaluate(spec, data, ctx, state)
        return state, values

    final, values = jax.lax.scan(advance_and_evaluate, state, jnp.arange(bounds.size))
    return values, final


@functools.lru_cache(maxsize=64)
def _batched(spec: EngineSpec, x64: bool) -> Callable:
    del x64  # part of the cache key only: x64 mode changes the traced program
    return jax.jit(jax.vmap(functools.partial(run_scan, spec), in_axes=(None, None, 0)))


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
            fn = _batched(spec, bool(jax.config.jax_enable_x64))
            _EXECUTABLES[key] = fn.lower(data, init, part).compile()
    return _EXECUTABLES[key]


class UnknownMetricError(KeyError, ValueError):
    """A metric name the result does not hold; the message lists those it does."""

    def __str__(self) -> str:
        return str(self.args[0])


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

    def summarise(self, metric: str, by: tuple[str, ...] = ("p",), step: int = -1
                  ) -> list[dict[str, Any]]:
        """Mean and standard error over the runs sharing the knob values ``by``.

        One row per distinct combination (in first-seen order) with ``mean`` and ``sem``
        (NaN with a single run) of ``metric`` at eval index ``step`` (arrays over learners or
        probers for per-learner metrics), plus ``n_runs``. Computed by
        ``stats.seed_stats``, as every other mean ± s.e. in the package.
        """
        import pandas as pd

        unknown = set(by) - set(KNOB_NAMES)
        if unknown:
            raise ValueError(f"by must name knobs from {list(KNOB_NAMES)}, got {sorted(unknown)}")
        values = np.asarray(self.metric(metric)[:, step], dtype=float)
        per_run = values.reshape(self.n_runs, -1)  # [R, k] (k = 1 for market-wide metrics)
        width = per_run.shape[1]
        frame = pd.DataFrame({name: np.repeat(np.asarray(getattr(self.knobs, name)), width)
                              for name in by})
        frame["_entry"] = np.tile(np.arange(width), self.n_runs)
        frame["value"] = per_run.reshape(-1)
        stats = seed_stats(frame, [*by, "_entry"], "value", sort=False)
        rows = []
        for key, part in stats.groupby(list(by), sort=False) if by else [((), stats)]:
            key = key if isinstance(key, tuple) else (key,)
            part = part.sort_values("_entry")
            shape = values.shape[1:]
            rows.append({**{n: np.asarray(v).item() for n, v in zip(by, key, strict=True)},
                         "n_runs": int(part["n"].max()),
                         "mean": part["mean"].to_numpy().reshape(shape),
                         "sem": part["sem"].to_numpy().reshape(shape)})
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


def _check_positive(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


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
) -> SimulationResult:
    """Run R = ``knobs.n_runs`` independent markets; each is a pure function of its knobs.

    ``init_params`` (one pytree with a learner axis, shared by every run, e.g. ERM) replaces
    random initialisation. Runs go through the compiled program in chunks of ``chunk_size``
    runs (default: memory-bounded, ≤ 64 on CPU), ``workers`` chunks at a time (default: one per
    CPU core on CPU, 1 on accelerators); the last chunk is padded so every chunk reuses one
    compilation. ``progress(done, total)`` is called as chunks finish.
    ``timings`` separates compilation from simulation.
    """
    _check_positive("chunk_size", chunk_size)
    _check_positive("workers", workers)
    with jax.enable_x64(spec.dtype == "float64"):
        validate(market, spec, knobs, init_params)
        return _simulate_chunks(market, spec, knobs, init_params, chunk_size,
                                workers or driver.default_workers(), progress)


def _simulate_chunks(market: Market, spec: EngineSpec, knobs: Knobs,
                     init_params: Params | None, chunk_size: int | None, workers: int,
                     progress: Callable[[int, int], None] | None) -> SimulationResult:
    n_runs = knobs.n_runs
    chunk = min(n_runs, chunk_size or driver.default_chunk_size(spec, market, n_runs))
    dtype = jnp.dtype(spec.dtype)
    data = market_arrays(market, dtype)
    init = None if init_params is None else jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, dtype), init_params)

    def chunk_knobs(lo: int) -> Knobs:
        idx = np.minimum(np.arange(lo, lo + chunk), n_runs - 1)  # pad with the last run
        return cast_knobs(knobs.take(idx), dtype)

    bounds = driver.chunk_bounds(n_runs, chunk)
    started = time.perf_counter()
    executable = _executable(spec, data, init, chunk_knobs(0))
    compiled = time.perf_counter()
    x64 = bool(jax.config.jax_enable_x64)

    def run_chunk(bound: tuple[int, int]):
        lo, hi = bound
        with jax.enable_x64(x64):  # the mode is thread-local; workers must match the caller
            out = executable(data, init, chunk_knobs(lo))
            return jax.tree_util.tree_map(lambda a: np.asarray(a)[: hi - lo], out)

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
