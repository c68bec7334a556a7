"""Entry points (``python -m userchoice``, ``python -m userchoice.cli``) and the one YAML
reader: a config file read by ``userchoice run`` / ``load_experiment`` parses ``1e-2`` as a
number, as ``load_config`` does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.store import ResultsDir

SRC = Path(__file__).resolve().parents[2] / "src" / "userchoice"

CONFIG = """\
name: yaml_floats
data: {dataset: trap, options: {gap: 1e1, n_users: 200, seed: 3}}
market: {n_learners: 2}
learner: {family: squared}
engine: {batch_size: 10, steps: 20, eval_every: 10}
knobs: {seed: 1, tau: 0.7, eta: 1e-2}
reported: {pooled: 5e-3}
"""


def python_m(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "200"})


def test_python_m_userchoice_lists_the_commands():
    result = python_m("userchoice", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("demo", "run", "resume", "status", "plot", "report", "reproduce", "data"):
        assert re.search(rf"^\W*{command}\s", result.stdout, re.M), (command, result.stdout)
    assert "Usage: userchoice" in result.stdout


def test_python_m_userchoice_cli_knows_commands_registered_late():
    result = python_m("userchoice.cli", "status", "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No such command" not in result.stdout + result.stderr
    assert "pending runs of a results directory" in result.stdout
    listed = python_m("userchoice", "data", "list")
    assert listed.returncode == 0 and "mixture" in listed.stdout


def test_load_experiment_reads_yaml_1_2_floats(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    cfg = load_experiment(path)
    assert cfg.knobs.eta == 0.01
    assert cfg.data.options["gap"] == 10.0 and isinstance(cfg.data.options["gap"], float)
    assert cfg.reported["pooled"] == 0.005


def test_userchoice_run_reads_yaml_1_2_floats(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    config = ResultsDir(out).read_manifest()["config"]
    assert config["knobs"]["eta"] == 0.01 and config["data"]["options"]["gap"] == 10.0
    runs = ResultsDir(out).table("runs")
    assert list(runs["eta"]) == [0.01] and set(runs["status"]) == {"done"}


def test_every_yaml_read_goes_through_the_config_loader():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        for match in re.finditer(r"yaml\.(safe_load|load|full_load|unsafe_load)\(", text):
            line = text[:match.start()].count("\n") + 1
            if not (path.name == "config.py" and "Loader=_Loader" in text.splitlines()[line - 1]):
                offenders.append(f"{path.relative_to(SRC)}:{line}")
    assert not offenders, f"YAML read outside experiments.config.yaml_load: {offenders}"
