"""data fetch / import / info: verification, atomic writes, clear offline errors."""

from __future__ import annotations

import hashlib
import urllib.error
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.data import fetch as fetch_module
from userchoice.data.common import DataFormatError
from userchoice.data.fetch import Download, DownloadError, fetch, import_file, inventory, plan


def make_zip(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_plan_names_the_official_files():
    (census,) = plan("census", states=("AL",), year=2018)
    assert census.url.endswith("/pums/2018/1-Year/csv_pal.zip")
    assert census.member == "psam_p01.csv"
    (ml,) = plan("movielens", variant="ml-100k")
    assert ml.member == "u.data" and ml.member_sha256 is not None
    amazon = plan("amazon")
    assert len(amazon) == 9 and all(a.sha256 and a.size for a in amazon)
    with pytest.raises(ValueError, match="unknown state 'XX'"):
        plan("census", states=("XX",))
    with pytest.raises(ValueError, match="variant must be one of"):
        plan("movielens", variant="ml-5m")


def test_fetch_verifies_and_moves_into_place(tmp_path, monkeypatch):
    payload = b"1\t2\t5\t881250949\n"
    source = make_zip(tmp_path / "src.zip", "ml-100k/u.data", payload)
    item = Download(source.as_uri(), "ml-100k.zip", member="u.data",
                    member_sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(fetch_module, "plan", lambda name, **kw: [item])
    root = tmp_path / "data"
    (record,) = fetch("movielens", root=root)
    assert record["status"] == "downloaded" and record["pinned"]
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert leftovers(root / "movielens") == ["ml-100k.zip"]
    (again,) = fetch("movielens", root=root)
    assert again["status"] == "already present"


def test_a_file_that_does_not_verify_is_never_left_behind(tmp_path, monkeypatch):
    source = make_zip(tmp_path / "src.zip", "u.data", b"tampered")
    item = Download(source.as_uri(), "ml-100k.zip", member="u.data", member_sha256="0" * 64)
    monkeypatch.setattr(fetch_module, "plan", lambda name, **kw: [item])
    with pytest.raises(DownloadError, match=r"sha256 .* != published"):
        fetch("movielens", root=tmp_path / "data")
    assert leftovers(tmp_path / "data" / "movielens") == []
    html = tmp_path / "page.zip"
    html.write_bytes(b"<!DOCTYPE html><html>Access denied</html>")
    item = Download(html.as_uri(), "csv_pal.zip", member="psam_p01.csv")
    monkeypatch.setattr(fetch_module, "plan", lambda name, **kw: [item])
    with pytest.raises(DownloadError, match="not a valid zip"):
        fetch("census", root=tmp_path / "data")
    assert leftovers(tmp_path / "data" / "census") == []


def test_offline_fetch_says_how_to_import(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    with pytest.raises(DownloadError, match="userchoice data import movielens PATH"):
        fetch("movielens", root=tmp_path, variant="ml-100k", opener=offline)
    assert leftovers(tmp_path / "movielens") == []


def test_import_checks_format_and_is_atomic(tmp_path):
    good = tmp_path / "u.data"
    good.write_text("1\t2\t5\t881250949\n")
    target = import_file("movielens", good, root=tmp_path / "data")
    assert target.read_text() == good.read_text()
    linked = import_file("census", good, root=tmp_path / "data", link=True)
    assert linked.is_symlink()
    assert [f["file"] for f in inventory(tmp_path / "data")["movielens"]] == [str(target)]
    page = tmp_path / "ratings.dat"
    page.write_text("<html><body>404</body></html>")
    with pytest.raises(DataFormatError, match="HTML page"):
        import_file("movielens", page, root=tmp_path / "data")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="is empty"):
        import_file("census", empty, root=tmp_path / "data")
    with pytest.raises(ValueError, match="dataset must be one of"):
        import_file("imdb", good, root=tmp_path / "data")


def test_data_cli(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "info", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "userchoice data fetch census" in result.output
    assert runner.invoke(app, ["data", "fetch", "imdb", "--data-dir", str(tmp_path)]).exit_code == 2
    source = tmp_path / "u.data"
    source.write_text("1\t2\t5\t881250949\n")
    result = runner.invoke(app, ["data", "import", "movielens", str(source), "--data-dir",
                                 str(tmp_path / "d")])
    assert result.exit_code == 0 and (tmp_path / "d" / "movielens" / "u.data").exists()
    missing = runner.invoke(app, ["data", "import", "movielens", str(tmp_path / "nope")])
    assert missing.exit_code == 2
