"""Running a plan: fixed chunks per group, an executor to run them, results stored per chunk.

Chunk boundaries depend only on the plan (and the chunk size recorded in the manifest), never
on what has finished, so a resumed sweep recomputes exactly the chunks an uninterrupted one
would and its tables are identical. Which runs are finished is read from the committed
chunks' run ids, so a sweep with another chunk size (a lost manifest) computes only the
missing runs. A chunk that raises is recorded as failed with its reason and the others go on;
a run whose parameters stop being finite is recorded as diverged.

A sweep holds the directory's lock throughout, and refuses a directory of another sweep: the
manifest records the config hash (canonical JSON of the config plus the package version) and
the sha256 of every input file, and a resume with another config or other data says what
differs.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from userchoice import metrics as metric_table
from userchoice.engine import EngineSpec, Knobs, driver, simulate
from userchoice.engine.simulate import compile_chunk
from userchoice.experiments.config import ExperimentConfig, config_from_dict
from userchoice.experiments.plan import (
    COMPILE_SECONDS,
    Group,
    Phase,
    Plan,
    canonical_json,
    code_version,
    estimate_chunk_seconds,
    fit_plan,
    plan_without_fits,
)
from userchoice.experiments.reuse import Reusable, find_reusable, reused_run_ids, write_reused
from userchoice.experiments.store import (
    RECOVER,
    ResultsDir,
    ResultsError,
    Scan,
    git_sha,
    versions,
)
from userchoice.families import Params


@dataclass(frozen=True)
class ChunkJob:
    key: str
    group: int
    indices: np.ndarray  # positions of the chunk's runs within the group
    size: int  # runs it is computed as: the group's chunk length, padded with its last run

    def knobs(self, group: Group) -> Knobs:
        """The knobs the chunk runs: its runs', then its last run's again up to ``size``, so
        every chunk of a group (the last, a resumed one) runs the group's one compiled
        program; :func:`trim_output` drops the copies' outputs."""
        pad = np.full(max(0, self.size - len(self.indices)), self.indices[-1])
        return group.knobs.take(np.concatenate([self.indices, pad]).astype(int))


def trim_output(job: ChunkJob, output: dict[str, Any]) -> dict[str, Any]:
    """A chunk's output without the padding runs; applied where every runner's output is
    stored, so a runner may return it padded or not. Every per-run array has the run axis
    first; ``eval_steps`` and ``timings`` are the chunk's."""
    n = len(job.indices)
    return {name: value if name in ("eval_steps", "timings") else
            jax.tree_util.tree_map(lambda a: np.asarray(a)[:n], value)
            for name, value in output.items()}


def chunk_jobs(group: Group, chunk_size: int, exclude: AbstractSet[str] = frozenset()
               ) -> list[ChunkJob]:
    """A group's fixed chunks: its runs in order, ``chunk_size`` at a time. ``exclude``: runs
    left out of the chunking (copied from another sweep, ``reuse``), so that the others pack
    into full chunks rather than padded ones."""
    jobs = []
    positions = np.asarray([i for i, rid in enumerate(group.run_ids) if rid not in exclude],
                           dtype=int)
    size = min(chunk_size, len(positions))
    for lo, hi in driver.chunk_bounds(len(positions), chunk_size):
        indices = positions[lo:hi]
        digest = hashlib.sha256("".join(group.run_ids[i] for i in indices).encode())
        jobs.append(ChunkJob(f"g{group.index}-{digest.hexdigest()[:12]}", group.index, indices,
                             size))
    return jobs


# The local runner's per-chunk progress callback, for the chunk this thread runs: set around
# the call, so ``simulate_chunk`` keeps its four-argument contract (executors and wrappers of
# it call it so) and still reports.
_CHUNK_PROGRESS = threading.local()


