"""reproduce: config paths (${SHARED_DATA}, relative to the config file), config sets, the
bad/good pairs, summary.md (our numbers beside the paper's) and figures, end to end."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_DATA

from userchoice import reproduce as rp
from userchoice.analysis import format_mean_se
from userchoice.experiments import paths as cp
from userchoice.experiments.config import ConfigError
from userchoice.experiments.runner import run_experiment
from userchoice.experiments.store import ResultsDir

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "src" / "userchoice" / "configs"
SPEC_NAMES = {
    "census": ["census_bad", "census_bad_leader", "census_bad_majority", "census_good",
               "census_good_2probe", "census_good_kappa", "census_good_leader",
               "census_good_majority", "census_nprobe"],
    "movielens": ["movielens_bad", "movielens_bad_leader", "movielens_bad_majority",
                  "movielens_good", "movielens_good_kappa", "movielens_good_leader",
                  "movielens_good_majority"],
    "amazon": ["amazon_bad", "amazon_good", "amazon_good_kappa"],
    "nn": ["census_nn_bad", "census_nn_good"],
}


# --------------------------------------------------------------------------------------------
# Paths inside configs
# --------------------------------------------------------------------------------------------


def write_yaml(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(payload, sort_keys=False))
    return path


def census_config(path_value, **extra) -> dict:
    return {"name": "c", "data": {"dataset": "census", "path": path_value, **extra},
            "market": {"preferences": "clusters", "n_learners": 2},
            "engine": {"batch_size": 4, "steps": 2}}


def test_shared_data_token_uses_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cp.SHARED_DATA_ENV, str(tmp_path / "staged"))
    cfg = cp.load_experiment(write_yaml(tmp_path / "cfg" / "a.yaml",
                                        census_config("${SHARED_DATA}/acs/x.csv.gz")))
    assert cfg.data.path == str(tmp_path / "staged" / "acs" / "x.csv.gz")


def test_shared_data_is_found_above_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv(cp.SHARED_DATA_ENV, raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    config = write_yaml(tmp_path / "repo" / "configs" / "local" / "a.yaml",
                        census_config(["${SHARED_DATA}/one.csv", "${SHARED_DATA}/two.csv"]))
    cfg = cp.load_experiment(config)
    assert cfg.data.path == [str(tmp_path / "shared" / "data" / n) for n in ("one.csv",
                                                                           "two.csv")]


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_yaml(tmp_path / "sub" / "a.yaml",
                        census_config("data/x.csv", options={"cache_dir": "${CONFIG_DIR}/c"}))
    cfg = cp.load_experiment(config)
    assert cfg.data.path == str(tmp_path / "sub" / "data" / "x.csv")
    assert cfg.data.options["cache_dir"] == str(tmp_path / "sub" / "c")
    # an override on the command line is relative to the working directory
    cfg = cp.load_experiment(config, ["data.path=other/y.csv"])
    assert cfg.data.path == str(tmp_path / "other" / "y.csv")


def test_absolute_home_and_null_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cp.load_experiment(write_yaml(tmp_path / "a.yaml", census_config("~/x.csv"))
                              ).data.path == str(tmp_path / "home" / "x.csv")
    assert cp.load_experiment(write_yaml(tmp_path / "b.yaml", census_config(None))
                              ).data.path is None
    assert cp.load_experiment(write_yaml(tmp_path / "c.yaml", census_config("/abs/x.csv"))
                              ).data.path == "/abs/x.csv"


def test_environment_variables_are_not_tokens(tmp_path, monkeypatch):
    """Only the documented tokens expand: a set environment variable is an error too, so its
    value can never be copied into manifest.json or a report."""
    monkeypatch.setenv("UC_TEST_ROOT", str(tmp_path / "root"))
    for index, name in enumerate(("UC_TEST_ROOT", "UC_TEST_UNSET")):
        monkeypatch.delenv("UC_TEST_UNSET", raising=False)
        with pytest.raises(ConfigError, match=rf"data\.path: \$\{{{name}\}} is not an "
                                              r"allowed token.*\$\{SHARED_DATA\}, "
                                              r"\$\{DATA_DIR\}, \$\{CONFIG_DIR\}"):
            cp.load_experiment(write_yaml(tmp_path / f"{index}.yaml",
                                          census_config(f"${{{name}}}/x")))


def test_missing_shared_data_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(cp.SHARED_DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no shared/data above the config nor the working directory
    with pytest.raises(ConfigError, match=cp.SHARED_DATA_ENV):
        cp.expand_path("${SHARED_DATA}/x", base_dir=tmp_path / "nowhere", where="data.path")


def test_invalid_configs_still_name_the_field(tmp_path):
    raw = census_config("x.csv")
    raw["engine"]["steps"] = 0
    with pytest.raises(ConfigError, match=r"engine\.steps"):
        cp.load_experiment(write_yaml(tmp_path / "a.yaml", raw))


# --------------------------------------------------------------------------------------------
# Config sets and targets
# --------------------------------------------------------------------------------------------


def test_configs_root_is_the_checkout_folder(monkeypatch):
    monkeypatch.delenv(rp.CONFIGS_ENV, raising=False)
    assert rp.configs_root() == REPO_CONFIGS


@pytest.mark.parametrize("kind", rp.CONFIG_SETS)
def test_targets_select_their_experiments(kind):
    for target, names in SPEC_NAMES.items():
        assert [p.stem for p in rp.select_configs(target, kind)] == sorted(names)
    every = [p.stem for p in rp.select_configs("paper", kind)]
    assert every == sorted(n for names in SPEC_NAMES.values() for n in names)
    assert all(p.parent == REPO_CONFIGS / kind for p in rp.select_configs("paper", kind))


def test_select_errors_name_what_is_allowed():
    with pytest.raises(ValueError, match="target must be one of"):
        rp.select_configs("imagenet")
    with pytest.raises(ValueError, match="config set must be one of"):
        rp.select_configs("census", "huge")
    with pytest.raises(ValueError, match="not among the census configs"):
        rp.select_configs("census", only=["movielens_good"])
    assert [p.stem for p in rp.select_configs("census", only=["census_good"])] == ["census_good"]


def test_bad_good_pairs():
    names = [n for names in SPEC_NAMES.values() for n in names]
    pairs = rp.bad_good_pairs(names)
    assert ("census_bad", "census_good") in pairs
    assert ("census_bad_leader", "census_good_leader") in pairs
    assert ("movielens_bad_majority", "movielens_good_majority") in pairs
    assert ("amazon_bad", "amazon_good") in pairs
    assert ("census_nn_bad", "census_nn_good") in pairs
    assert len(pairs) == 8
    assert rp.bad_good_pairs(["x_bad"]) == []


# --------------------------------------------------------------------------------------------
# reproduce on a tiny config set (synthetic data: fast, no staged files needed)
# --------------------------------------------------------------------------------------------

TRAP = {
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 400}},
    "market": {"n_learners": 2}, "learner": {"family": "squared"},
    "engine": {"batch_size": 20, "steps": 60, "eval_every": 30},
    "probing": {"probers": [0], "source": "preferred", "n_probe": 40, "probe_batch": 20},
}


def tiny_sets(root: Path) -> Path:
    good = {**TRAP, "name": "trap_good", "description": "good", "init": {"kind": "erm"},
            "knobs": {"seed": 3, "tau": 0.7, "p": [0, 1], "kappa": [0, 0.4], "eta": 0.02},
            "reported": {"metric": "test_loss", "pooled": 0.01, "prober": {0: 9.5, 1: 0.5},
                         "claims": ["probing rescues the trapped learner"]}}
    bad = {**TRAP, "name": "trap_bad", "description": "bad",
           "knobs": {"seed": 2, "tau": 0.3, "eta": 0.02},
           "reported": {"metric": "test_loss", "worst_p0": 7.25}}
    for kind in rp.CONFIG_SETS:
        write_yaml(root / kind / "trap_good.yaml", good)
        write_yaml(root / kind / "trap_bad.yaml", bad)
    return root


def summary_rows(text: str) -> dict[str, list[str]]:
    """The overview table of summary.md: experiment → its cells."""
    rows = {}
    for line in text.split("\n## ")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("experiment", "---"):
            rows[cells[0]] = cells
    return rows


def test_reproduce_tiny_set_end_to_end(tmp_path):
    root = tiny_sets(tmp_path / "configs")
    seen = []
    summary = rp.reproduce("paper", tmp_path / "out", configs=root,
                           progress=lambda name, done, total: seen.append((name, done, total)))
    out = tmp_path / "out"
    assert summary == out / "summary.md"
    assert ("trap_good", 12, 12) in seen and ("trap_bad", 2, 2) in seen
    record = json.loads((out / "reproduce.json").read_text())
    assert record["experiments"] == ["trap_bad", "trap_good"]
    assert record["runs"]["trap_good"] == {"total": 12, "done": 12}
    assert not record["figure_errors"]
    figures = [Path(p) for paths in record["figures"].values() for p in paths]
    assert figures and all(p.is_file() for p in figures)
    assert {"trap_bad", "trap_good", "trap_bad_vs_trap_good"} <= set(record["figures"])
    assert (out / "figures" / "trap_bad_vs_trap_good.png").is_file()

    text = summary.read_text()
    rows = summary_rows(text)
    assert set(rows) == {"trap_bad", "trap_good"}
    # our numbers beside the paper's: mean ± s.e. over seeds of the final test loss
    final = ResultsDir(out / "trap_good").joined("learners")
    final = final[(final["step"] == 60) & (final["kappa"] == 0)]
    for p, paper in ((0.0, "9.5"), (1.0, "0.5")):
        values = final[(final["learner"] == 0) & (final["p"] == p)]["test_loss"]
        assert len(values) == 3
        assert f"{format_mean_se(values.mean(), values.sem())} / {paper}" in text
    assert " / 7.25" in rows["trap_bad"][5]  # worst learner beside worst_p0
    assert "/ 0.01" in rows["trap_good"][4]  # pooled baseline beside the paper's
    assert "probing rescues the trapped learner" in text
    assert "| kappa |" in text  # the κ axis gets its own table
    assert "sha256" not in rows["trap_good"][1]


def test_reproduce_computes_a_run_two_experiments_share_once(tmp_path):
    # trap_good's κ = 0 runs are all of trap_good_k0's (the same run ids): copied, not
    # computed; trap_bad's damaged folder fails trap_bad alone (no sibling reads it)
    root = tiny_sets(tmp_path / "configs")
    good = yaml.safe_load((root / "paper" / "trap_good.yaml").read_text())
    write_yaml(root / "paper" / "trap_good_k0.yaml",
               {**good, "name": "trap_good_k0", "knobs": {**good["knobs"], "kappa": 0}})
    out = tmp_path / "out"
    (out / "trap_bad").mkdir(parents=True)
    (out / "trap_bad" / "manifest.json").write_text("{not json")
    with pytest.raises(rp.ReproduceError) as caught:
        rp.reproduce("paper", out, configs=root, figures=False)
    assert set(caught.value.errors) == {"trap_bad"}
    manifest = json.loads((out / "trap_good_k0" / "manifest.json").read_text())
    assert manifest["reused"] == {str(out / "trap_good"): 6}
    record = json.loads((out / "reproduce.json").read_text())
    assert record["runs"]["trap_good_k0"] == {"total": 6, "done": 6}
    mine, theirs = ResultsDir(out / "trap_good_k0"), ResultsDir(out / "trap_good")
    assert mine.table("runs")["chunk"].str.startswith("reused-").all()
    ours = mine.table("learners")
    shared = theirs.table("learners")
    shared = shared[shared["run_id"].isin(set(ours["run_id"]))].reset_index(drop=True)
    assert len(ours) == len(shared) > 0
    assert ours.equals(shared)


def test_reproduce_resumes_without_rerunning(tmp_path, monkeypatch):
    root = tiny_sets(tmp_path / "configs")
    rp.reproduce("paper", tmp_path / "out", configs=root, figures=False)

    def boom(*args, **kwargs):
        raise AssertionError("a finished experiment was run again")

    monkeypatch.setattr("userchoice.experiments.runner.run_experiment", boom)
    summary = rp.reproduce("paper", tmp_path / "out", configs=root, figures=False)
    assert set(summary_rows(summary.read_text())) == {"trap_bad", "trap_good"}


def test_reproduce_resumes_a_partial_sweep(tmp_path):
    root = tiny_sets(tmp_path / "configs")
    config = cp.load_experiment(root / "quick" / "trap_good.yaml")
    run_experiment(config, tmp_path / "out" / "trap_good", chunk_size=4)
    store = ResultsDir(tmp_path / "out" / "trap_good")
    first = sorted(store.finished_chunks())
    (store.path / "runs" / f"{first[0]}.parquet").unlink()  # as if killed mid-sweep
    rp.reproduce("paper", tmp_path / "out", quick=True, configs=root, figures=False,
                 only=["trap_good"])
    assert len(store.table("runs")) == 12 and set(store.table("runs")["status"]) == {"done"}


def test_missing_plots_is_a_clear_error_before_running(tmp_path, monkeypatch):
    import userchoice.plots as plots

    monkeypatch.delattr(plots, "plot_bad_vs_good")
    with pytest.raises(RuntimeError, match="plot_bad_vs_good"):
        rp.reproduce("paper", tmp_path / "out", configs=tiny_sets(tmp_path / "configs"))
    assert not (tmp_path / "out" / "trap_good").exists()


# --------------------------------------------------------------------------------------------
# reproduce --quick on the shipped configs and the staged substitutes
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is not staged here")
def test_reproduce_quick_end_to_end(tmp_path_factory):
    # the folder test_configs_shipped fills when it runs first (then this only resumes)
    out = tmp_path_factory.getbasetemp() / "quick-results"
    summary = rp.reproduce("paper", out, quick=True)
    text = summary.read_text()
    names = [n for names in SPEC_NAMES.values() for n in names]
    rows = summary_rows(text)
    assert set(rows) == set(names)
    for name in names:
        done, total = rows[name][3].split("/")
        assert done == total, name
        assert f"## {name}" in text

    record = json.loads((out / "reproduce.json").read_text())
    assert not record["figure_errors"]
    for paths in record["figures"].values():
        assert paths and all(Path(p).is_file() for p in paths)
    for bad, good in rp.bad_good_pairs(names):
        assert (out / "figures" / f"{bad}_vs_{good}.png").is_file()
    for name in names:
        figures = {Path(p).name for p in record["figures"][name]}
        assert any(f.startswith("metric_vs_iteration") and f.endswith(".png") for f in figures)
        if "_good" in name:
            assert "final_vs_p.png" in figures, name
    assert "final_vs_nprobe.png" in {Path(p).name for p in record["figures"]["census_nprobe"]}

    # the paper's numbers (SPEC §9) stand beside ours
    assert rows["census_good"][4].endswith("/ 0.79")
    assert rows["census_good"][6].endswith("/ 0.6")
    assert re.search(r"/ 0\.78 \(p=0\.8\)$", rows["census_good"][7])
    assert rows["movielens_bad"][5].endswith("/ 6.2")
    assert rows["movielens_good"][7].endswith("/ 3.5")
    assert "| 5 | " in text and "| 0.68 |" in text  # N_probe ablation beside the paper's
    # the data actually used: substitutes, named with their sha256
    assert "substitute" in rows["census_good"][1]
    assert "acs_2017_1yr_person_AL_sample5000.csv.gz" in text and "sha256 `" in text


def test_figures_drawn_by_worker_processes_are_the_ones_drawn_here(tmp_path, monkeypatch):
    rp.reproduce("paper", tmp_path / "out", configs=tiny_sets(tmp_path / "configs"),
                 figures=False)
    out = tmp_path / "out"
    names = ["trap_bad", "trap_good", "missing"]  # no results for "missing"
    here, here_errors = rp.write_figures(out, names, workers=1)
    drawn_here = {p: p.read_bytes() for paths in here.values() for p in paths
                  if p.suffix == ".png"}
    for paths in here.values():
        for path in paths:
            path.unlink()
    monkeypatch.setattr(rp, "MIN_FIGURE_TASKS_PER_WORKER", 1)
    workers = {}
    real = rp.FigureWorkers.collect

    def spy(self):
        workers.update(real(self))
        return workers

    monkeypatch.setattr(rp.FigureWorkers, "collect", spy)
    there, there_errors = rp.write_figures(out, names, workers=2)
    assert set(workers) == {"trap_bad", "trap_good", "trap_bad_vs_trap_good"}  # all but missing
    assert there == here and list(there) == list(here)
    assert set(there_errors) == set(here_errors) == {"missing"}  # tried here again, reported
    assert {p: p.read_bytes() for p in drawn_here} == drawn_here


def test_background_figures_are_drawn_as_experiments_finish(tmp_path, monkeypatch):
    rp.reproduce("paper", tmp_path / "out", configs=tiny_sets(tmp_path / "configs"),
                 figures=False)
    out, names = tmp_path / "out", ["trap_bad", "trap_good"]
    monkeypatch.setattr(rp, "MIN_FIGURE_TASKS_PER_WORKER", 1)  # workers for 3 figure sets
    background = rp.BackgroundFigures(out, names, workers=2)
    assert background.workers is not None and len(background.workers.procs) == 2
    background.experiment_done("trap_good")
    assert background.submitted == ["trap_good"]  # its pair waits for trap_bad
    background.experiment_done("trap_bad")
    assert background.submitted == ["trap_good", "trap_bad", "trap_bad_vs_trap_good"]
    if hasattr(os, "getpriority"):  # the workers lower their own priority first thing
        deadline = time.monotonic() + 60
        procs = background.workers.procs
        while time.monotonic() < deadline and any(
                os.getpriority(os.PRIO_PROCESS, p.pid) != rp.BACKGROUND_NICE for p in procs):
            time.sleep(0.05)
        assert {os.getpriority(os.PRIO_PROCESS, p.pid) for p in procs} == {rp.BACKGROUND_NICE}
    # Two workers took the two experiments' sets at once; the pair's waits for a free one, and
    # collect leaves it queued (low-priority workers would crawl on a busy machine) ...
    drawn = background.collect()
    assert {"trap_bad", "trap_good"} <= set(drawn)
    assert all(path.is_file() for paths in drawn.values() for path in paths)
    assert all(proc.poll() is not None for proc in background.workers.procs)
    # ... for write_figures to draw, and it draws nothing the background drew.
    again = []
    real = rp._draw

    def recorded(out_, key, task):
        again.append(key)
        return real(out_, key, task)

    monkeypatch.setattr(rp, "_draw", recorded)
    written, errors = rp.write_figures(out, names, drawn=drawn, workers=1)
    assert sorted(again) == sorted({"trap_bad", "trap_good", "trap_bad_vs_trap_good"}
                                   - set(drawn))
    assert set(written) == {"trap_bad", "trap_good", "trap_bad_vs_trap_good"} and not errors


def test_figure_workers_that_die_leave_their_tasks_to_the_caller(tmp_path):
    workers = rp.FigureWorkers(tmp_path, 2)
    for proc in workers.procs:
        proc.kill()
    workers.submit("trap_good", "trap_good")
    workers.submit("trap_bad", "trap_bad")
    assert workers.collect() == {}  # returns (nothing drawn), does not wait for the dead


def test_a_failing_experiment_does_not_stop_the_others(tmp_path):
    root = tiny_sets(tmp_path / "configs")
    broken = census_config(str(tmp_path / "missing.csv"))
    write_yaml(root / "paper" / "census_bad.yaml", {**broken, "name": "census_bad"})
    with pytest.raises(rp.ReproduceError, match="census_bad") as caught:
        rp.reproduce("paper", tmp_path / "out", configs=root, figures=False)
    assert set(caught.value.errors) == {"census_bad"}
    text = caught.value.summary.read_text()
    assert summary_rows(text)["census_bad"][3] == "not run"
    assert summary_rows(text)["trap_good"][3] == "12/12"
    assert "Not run: " in text
    record = json.loads((tmp_path / "out" / "reproduce.json").read_text())
    assert set(record["errors"]) == {"census_bad"} and "trap_good" in record["runs"]
