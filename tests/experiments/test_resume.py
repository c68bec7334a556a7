"""Resume that always works, results that never mix (issue 10, items 1, 2, 3 and 6).

Sweep identity (canonical config hash, input files' sha256), one writer per results folder
(the lock, per-writer staging, finished runs read from committed run ids) and verified parts
(damaged chunks reported and recomputed, damaged manifests named). Every sweep is the tiny trap
config of test_experiments' second group (batch 10, chunks of two runs), so they share its
compiled program.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import TINY_TRAP
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.data.common import file_record
from userchoice.experiments import store as store_module
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import make_groups, make_plan, run_id
from userchoice.experiments.runner import (
    SweepMismatch,
    config_hash,
    damaged_chunks,
    local_runner,
    run_experiment,
    status,
)
from userchoice.experiments.store import (
    LOCK,
    TABLES,
    DamagedResults,
    ResultsDir,
    ResultsLocked,
)
from userchoice.families import make_family
from userchoice.theory import trap_market

cli = CliRunner()
CHUNK = 2
TINY: dict[str, Any] = {**TINY_TRAP, "name": "resume_trap"}  # 12 runs: 6 chunks of two


def config(raw: dict[str, Any] = TINY, *overrides: str):
    return config_from_dict(copy.deepcopy(raw), overrides=list(overrides))


def flat(text: str) -> str:
    return " ".join(text.split())


def invoke(*args: Any):
    return cli.invoke(app, [str(a) for a in args], terminal_width=200)


def tables(out: Path, drop: tuple[str, ...] = ("seconds",)) -> dict[str, pd.DataFrame]:
    store = ResultsDir(out)
    return {name: store.table(name).drop(columns=list(drop), errors="ignore")
            for name in TABLES}


def assert_same_tables(a: Path, b: Path, **tolerance: float) -> None:
    left, right = tables(a), tables(b)
    for name in TABLES:
        assert len(left[name]) > 0, name
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=not tolerance,
                                      obj=name, **tolerance)


def first_chunks(k: int):
    """A runner that computes only the first ``k`` chunks it is given (a sweep cut short)."""
    def run(plan, jobs, sizes):
        yield from local_runner(1)(plan, jobs[:k], sizes)
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "tiny"
    summary = run_experiment(config(), out, chunk_size=CHUNK)
    assert (summary.total, summary.done) == (12, 12)
    return out


@pytest.fixture
def finished(reference, tmp_path) -> Path:
    """A copy of the finished reference sweep, to damage."""
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    return out


# ------------------------------------------------------------------ 1. canonical identity

REORDERED = {**TINY, "data": {"dataset": "trap", "options": {"seed": 3, "n_users": 200,
                                                             "gap": 10.0}},
             "reported": {"prober": {0.8: 0.78, 0: 0.6}, "metric": "test_loss"}}


def test_the_config_hash_ignores_key_order_and_key_types():
    base = config({**TINY, "reported": {"metric": "test_loss", "prober": {0: 0.6, 0.8: 0.78}}})
    assert config_hash(config(REORDERED)) == config_hash(base)
    # what the manifest stores (sorted keys, string keys) is the same sweep
    stored = json.loads(json.dumps(base.model_dump(mode="json"), sort_keys=True))
    assert config_hash(config_from_dict(stored)) == config_hash(base)
    assert config_hash(config(TINY, "knobs.tau=0.6")) != config_hash(base)


def test_words_and_the_papers_numbers_are_not_part_of_the_sweeps_identity():
    base = config(TINY)
    edited = config({**TINY, "description": "reworded", "reported": {"pooled": 0.79}})
    assert config_hash(edited) == config_hash(base)
    assert config_hash(config(TINY, "engine.steps=30")) != config_hash(base)


def test_resume_after_run_of_a_config_with_unsorted_keys(tmp_path):
    raw = {**REORDERED, "knobs": {**TINY["knobs"], "seed": 1, "eta": 0.02}}  # two runs
    path, out = tmp_path / "unsorted.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = invoke("run", path, "--out", out)
    assert result.exit_code == 0, result.output
    again = invoke("resume", out)
    assert again.exit_code == 0, again.output
    assert "0 done, 0 diverged, 0 failed, 2 already finished" in flat(again.output)
    rerun = invoke("run", path, "--out", out)  # running the same file again is a resume too
    assert rerun.exit_code == 0 and "2 already finished" in flat(rerun.output)


def test_a_folder_written_before_the_canonical_hash_still_resumes(finished):
    manifest = json.loads((finished / "manifest.json").read_text())
    for key in ("identity", "inputs"):  # what an older userchoice wrote
        del manifest[key]
    manifest["config_hash"] = "0123456789abcdef"  # its key-order dependent hash
    (finished / "manifest.json").write_text(json.dumps(manifest))
    summary = run_experiment(config(), finished)  # synthetic data: the run ids are unchanged
    assert (summary.skipped, summary.done) == (12, 0)
    assert "identity" in ResultsDir(finished).read_manifest()


def test_another_config_is_refused_saying_what_differs(reference):
    with pytest.raises(SweepMismatch, match=r"another config.*engine\.steps: 60 there, 80 here"):
        run_experiment(config(TINY, "engine.steps=80"), reference)


def test_a_finished_sweep_is_resumed_without_fitting_again(reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    from userchoice.experiments import runner as runner_module

    def no_fits(plan):
        raise AssertionError("a finished sweep fitted its initial parameters again")

    monkeypatch.setattr(runner_module, "fit_plan", no_fits)
    summary = run_experiment(config(), out)
    assert (summary.skipped, summary.done) == (12, 0)
    assert ResultsDir(out).read_manifest()["baseline"] == \
        ResultsDir(reference).read_manifest()["baseline"]


# ---------------------------------------------------------------- 2. input files' content

def trap_from_file(path, *, data_dir=None):
    """A trap market whose parameters are read from a JSON file (a file-backed dataset)."""
    market = trap_market(**json.loads(Path(path).read_text()))
    dataset = dataclasses.replace(market.dataset, provenance={
        **market.dataset.provenance, "files": [file_record(path)]})
    return dataclasses.replace(market, dataset=dataset)


trap_from_file.kind = "market"
PARAMS = {"gap": 10.0, "n_users": 200, "seed": 3}


def file_config(path: Path):
    return config({**TINY, "data": {"dataset": f"{__name__}:trap_from_file",
                                    "path": str(path)}})


def test_run_ids_hold_the_content_of_the_input_files(tmp_path):
    data = tmp_path / "trap.json"
    data.write_text(json.dumps(PARAMS))
    before = make_plan(file_config(data))
    assert [r["sha256"] for r in before.inputs] == [file_record(data)["sha256"]]
    data.write_text(json.dumps(PARAMS, indent=1))  # other bytes, the same numbers
    after = make_plan(file_config(data))
    assert before.inputs[0]["sha256"] != after.inputs[0]["sha256"]
    assert not before.run_ids & after.run_ids


def test_synthetic_datasets_keep_their_run_ids():
    cfg = config()
    ids = [rid for g in make_groups(cfg, make_family("squared")) for rid in g.run_ids]
    assert [rid for g in make_plan(cfg).groups for rid in g.run_ids] == ids  # no files
    assert ids[:2] == PINNED_IDS  # as before input files entered the ids
    row = make_groups(cfg, make_family("squared"))[0].rows[0]
    knobs = {k: v for k, v in row.items() if k not in ("run_id", "group")}
    assert run_id(cfg, {}, knobs) == run_id(cfg, {}, knobs, []) == ids[0]


def test_resume_refuses_changed_input_data_naming_the_file(tmp_path):
    data, out = tmp_path / "trap.json", tmp_path / "out"
    data.write_text(json.dumps(PARAMS))
    old_sha = file_record(data)["sha256"]
    run_experiment(file_config(data), out, chunk_size=CHUNK, runner=first_chunks(2))
    manifest = ResultsDir(out).read_manifest()
    assert [r["sha256"] for r in manifest["inputs"]] == [old_sha]
    assert status(out)["pending"] == 8

    data.write_text(json.dumps({**PARAMS, "gap": 10.5}))  # the data change under the sweep
    new_sha = file_record(data)["sha256"]
    result = invoke("resume", out)
    assert result.exit_code == 2, result.output
    text = flat(result.output)
    assert str(data) in text and old_sha in text and new_sha in text
    assert "other input data" in text and "fresh folder" in text
    assert ResultsDir(out).read_manifest() == manifest  # not overwritten
    assert status(out)["pending"] == 8 and not (out / LOCK).exists()

    data.write_text(json.dumps(PARAMS))  # the original data back: the resume goes on
    result = invoke("resume", out)
    assert result.exit_code == 0, result.output
    assert "8 done, 0 diverged, 0 failed, 4 already finished" in flat(result.output)


# ---------------------------------------------------------------- 3. one writer per folder

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from userchoice.experiments.store import ResultsDir

    with ResultsDir(Path(sys.argv[1])).lock():
        Path(sys.argv[2]).touch()
        time.sleep(120)
""")


