"""data fetch / import / info: verification, atomic writes, clear offline errors; the data
directory's location; the command that gets a file a config names."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.data import fetch as fetch_module
from userchoice.data.census import write_synthetic_acs
from userchoice.data.common import DataFormatError, DatasetNotFoundError, data_dir
from userchoice.data.fetch import (
    Download,
    DownloadError,
    UnverifiedImportWarning,
    fetch,
    fetch_options_for,
    how_to_get,
    import_file,
    inventory,
    missing_files_error,
    plan,
    remove_stale_temporaries,
    verify_import,
)
from userchoice.data.registry import get_dataset


def local_downloader(url, output_file, pooch, check_only=False):
    """A pooch downloader for file:// URLs (the tests' "server"), writing like HTTPDownloader."""
    source = Path(urlparse(url).path)
    if check_only:
        return source.is_file()
    with open(source, "rb") as src, open(output_file, "wb") as out:
        shutil.copyfileobj(src, out)
    return None


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
    (record,) = fetch("movielens", root=root, downloader=local_downloader)
    assert record["status"] == "downloaded" and record["pinned"]
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert leftovers(root / "movielens") == ["ml-100k.zip"]  # no staging folder left
    assert (root / "movielens" / "ml-100k.zip").read_bytes() == source.read_bytes()
    assert (root / "movielens" / "ml-100k.zip").stat().st_mode & 0o777 != 0o600
    (again,) = fetch("movielens", root=root, downloader=lambda *a, **k: pytest.fail("fetched"))
    assert again["status"] == "already present"