def simulate_chunk(market, spec: EngineSpec, knobs: Knobs, init_params: Params | None,
                   step_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """One chunk as one compiled call in this thread (what every executor runs); plain
    arrays out. ``step_progress(done, total)``: the chunk's run-steps, at evaluation points
    (``simulate``'s progress hook); default: the local runner's for this thread, if any."""
    if spec.dynamics == "population":
        from userchoice.experiments import population

        return population.simulate_chunk(market, spec, knobs)
    if spec.dynamics == "equilibrium":
        from userchoice.experiments import equilibrium

        return equilibrium.simulate_chunk(market, spec, knobs)
    step_progress = step_progress or getattr(_CHUNK_PROGRESS, "report", None)
    result = simulate(market, spec, knobs, init_params=init_params, chunk_size=knobs.n_runs,
                      workers=1, step_progress=step_progress)
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


def chunk_tables(group: Group, job: ChunkJob, output: dict[str, Any] | None,
                 error: str | None, seconds: float) -> dict[str, pd.DataFrame]:
    """Every table of one finished (or failed) chunk, by table name (``store.ALL_TABLES``):
    the streaming engine's three, or the population dynamics' six."""
    if group.spec.dynamics == "population":
        from userchoice.experiments import population

        return population.chunk_frames(group, job, output, error, seconds)
    if group.spec.dynamics == "equilibrium":
        from userchoice.experiments import equilibrium

        return equilibrium.chunk_frames(group, job, output, error, seconds)
    runs, learners, market = chunk_frames(group, job, output, error, seconds)
    return {"runs": runs, "learners": learners, "market": market}


def default_chunk_size(plan: Plan, group: Group, exclude: AbstractSet[str] = frozenset()
                       ) -> int:
    """Runs per chunk of a group, by its dynamics, for the group's runs other than
    ``exclude`` (those copied from another sweep are not chunked)."""
    n_runs = max(1, sum(rid not in exclude for rid in group.run_ids))
    if group.spec.dynamics == "population":
        from userchoice.experiments import population

        return population.chunk_size(group.spec, plan.market, n_runs)
    if group.spec.dynamics == "equilibrium":
        from userchoice.experiments import equilibrium

        return equilibrium.chunk_size(group.spec, n_runs)
    return driver.default_chunk_size(group.spec, plan.market, n_runs)


# A runner: ``runner(plan, jobs, chunk_sizes)`` yields ``(job, output, error, seconds)`` per
# chunk as it finishes. One with ``in_process = True`` runs the chunks in this process (so
# ``run_experiment`` compiles their programs first, as a phase of its own) and also takes
# ``on_steps=callback(job, steps_done)``, called from its threads as a chunk reaches each
# evaluation point.
Runner = Callable[[Plan, list[ChunkJob], dict[int, int]], Iterator[tuple[ChunkJob, Any, Any,
                                                                        float]]]


def local_runner(workers: int | None = None) -> Runner:
    """Chunks on a thread pool in this process (XLA releases the GIL while it computes)."""

    def run(plan: Plan, jobs: list[ChunkJob], chunk_sizes: dict[int, int],
            on_steps: Callable[[ChunkJob, int], None] | None = None):
        def one(job: ChunkJob):
            group = plan.groups[job.group]
            started = time.perf_counter()
            _CHUNK_PROGRESS.report = None if on_steps is None else (
                lambda done, _total: on_steps(job, done))
            try:
                out = simulate_chunk(plan.market, group.spec, job.knobs(group),
                                     plan.init_params)
                return job, out, None, time.perf_counter() - started
            except Exception as error:  # recorded per chunk; the sweep goes on
                return job, None, f"{type(error).__name__}: {error}", \
                    time.perf_counter() - started
            finally:
                _CHUNK_PROGRESS.report = None

        # The package's one pool; stopping early (Ctrl-C, an error) cancels queued chunks.
        for _job, result, _error in driver.run_pool(one, jobs, workers):
            yield result

    run.in_process = True  # type: ignore[attr-defined]
    run.workers = workers  # type: ignore[attr-defined]  # compile_programs uses as many
    return run


def compile_programs(plan: Plan, jobs: list[ChunkJob], workers: int | None = None) -> float:
    """Compile the program of every distinct chunk shape among ``jobs`` (one per group and
    chunk length) before any runs, so compilation is a phase of its own; its seconds. Distinct
    programs compile side by side on the package's pool (XLA compiles without the GIL). An
    error here is left for the chunk to raise and record."""
    started = time.perf_counter()

    def compile_one(job: ChunkJob) -> None:
        group = plan.groups[job.group]
        if group.spec.dynamics == "population":
            from userchoice.experiments import population

            population.compile_chunk(plan.market, group.spec, job.knobs(group))
        elif group.spec.dynamics == "equilibrium":
            from userchoice.experiments import equilibrium

            equilibrium.compile_chunk(plan.market, group.spec, job.knobs(group))
        else:
            compile_chunk(plan.market, group.spec, job.knobs(group), plan.init_params)

    distinct = list({(job.group, job.size): job for job in jobs}.values())
    for _job, _result, _error in driver.run_pool(compile_one, distinct, workers):
        pass  # an error is recorded per chunk when the chunk runs
    return time.perf_counter() - started


class _StepCounter:
    """Run-steps of a sweep: finished runs, plus the chunks in flight (from the engine's
    progress hook) or committed; monotone, thread-safe, reported to ``report(done, total)``."""

    def __init__(self, plan: Plan, todo: list[ChunkJob],
                 report: Callable[[int, int], None] | None) -> None:
        self.steps = {g.index: g.spec.steps for g in plan.groups}
        self.total = sum(len(g.run_ids) * g.spec.steps for g in plan.groups)
        self.base = self.total - sum(len(j.indices) * self.steps[j.group] for j in todo)
        self.chunks: dict[str, int] = {}
        self.report = report
        self.lock = threading.Lock()
        self.emit()

    def emit(self) -> None:  # under the lock, so the counts reported never go down
        if self.report is not None:
            with self.lock:
                self.report(self.base + sum(self.chunks.values()), self.total)

    def reached(self, job: ChunkJob, done: int) -> None:
        with self.lock:
            self.chunks[job.key] = max(self.chunks.get(job.key, 0), done)
        self.emit()

    def finished(self, job: ChunkJob) -> None:
        self.reached(job, len(job.indices) * self.steps[job.group])


def _reused_counts(previous: dict[str, int] | None, reusable: list[Reusable]
                   ) -> dict[str, int]:
    """Runs copied into a directory per source directory, over every sweep into it."""
    counts = dict(previous or {})
    for item in reusable:
        counts[str(item.source)] = counts.get(str(item.source), 0) + len(item.run_ids)
    return counts


def _provenance(plan: Plan) -> dict[str, Any]:
    """What the manifest records of the market: the data's and the preferences' provenance
    (streaming), or the sub-populations (population dynamics); the learner count (the entry
    cap with market entry)."""
    if plan.config.dynamics == "equilibrium":
        learners = max(g.spec.n_learners for g in plan.groups)
        return {"data_provenance": plan.market.provenance, "market_provenance": {},
                "n_learners": learners}
    if plan.config.dynamics == "population":
        from userchoice.experiments import population

        learners = max(g.spec.n_learners for g in plan.groups)
        groups = plan.market.provenance or {}
        data = groups.get("dataset")  # the dataset the groups were built from, if any
        return {"data_provenance": data if isinstance(data, dict) else {},
                "market_provenance": {"groups": population.describe_groups(plan.market)},
                "n_learners": learners}
    return {"data_provenance": plan.market.dataset.provenance,
            "market_provenance": plan.market.provenance, "n_learners": plan.market.n_learners}


PROSE_FIELDS = ("description", "reported")  # config fields no run depends on
# Config fields added after results were first written, with the value that means "as before":
# left out of the config hash at that value, so earlier sweeps resume (their manifests lack them).
LATER_DEFAULTS: dict[str, Any] = {"dynamics": "msgd", "population": None, "equilibrium": None,
                                  "probing.start": "start", "engine.arrival": "uniform",
                                  "engine.choice_loss": None, "engine.loss_temperature": 1.0,
                                  "equilibrium.features": None}


def _without_later_defaults(numbers: dict[str, Any]) -> dict[str, Any]:
    for path, default in LATER_DEFAULTS.items():
        *parents, leaf = path.split(".")
        node = numbers
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] == default:
            del node[leaf]
    return numbers


