"""``--dry-run`` on ``run`` and ``reproduce``: the planner's counts (groups, runs, chunks,
distinct compilations), estimates of memory and time, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.engine import driver
from userchoice.engine.simulate import _PROGRAMS  # the compiled programs (a cache)
from userchoice.engine.spec import bytes_per_run
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import plan_without_fits
from userchoice.experiments.runner import chunk_jobs, dry_run, run_experiment

# Two engine shapes (a static grid) of 7 runs each; chunks of 3 → 3, 3, 1 (padded to 3): one
# program a group
RAW = {
    "name": "dry_trap",
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 200, "seed": 3}},
    "market": {"n_learners": 2}, "learner": {"family": "squared"},
    "engine": {"batch_size": 10, "steps": 30, "eval_every": 10},
    "probing": {"probers": [0], "n_probe": 20, "probe_batch": 10},
    "knobs": {"seed": 7, "tau": 0.7, "p": 0.5, "eta": 0.02},
    "static_grid": {"probing.n_probe": [10, 20]},
}


def listing(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.fixture
def three_run_chunks(monkeypatch):
    """A working-memory budget of three runs: the default chunk size is then 3."""
    plan = plan_without_fits(config_from_dict(RAW))
    per_run = max(bytes_per_run(g.spec, plan.market) for g in plan.groups)
    monkeypatch.setenv(driver.CHUNK_BYTES_ENV, str(3 * per_run))


def test_dry_run_counts_are_the_planners(tmp_path, three_run_chunks):
    config = config_from_dict(RAW)
    plan = plan_without_fits(config)
    estimate = dry_run(config, tmp_path / "out", workers=2)
    assert not (tmp_path / "out").exists()
    assert estimate.runs == plan.n_runs == 14 and estimate.finished == 0
    assert len(estimate.groups) == len(plan.groups) == 2
    jobs = [job for g in plan.groups for job in chunk_jobs(g, 3)]
    assert estimate.chunks == len(jobs) == 6
    assert [len(j.indices) for j in jobs] == [3, 3, 1] * 2 and {j.size for j in jobs} == {3}
    assert estimate.compilations == len({(j.group, j.size) for j in jobs}) == 2
    for row, group in zip(estimate.groups, plan.groups, strict=True):
        assert row["runs"] == row["pending"] == len(group.run_ids) and row["chunk_size"] == 3
        assert row["bytes_per_run"] == bytes_per_run(group.spec, plan.market)
    assert estimate.peak_bytes == 2 * 3 * max(g["bytes_per_run"] for g in estimate.groups)
    assert estimate.simulate_seconds > 0 and estimate.compile_seconds > 0
    assert set(estimate.setup_seconds) == {"loading data"}

    # the sweep compiles exactly the programs the dry run counted, then nothing is pending
    before = set(_PROGRAMS.keys())
    run_experiment(config, tmp_path / "out")
    assert len(set(_PROGRAMS.keys()) - before) == estimate.compilations
    again = dry_run(config, tmp_path / "out")
    assert again.finished == again.runs == 14
    assert again.chunks == again.compilations == again.pending == 0
    assert again.simulate_seconds == 0


def test_cli_dry_run_writes_nothing(tmp_path, monkeypatch, three_run_chunks):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(RAW))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--workers", "2"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert listing(work) == set()  # not even results/dry_trap
    text = " ".join(result.output.split())
    assert "dry_trap: 14 runs in 2 group(s)" in text and "14 to compute" in text
    assert "compilations: 2; chunks: 6 on 2 worker(s)" in text
    assert "group 1 (probing.n_probe = 20): 7 runs" in text
    assert "time ≈" in text and "nothing written" in text


def test_cli_reproduce_dry_run_names_what_is_missing(tmp_path):
    root = tmp_path / "configs"
    (root / "paper").mkdir(parents=True)
    (root / "paper" / "trap_good.yaml").write_text(yaml.safe_dump({**RAW, "name": "trap_good"}))
    missing = {**RAW, "name": "census_good", "static_grid": {},
               "data": {"dataset": "census", "path": str(tmp_path / "no-such-file.csv.gz")},
               "market": {"n_learners": 2, "preferences": "clusters"}}
    (root / "paper" / "census_good.yaml").write_text(yaml.safe_dump(missing))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["reproduce", "paper", "--configs", str(root), "--dry-run",
                                      "--out", str(out)], terminal_width=200)
    assert result.exit_code == 1, result.output  # one experiment cannot run
    text = " ".join(result.output.split())
    assert "trap_good: 14 runs in 2 group(s)" in text
    assert "census_good: cannot run:" in text and "no-such-file.csv.gz" in text
    assert "total: 2 experiment(s), 1 not ready" in text
    assert not out.exists()