def test_a_second_writer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path, reference):
    out, flag = tmp_path / "out", tmp_path / "locked"
    shutil.copytree(reference, out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(flag)])
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        result = invoke("resume", out)
        assert result.exit_code == 2, result.output
        text = flat(result.output)
        assert "being written by another sweep" in text
        assert f"pid {holder.pid} on host {socket.gethostname()}" in text
        assert str(out / LOCK) in text
        with pytest.raises(ResultsLocked, match=f"pid {holder.pid}"):
            run_experiment(config(), out)
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the lock file stays behind
        holder.wait(timeout=30)
    assert json.loads((out / LOCK).read_text())["pid"] == holder.pid

    result = invoke("resume", out)
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "took over the stale lock" in text and f"pid {holder.pid}" in text
    assert "12 already finished" in text
    assert not (out / LOCK).exists()


def test_a_lock_of_this_process_blocks_run_experiment(tmp_path):
    out = tmp_path / "out"
    with ResultsDir(out).lock() as lock:
        assert lock.owner["pid"] == os.getpid()
        with pytest.raises(ResultsLocked, match="being written by another sweep"):
            run_experiment(config(), out, chunk_size=CHUNK)
    assert not (out / LOCK).exists()


def test_a_lock_of_another_host_is_not_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.example",
                                        "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(ResultsLocked, match=r"elsewhere\.example.*another host"):
        run_experiment(config(), out)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_the_lock_is_released_when_the_sweep_stops(tmp_path, reference, stop):
    out = tmp_path / "out"

    def interrupted(plan, jobs, sizes):
        inner = local_runner(1)(plan, jobs, sizes)
        yield next(inner)
        inner.close()
        owner = json.loads((out / LOCK).read_text())  # held while the sweep runs
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        raise stop("stopped")

    with pytest.raises(stop):
        run_experiment(config(), out, chunk_size=CHUNK, runner=interrupted)
    assert not (out / LOCK).exists() and status(out)["pending"] == 10
    assert not list(out.glob(".writer-*"))
    run_experiment(config(), out)
    assert_same_tables(out, reference)