def config_hash(config: ExperimentConfig, version: str | None = None) -> str:
    """Identity of a sweep's config and package version (run ids include both): canonical, so
    independent of key order and of key types (``0:`` and ``"0":`` are one key, as after the
    manifest's JSON round trip). ``description`` and ``reported`` (words and the paper's
    numbers) change no run, so editing them does not make finished sweeps run again."""
    numbers = _without_later_defaults(config.model_dump(mode="json", exclude=set(PROSE_FIELDS)))
    text = canonical_json(numbers) + (version or code_version())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sweep_id(digest: str, inputs: list[dict[str, Any]]) -> str:
    """The whole sweep's identity: config hash plus the content of every input file."""
    text = canonical_json({"config_hash": digest, "inputs": [r["sha256"] for r in inputs]})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SweepMismatch(ResultsError):
    """The results directory holds another sweep (config, package version or input data)."""


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _config_differences(old: Any, new: dict[str, Any], limit: int = 5) -> list[str]:
    a = _flat(json.loads(canonical_json(old)))
    b = _flat(json.loads(canonical_json(new)))
    missing = object()
    lines = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, missing), b.get(key, missing)
        if left != right:
            shown = ["(absent)" if v is missing else json.dumps(v) for v in (left, right)]
            lines.append(f"{key}: {shown[0]} there, {shown[1]} here")
    return lines[:limit] + ([f"… {len(lines) - limit} more"] if len(lines) > limit else [])


