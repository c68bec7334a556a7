"""The driver: how many runs go into one compiled call, and how chunks share the machine.

One chunker and one pool for the whole package: ``simulate`` splits its runs with
``chunk_bounds`` and runs the chunks on ``run_pool``; the experiments' local executor runs its
sweep chunks on the same pool (each chunk then one compiled call, no second pool inside).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import jax

from userchoice.engine.spec import EngineSpec, bytes_per_run, step_bytes_per_run
from userchoice.market import Market

T = TypeVar("T")
R = TypeVar("R")

CHUNK_BYTES_ENV = "USERCHOICE_CHUNK_BYTES"
# CPU chunks: as many runs as keep one step's arrays in a core's L2 cache, at most this many.
# Measured on 2 cores (2026-12-02, T = 400–1000): a census logistic step (6 KiB per run) runs
# fastest at 120 runs per chunk (6.5 µs per run-step vs 6.9 at 60 and 8.9 at 16); MovieLens
# (400 KiB per run) at 2–4 (119 µs vs 247 at 50); a census MLP (384 KiB) at 2–8 (115 µs vs
# 222 at 60).
CPU_MAX_CHUNK_RUNS = 256
DEFAULT_L2_BYTES = 2**20
CPU_CACHE_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")


def l2_cache_bytes() -> int:
    """One core's L2 cache (Linux sysfs), else 1 MiB."""
    try:
        for index in sorted(CPU_CACHE_SYSFS.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 2**10, "M": 2**20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return DEFAULT_L2_BYTES


def default_chunk_size(spec: EngineSpec, market: Market, n_runs: int,
                       workers: int | None = None) -> int:
    """Runs per compiled call: memory-bounded ($USERCHOICE_CHUNK_BYTES, default 1 GiB); on CPU
    also cache-bounded (one step's arrays of the chunk fit a core's L2, at most
    ``CPU_MAX_CHUNK_RUNS``) and split into at least one chunk per worker; balanced so the last
    chunk needs little padding."""
    budget = int(os.environ.get(CHUNK_BYTES_ENV, 2**30))
    limit = max(1, budget // max(1, bytes_per_run(spec, market)))
    n_chunks = 1
    if jax.default_backend() == "cpu":
        cached = l2_cache_bytes() // max(1, step_bytes_per_run(spec, market))
        limit = min(limit, max(1, cached), CPU_MAX_CHUNK_RUNS)
        n_chunks = min(n_runs, default_workers() if workers is None else workers)
    n_chunks = max(n_chunks, -(-n_runs // limit))
    chunk = -(-n_runs // n_chunks)
    while chunk > 1 and -(-n_runs // chunk) < n_chunks:  # e.g. 4 runs, 3 workers: 1 per chunk
        chunk -= 1
    return chunk


def check_positive(name: str, value: Any) -> None:
    """``value`` is None or a positive integer (chunk sizes, worker counts), else a
    ``ValueError`` naming ``name``."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def chunk_bounds(n_runs: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of each chunk, in order; boundaries depend only on the two numbers."""
    return [(lo, min(lo + chunk_size, n_runs)) for lo in range(0, n_runs, chunk_size)]


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Chunks run concurrently on CPU (one per core; XLA releases the GIL while it runs)."""
    if jax.default_backend() != "cpu":
        return 1
    return cpu_cores()


def run_pool(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None
             ) -> Iterator[tuple[T, R | None, BaseException | None]]:
    """``fn(item)`` for each item on a thread pool of ``workers`` (default: one per core),
    yielding ``(item, result, None)`` or ``(item, None, error)`` as each finishes. A consumer
    that stops early (Ctrl-C, an error) cancels the items not yet started."""
    items = list(items)
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers or default_workers(), len(items))))
    try:
        futures = {pool.submit(fn, item): item for item in items}
        for future in as_completed(futures):
            error = future.exception()
            yield futures[future], (None if error else future.result()), error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def map_ordered(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None,
                on_done: Callable[[T, R], Any] | None = None) -> list[R]:
    """``[fn(item) for item in items]`` on the pool (in this thread when there is one item or
    one worker: no pool at all); the first error is raised."""
    items = list(items)
    if len(items) <= 1 or workers == 1:
        out = []
        for item in items:
            out.append(fn(item))
            if on_done is not None:
                on_done(item, out[-1])
        return out
    results: dict[int, R] = {}
    for index, result, error in run_pool(lambda i: fn(items[i]), range(len(items)), workers):
        if error is not None:
            raise error
        results[index] = result
        if on_done is not None:
            on_done(items[index], result)
    return [results[i] for i in range(len(items))]