def test_parts_are_staged_per_writer_and_only_dead_writers_leftovers_removed(
        tmp_path, monkeypatch, reference):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    victim = sorted((out / "runs").glob("*.parquet"))[0]
    victim.unlink()  # one chunk to compute
    host = store_module._host_tag()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live_part = out / f".writer-{host}-{sleeper.pid}" / "learners-x.parquet"
    dead_part = out / f".writer-{host}-{dead.pid}" / "learners-y.parquet"
    for part in (live_part, dead_part):
        part.parent.mkdir()
        part.write_bytes(b"half a part")
    written = []
    real = store_module.atomic_write

    def recording(path, write):
        written.append(Path(path))
        return real(path, write)

    monkeypatch.setattr(store_module, "atomic_write", recording)
    try:
        with pytest.raises(RuntimeError, match="needs the lock"):
            ResultsDir(out).remove_temporary()
        summary = run_experiment(config(), out)
        assert (summary.done, summary.skipped) == (2, 10)
        assert live_part.is_file()  # another live writer's part is never deleted
        assert not dead_part.parent.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    staging = out / f".writer-{host}-{os.getpid()}"
    parts = [p for p in written if p.suffix == ".parquet"]
    assert len(parts) == 3 and all(p.parent == staging for p in parts)
    assert not staging.exists()
    assert_same_tables(out, reference)


def test_another_chunk_size_after_a_lost_manifest_computes_only_missing_runs(tmp_path,
                                                                             reference):
    out = tmp_path / "out"
    run_experiment(config(), out, chunk_size=CHUNK, runner=first_chunks(3))  # runs 0-5
    (out / "manifest.json").unlink()
    summary = run_experiment(config(), out, chunk_size=4)  # [0, 4) [4, 8) [8, 12)
    assert (summary.skipped, summary.done) == (6, 6)
    runs = ResultsDir(out).table("runs")
    assert len(runs) == 12 and runs["run_id"].is_unique
    assert set(runs["run_id"]) == set(tables(reference)["runs"]["run_id"])
    assert status(out)["pending"] == 0
    left, right = tables(out, ("seconds", "chunk")), tables(reference, ("seconds", "chunk"))
    for name in TABLES:  # other chunk compositions: equal to a few ulp (README)
        pd.testing.assert_frame_equal(left[name], right[name], rtol=2e-6, obj=name)