def check_same_config(store: ResultsDir, previous: dict[str, Any],
                      config: ExperimentConfig) -> None:
    """Refuse (``SweepMismatch``) a directory whose manifest records another config or package
    version, saying what differs."""
    digest = config_hash(config)
    recorded = previous.get("config_hash")
    if "identity" not in previous:  # written before the canonical hash: recompute it
        try:
            version = (previous.get("versions") or {}).get("userchoice") or ""
            recorded = config_hash(config_from_dict(previous["config"]), str(version))
        except Exception:  # a stored config this version cannot read
            recorded = previous.get("config_hash")
    if recorded == digest:
        return
    diffs = _config_differences(previous["config"], config.model_dump(mode="json"))
    old_version = (previous.get("versions") or {}).get("userchoice")
    if old_version is not None and str(old_version) != code_version():
        diffs.insert(0, f"package version: {old_version} there, {code_version()} here")
    detail = "; ".join(diffs) if diffs else "the config hash"
    raise SweepMismatch(f"{store.path} holds results of another config or package version "
                        f"(hash {recorded}, this one {digest}; differs in {detail}); choose "
                        f"another output directory")


def check_same_inputs(store: ResultsDir, previous: dict[str, Any],
                      inputs: list[dict[str, Any]]) -> None:
    """Refuse (``SweepMismatch``) to add results computed on other input files than those the
    manifest records (naming each file, its old and new sha256)."""
    if "identity" not in previous:
        if inputs:  # run ids now include the data's content: nothing there can be matched
            raise SweepMismatch(
                f"{store.path} was written by an older userchoice that did not record the "
                f"content of its input files, so it cannot be checked against the data read "
                f"now ({inputs[0]['path']}, …); {RECOVER}")
        return
    old = previous.get("inputs") or []
    if [r["sha256"] for r in old] == [r["sha256"] for r in inputs]:
        return
    changes = []
    old_by_path = {r["path"]: r for r in old}
    new_by_path = {r["path"]: r for r in inputs}
    for path in dict.fromkeys([*old_by_path, *new_by_path]):
        before, now = old_by_path.get(path), new_by_path.get(path)
        if before is None:
            changes.append(f"{path} is read now but was not (sha256 {now['sha256']})")
        elif now is None:
            changes.append(f"{path} was read (sha256 {before['sha256']}) but is not now")
        elif before["sha256"] != now["sha256"]:
            changes.append(f"{path} changed: sha256 {before['sha256']} when the results were "
                           f"computed, {now['sha256']} now")
    if not changes:
        changes.append("the input files are read in another order")
    raise SweepMismatch(
        f"{store.path} holds results computed on other input data: " + "; ".join(changes) +
        f". Results of different data are not mixed: restore the original data, or {RECOVER}")


