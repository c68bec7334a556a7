"""Ordinary OS errors in any command are one line naming the path and exit code 2, never a
traceback (issue 10, item 9): an existing file as ``--out``, a folder where a file goes, a
name too long, ``--data-dir`` a file, and (injected, since tests may run as root, whom chmod
does not stop) a read-only folder, no permission and a full disk. Nothing half-written is left.
None of these runs the engine: each fails before the first chunk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from userchoice import atomic
from userchoice.cli import app, os_error_message

CONFIG = """\
name: os_errors
data: {dataset: trap, options: {gap: 10.0, n_users: 200, seed: 3}}
market: {n_learners: 2}
learner: {family: squared}
engine: {batch_size: 10, steps: 20, eval_every: 10}
knobs: {seed: 1, tau: 0.7, eta: 0.02}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(CONFIG)
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=200)


def assert_reported(result, path: Path | str, code: str) -> str:
    """Exit code 2, the error as one line naming ``path`` and the errno, no traceback."""
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, OSError), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    assert str(path) in lines[0] and f"({code})" in lines[0], lines[0]
    return lines[0]


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_out_an_existing_file(config, tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    assert_reported(invoke("run", config, "--out", out), out, "EEXIST")
    assert out.read_text() == "not a folder"


def test_out_below_a_file(config, tmp_path):
    parent = tmp_path / "file"
    parent.write_text("x")
    assert_reported(invoke("run", config, "--out", parent / "sub"), parent / "sub", "ENOTDIR")


def test_out_with_a_name_too_long(config, tmp_path):
    out = tmp_path / ("n" * 300)
    line = assert_reported(invoke("run", config, "--out", out), out, "ENAMETOOLONG")
    assert "too long" in line


def test_a_300_character_name_is_a_config_error(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("run", config, "--set", "name=" + "n" * 300)
    assert result.exit_code == 2 and "at most 100 characters" in result.output
    assert not (tmp_path / "results").exists()


def test_data_dir_a_file(tmp_path):
    data_dir = tmp_path / "data.txt"
    data_dir.write_text("x")
    result = invoke("data", "info", "--data-dir", data_dir)
    assert result.exit_code == 2 and "is a file" in result.output, result.output


def test_report_out_a_folder(tmp_path, monkeypatch):
    """The CLI layer: the report's own write (``Path.write_text``) hits a folder."""
    import userchoice.report

    folder = tmp_path / "report.html"
    folder.mkdir()
    monkeypatch.setattr(userchoice.report, "write_report",
                        lambda directories, target, **options: Path(target).write_text("<html>"))
    line = assert_reported(invoke("report", tmp_path, "--out", folder), folder, "EISDIR")
    assert "a file was expected" in line


@pytest.mark.parametrize(("code", "hint"), [(errno.EROFS, "read-only"),
                                            (errno.EACCES, "permission"),
                                            (errno.ENOSPC, "disk is full")])
def test_an_unwritable_output_folder(config, tmp_path, monkeypatch, code, hint):
    """A read-only file system, a folder without write permission, a full disk: injected at
    the first folder the sweep creates."""
    out = tmp_path / "readonly" / "results"
    original = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if Path(self) == out or out in Path(self).parents:
            raise OSError(code, os.strerror(code), str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    line = assert_reported(invoke("run", config, "--out", out), out, errno.errorcode[code])
    assert hint in line


class _FullDisk:
    """``os`` for ``userchoice.atomic``, whose flushes fail as on a full disk."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_writing_results(config, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(atomic, "os", _FullDisk())
    assert_reported(invoke("run", config, "--out", out), out, "ENOSPC")
    assert no_temporary_files(tmp_path)
    assert not (out / "manifest.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_folder_by_chmod(config, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_reported(invoke("run", config, "--out", folder / "x"), folder / "x", "EACCES")
    finally:
        folder.chmod(0o700)


def test_the_message_is_one_line_with_the_paths_and_a_hint():
    assert os_error_message(OSError(errno.EROFS, "Read-only file system", "/r/x")) == (
        "error: /r/x: Read-only file system (EROFS); the file system is read-only: write "
        "elsewhere (--out)")
    both = os_error_message(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"))
    assert both == "error: /a → /b: Invalid cross-device link (EXDEV)"
    assert os_error_message(OSError("odd")) == "error: odd"
