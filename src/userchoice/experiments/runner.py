"""Running a plan: fixed chunks per group, an executor to run them, results stored per chunk.

Chunk boundaries depend only on the plan (and the chunk size recorded in the manifest), never
on what has finished, so a resumed sweep recomputes exactly the chunks an uninterrupted one
would and its tables are identical. A chunk that raises is recorded as failed with its reason
and the others go on; a run whose parameters stop being finite is recorded as diverged.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from userchoice import metrics as metric_table
from userchoice.engine import EngineSpec, Knobs, driver, simulate
from userchoice.experiments.config import ExperimentConfig
from userchoice.experiments.plan import Group, Plan, code_version, make_plan
from userchoice.experiments.store import ResultsDir, git_sha, versions
from userchoice.families import Params


@dataclass(frozen=True)
class ChunkJob:
    key: str
    group: int
    indices: np.ndarray  # positions of the chunk's runs within the group


def chunk_jobs(group: Group, chunk_size: int) -> list[ChunkJob]:
    jobs = []
    for lo, hi in driver.chunk_bounds(len(group.run_ids), chunk_size):
        indices = np.arange(lo, hi)
        digest = hashlib.sha256("".join(group.run_ids[i] for i in indices).encode())
        jobs.append(ChunkJob(f"g{group.index}-{digest.hexdigest()[:12]}", group.index, indices))
    return jobs


def subset(knobs: Knobs, indices: np.ndarray) -> Knobs:
    return knobs.take(indices)


def simulate_chunk(market, spec: EngineSpec, knobs: Knobs, init_params: Params | None
                   ) -> dict[str, Any]:
    """One chunk as one compiled call in this thread (what every executor runs); plain
    arrays out."""
    result = simulate(market, spec, knobs, init_params=init_params, chunk_size=knobs.n_runs,
                      workers=1)
    return {"metrics": result.metrics, "diverged_step": result.diverged_step,
            "eval_steps": result.eval_steps, "timings": result.timings}


def chunk_frames(group: Group, job: ChunkJob, output: dict[str, Any] | None,
                 error: str | None, seconds: float) -> tuple[pd.DataFrame, ...]:
    """Tidy tables of one finished (or failed) chunk."""
    rows = [dict(group.rows[i]) for i in job.indices]
    runs = pd.DataFrame(rows)
    runs["chunk"] = job.key
    runs["seconds"] = seconds / max(1, len(rows))
    if output is None:
        runs["status"], runs["reason"], runs["diverged_step"] = "failed", error, -1
        return runs, pd.DataFrame(), pd.DataFrame()
    diverged = np.asarray(output["diverged_step"])
    runs["diverged_step"] = diverged
    runs["status"] = np.where(diverged >= 0, "diverged", "done")
    runs["reason"] = [f"parameters not finite from step {d}" if d >= 0 else "" for d in diverged]

    metrics, steps = output["metrics"], np.asarray(output["eval_steps"])
    n_runs, n_evals = len(rows), len(steps)
    n = group.spec.n_learners
    ids = np.asarray([r["run_id"] for r in rows])
    learners = pd.DataFrame({
        "run_id": np.repeat(ids, n_evals * n),
        "step": np.tile(np.repeat(steps, n), n_runs),
        "learner": np.tile(np.arange(n), n_runs * n_evals),
    })
    market = pd.DataFrame({"run_id": np.repeat(ids, n_evals), "step": np.tile(steps, n_runs)})
    probers = [] if group.spec.probing is None else list(group.spec.probing.probers)
    # Every metric the engine returned goes into the table its kind names (metric table).
    for name, values in metrics.items():
        kind = metric_table.get_metric(name).kind
        values = np.asarray(values)
        if kind == "learner":
            learners[name] = values.reshape(-1)
        elif kind == "prober":  # NaN for the learners that do not probe
            full = np.full((n_runs, n_evals, n), np.nan)
            full[:, :, probers] = values
            learners[name] = full.reshape(-1)
        else:
            market[name] = values.reshape(-1)
    prober = np.zeros(n, bool)
    prober[probers] = True
    learners["is_prober"] = np.tile(prober, n_runs * n_evals)
    return runs, learners, market


Runner = Callable[[Plan, list[ChunkJob], dict[int, int]], Iterator[tuple[ChunkJob, Any, Any,
                                                                        float]]]


def local_runner(workers: int | None = None) -> Runner:
    """Chunks on a thread pool in this process (XLA releases the GIL while it computes)."""

    def run(plan: Plan, jobs: list[ChunkJob], chunk_sizes: dict[int, int]):
        def one(job: ChunkJob):
            group = plan.groups[job.group]
            started = time.perf_counter()
            try:
                out = simulate_chunk(plan.market, group.spec, subset(group.knobs, job.indices),
                                     plan.init_params)
                return job, out, None, time.perf_counter() - started
            except Exception as error:  # recorded per chunk; the sweep goes on
                return job, None, f"{type(error).__name__}: {error}", \
                    time.perf_counter() - started

        # The package's one pool; stopping early (Ctrl-C, an error) cancels queued chunks.
        for _job, result, _error in driver.run_pool(one, jobs, workers):
            yield result

    return run


def config_hash(config: ExperimentConfig) -> str:
    """Identity of a sweep: its config and the package version (run ids include both)."""
    text = config.model_dump_json() + code_version()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SweepSummary:
    out: Path
    total: int
    skipped: int
    done: int
    diverged: int
    failed: int
    seconds: float


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    *,
    runner: Runner | None = None,
    data_dir: str | None = None,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    plan: Plan | None = None,
) -> SweepSummary:
    """Run (or resume) every run of ``config`` into results directory ``out``."""
    started = time.perf_counter()
    store = ResultsDir(Path(out))
    digest = config_hash(config)
    previous = store.read_manifest() if store.manifest_path.is_file() else None
    if previous is not None and previous.get("config_hash") != digest:
        raise ValueError(f"{store.path} holds results of another config or package version "
                         f"(hash {previous.get('config_hash')}, this one {digest}); choose "
                         f"another output directory")
    plan = plan or make_plan(config, data_dir)
    if previous is not None:
        sizes = {int(k): v for k, v in previous["chunk_sizes"].items()}
    else:
        sizes = {g.index: chunk_size or driver.default_chunk_size(g.spec, plan.market,
                                                                  len(g.run_ids))
                 for g in plan.groups}
    manifest = {
        "name": config.name, "config": config.model_dump(mode="json"), "config_hash": digest,
        "versions": versions(), "git_sha": git_sha(),
        "data_provenance": plan.market.dataset.provenance,
        "market_provenance": plan.market.provenance, "baseline": plan.baseline,
        "n_learners": plan.market.n_learners, "n_runs": plan.n_runs,
        "groups": [{"index": g.index, "static": g.static, "runs": len(g.run_ids),
                    "eval_steps": g.spec.eval_steps.tolist()} for g in plan.groups],
        "chunk_sizes": sizes, "timings": {**(previous or {}).get("timings", {}), **plan.timings},
        "status": "running",
    }
    store.write_manifest(manifest)

    store.remove_temporary()  # left by a sweep killed mid-write
    jobs = [job for g in plan.groups for job in chunk_jobs(g, sizes[g.index])]
    finished = store.finished_chunks() - store.failed_chunks()  # failed chunks are retried
    todo = [job for job in jobs if job.key not in finished]
    skipped = sum(len(j.indices) for j in jobs if j.key in finished)
    done_runs = skipped
    counts = {"done": 0, "diverged": 0, "failed": 0}
    if progress is not None:
        progress(done_runs, plan.n_runs)
    for job, output, error, seconds in (runner or local_runner())(plan, todo, sizes):
        runs, learners, market = chunk_frames(plan.groups[job.group], job, output, error, seconds)
        store.write_chunk(job.key, runs, learners, market)
        for status in runs["status"]:
            counts[status] += 1
        done_runs += len(job.indices)
        if progress is not None:
            progress(done_runs, plan.n_runs)
    elapsed = time.perf_counter() - started
    manifest["timings"]["sweep_seconds"] = elapsed
    manifest["status"] = "finished"
    store.write_manifest(manifest)
    return SweepSummary(store.path, plan.n_runs, skipped, counts["done"], counts["diverged"],
                        counts["failed"], elapsed)


def status(out: str | Path) -> dict[str, Any]:
    """Done / diverged / failed / pending counts of a results directory."""
    store = ResultsDir(Path(out))
    manifest = store.read_manifest()
    runs = store.table("runs")
    counts = runs["status"].value_counts().to_dict() if len(runs) else {}
    total = int(manifest["n_runs"])
    finished = int(sum(counts.values()))
    return {"name": manifest["name"], "total": total, "pending": total - finished,
            **{k: int(counts.get(k, 0)) for k in ("done", "diverged", "failed")}}


def iter_failures(out: str | Path) -> Iterable[dict[str, Any]]:
    runs = ResultsDir(Path(out)).table("runs")
    if len(runs):
        yield from runs[runs["status"] != "done"].to_dict("records")