def test_a_short_last_chunk_is_padded_and_its_padding_dropped(tmp_path, reference):
    # 12 runs in chunks of 5: 5, 5, 2 → the last runs as 5 (its last run repeated)
    out = tmp_path / "out"
    summary = run_experiment(config(), out, chunk_size=5)
    assert (summary.total, summary.done) == (12, 12)
    runs = ResultsDir(out).table("runs")
    assert len(runs) == 12 and runs["run_id"].is_unique
    assert runs.groupby("chunk").size().sort_values().tolist() == [2, 5, 5]
    left, right = tables(out, ("seconds", "chunk")), tables(reference, ("seconds", "chunk"))
    for name in TABLES:  # other chunk compositions: equal to a few ulp (README)
        pd.testing.assert_frame_equal(left[name], right[name], rtol=2e-6, obj=name)


def test_runs_of_another_sweep_in_the_folder_are_refused_even_without_a_manifest(tmp_path):
    out = tmp_path / "out"
    run_experiment(config(), out, chunk_size=CHUNK, runner=first_chunks(1))
    (out / "manifest.json").unlink()
    with pytest.raises(SweepMismatch, match="not runs of this sweep"):
        run_experiment(config(TINY, "knobs.tau=0.6"), out, chunk_size=CHUNK)
    assert len(ResultsDir(out).table("runs")) == 2


# ---------------------------------------------------------------------- 6. verified parts

def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("table", ["learners", "market", "runs"])
def test_a_truncated_part_is_reported_and_recomputed(finished, reference, table):
    key = sorted(p.stem for p in (finished / "runs").glob("*.parquet"))[2]
    truncate(finished / table / f"{key}.parquet")
    assert status(finished)["pending"] == CHUNK
    damaged = damaged_chunks(finished)
    assert list(damaged) == [key] and table in damaged[key] and "unreadable" in damaged[key]
    assert key not in ResultsDir(finished).finished_chunks()
    assert len(ResultsDir(finished).table("runs")) == 12 - CHUNK

    result = invoke("status", finished)
    assert result.exit_code == 1, result.output
    assert f"damaged chunk {key}" in flat(result.output) and "2 pending" in flat(result.output)

    result = invoke("resume", finished)
    assert result.exit_code == 0, result.output
    assert "2 done, 0 diverged, 0 failed, 10 already finished" in flat(result.output)
    assert_same_tables(finished, reference)
    assert invoke("status", finished).exit_code == 0


@pytest.mark.parametrize("table", ["learners", "market"])
def test_a_part_with_other_row_counts_than_recorded_is_damaged(finished, reference, table):
    part = sorted((finished / table).glob("*.parquet"))[1]
    frame = pd.read_parquet(part)
    frame.iloc[:-3].to_parquet(part, index=False)  # a whole Parquet file, rows missing
    assert f"has {len(frame) - 3} rows" in damaged_chunks(finished)[part.stem]
    run_experiment(config(), finished)
    assert_same_tables(finished, reference)


def test_a_missing_part_is_damaged(finished, reference):
    part = sorted((finished / "market").glob("*.parquet"))[0]
    part.unlink()
    assert "missing" in damaged_chunks(finished)[part.stem]
    assert run_experiment(config(), finished).done == CHUNK
    assert_same_tables(finished, reference)


MANIFEST_DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "garbage": lambda text: "\x00\xff garbage {",
    "empty": lambda text: "",
    "a list": lambda text: "[1, 2, 3]",
    "no config": lambda text: json.dumps({k: v for k, v in json.loads(text).items()
                                          if k != "config"}),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_an_error_naming_the_file(finished, damage):
    manifest = finished / "manifest.json"
    manifest.write_bytes(MANIFEST_DAMAGE[damage](manifest.read_text()).encode(
        "latin-1" if damage == "garbage" else "utf-8"))
    for command in (["status", finished], ["resume", finished], ["report", finished],
                    ["plot", finished]):
        result = invoke(*command)
        assert result.exit_code == 2, (command, result.output)
        assert isinstance(result.exception, SystemExit), (command, result.exception)
        text = flat(result.output)
        assert "manifest.json is damaged" in text and "fresh folder" in text, text
    with pytest.raises(DamagedResults, match=r"manifest\.json is damaged"):
        run_experiment(config(), finished)


# The first run ids of TINY as computed before input files entered the ids (git 7ccaf3d).
PINNED_IDS = ["0fe239d2767c2a35", "6219984680e7abd9"]
