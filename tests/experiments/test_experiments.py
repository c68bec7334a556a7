"""Sweeps end to end: resume after a kill, failures and divergence, run ids, status, Ray.

Every sweep here uses one tiny trap config (two static groups, chunks of two runs), so the
compiled programs are shared by all tests in this process.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY_TRAP
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.experiments import plan as plan_module
from userchoice.experiments import runner as runner_module
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import make_groups, make_plan
from userchoice.experiments.runner import (
    chunk_jobs,
    local_runner,
    run_experiment,
    status,
)
from userchoice.experiments.store import TABLES, ResultsDir
from userchoice.families import make_family

cli = CliRunner()
CHUNK = 2  # runs per chunk: 12 chunks per sweep

BASE: dict[str, Any] = {**TINY_TRAP, "static_grid": {"engine.batch_size": [5, 10]}}
# 2 groups × 12 runs
DIVERGING = {**BASE, "knobs": {**BASE["knobs"], "eta": [0.02, 1e6]}}  # same compiled programs


def config(raw: dict[str, Any] = BASE, *overrides: str):
    return config_from_dict(copy.deepcopy(raw), overrides=list(overrides))


def tables(out: Path) -> dict[str, pd.DataFrame]:
    store = ResultsDir(out)
    return {name: store.table(name).drop(columns=["seconds"], errors="ignore")
            for name in TABLES}


def assert_same_tables(a: Path, b: Path) -> None:
    """Bitwise equal (NaN == NaN), apart from the wall-clock ``seconds``."""
    left, right = tables(a), tables(b)
    for name in TABLES:
        assert len(left[name]) > 0, name
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=True, obj=name)


def flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """BASE run in one go, with the local runner: what every other executor must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    summary = run_experiment(config(), out, chunk_size=CHUNK)
    assert (summary.total, summary.done, summary.diverged, summary.failed) == (24, 24, 0, 0)
    return out


# -------------------------------------------------------------------------------- resume

KILLED_SWEEP = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from userchoice.experiments.config import config_from_dict
    from userchoice.experiments.runner import run_experiment

    raw, out, flag = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    def progress(done, total):
        if done >= 4:  # two chunks committed; the pool is still computing others
            flag.touch()
            time.sleep(600)

    run_experiment(config_from_dict(raw), out, chunk_size=2, progress=progress)
