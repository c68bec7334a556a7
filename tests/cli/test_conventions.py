"""CLI conventions (issue 13, item 4): --version from the installed metadata, -h everywhere,
the exit codes in --help and what the commands return, shell completion, and a mistyped
--set key answered with "did you mean"."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import userchoice
from userchoice.cli import EXIT_CODES, app

CONFIG = """\
name: conventions
data: {dataset: trap, options: {gap: 10.0, n_users: 200, seed: 3}}
market: {n_learners: 2}
learner: {family: squared}
engine: {batch_size: 10, steps: 20, eval_every: 10}
knobs: {seed: 1, tau: 0.7, eta: 0.02}
"""


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    return path


def test_version_is_the_installed_distributions():
    installed = importlib.metadata.version("userchoice")
    assert userchoice.__version__ == installed
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0, result.output
        assert result.output == f"userchoice {installed}\n"
    assert invoke("version").output == f"userchoice {installed}\n"


def _commands(group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name)
        if hasattr(command, "commands"):  # a group (typer's own click or the real one)
            yield from _commands(command, (*path, name))


def test_dash_h_is_help_on_every_command():
    paths = list(_commands(typer.main.get_command(app)))
    assert ("run",) in paths and ("data", "fetch") in paths and ("status",) in paths
    for path in [(), *paths]:
        short, long = invoke(*path, "-h"), invoke(*path, "--help")
        assert short.exit_code == 0, (path, short.output)
        assert "Usage:" in short.output and short.output == long.output, path


def test_help_lists_every_exit_code():
    text = " ".join(invoke("--help").output.split())
    assert "Exit codes:" in text
    for code, meaning in EXIT_CODES.items():
        assert f"{code}: {' '.join(meaning.split()[:4])}" in text, code


def test_exit_code_0_ok_and_2_for_bad_input(config, tmp_path):
    assert invoke("run", config, "--out", tmp_path / "ok").exit_code == 0
    assert invoke("run", tmp_path / "missing.yaml").exit_code == 2
    assert invoke("run", config, "--set", "knobs.eta=-1").exit_code == 2
    assert invoke("status", tmp_path / "nothing-here").exit_code == 2
    assert invoke("run", config, "--no-such-option").exit_code == 2


def test_exit_code_1_when_runs_diverge(config, tmp_path):
    result = invoke("run", config, "--set", "knobs.eta=1e6", "--set", "engine.steps=40",
                    "--out", tmp_path / "diverged")
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output


def test_exit_code_130_when_interrupted(config, tmp_path, monkeypatch):
    from userchoice.experiments import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    result = invoke("run", config, "--out", tmp_path / "out")
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "resume" in result.output


def test_unknown_set_key_says_did_you_mean(config, tmp_path):
    result = invoke("run", config, "--set", "engine.step=40", "--out", tmp_path / "x")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "engine.step:" in text and "did you mean engine.steps?" in text
    assert "batch_size, steps, eval_every" in text  # the section's fields
    nested = invoke("run", config, "--set", "knobs.kapa=0.1", "--out", tmp_path / "x")
    assert "did you mean knobs.kappa?" in " ".join(nested.output.split())
    assert not (tmp_path / "x").exists()


def _python_m(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "userchoice", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "200",
                                                       **(env or {})})


def test_python_m_version_and_shell_completion():
    version = _python_m("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"userchoice " \
        f"{importlib.metadata.version('userchoice')}"
    assert "--install-completion" in _python_m("--help").stdout
    # the shell named, not detected from the parent process (absent when pytest has no shell)
    script = _python_m("--show-completion", "bash",
                       env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.returncode == 0 and "_userchoice_completion" in script.stdout, script.stderr
    # what the installed script asks: complete `userchoice st` and `userchoice run --dr`
    words = _python_m(env={"_USERCHOICE_COMPLETE": "complete_bash",
                           "COMP_WORDS": "userchoice st", "COMP_CWORD": "1"})
    assert words.stdout.split() == ["status"]
    options = _python_m(env={"_USERCHOICE_COMPLETE": "complete_bash",
                             "COMP_WORDS": "userchoice run --dr", "COMP_CWORD": "2"})
    assert options.stdout.split() == ["--dry-run"]