@dataclass
class SweepSummary:
    out: Path
    total: int
    skipped: int
    done: int
    diverged: int
    failed: int
    seconds: float
    reused: int = 0  # runs copied from the ``reuse`` directories, not computed


def _chunking(plan: Plan, out: Path, finished: set[str], scan: Scan | None,
              previous: dict[str, Any] | None, chunk_size: int | None,
              reuse: Sequence[str | Path]
              ) -> tuple[list[Reusable], set[str], set[str], dict[int, int]]:
    """What a sweep into ``out`` copies and how it chunks the rest (``run_experiment``, and
    ``dry_run`` to say so): the runs of ``reuse`` to copy, their ids, the runs left out of
    the chunking (copied now or by an earlier sweep, ``scan``'s), and the chunk size per group
    (as the manifest ``previous`` records, else ``chunk_size`` or the default for the runs
    left)."""
    reusable = find_reusable(plan, reuse, plan.run_ids - finished, out)
    copied = {rid for item in reusable for rid in item.run_ids}
    exclude = (set() if scan is None else reused_run_ids(scan)) | copied
    recorded = {int(k): int(v) for k, v in ((previous or {}).get("chunk_sizes") or {}).items()}
    sizes = {g.index: recorded.get(g.index) or chunk_size
             or default_chunk_size(plan, g, exclude) for g in plan.groups}
    return reusable, copied, exclude, sizes


