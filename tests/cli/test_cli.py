"""The command line: help, version, the demo end to end, usage errors (exit code 2)."""

from __future__ import annotations

from typer.testing import CliRunner

from userchoice import __version__
from userchoice.cli import app

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "demo" in result.output and "version" in result.output


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "figures"
    # Same spec and run count as tests/test_demo.py, so the compiled engine is reused.
    result = runner.invoke(
        app, ["demo", "--seeds", "2", "--steps", "400", "--out", str(out)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "pooled optimum" in result.output
    assert "(prober)" in result.output and "(MSGD)" in result.output
    png = out / "demo.png"
    assert str(png) in result.output
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_unknown_option_is_a_usage_error():
    result = runner.invoke(app, ["demo", "--no-such-option"])
    assert result.exit_code == 2


def test_invalid_value_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["demo", "--seeds", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert not (tmp_path / "demo.png").exists()


def test_unknown_command_is_a_usage_error():
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
