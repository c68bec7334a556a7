"""Progress that tells the truth (issue 13, item 5): the engine reports as each chunk's runs
pass the end of each segment of evaluation points (same numbers as without progress), a sweep
reports its phases in order and monotone counts that reach their totals, the CLI shows them,
and ``reproduce`` reports experiments done / total."""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.engine import EngineSpec, knob_grid, simulate
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import PHASES, fit_plan, plan_without_fits
from userchoice.experiments.runner import run_experiment
from userchoice.families import Squared
from userchoice.fitting import erm_init
from userchoice.probing import ProbingSpec
from userchoice.reproduce import reproduce
from userchoice.theory import trap_market

simulate_module = importlib.import_module("userchoice.engine.simulate")  # not the function

# ERM init, a baseline and probing: every phase but "preferences" (trap markets bring their own)
SWEEP = {
    "name": "progress_trap",
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 200, "seed": 3}},
    "market": {"n_learners": 2}, "learner": {"family": "squared"}, "init": {"kind": "erm"},
    "engine": {"batch_size": 10, "steps": 80, "eval_every": 20},
    "probing": {"probers": [0], "n_probe": 20, "probe_batch": 10},
    "knobs": {"seed": 3, "tau": 0.7, "p": [0.0, 1.0], "eta": 0.02},
}


def monotone_to(calls: list[tuple[int, int]], total: int) -> bool:
    done = [d for d, _ in calls]
    return (all(t == total for _, t in calls) and done == sorted(done)
            and done[-1] == total)


def test_simulate_step_progress_between_segments_changes_no_number(monkeypatch):
    market, family = trap_market(gap=5.0, n_users=300, seed=1), Squared()
    spec = EngineSpec(family, n_learners=2, batch_size=10, steps=70, eval_every=10,
                      probing=ProbingSpec((0,), "preferred", n_probe=20, probe_batch=10))
    knobs = knob_grid(2, seed=range(5), p=[0.5], tau=0.7, eta=0.02)
    init = erm_init(market, family)
    monkeypatch.setattr(simulate_module, "SEGMENTS", 1)  # each chunk in one call
    whole = simulate(market, spec, knobs, init, chunk_size=2, workers=2).metrics
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(simulate_module, "SEGMENTS", 3)  # 8 points → segments of 3, 3, 2(+1)
    segmented = simulate(market, spec, knobs, init, chunk_size=2, workers=2,
                         step_progress=lambda done, total: calls.append((done, total)))
    for name, values in whole.items():
        np.testing.assert_array_equal(values, segmented.metrics[name], err_msg=name)
    assert monotone_to(calls, 5 * 70)
    # one report per chunk (3, the last padded) per segment, not per run; each moves its
    # chunk's count by its real runs × the steps of the segment (20 or 30 steps)
    assert len(calls) == 3 * 3
    increments = {b - a for (a, _), (b, _) in itertools.pairwise(calls)}
    assert increments <= {0, 20, 30, 40, 60}, increments


def test_a_sweep_reports_its_phases_in_order_and_counts_to_the_totals(tmp_path, monkeypatch):
    phases: list[str] = []
    steps: list[tuple[int, int]] = []
    runs: list[tuple[int, int]] = []
    config = config_from_dict(SWEEP)
    run_experiment(config, tmp_path / "out", phase=phases.append,
                   step_progress=lambda d, t: steps.append((d, t)),
                   progress=lambda d, t: runs.append((d, t)))
    assert phases == ["loading data", "ERM init", "baseline", "compiling", "simulating"]
    assert [p for p in PHASES if p in phases] == phases  # PHASES' order
    assert monotone_to(steps, 6 * 80) and steps[0] == (0, 6 * 80)
    assert len(steps) > 3 * len(runs)  # moves between chunk commits, not only at them
    assert monotone_to(runs, 6) and runs[0] == (0, 6)
    # nothing left to do: data only, the counts start (and end) at their totals
    phases.clear(), steps.clear(), runs.clear()
    run_experiment(config, tmp_path / "out", phase=phases.append,
                   step_progress=lambda d, t: steps.append((d, t)),
                   progress=lambda d, t: runs.append((d, t)))
    assert phases == ["loading data"] and steps == [(480, 480)] and runs == [(6, 6)]


def test_preferences_built_from_data_are_a_phase():
    raw = {"name": "progress_mix",
           "data": {"dataset": "mixture", "options": {"n_users": 300, "seed": 1}},
           "market": {"n_learners": 3, "preferences": "clusters", "options": {"n_init": 1}},
           "learner": {"family": "logistic"}, "baseline": False,
           "engine": {"batch_size": 10, "steps": 20, "eval_every": 10},
           "knobs": {"seed": 1, "eta": 0.1}}
    phases: list[str] = []
    fit_plan(plan_without_fits(config_from_dict(raw), phase=phases.append), phases.append)
    assert phases == ["loading data", "preferences"]  # random init, no baseline: no fits


def test_cli_run_shows_each_phase_and_the_bar(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    shown = [label for label in PHASES for line in lines
             if line.startswith(f"progress_trap: {label} (") and line.endswith(" s)")]
    assert shown == ["loading data", "ERM init", "baseline", "compiling", "simulating"]
    assert "6/6 runs" in result.output and "100%" in result.output


def tiny_sets(root: Path) -> Path:
    """Config sets with two tiny trap experiments (paper/ only: reproduce's default set), of
    SWEEP's shapes (compiled once for the session); their τ differs, so they share no run
    (a shared run would be copied from the first, not computed: test_reuse.py)."""
    (root / "paper").mkdir(parents=True)
    for name, tau in (("trap_bad", 0.3), ("trap_good", 0.7)):
        raw = {**SWEEP, "name": name, "knobs": {**SWEEP["knobs"], "tau": tau}}
        (root / "paper" / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return root


def test_reproduce_reports_experiments_done_of_total(tmp_path):
    root = tiny_sets(tmp_path / "configs")
    experiments: list[tuple[int, int]] = []
    phases: list[tuple[str, str]] = []
    steps: dict[str, list[tuple[int, int]]] = {}
    reproduce("paper", tmp_path / "out", configs=root, figures=False,
              experiments=lambda d, t: experiments.append((d, t)),
              phase=lambda name, label: phases.append((name, label)),
              step_progress=lambda name, d, t: steps.setdefault(name, []).append((d, t)))
    assert experiments == [(0, 2), (1, 2), (2, 2)]
    assert [label for name, label in phases if name == "trap_good"] == [
        "loading data", "ERM init", "baseline", "compiling", "simulating"]
    assert phases[-1] == ("paper", "figures and summary")
    assert monotone_to(steps["trap_bad"], 6 * 80) and monotone_to(steps["trap_good"], 6 * 80)


def test_cli_reproduce_shows_experiments_done(tmp_path):
    root = tiny_sets(tmp_path / "configs")
    result = CliRunner().invoke(app, ["reproduce", "paper", "--configs", str(root),
                                      "--no-figures", "--out", str(tmp_path / "out")],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "2/2 experiments" in result.output
    for name in ("trap_bad", "trap_good"):
        assert f"{name}: simulating (" in result.output
