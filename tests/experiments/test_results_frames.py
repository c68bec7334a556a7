"""Results as data from disk: ResultsDir.to_dataframe / to_xarray (and Results, through
load_results) agree with the SimulationResult of the same runs, keep diverged runs apart and
leave failed runs out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import userchoice
from userchoice import simulate
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.plan import make_plan
from userchoice.experiments.runner import run_experiment
from userchoice.experiments.store import RUN_STATUSES, ResultsDir
from userchoice.metrics import METRICS

# Two learners, learner 1 probing, a per-learner prior: one compiled shape, 4 runs.
CONFIG = {
    "name": "frames_trap", "description": "frames <test>",
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 200, "seed": 3}},
    "market": {"n_learners": 2}, "learner": {"family": "squared"}, "init": {"kind": "erm"},
    "engine": {"batch_size": 10, "steps": 40, "eval_every": 20},
    "probing": {"probers": [1], "n_probe": 10, "probe_batch": 5},
    "knobs": {"seed": 2, "tau": 0.7, "p": [0, 1], "eta": 0.02, "prior": [1.0, 2.0]},
}
KEYS = ["run_id", "step", "learner"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The config run into a results directory, and the same runs simulated directly."""
    config = config_from_dict(CONFIG)
    folder = tmp_path_factory.mktemp("frames") / "frames_trap"
    run_experiment(config, folder)
    plan = make_plan(config)
    (group,) = plan.groups
    chunk = json.loads((folder / "manifest.json").read_text())["chunk_sizes"]["0"]
    result = simulate(plan.market, group.spec, group.knobs, init_params=plan.init_params,
                      chunk_size=chunk, workers=1)  # the sweep's chunks
    return ResultsDir(folder), result, list(group.run_ids)


def simulated(result, run_ids, kind):
    frame = result.to_dataframe(kind)
    frame.insert(0, "run_id", np.asarray(run_ids)[frame.pop("run")])
    return frame


def assert_same_rows(stored: pd.DataFrame, ours: pd.DataFrame, keys: list[str]) -> None:
    assert len(stored) == len(ours)
    merged = stored.merge(ours, on=keys, suffixes=("", "_sim"), validate="one_to_one")
    assert len(merged) == len(ours)
    for column in ours.columns.difference(keys):
        assert column in stored, f"{column} missing from the stored frame"
        if ours[column].dtype == bool:
            assert (merged[column] == merged[f"{column}_sim"]).all(), column
        else:  # runs agree to a few ulp whichever runs share their chunk (README)
            np.testing.assert_allclose(merged[column].astype(float),
                                       merged[f"{column}_sim"].astype(float), rtol=2e-6,
                                       atol=1e-7, equal_nan=True, err_msg=column)


@pytest.mark.parametrize("kind", ["all", "learner", "prober", "market"])
def test_stored_frames_agree_with_the_simulation(sweep, kind):
    store, result, run_ids = sweep
    stored = store.to_dataframe(kind)
    ours = simulated(result, run_ids, kind)
    keys = KEYS[:2] if kind == "market" else KEYS
    assert_same_rows(stored, ours, keys)
    assert (stored["status"] == "done").all() and list(stored["status"].cat.categories) == \
        list(RUN_STATUSES)
    if kind != "market":  # the config's prior, as each row learner's value
        np.testing.assert_array_equal(stored["prior"], np.array([1.0, 2.0])[stored["learner"]])
    if kind == "prober":
        assert set(stored["learner"]) == {1}


def test_stored_dataset_agrees_with_the_simulation(sweep):
    store, result, run_ids = sweep
    ds = store.to_xarray()
    ours = result.to_xarray()
    assert sorted(ds["run"].values.tolist()) == sorted(run_ids)
    assert ds.attrs["name"] == "frames_trap" and ds.attrs["description"] == "frames <test>"
    for name, values in result.metrics.items():
        assert ds[name].dims == ours[name].dims
        assert ds[name].attrs == ours[name].attrs
        assert ds[name].attrs["long_name"] == METRICS.get(name).display
        np.testing.assert_allclose(ds[name].sel(run=run_ids).values, values, rtol=2e-6,
                                   atol=1e-7, equal_nan=True, err_msg=name)
    np.testing.assert_array_equal(ds["p"].sel(run=run_ids).values, result.knobs.p)
    np.testing.assert_array_equal(ds["prior"].sel(run=run_ids).values, result.knobs.prior)
    assert ds["prober"].values.tolist() == [1] and ds["is_prober"].values.tolist() == [0, 1]


def test_load_results_reads_the_done_runs_as_data(sweep):
    store, _, _ = sweep
    results = userchoice.load_results(store.path)
    pd.testing.assert_frame_equal(results.to_dataframe(), store.to_dataframe(done_only=True))
    assert results.to_xarray().sizes == store.to_xarray(done_only=True).sizes


def test_diverged_runs_are_kept_apart_and_failed_runs_have_no_rows(results):
    store = ResultsDir(results["trap"])
    runs = store.table("runs")
    with_rows = runs[runs["status"] != "failed"]
    assert (runs["status"] == "failed").any() and (runs["status"] == "diverged").any()
    frame = store.to_dataframe()
    steps = frame["step"].nunique()
    assert len(frame) == len(with_rows) * steps * 2
    assert set(frame["run_id"]) == set(with_rows["run_id"])
    assert "probing_n_probe" in frame  # the static grid's values, one column per key
    assert set(frame["status"]) == {"done", "diverged"}
    done = store.to_dataframe(done_only=True)
    assert set(done["status"]) == {"done"}
    assert set(done["run_id"]) == set(runs.loc[runs["status"] == "done", "run_id"])
    ds = store.to_xarray()
    assert ds.sizes["run"] == len(with_rows) and ds.sizes["learner"] == 2
    status = dict(zip(runs["run_id"], runs["status"], strict=True))
    assert [status[r] for r in ds["run"].values] == ds["status"].values.tolist()
    assert store.to_xarray(done_only=True).sizes["run"] == (runs["status"] == "done").sum()


def test_a_results_directory_without_runs_gives_empty_data(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "empty", "config": {},
                                                        "n_runs": 0}))
    store = ResultsDir(tmp_path)
    frame = store.to_dataframe()
    assert frame.empty and {"run_id", "step", "learner"} <= set(frame.columns)
    assert store.to_dataframe("market").empty
    assert not store.to_xarray().data_vars
