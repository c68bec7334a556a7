"""Property: whatever the config and wherever a sweep stops, running it again gives the tables
of an uninterrupted sweep (issue 10).

Random small trap configs (knob values and grid sizes vary, probing or not) are cut short after
k chunks (an exception, a Ctrl-C, or an executor that stops early), sometimes with one committed
part damaged afterwards; ``run_experiment`` again must give tables equal to those of one
uninterrupted run. Every config has one of two engine shapes (with or without probing) and an
even number of runs (chunks of two), so only two programs are ever compiled.
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import canonical_json
from userchoice.experiments.runner import local_runner, run_experiment
from userchoice.experiments.store import LOCK, TABLES, ResultsDir

CHUNK = 2
BASE = {
    "name": "property_trap",
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 200, "seed": 3}},
    "market": {"n_learners": 2},
    "learner": {"family": "squared"},
    "init": {"kind": "erm"},
    "engine": {"batch_size": 10, "steps": 60, "eval_every": 20},
}
PROBING = {"probers": [0], "source": "preferred", "n_probe": 20, "probe_batch": 5}


@st.composite
def sweeps(draw):
    """(config dict, number of chunks) of a random small sweep with an even number of runs."""
    knobs = {
        "seed": draw(st.integers(1, 3)),
        "tau": draw(st.sampled_from([0.3, 0.7, 1.0])),
        "lam": draw(st.sampled_from([[0.0, 0.1], [0.0, 0.01], [0.05, 0.2]])),  # two: even
        "eta": draw(st.lists(st.sampled_from([0.01, 0.02, 0.05]), min_size=1, max_size=2,
                             unique=True)),
    }
    raw = {**BASE, "knobs": knobs}
    if draw(st.booleans()):
        raw["probing"] = PROBING
        knobs["p"] = draw(st.sampled_from([[0.0, 0.5], [1.0], 0.2]))
    n_runs = knobs["seed"] * 2 * len(knobs["eta"]) * (len(knobs["p"]) if isinstance(
        knobs.get("p"), list) else 1)
    return raw, n_runs // CHUNK


def cut_short(k: int, how: str):
    """A runner that stops after ``k`` chunks: raising, interrupted, or simply stopping."""
    def run(plan, jobs, sizes):
        inner = local_runner(1)(plan, jobs, sizes)
        try:
            for count, item in enumerate(inner):
                if count == k:
                    if how == "stop":
                        return
                    raise KeyboardInterrupt if how == "interrupt" else RuntimeError("killed")
                yield item
        finally:
            inner.close()
    return run


def tables(out: Path) -> dict[str, pd.DataFrame]:
    store = ResultsDir(out)
    return {name: store.table(name).drop(columns=["chunk", "seconds"], errors="ignore")
            for name in TABLES}


@cache
def uninterrupted(text: str) -> dict[str, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "whole"
        run_experiment(config_from_dict(json.loads(text)), out, chunk_size=CHUNK)
        return tables(out)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sweep=sweeps(), data=st.data())
def test_a_sweep_cut_short_anywhere_resumes_to_the_uninterrupted_tables(sweep, data):
    raw, n_chunks = sweep
    k = data.draw(st.integers(0, n_chunks - 1), label="chunks committed before the stop")
    how = data.draw(st.sampled_from(["raise", "interrupt", "stop"]), label="how it stops")
    damage = data.draw(st.sampled_from([None, "learners", "market", "runs"]),
                       label="part damaged afterwards")
    config = config_from_dict(raw)
    expected = uninterrupted(canonical_json(raw))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "cut"
        if how == "stop":
            run_experiment(config, out, chunk_size=CHUNK, runner=cut_short(k, how))
        else:
            with pytest.raises(KeyboardInterrupt if how == "interrupt" else RuntimeError):
                run_experiment(config, out, chunk_size=CHUNK, runner=cut_short(k, how))
        committed = sorted(ResultsDir(out).finished_chunks())
        assert len(committed) == k and not (out / LOCK).exists()
        if damage is not None and committed:
            part = out / damage / f"{data.draw(st.sampled_from(committed))}.parquet"
            part.write_bytes(part.read_bytes()[:-20])
        summary = run_experiment(config, out)  # resume (the manifest keeps the chunk size)
        assert summary.skipped + summary.done == summary.total
        got = tables(out)
        for name in TABLES:
            pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True,
                                          obj=name)