def pending_jobs(plan: Plan, sizes: dict[int, int], finished: set[str],
                 exclude: AbstractSet[str] = frozenset()) -> tuple[list[ChunkJob], int]:
    """The chunks to compute and the number of runs already finished. Chunks are the plan's
    fixed chunks (without the ``exclude`` runs, see :func:`chunk_jobs`); one whose runs are
    all finished is skipped, one with some finished (after a change of chunk size) computes
    only the others: a run is never computed twice."""
    todo, skipped = [], 0
    for group in plan.groups:
        skipped += sum(rid in exclude and rid in finished for rid in group.run_ids)
        for job in chunk_jobs(group, sizes[group.index], exclude):
            missing = np.asarray([i for i in job.indices if group.run_ids[i] not in finished],
                                 dtype=int)
            skipped += len(job.indices) - len(missing)
            if len(missing) == len(job.indices):
                todo.append(job)
            elif len(missing):
                digest = hashlib.sha256("".join(group.run_ids[i] for i in missing).encode())
                todo.append(ChunkJob(f"g{group.index}-{digest.hexdigest()[:12]}", group.index,
                                     missing, job.size))
    return todo, skipped


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    *,
    runner: Runner | None = None,
    data_dir: str | None = None,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    plan: Plan | None = None,
    warn: Callable[[str], None] | None = None,
    phase: Phase | None = None,
    step_progress: Callable[[int, int], None] | None = None,
    reuse: Sequence[str | Path] = (),
) -> SweepSummary:
    """Run (or resume) every run of ``config`` into results directory ``out``.

    Progress: ``phase(label)`` as each phase starts (``plan.PHASES``: loading data,
    preferences, ERM init, baseline, compiling, simulating; those that do not apply are
    skipped); ``progress(done, total)`` as chunks are committed (runs, finished ones
    included); ``step_progress(done, total)`` run-steps (runs × T, finished runs included),
    at every evaluation point of the chunks in flight with an in-process runner, else as
    chunks finish. Both counts are monotone and end at their total; ``step_progress`` may be
    called from worker threads.

    The directory is locked for the whole sweep (``ResultsLocked`` if another sweep writes
    into it); one holding another config, package version or input data is refused
    (``SweepMismatch``, naming what differs); damaged chunks are computed again, as are failed
    ones; runs already committed are never computed twice. ``warn`` receives warnings (a stale
    lock taken over); default: ``warnings.warn``.

    ``reuse``: other results directories; the runs of this sweep they hold finished (the same
    run id) are copied in rather than computed (``experiments.reuse``), counted in the
    summary's ``reused`` and the manifest's ``reused`` (runs per source directory)."""
    started = time.perf_counter()
    store = ResultsDir(Path(out))
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    with store.lock(warn):
        digest = config_hash(config)
        previous = store.read_manifest() if store.manifest_path.exists() else None
        if previous is not None:
            check_same_config(store, previous, config)
        fitted = plan is not None
        plan = plan or plan_without_fits(config, data_dir, phase)
        if previous is not None:
            check_same_inputs(store, previous, plan.inputs)
        scan = store.scan()
        foreign = scan.run_ids() - plan.run_ids
        if foreign:
            raise SweepMismatch(
                f"{store.path} holds {len(foreign)} run(s) that are not runs of this sweep "
                f"(another config, package version or input data wrote them, e.g. run "
                f"{sorted(foreign)[0]}); results are not mixed: choose another output "
                f"directory")
        obsolete = set(scan.damaged) | scan.failed()  # computed again below
        for key in obsolete:
            scan.committed.pop(key, None)
        finished = scan.run_ids()
        reusable, copied, exclude, sizes = _chunking(plan, store.path, finished, scan,
                                                     previous, chunk_size, reuse)
        todo, skipped = pending_jobs(plan, sizes, finished | copied, exclude)
        if not fitted:  # the initial parameters and the baseline only when needed
            if todo or previous is None or "baseline" not in previous:
                fit_plan(plan, phase)
            else:
                plan.baseline = previous["baseline"]
        manifest = {
            "name": config.name, "config": config.model_dump(mode="json"),
            "config_hash": digest, "identity": {
                "config_hash": digest, "code_version": code_version(),
                "inputs": [r["sha256"] for r in plan.inputs],
                "sweep_id": sweep_id(digest, plan.inputs)},
            "inputs": plan.inputs,
            "versions": versions(), "git_sha": git_sha(),
            **_provenance(plan), "baseline": plan.baseline, "n_runs": plan.n_runs,
            "groups": [{"index": g.index, "static": g.static, "runs": len(g.run_ids),
                        "eval_steps": g.spec.eval_steps.tolist()} for g in plan.groups],
            "chunk_sizes": sizes,
            "reused": _reused_counts((previous or {}).get("reused"), reusable),
            "timings": {**(previous or {}).get("timings", {}), **plan.timings},
            "status": "running",
        }
        store.write_manifest(manifest)

        store.remove_temporary()  # left by a sweep killed mid-write
        for key in obsolete:
            store.remove_chunk(key)
        store.remove_orphans(set(scan.committed))
        for item in reusable:
            write_reused(store, plan, item)
        done_runs = skipped
        counts = {"done": 0, "diverged": 0, "failed": 0}
        if progress is not None:
            progress(done_runs, plan.n_runs)
        runner = runner or local_runner()
        in_process = bool(getattr(runner, "in_process", False))
        steps = _StepCounter(plan, todo, step_progress)
        if todo and in_process:
            if phase is not None:
                phase("compiling")
            manifest["timings"]["compile_seconds"] = compile_programs(
                plan, todo, getattr(runner, "workers", None))
        if todo and phase is not None:
            phase("simulating")
        results = (runner(plan, todo, sizes, on_steps=steps.reached) if in_process
                   else runner(plan, todo, sizes))
        try:
            for job, output, error, seconds in results:
                output = None if output is None else trim_output(job, output)
                tables = chunk_tables(plan.groups[job.group], job, output, error, seconds)
                runs = tables.pop("runs")
                store.write_chunk(job.key, runs, tables.pop("learners"), tables.pop("market"),
                                  extra=tables)
                for status_ in runs["status"]:
                    counts[status_] += 1
                done_runs += len(job.indices)
                steps.finished(job)
                if progress is not None:
                    progress(done_runs, plan.n_runs)
        finally:
            close = getattr(results, "close", None)
            if close is not None:  # stop the executor's pending chunks (Ctrl-C, an error)
                close()
        elapsed = time.perf_counter() - started
        manifest["timings"]["sweep_seconds"] = elapsed
        manifest["status"] = "finished"
        store.write_manifest(manifest)
    return SweepSummary(store.path, plan.n_runs, skipped - len(copied), counts["done"],
                        counts["diverged"], counts["failed"], elapsed, len(copied))