""")


def test_a_sweep_killed_with_sigkill_resumes_to_identical_tables(tmp_path, reference):
    # killed while its worker threads compute further chunks but no part is being written
    # (a kill mid-write is the next test's torn chunk), so the count of commits is exact
    out, flag = tmp_path / "killed", tmp_path / "two-chunks-committed"
    process = subprocess.Popen([sys.executable, "-c", KILLED_SWEEP, json.dumps(BASE), str(out),
                                str(flag)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert process.poll() is None, process.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "the sweep never committed two chunks"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()

    committed = ResultsDir(out).finished_chunks()
    assert len(committed) == 2
    assert ResultsDir(out).read_manifest()["status"] == "running"
    assert status(out) == {"name": "tiny_trap", "total": 24, "pending": 20, "done": 4,
                           "diverged": 0, "failed": 0}

    result = cli.invoke(app, ["resume", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "20 done, 0 diverged, 0 failed, 4 already finished" in flat(result.output)

    assert_same_tables(out, reference)
    assert ResultsDir(out).read_manifest()["status"] == "finished"
    assert ResultsDir(out).finished_chunks() == ResultsDir(reference).finished_chunks()
    assert temp_files(out) == []
    # a second resume has nothing left to do
    summary = run_experiment(config(), out)
    assert (summary.skipped, summary.done) == (24, 0)


def test_a_chunk_without_its_commit_marker_is_pending_and_recomputed(tmp_path, reference):
    out = tmp_path / "torn"
    run_experiment(config(), out, chunk_size=CHUNK)
    # a kill between a chunk's learners/market parts and its runs part (the commit marker)
    victim = sorted((out / "runs").glob("*.parquet"))[3]
    victim.unlink()
    (out / "learners" / f".{victim.name}.tmp123").write_bytes(b"half a parquet file")
    assert status(out)["pending"] == CHUNK
    torn = set(tables(reference)["runs"].query("chunk == @victim.stem")["run_id"])
    assert len(torn) == CHUNK
    for name in ("learners", "market"):  # its parts are on disk but not counted
        assert (out / name / victim.name).is_file()
        assert not set(ResultsDir(out).table(name)["run_id"]) & torn
        assert len(ResultsDir(out).table(name)) == len(tables(reference)[name].query(
            "run_id not in @torn"))

    summary = run_experiment(config(), out)
    assert (summary.skipped, summary.done) == (24 - CHUNK, CHUNK)
    assert_same_tables(out, reference)


def test_resume_removes_stale_temporary_files(tmp_path):
    out = tmp_path / "stale"
    run_experiment(config(), out, chunk_size=CHUNK)
    (out / "learners" / ".g0-abc.parquet.tmp123").write_bytes(b"half a parquet file")
    run_experiment(config(), out)
    assert temp_files(out) == []


def test_resuming_with_another_package_version_does_not_duplicate_runs(tmp_path, monkeypatch):
    out = tmp_path / "upgraded"
    run_experiment(config(), out, chunk_size=CHUNK)
    monkeypatch.setattr(plan_module, "__version__", "99.0")
    try:
        run_experiment(config(), out)
    except ValueError:
        pass  # refusing is fine too
    assert len(ResultsDir(out).table("runs")) == 24
    assert status(out)["pending"] == 0


# ------------------------------------------------------------------ failures and divergence

def test_a_diverging_run_is_recorded_and_the_cli_exits_1(tmp_path):
    path, out = tmp_path / "diverge.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump({**DIVERGING, "static_grid": {}}))
    result = cli.invoke(app, ["run", str(path), "--out", str(out)], terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "6 done, 6 diverged, 0 failed" in flat(result.output)

    runs = ResultsDir(out).table("runs")
    diverged = runs[runs["eta"] == 1e6]
    assert len(diverged) == 6 and set(diverged["status"]) == {"diverged"}
    assert (diverged["diverged_step"] >= 0).all()
    for _, row in diverged.iterrows():
        assert row["reason"] == f"parameters not finite from step {row['diverged_step']}"
        assert row["run_id"] in flat(result.output)  # the CLI lists them
    fine = runs[runs["eta"] == 0.02]
    assert set(fine["status"]) == {"done"} and set(fine["reason"]) == {""}
    assert (fine["diverged_step"] == -1).all()
    learners = ResultsDir(out).joined("learners")
    assert np.isfinite(learners.loc[learners["status"] == "done", "test_loss"]).all()

    again = cli.invoke(app, ["status", str(out)], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "12 runs — 6 done, 6 diverged, 0 failed, 0 pending" in flat(again.output)


def _failing_for_batch_size(batch_size: int, message: str = "boom"):
    real = runner_module.simulate_chunk

    def simulate_chunk(market, spec, knobs, init_params):
        if spec.batch_size == batch_size:
            raise RuntimeError(f"{message} (batch_size={spec.batch_size})")
        return real(market, spec, knobs, init_params)

    return simulate_chunk


def test_a_chunk_that_raises_is_recorded_failed_and_the_others_complete(tmp_path, monkeypatch,
                                                                        reference):
    monkeypatch.setattr(runner_module, "simulate_chunk", _failing_for_batch_size(5))
    out = tmp_path / "failing"
    summary = run_experiment(config(), out, chunk_size=CHUNK)
    assert (summary.done, summary.diverged, summary.failed) == (12, 0, 12)

    runs = ResultsDir(out).table("runs")
    failed = runs[runs["group"] == 0]  # static engine.batch_size = 5
    assert set(failed["status"]) == {"failed"}
    assert set(failed["reason"]) == {"RuntimeError: boom (batch_size=5)"}
    assert set(runs.loc[runs["group"] == 1, "status"]) == {"done"}
    # failed runs have no metric rows; the others are those of an untroubled sweep
    learners = ResultsDir(out).table("learners")
    assert not set(learners["run_id"]) & set(failed["run_id"])
    expected = tables(reference)["learners"]
    expected = expected[~expected["run_id"].isin(failed["run_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(learners, expected, check_exact=True)
    assert status(out) == {"name": "tiny_trap", "total": 24, "pending": 0, "done": 12,
                           "diverged": 0, "failed": 12}


def test_resume_retries_failed_runs(tmp_path, monkeypatch, reference):
    out = tmp_path / "retry"
    with monkeypatch.context() as patch:
        patch.setattr(runner_module, "simulate_chunk", _failing_for_batch_size(5))
        run_experiment(config(), out, chunk_size=CHUNK)
    run_experiment(config(), out)
    assert status(out)["failed"] == 0


def test_status_counts_a_partial_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "simulate_chunk", _failing_for_batch_size(10))
    cfg = config(DIVERGING)

    def partial(plan, jobs, sizes):  # stops early: 5 chunks of group 0, 1 of group 1
        chosen = [j for j in jobs if j.group == 0][:5] + [j for j in jobs if j.group == 1][:1]
        yield from local_runner(1)(plan, chosen, sizes)

    out = tmp_path / "partial"
    run_experiment(cfg, out, chunk_size=CHUNK, runner=partial)
    # lam varies fastest, so chunks alternate: both runs eta = 0.02 (done), both eta = 1e6
    assert status(out) == {"name": "tiny_trap", "total": 24, "pending": 12, "done": 6,
                           "diverged": 4, "failed": 2}
    result = cli.invoke(app, ["status", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "24 runs — 6 done, 4 diverged, 2 failed, 12 pending" in flat(result.output)


def test_status_of_a_directory_without_a_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a results directory"):
        status(tmp_path)
    assert cli.invoke(app, ["status", str(tmp_path)]).exit_code == 2


# ---------------------------------------------------------------------------------- run ids

def run_ids(cfg) -> list[str]:
    return [rid for group in make_groups(cfg, make_family(cfg.learner.family))
            for rid in group.run_ids]


def test_run_ids_are_stable_across_processes():
    script = ("import json, sys; from userchoice.experiments.config import config_from_dict;"
              "from userchoice.experiments.plan import make_groups;"
              "from userchoice.families import make_family;"
              "cfg = config_from_dict(json.loads(sys.argv[1]));"
              "print(json.dumps([r for g in make_groups(cfg, make_family('squared'))"
              " for r in g.run_ids]))")
    seen = []
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script, json.dumps(BASE)], check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        seen.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert seen[0] == seen[1] == run_ids(config())
    assert len(set(seen[0])) == 24


@pytest.mark.parametrize("override", [
    "data.dataset=mixture", "data.path=elsewhere", "data.options.gap=5.0",
    "data.options.n_users=300", "data.options.seed=4", "market.n_learners=3",
    "market.preferences=leader", "market.attribute=age", "market.options.alpha=2",
    "learner.family=logistic", "learner.options.hidden=8", "init.kind=random",
    "init.options.steps=10", "engine.batch_size=11", "engine.steps=61", "engine.eval_every=30",
    "engine.choice=argmin", "engine.schedule=inv_sqrt", "engine.normalisation=su_dean",
    "engine.update_all=false", "engine.dtype=float64", "probing={probers: [0]}",
    "knobs.tau=0.6", "knobs.temperature=2.0",
    "knobs.zeta=0.1", "knobs.prior=[0.3, 0.7]", "knobs.lam=[0.0, 0.2]",
    "knobs.eta=[0.02, 0.06]", "knobs.seed=[0, 1, 5]",
    "static_grid={engine.batch_size: [5, 11]}", "static_grid={engine.steps: [60]}",
])
def test_a_run_id_changes_with_anything_its_numbers_depend_on(override):
    base, changed = run_ids(config()), run_ids(config(BASE, override))
    # the runs whose inputs changed got new ids; no id names two different runs
    assert len(set(changed)) == len(changed)
    key = override.split("=", 1)[0]
    if key.startswith(("knobs.lam", "knobs.eta", "knobs.seed", "static_grid")):
        assert set(changed) != set(base)  # a grid axis changed: only some runs are new
        assert len(set(changed) - set(base)) >= len(changed) // 3
    else:
        assert not set(changed) & set(base), override


@pytest.mark.parametrize("override", ["knobs.kappa=0.1", "knobs.p=0.0001"])
def test_probing_knobs_change_the_run_id(override):
    probed = "probing={probers: [0]}"  # p and κ only mean something with probing
    base, changed = run_ids(config(BASE, probed)), run_ids(config(BASE, probed, override))
    assert len(set(changed)) == len(changed)
    assert not set(changed) & set(base), override


def test_the_package_version_is_part_of_the_run_id(monkeypatch):
    before = run_ids(config())
    monkeypatch.setattr(plan_module, "__version__", "99.0")
    assert not set(run_ids(config())) & set(before)


@pytest.mark.parametrize("override", ["name=other_name", "description=words",
                                      "baseline=false", "reported={share: 0.5}"])
def test_fields_that_do_not_change_the_numbers_keep_the_ids(override):
    assert run_ids(config(BASE, override)) == run_ids(config())


def test_equal_runs_in_different_grids_share_ids():
    def ids_by_knobs(cfg) -> dict[tuple, str]:
        out = {}
        for group in make_groups(cfg, make_family("squared")):
            for row in group.rows:
                key = (row["engine_batch_size"], row["seed"], row["lam"], row["eta"])
                out[key] = row["run_id"]
        return out

    base = ids_by_knobs(config())
    other = ids_by_knobs(config(BASE, "knobs.seed=5", "knobs.eta=[0.05, 0.3]",
                                "static_grid={engine.batch_size: [10, 20]}"))
    shared = set(base) & set(other)
    assert len(shared) == 3 * 2 * 1 * 1  # batch 10, seeds 0-2, both lam, eta 0.05
    assert all(base[k] == other[k] for k in shared)
    assert not (set(base.values()) & set(other.values())) - {base[k] for k in shared}


def test_a_results_directory_of_another_config_is_refused(tmp_path, reference):
    other = config(BASE, "engine.steps=80")
    with pytest.raises(ValueError, match="holds results of another config"):
        run_experiment(other, reference)
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(BASE))
    result = cli.invoke(app, ["run", str(path), "--set", "knobs.eta=0.03", "--out",
                              str(reference)], terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "another config" in flat(result.output)
    assert status(reference)["done"] == 24  # untouched


def test_chunk_keys_depend_only_on_the_plan():
    cfg = config()
    groups = make_groups(cfg, make_family("squared"))
    keys = [job.key for g in groups for job in chunk_jobs(g, CHUNK)]
    again = [job.key for g in make_groups(cfg, make_family("squared"))
             for job in chunk_jobs(g, CHUNK)]
    assert keys == again and len(set(keys)) == 12


# ------------------------------------------------------------------------------------ Ray

@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install "
                                            "'userchoice[ray]')")
    started = not ray.is_initialized()
    if started:
        with warnings.catch_warnings():  # JAX warns of the fork before Ray's exec
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_the_ray_runner_reproduces_the_local_runner_bitwise(tmp_path, local_ray):
    from userchoice.experiments.ray_runner import ray_runner

    cfg = config(DIVERGING)  # NaN metrics included
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_experiment(cfg, local, chunk_size=CHUNK)
    summary = run_experiment(cfg, remote, chunk_size=CHUNK, runner=ray_runner())
    assert (summary.done, summary.diverged, summary.failed) == (12, 12, 0)
    assert_same_tables(remote, local)
    assert local_ray.is_initialized()  # a Ray the caller started is left running


def test_the_ray_runner_runs_population_dynamics_like_the_local_runner(tmp_path, local_ray):
    """The population dynamics share the executors: every table (groups, allocations and
    phases included) is the same computed by Ray tasks or in this process."""
    from userchoice.experiments.paths import load_experiment
    from userchoice.experiments.ray_runner import ray_runner
    from userchoice.experiments.store import ALL_TABLES

    cfg = load_experiment("quick/dean_synthetic_3groups_probing")
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_experiment(cfg, local, chunk_size=2)
    run_experiment(cfg, remote, chunk_size=2, runner=ray_runner())
    for name in ALL_TABLES:
        left = ResultsDir(local).table(name).drop(columns=["seconds"], errors="ignore")
        right = ResultsDir(remote).table(name).drop(columns=["seconds"], errors="ignore")
        assert len(left) > 0, name
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)


def test_a_failing_ray_task_is_reported_like_a_local_one(local_ray):
    from userchoice.experiments.ray_runner import ray_runner

    plan = make_plan(config())
    broken = plan.groups[0]
    broken.spec = dataclasses.replace(broken.spec, n_learners=3)  # the market has two
    sizes = {g.index: CHUNK for g in plan.groups}
    jobs = [j for g in plan.groups for j in chunk_jobs(g, CHUNK)][4:8]  # 2 of each group

    def collect(runner) -> dict[str, tuple]:
        return {job.key: (output, error) for job, output, error, seconds
                in runner(plan, jobs, sizes)}

    remote, local = collect(ray_runner()), collect(local_runner(1))
    assert set(remote) == set(local) == {j.key for j in jobs}
    for job in jobs:
        (r_out, r_err), (l_out, l_err) = remote[job.key], local[job.key]
        assert r_err == l_err
        if job.group == 0:
            assert r_out is None and l_out is None
            assert r_err.startswith("ValueError: ") and "learners" in r_err, r_err
        else:
            assert r_err is None
            np.testing.assert_array_equal(r_out["metrics"]["test_loss"],
                                          l_out["metrics"]["test_loss"])
            np.testing.assert_array_equal(r_out["diverged_step"], l_out["diverged_step"])


def test_the_ray_runner_without_ray_names_the_extra(monkeypatch):
    from userchoice.experiments import ray_runner as module

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'userchoice\[ray\]'"):
        module.ray_runner()


def test_the_cli_runs_a_sweep_on_ray(tmp_path, local_ray):
    path = tmp_path / "diverge.yaml"
    path.write_text(yaml.safe_dump({**DIVERGING, "static_grid": {}}))
    result = cli.invoke(app, ["run", str(path), "--out", str(tmp_path / "ray"), "--executor",
                              "ray"], terminal_width=200)
    assert result.exit_code == 1, result.output  # six runs diverge
    assert "6 done, 6 diverged, 0 failed" in flat(result.output)
    run_experiment(config(DIVERGING, "static_grid={}"), tmp_path / "local")
    assert_same_tables(tmp_path / "ray", tmp_path / "local")


class _KillsItsWorker:
    """Unpickling this ends the process that does it (a worker dying mid-task)."""

    def __reduce__(self):
        return os._exit, (3,)


def test_a_ray_worker_that_dies_is_a_failed_chunk_and_the_sweep_goes_on(local_ray):
    from userchoice.experiments.ray_runner import ray_runner

    plan = make_plan(config())
    jobs = [j for g in plan.groups for j in chunk_jobs(g, CHUNK)][:2]
    plan.market = _KillsItsWorker()
    sizes = {g.index: CHUNK for g in plan.groups}
    results = list(ray_runner(task_options={"max_retries": 0})(plan, jobs, sizes))
    assert sorted(job.key for job, *_ in results) == sorted(job.key for job in jobs)
    for _, output, error, seconds in results:
        assert output is None and seconds >= 0
        assert error.startswith("WorkerCrashedError: "), error
