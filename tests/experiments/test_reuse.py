"""Runs computed once: a sweep copies the runs another results directory holds (same run id).

The donor is TINY_TRAP without ridge (λ = 0: 6 runs); the taker is TINY_TRAP (λ ∈ {0, 0.1}: 12
runs, the donor's 6 among them, every other one in run order: λ is the innermost knob axis).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import TINY_TRAP
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import plan_without_fits
from userchoice.experiments.reuse import PREFIX
from userchoice.experiments.runner import dry_run, run_experiment
from userchoice.experiments.store import TABLES, ResultsDir, ResultsError

CHUNK = 2
TAKER = {**TINY_TRAP, "name": "taker"}  # seeds 3 × η 2 × λ 2
DONOR = {**TINY_TRAP, "name": "donor", "knobs": {**TINY_TRAP["knobs"], "lam": 0.0}}


def config(raw: dict):
    return config_from_dict(copy.deepcopy(raw))


def frames(out: Path) -> dict[str, pd.DataFrame]:
    store = ResultsDir(out)
    return {name: store.table(name).sort_values(
        [c for c in ("run_id", "step", "learner") if c in store.table(name)]
    ).reset_index(drop=True) for name in TABLES}


@pytest.fixture(scope="module")
def donor(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("donor")
    assert run_experiment(config(DONOR), out, chunk_size=CHUNK).done == 6
    return out


@pytest.fixture(scope="module")
def computed(tmp_path_factory) -> Path:
    """The taker computed whole, without reuse."""
    out = tmp_path_factory.mktemp("computed")
    assert run_experiment(config(TAKER), out, chunk_size=CHUNK).done == 12
    return out


@pytest.fixture(scope="module")
def taker(tmp_path_factory, donor) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("taker")
    return out, run_experiment(config(TAKER), out, chunk_size=CHUNK, reuse=[donor])


def test_the_shared_runs_are_copied_and_the_rest_computed(taker, donor):
    out, summary = taker
    shared = plan_without_fits(config(TAKER)).run_ids & plan_without_fits(config(DONOR)).run_ids
    assert len(shared) == 6
    assert (summary.total, summary.reused, summary.done, summary.skipped) == (12, 6, 6, 0)
    runs = ResultsDir(out).table("runs")
    copied = runs[runs["chunk"].str.startswith(PREFIX)]
    assert set(copied["run_id"]) == shared
    assert json.loads((out / "manifest.json").read_text())["reused"] == {str(donor): 6}
    # The copies are the donor's rows, bit for bit (every table).
    mine, theirs = frames(out), frames(donor)
    for name in ("learners", "market"):
        ours = mine[name][mine[name]["run_id"].isin(shared)].reset_index(drop=True)
        pd.testing.assert_frame_equal(ours, theirs[name], check_exact=True, obj=name)


def test_the_computed_runs_pack_into_full_chunks(taker):
    # Without leaving the copies out of the chunking, each fixed chunk would hold one copied
    # run and compute its other one padded to two: six chunks instead of three.
    runs = ResultsDir(taker[0]).table("runs")
    computed = runs[~runs["chunk"].str.startswith(PREFIX)]
    assert computed.groupby("chunk").size().tolist() == [CHUNK] * 3


def test_a_sweep_with_reuse_equals_the_sweep_computed_whole(taker, computed):
    mine, whole = frames(taker[0]), frames(computed)
    for name in TABLES:
        left, right = mine[name], whole[name]
        assert list(left.columns) == list(right.columns) and len(left) == len(right) > 0
        for column in left.columns:
            if column in ("seconds", "chunk"):
                continue
            if left[column].dtype.kind == "f":  # float32 batch invariance (test_simulate)
                np.testing.assert_allclose(left[column], right[column], rtol=2e-6, atol=1e-7,
                                           err_msg=f"{name}.{column}")
            else:
                assert left[column].tolist() == right[column].tolist(), f"{name}.{column}"


def test_a_resumed_sweep_copies_and_computes_nothing_more(taker, donor):
    out, _ = taker
    before = frames(out)
    summary = run_experiment(config(TAKER), out, chunk_size=CHUNK, reuse=[donor])
    assert (summary.reused, summary.done, summary.skipped) == (0, 0, 12)
    assert json.loads((out / "manifest.json").read_text())["reused"] == {str(donor): 6}
    for name in TABLES:
        pd.testing.assert_frame_equal(frames(out)[name], before[name], check_exact=True)


def test_a_resumed_sweep_recomputes_exactly_its_missing_chunk(tmp_path, donor):
    out = tmp_path / "taker"
    run_experiment(config(TAKER), out, chunk_size=CHUNK, reuse=[donor])
    store = ResultsDir(out)
    lost = sorted(k for k in store.finished_chunks() if not k.startswith(PREFIX))[0]
    (out / "runs" / f"{lost}.parquet").unlink()  # as if killed before its commit
    summary = run_experiment(config(TAKER), out, chunk_size=CHUNK, reuse=[donor])
    assert (summary.reused, summary.done, summary.skipped) == (0, CHUNK, 12 - CHUNK)
    assert lost in store.finished_chunks()  # the same chunk, not a repacking of its runs


def test_a_donor_of_another_sweep_gives_nothing(tmp_path, donor):
    other = {**TAKER, "data": {**TAKER["data"], "options": {**TAKER["data"]["options"],
                                                            "seed": 4}}}
    summary = run_experiment(config(other), tmp_path / "other", chunk_size=CHUNK,
                             reuse=[donor])
    assert (summary.reused, summary.done) == (0, 12)


def test_failed_runs_are_not_copied(tmp_path, donor):
    damaged = tmp_path / "donor"
    damaged.mkdir()
    for path in donor.rglob("*"):
        if path.is_file() and "writer" not in path.name:
            target = damaged / path.relative_to(donor)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    part = sorted((damaged / "runs").glob("*.parquet"))[0]
    table = pq.read_table(part)
    frame = table.to_pandas()
    frame["status"] = "failed"
    pq.write_table(pa_table(frame, table.schema.metadata), part)
    summary = run_experiment(config(TAKER), tmp_path / "taker", chunk_size=CHUNK,
                             reuse=[damaged])
    assert summary.reused == 6 - len(frame) and summary.done == 6 + len(frame)


def pa_table(frame: pd.DataFrame, metadata):
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.replace_schema_metadata(metadata)


def test_reusing_what_is_not_a_results_directory_names_it(tmp_path):
    with pytest.raises(ResultsError, match=r"nowhere.*not a results directory"):
        run_experiment(config(TAKER), tmp_path / "out", chunk_size=CHUNK,
                       reuse=[tmp_path / "nowhere"])
    assert not (tmp_path / "out" / "runs").exists()


def test_the_dry_run_counts_what_it_would_copy(tmp_path, donor):
    plan = dry_run(config(TAKER), tmp_path / "out", chunk_size=CHUNK, reuse=[donor])
    assert (plan.runs, plan.finished, plan.reusable, plan.pending, plan.chunks) == (12, 0, 6, 6, 3)


def test_cli_run_reuse(tmp_path, donor):
    path = tmp_path / "taker.yaml"
    path.write_text(json.dumps(TAKER))  # YAML reads JSON
    cli = CliRunner()
    dry = cli.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--reuse",
                           str(donor), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "6 to copy from --reuse, 6 to compute" in " ".join(dry.output.split())
    done = cli.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--reuse",
                            str(donor)])
    assert done.exit_code == 0, done.output
    assert "6 copied from --reuse" in " ".join(done.output.split())
    bad = cli.invoke(app, ["run", str(path), "--out", str(tmp_path / "bad"), "--reuse",
                           str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "not a results directory" in " ".join(bad.output.split())