@dataclass
class DryRun:
    """What ``run_experiment`` would do, from the plan (market and run ids, no fits, no
    compilation, nothing written): counts from the planner, memory from
    ``engine.spec.bytes_per_run``, time from the plan's time model (``plan.STEP_SECONDS`` …,
    calibrated on 2 CPU cores)."""

    name: str
    out: Path
    runs: int
    finished: int                 # runs already committed in ``out``
    groups: list[dict[str, Any]]  # per group: index, static, runs, pending, steps, evals,
    #                               chunk_size, chunks, programs, bytes_per_run, seconds
    workers: int
    setup_seconds: dict[str, float]  # measured while planning: phase → seconds
    note: str = ""                   # e.g. ``out`` holds another sweep
    reusable: int = 0                # runs the ``reuse`` directories hold, copied not computed

    @property
    def pending(self) -> int:
        return self.runs - self.finished - self.reusable

    @property
    def chunks(self) -> int:
        """Chunks left to compute."""
        return sum(g["chunks"] for g in self.groups)

    @property
    def compilations(self) -> int:
        """Distinct programs (engine shapes × chunk lengths) left to compile."""
        return sum(g["programs"] for g in self.groups)

    @property
    def peak_bytes(self) -> int:
        """Working memory of the chunks that run at once (the largest group's)."""
        return max((min(self.workers, g["chunks"]) * g["chunk_size"] * g["bytes_per_run"]
                    for g in self.groups if g["chunks"]), default=0)

    @property
    def compile_seconds(self) -> float:
        return self.compilations * COMPILE_SECONDS

    @property
    def simulate_seconds(self) -> float:
        return sum(g["seconds"] for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        keys = ("pending", "chunks", "compilations", "peak_bytes", "compile_seconds",
                "simulate_seconds")
        return {"name": self.name, "out": str(self.out), "runs": self.runs,
                "finished": self.finished, "reusable": self.reusable,
                "workers": self.workers, "groups": self.groups,
                "setup_seconds": self.setup_seconds, "note": self.note,
                **{k: getattr(self, k) for k in keys}}


def dry_run(config: ExperimentConfig, out: str | Path, *, data_dir: str | None = None,
            chunk_size: int | None = None, workers: int | None = None,
            phase: Phase | None = None, reuse: Sequence[str | Path] = ()) -> DryRun:
    """What a sweep of ``config`` into ``out`` would compute (see :class:`DryRun`): the
    market is built (to know its shapes and the run ids), nothing is fitted, compiled or
    written. Finished runs are read from ``out`` when it holds this sweep; runs the ``reuse``
    directories hold (as ``run_experiment``'s) are counted as reusable, not pending."""
    from userchoice.engine.spec import bytes_per_run

    timings: dict[str, float] = {}
    last: list[Any] = []

    def timed(label: str) -> None:
        now = time.perf_counter()
        if last:
            timings[last[0]] = now - last[1]
        last[:] = [label, now]
        if phase is not None:
            phase(label)

    plan = plan_without_fits(config, data_dir, timed)
    timed("")  # closes the last phase
    timings.pop("", None)
    store = ResultsDir(Path(out))
    finished: set[str] = set()
    scan = previous = None  # of the sweep in ``out``, if it holds this one
    note = ""
    if store.manifest_path.is_file():
        recorded = store.read_manifest()
        if recorded.get("config_hash") == config_hash(config):
            previous, scan = recorded, store.scan()
            for key in set(scan.damaged) | scan.failed():  # computed again, as run_experiment
                scan.committed.pop(key, None)
            finished = scan.run_ids() & plan.run_ids
        else:
            note = (f"{store.path} holds another sweep: a run into it would be refused "
                    f"(choose another --out)")
    _, copied, exclude, sizes = _chunking(plan, store.path, finished, scan, previous,
                                          chunk_size, reuse)
    todo, _ = pending_jobs(plan, sizes, finished | copied, exclude)
    workers = workers or driver.default_workers()
    groups = []
    for g in plan.groups:
        jobs = [j for j in todo if j.group == g.index]
        lengths = sorted({j.size for j in jobs}, reverse=True)
        waves = -(-len(jobs) // workers)
        population = g.spec.dynamics != "msgd"
        if population:  # no time model yet (see bench_population.py, bench_equilibrium.py)
            seconds = 0.0
        else:
            seconds = waves * estimate_chunk_seconds(g.spec, plan.market.dataset, lengths[0]) \
                if jobs else 0.0
        groups.append({"index": g.index, "static": g.static, "runs": len(g.run_ids),
                       "pending": int(sum(len(j.indices) for j in jobs)),
                       "steps": g.spec.steps, "evals": len(g.spec.eval_steps),
                       "chunk_size": sizes[g.index], "chunks": len(jobs),
                       "programs": len(lengths),
                       "bytes_per_run": (
                           0 if g.spec.dynamics == "equilibrium"
                           else _population_bytes(g.spec, plan.market) if population
                           else bytes_per_run(g.spec, plan.market)),
                       "seconds": seconds})
    return DryRun(config.name, Path(out), plan.n_runs, len(finished), groups, workers, timings,
                  note, len(copied))


def _population_bytes(run: Any, groups: Any) -> int:
    """Working memory of one population run: parameters, allocations, risks and the recorded
    metrics (a rough upper bound)."""
    n, g, d = run.n_learners, groups.n_groups, groups.dim
    evals = len(run.eval_steps)
    return int(8 * (6 * n * (g + d * d) + evals * n * (g + 8)))


def status(out: str | Path) -> dict[str, Any]:
    """Done / diverged / failed / pending counts of a results directory (runs of committed,
    verified chunks; those of damaged chunks are pending, see :func:`damaged_chunks`)."""
    store = ResultsDir(Path(out))
    manifest = store.read_manifest()
    scan = store.scan()
    runs = (pd.concat(scan.committed.values(), ignore_index=True).drop_duplicates("run_id")
            if scan.committed else pd.DataFrame({"run_id": [], "status": []}))
    counts = runs["status"].value_counts().to_dict()
    total = int(manifest["n_runs"])
    finished = int(sum(counts.values()))
    return {"name": manifest["name"], "total": total, "pending": total - finished,
            **{k: int(counts.get(k, 0)) for k in ("done", "diverged", "failed")}}


def damaged_chunks(out: str | Path) -> dict[str, str]:
    """Chunks of a results directory whose parts are damaged → what is wrong (``resume``
    computes them again)."""
    store = ResultsDir(Path(out))
    store.read_manifest()
    return store.damaged_chunks()


def iter_failures(out: str | Path) -> Iterable[dict[str, Any]]:
    runs = ResultsDir(Path(out)).table("runs")
    if len(runs):
        yield from runs[runs["status"] != "done"].to_dict("records")