def test_pooch_checks_the_published_sha256_and_reports_progress(tmp_path, monkeypatch):
    payload = b'{"rating": 5, "text": "a"}\n' * 50
    source = tmp_path / "All_Beauty.jsonl"
    source.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(fetch_module, "plan", lambda name, **kw: [
        Download(source.as_uri(), "All_Beauty.jsonl", len(payload), "0" * 64)])
    with pytest.raises(DownloadError, match=r"All_Beauty\.jsonl: .*hash"):
        fetch("amazon", root=tmp_path / "data", downloader=local_downloader)
    assert leftovers(tmp_path / "data" / "amazon") == []
    # the default downloader is pooch's HTTPDownloader, driving our progress callback
    import pooch

    seen = []

    class FakeHTTP(pooch.HTTPDownloader):
        def __call__(self, url, output_file, pooch_, check_only=False):
            self.progressbar.total = len(payload)
            for _ in range(3):
                self.progressbar.update(len(payload) // 3)
            local_downloader(url, output_file, pooch_)

    monkeypatch.setattr(pooch, "HTTPDownloader", FakeHTTP)
    monkeypatch.setattr(fetch_module, "plan", lambda name, **kw: [
        Download(source.as_uri(), "All_Beauty.jsonl", len(payload), digest)])
    (record,) = fetch("amazon", root=tmp_path / "data",
                      progress=lambda name, done, total: seen.append((name, done, total)))
    assert record["status"] == "downloaded" and record["sha256"] == digest
    assert seen[-1] == ("All_Beauty.jsonl", 3 * (len(payload) // 3), len(payload))


def test_a_file_that_does_not_verify_is_never_left_behind(tmp_path, monkeypatch):
    source = make_zip(tmp_path / "src.zip", "u.data", b"tampered")
    item = Download(source.as_uri(), "ml-100k.zip", member="u.data", member_sha256="0" * 64)
    monkeypatch.setattr(fetch_module, "plan", lambda name, **kw: [item])
    with pytest.raises(DownloadError, match=r"sha256 .* != published"):
        fetch("movielens", root=tmp_path / "data", downloader=local_downloader)
    assert leftovers(tmp_path / "data" / "movielens") == []
    html = tmp_path / "page.zip"
    html.write_bytes(b"<!DOCTYPE html><html>Access denied</html>")
    item = Download(html.as_uri(), "csv_pal.zip", member="psam_p01.csv")
    monkeypatch.setattr(fetch_module, "plan", lambda name, **kw: [item])
    with pytest.raises(DownloadError, match="not a valid zip"):
        fetch("census", root=tmp_path / "data", downloader=local_downloader)
    assert leftovers(tmp_path / "data" / "census") == []


def test_offline_fetch_says_how_to_import(tmp_path):
    import requests

    def offline(url, output_file, pooch, check_only=False):
        raise requests.exceptions.ConnectionError("Name or service not known")

    with pytest.raises(DownloadError,
                       match=r"userchoice data import movielens /path/to/ml-100k\.zip"):
        fetch("movielens", root=tmp_path, variant="ml-100k", downloader=offline)
    assert leftovers(tmp_path / "movielens") == []


def test_stale_staging_folders_of_a_killed_fetch_are_removed(tmp_path):
    folder = tmp_path / "movielens"
    stale, fresh = folder / ".fetch-ml-100k.zip.abc.tmp", folder / ".fetch-ml-1m.zip.def.tmp"
    for staging in (stale, fresh):
        staging.mkdir(parents=True)
        (staging / "tmpdownload").write_bytes(b"partial")
    old = time.time() - 3600
    for path in (stale / "tmpdownload", stale):
        os.utime(path, (old, old))
    os.utime(fresh, (old, old))  # the folder is old but pooch is still writing inside it
    assert remove_stale_temporaries(folder) == [stale]
    assert leftovers(folder) == [fresh.name]


def test_the_data_directory_location(tmp_path, monkeypatch):
    monkeypatch.delenv("USERCHOICE_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "userchoice"  # platformdirs, on Linux
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".local" / "share" / "userchoice"
    monkeypatch.setenv("USERCHOICE_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "flag") == tmp_path / "flag"  # --data-dir first


# --- the command that gets a file a config names ---------------------------------------------


def test_fetch_options_name_the_download_that_writes_a_file():
    assert fetch_options_for("census", "csv_pal_2018.zip") == {"states": ("AL",), "year": 2018}
    assert fetch_options_for("census", "csv_pxx_2018.zip") is None  # no such state
    assert fetch_options_for("movielens", "ml-100k.zip") == {"variant": "ml-100k"}
    assert fetch_options_for("movielens", "u.data.gz") is None
    assert fetch_options_for("amazon", "Software.jsonl") == {"categories": ("Software",)}
    assert fetch_options_for("amazon", "Books.jsonl") is None  # no published checksum
    assert fetch_options_for("trap", "x.csv") is None  # reads no files


def test_how_to_get_names_fetch_or_import(tmp_path):
    root = tmp_path / "data"
    ml = how_to_get("movielens", [root / "movielens" / "ml-100k.zip"], root)
    assert "Get it with:\n  userchoice data fetch movielens --variant ml-100k\n" in ml
    assert "userchoice data import movielens /path/to/ml-100k.zip" in ml
    both = how_to_get("amazon", [root / "amazon" / "Software.jsonl",
                                 root / "amazon" / "Gift_Cards.jsonl",
                                 root / "amazon" / "mine.jsonl.gz"], root)
    assert "  userchoice data fetch amazon --category Software --category Gift_Cards\n" in both
    assert "Import it with:\n  userchoice data import amazon /path/to/mine.jsonl.gz" in both
    years = how_to_get("census", [root / "census" / "csv_pal_2017.zip",
                                  root / "census" / "csv_pak_2018.zip"], root)
    assert "  userchoice data fetch census --state AL --year 2017\n" \
           "  userchoice data fetch census --state AK --year 2018\n" in years
    elsewhere = how_to_get("census", [tmp_path / "mine" / "csv_pal_2018.zip"], root)
    assert "data fetch" not in elsewhere and "fix data.path" in elsewhere


def test_a_missing_file_is_an_error_naming_the_command(tmp_path):
    root = tmp_path / "data"
    present = root / "census" / "here.csv"
    write_synthetic_acs(present, 40, seed=0)
    assert missing_files_error("census", str(present), root) is None
    error = missing_files_error("census", [str(present), str(root / "census" /
                                                            "csv_pal_2018.zip")], root)
    assert isinstance(error, DatasetNotFoundError) and isinstance(error, FileNotFoundError)
    assert "userchoice data fetch census --state AL --year 2018" in str(error)
    assert str(present) not in str(error)  # only what is missing
    with pytest.raises(DatasetNotFoundError, match="data fetch movielens --variant ml-10m"):
        get_dataset("movielens").load(path=str(root / "movielens" / "ml-10m.zip"),
                                      data_dir=root)


def test_import_checks_format_and_is_atomic(tmp_path):
    good = tmp_path / "u.data"
    good.write_text("1\t2\t5\t881250949\n")
    target = import_file("movielens", good, root=tmp_path / "data")
    assert target.read_text() == good.read_text()
    other = tmp_path / "linked" / "u.data"
    other.parent.mkdir()
    other.write_text("1\t3\t4\t881250949\n")
    linked = import_file("movielens", other, root=tmp_path / "data2", link=True)
    assert linked.is_symlink() and linked.read_text() == other.read_text()
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


# --- data import verifies the whole file and never destroys a good copy ----------------------

GOOD_LINES = [f"{u}\t{i}\t{1 + (u * i) % 5}\t88125{u:04d}\n"
              for u in range(1, 40) for i in range(1, 20)]
GOOD_RATINGS = "".join(GOOD_LINES)


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def _corrupt(payload: bytes) -> bytes:
    damaged = bytearray(payload)
    damaged[40:56] = b"\xff" * 16  # inside the deflate stream: zlib "invalid ..." on reading
    return bytes(damaged)


def _census_csv(path: Path, n: int = 60) -> Path:
    return write_synthetic_acs(path, n, seed=1)


BROKEN = {  # dataset, file name, good content, broken content, words in the error
    "movielens, rating 6 on line 501": (
        "movielens", "u.data", GOOD_RATINGS.encode(),
        "".join([*GOOD_LINES[:500], "7\t7\t6\t881250949\n", *GOOD_LINES[500:]]).encode(),
        ["line 501", "'6'", "star range"]),
    "movielens, truncated gzip": (
        "movielens", "u.data.gz", _gz(GOOD_RATINGS), _gz(GOOD_RATINGS)[:-200],
        ["truncated or corrupt", "EOFError"]),
    "movielens, corrupt gzip": (
        "movielens", "u.data.gz", _gz(GOOD_RATINGS), _corrupt(_gz(GOOD_RATINGS)),
        ["truncated or corrupt", "error"]),
    "census, a required column missing": (
        "census", "psam_p01.csv", None, b"SERIALNO,AGEP\n1,30\n2,40\n", ["ESR"]),
    "amazon, rating 7 on line 3": (
        "amazon", "All_Beauty.jsonl",
        b'{"rating": 5, "text": "a"}\n' * 3,
        b'{"rating": 5, "text": "a"}\n{"rating": 4, "text": "b"}\n{"rating": 7, "text": "c"}\n',
        ["line 3", "7"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_file_never_replaces_a_good_copy(tmp_path, case):
    name, filename, good, broken, words = BROKEN[case]
    root = tmp_path / "data"
    (tmp_path / "good").mkdir()
    (tmp_path / "broken").mkdir()
    good_file = tmp_path / "good" / filename
    if good is None:
        _census_csv(good_file)
    else:
        good_file.write_bytes(good)
    target = import_file(name, good_file, root=root)
    kept = target.read_bytes()
    bad_file = tmp_path / "broken" / filename
    bad_file.write_bytes(broken)
    with pytest.raises(DataFormatError) as caught:
        import_file(name, bad_file, root=root)
    message = str(caught.value)
    assert str(bad_file) in message and "not imported" in message and "--force" in message
    assert f"{target}, is kept" in message
    for word in words:
        assert word in message, message
    assert target.read_bytes() == kept  # the good copy is untouched
    assert leftovers(root / name) == [filename]
    with pytest.raises(DataFormatError):  # also when linking
        import_file(name, bad_file, root=root, link=True)
    assert not target.is_symlink() and target.read_bytes() == kept
    with pytest.warns(UnverifiedImportWarning, match="imported anyway"):
        forced = import_file(name, bad_file, root=root, force=True)
    assert forced == target and target.read_bytes() == broken


def test_a_broken_file_is_not_imported_where_there_is_no_copy(tmp_path):
    bad = tmp_path / "ratings.dat"
    bad.write_text("1::2::4::881250949\n1::3::-1::881250950\n")
    with pytest.raises(DataFormatError, match=r"line 2.*'-1'") as caught:
        import_file("movielens", bad, root=tmp_path / "data")
    assert "is kept" not in str(caught.value)
    assert not (tmp_path / "data" / "movielens" / "ratings.dat").exists()
    bad.write_text("1::2::4::881250949\n1::3::5::881250950\n1::2::3::881250951\n")
    with pytest.raises(DataFormatError, match="user 1 rates movie 2 more than once"):
        import_file("movielens", bad, root=tmp_path / "data")


def test_verify_import_summarises_what_it_read(tmp_path):
    good = tmp_path / "u.data"
    good.write_text(GOOD_RATINGS)
    summary = verify_import("movielens", good)
    assert summary["ratings"] == 39 * 19 and summary["rating_scale"]["low"] == 0.5
    census = verify_import("census", _census_csv(tmp_path / "psam_p01.csv"))
    assert census["rows"] == {"psam_p01.csv": 60} and "ACSEmployment" in census["tasks"]


def test_stale_temporary_files_of_a_killed_import_are_removed(tmp_path):
    root = tmp_path / "data"
    folder = root / "movielens"
    folder.mkdir(parents=True)
    stale = [folder / ".u.data.k1ll3d_1.tmp", folder / ".ratings.dat.link"]
    fresh = folder / ".u.data.inflight.tmp"  # another import writing right now
    keep = [folder / "notes.tmp", folder / ".hidden_config"]  # not an import's temporaries
    for path in (*stale, fresh, *keep):
        path.write_bytes(b"partial")
    old = time.time() - 3600
    for path in (*stale, *keep):
        os.utime(path, (old, old))
    source = tmp_path / "u.data"
    source.write_text(GOOD_RATINGS)
    import_file("movielens", source, root=root)
    assert leftovers(folder) == sorted([".hidden_config", ".u.data.inflight.tmp", "notes.tmp",
                                        "u.data"])


def test_data_import_cli_refuses_a_broken_file_unless_forced(tmp_path):
    runner = CliRunner(env={"COLUMNS": "1000"})
    root = tmp_path / "d"
    good = tmp_path / "good" / "u.data.gz"
    good.parent.mkdir()
    good.write_bytes(_gz(GOOD_RATINGS))
    args = ["data", "import", "movielens", "--data-dir", str(root)]
    assert runner.invoke(app, [*args, str(good)]).exit_code == 0
    for payload in (_gz(GOOD_RATINGS)[:-200], _corrupt(_gz(GOOD_RATINGS))):
        bad = tmp_path / "bad" / "u.data.gz"
        bad.parent.mkdir(exist_ok=True)
        bad.write_bytes(payload)
        result = runner.invoke(app, [*args, str(bad)])
        output = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert "Aborted" not in output and "truncated or corrupt" in output
        assert "is kept" in output and "--force" in output
        assert (root / "movielens" / "u.data.gz").read_bytes() == good.read_bytes()
    forced = runner.invoke(app, [*args, str(bad), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "warning" in forced.output and "imported anyway" in " ".join(forced.output.split())
    assert (root / "movielens" / "u.data.gz").read_bytes() == bad.read_bytes()
