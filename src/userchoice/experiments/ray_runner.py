"""Running chunks as Ray tasks: one task per chunk, on a local Ray or a cluster.

Each task runs :func:`~userchoice.experiments.runner.simulate_chunk`, the very function the
local runner calls, on the same chunk of knobs, so it compiles the same program and its numbers
are identical. The market and initial parameters go into the object store once per sweep.

Ray is optional: ``pip install 'userchoice[ray]'``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

from userchoice.experiments.runner import ChunkJob, Runner, simulate_chunk

INSTALL_HINT = "the ray executor needs Ray: pip install 'userchoice[ray]'"

# XLA's CPU thread pool is left at its default (one thread per core), as in this process:
# how XLA splits a large matrix product over threads can change the order of a sum, so capping
# the threads per worker could change results in the last bit. Workers on machines with other
# core counts than this one may therefore differ from a local sweep in the last bit.
WORKER_ENV = {
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # several workers may share one accelerator
}


def _import_ray():
    try:
        import ray
    except ImportError as error:  # pragma: no cover - exercised only without ray
        raise ImportError(INSTALL_HINT) from error
    return ray


def _chunk_task(market, spec, knobs, init_params) -> tuple[dict[str, Any] | None, str | None,
                                                          float]:
    """Body of one Ray task: the chunk's output, or the error it raised, and its seconds."""
    started = time.perf_counter()
    try:
        return simulate_chunk(market, spec, knobs, init_params), None, \
            time.perf_counter() - started
    except Exception as error:  # recorded per chunk (as the local runner does); the sweep goes on
        return None, f"{type(error).__name__}: {error}", time.perf_counter() - started


def ray_runner(address: str | None = None, num_cpus: int | None = None, *,
               task_options: dict[str, Any] | None = None) -> Runner:
    """Chunks as Ray tasks (same contract as :func:`local_runner`).

    ``address``: a running cluster (``ray.init(address=...)``, e.g. ``"auto"`` or
    ``"ray://head:10001"``); default: the Ray this process already joined, else a new local one
    with ``num_cpus`` CPUs (default: all). ``task_options`` go to ``.options()`` of every task
    (default ``{"num_cpus": 1}``; e.g. ``{"num_gpus": 1}`` on a GPU cluster). A Ray this runner
    started is shut down when the sweep ends; one started by the caller is left running.

    Tasks are pure functions of their chunk, so Ray may retry one whose worker died; a chunk
    that raises is yielded with its error, as the local runner does. On a cluster every node
    needs the same userchoice (and JAX) installed as this process.
    """
    ray = _import_ray()  # fail before the sweep starts, not in the middle of it
    options = {"num_cpus": 1, "runtime_env": {"env_vars": WORKER_ENV}, **(task_options or {})}

    def run(plan, jobs: list[ChunkJob], chunk_sizes: dict[int, int]):
        if not jobs:
            return
        started_here = False
        if not ray.is_initialized():
            with warnings.catch_warnings():  # Ray forks and execs its processes: harmless
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
                if address is not None:
                    ray.init(address=address)
                else:
                    ray.init(num_cpus=num_cpus, include_dashboard=False,
                             ignore_reinit_error=True, log_to_driver=False)
            started_here = True
        try:
            yield from _run_tasks(ray, options, plan, jobs)
        finally:
            if started_here:
                ray.shutdown()

    return run


def _run_tasks(ray, options: dict[str, Any], plan, jobs: list[ChunkJob]):
    task = ray.remote(_chunk_task).options(**options)
    market = ray.put(plan.market)
    init = ray.put(plan.init_params)
    specs = {g.index: ray.put(g.spec) for g in plan.groups}
    pending: dict[Any, tuple[ChunkJob, float]] = {}
    for job in jobs:
        group = plan.groups[job.group]
        ref = task.remote(market, specs[job.group], job.knobs(group), init)
        pending[ref] = (job, time.perf_counter())
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job, submitted = pending.pop(ref)
                try:
                    output, error, seconds = ray.get(ref)
                except Exception as lost:  # the worker died, or the task could not run
                    output, seconds = None, time.perf_counter() - submitted
                    error = f"{type(lost).__name__}: {lost}".splitlines()[0]
                yield job, output, error, seconds
    finally:
        for ref in pending:  # the consumer stopped early (or was interrupted)
            ray.cancel(ref, force=True)
