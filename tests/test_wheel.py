"""The built wheel reproduces on its own: no checkout, no network, no staged data.

The wheel is built from a copy of the sources (``pip wheel --no-deps --no-build-isolation``:
setuptools comes from this environment, so no network), installed into a fresh virtual
environment (``--system-site-packages`` for the dependencies; the wheel's ``userchoice`` shadows
the editable checkout), and ``userchoice reproduce census --quick`` runs from a folder outside
the checkout with HOME and the XDG folders in temporary folders and no ``USERCHOICE_*``
variable: the configs and the ACS sample must come from the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import userchoice
from userchoice.engine import compile_cache

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(userchoice.__file__).resolve().parent
CENSUS = ["census_bad", "census_bad_leader", "census_bad_majority", "census_good",
          "census_good_2probe", "census_good_kappa", "census_good_leader",
          "census_good_majority", "census_nprobe"]

pytestmark = pytest.mark.skipif(
    not (ROOT / "pyproject.toml").is_file() or not SRC.is_relative_to(ROOT),
    reason="needs the source checkout the package is installed from (editable)")


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900
        ) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout's packaging files and sources (so a build
    never writes build/ or *.egg-info into the checkout other sessions work in)."""
    base = tmp_path_factory.mktemp("wheel")
    tree = base / "tree"
    (tree / "src").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(SRC, tree / "src" / "userchoice",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    built = run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps",
                 "--no-build-isolation", "-w", str(base / "dist")], dict(os.environ), base)
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = (base / "dist").glob("userchoice-*.whl")
    return path


def test_the_wheel_holds_the_configs_and_the_sample_and_no_dev_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    shipped = {p.relative_to(SRC.parent).as_posix() for p in (SRC / "configs").glob("*/*.yaml")}
    assert len(shipped) >= 63 and shipped <= set(names)
    assert "userchoice/samples/acs_2017_1yr_person_AL_sample5000.csv.gz" in names
    assert "userchoice/samples/SOURCE.md" in names
    assert all(n.startswith(("userchoice/", "userchoice-")) for n in names), names
    dev = [n for n in names if any(part in n for part in (
        "tests/", "conftest", "test_", "benchmarks/", "tools/", "docs/", "__pycache__", ".pyc",
        ".ipynb", "egg-info"))]
    assert not dev, dev


@pytest.mark.slow
def test_reproduce_census_quick_from_the_installed_wheel(wheel, tmp_path):
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                str(venv)], dict(os.environ), tmp_path)
    assert made.returncode == 0, made.stderr
    python, cli = venv / "bin" / "python", venv / "bin" / "userchoice"
    # pip of the base environment, run by the venv's interpreter, installs into the venv
    installed = run([str(python), "-m", "pip", "install", "--no-deps", str(wheel)],
                    dict(os.environ), tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("USERCHOICE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               HOME=str(tmp_path / "home"), MPLCONFIGDIR=str(tmp_path / "mpl"),
               **{f"XDG_{k}_HOME": str(tmp_path / f"xdg-{k.lower()}")
                  for k in ("DATA", "CACHE", "CONFIG", "STATE")})
    # The one shared thing: compiled programs (the census quick configs' shapes were compiled
    # by the shipped-config tests); a cache holds machine code keyed by the program, no data.
    folder = compile_cache.cache_dir()
    env[compile_cache.ENV] = str(folder) if folder is not None else "off"
    where = run([str(python), "-c", "import userchoice; print(userchoice.__file__)"], env, work)
    assert where.returncode == 0, where.stderr
    module = Path(where.stdout.strip()).resolve()
    assert module.is_relative_to(venv.resolve()) and not module.is_relative_to(ROOT), module

    out = tmp_path / "out"
    done = run([str(cli), "reproduce", "census", "--quick", "--out", str(out)], env, work)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    record = json.loads((out / "reproduce.json").read_text())
    assert record["experiments"] == CENSUS
    assert not record["errors"] and not record["figure_errors"]
    summary = (out / "summary.md").read_text()
    for name in CENSUS:
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["status"] == "finished", name
        assert record["runs"][name]["total"] == manifest["n_runs"] > 0
        assert f"## {name}" in summary
        # the configs and the data came from the installed package
        assert all(Path(c).resolve().is_relative_to(venv.resolve()) for c in record["configs"])
        assert [Path(i["path"]).parent for i in manifest["inputs"]] == [
            module.parent / "samples"], name
    assert not (tmp_path / "xdg-data" / "userchoice").exists()  # nothing fetched

    # a set whose data the user has not fetched says which command gets it
    missing = run([str(cli), "reproduce", "movielens", "--quick", "--no-figures", "--out",
                   str(tmp_path / "ml")], env, work)
    assert missing.returncode != 0
    assert "userchoice data fetch movielens --variant ml-100k" in " ".join(
        (missing.stdout + missing.stderr).split()), missing.stdout + missing.stderr
