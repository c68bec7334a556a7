"""Results as data: SimulationResult.to_dataframe / to_xarray / summarise.

The conversions are pure functions of the result's arrays (``userchoice.frames``), so their
properties are checked on random shapes without compiling anything; one real simulation checks
that the methods wire the result's own arrays in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice import EngineSpec, Logistic, ProbingSpec, make_knobs, simulate
from userchoice.frames import FRAME_KINDS, simulation_dataset, simulation_frame
from userchoice.frames import MSGD_KNOBS as SCALAR_KNOBS
from userchoice.frames import SIMULATION_KNOBS as KNOB_NAMES
from userchoice.metrics import METRICS


@st.composite
def arrays(draw):
    """Random knobs, eval steps, probers (any order, possibly none) and metrics of each kind,
    NaNs included."""
    runs, evals, n = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    probers = draw(st.permutations(range(n)))[: draw(st.integers(0, n))]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))

    def values(*shape):
        out = rng.standard_normal(shape).astype(dtype)
        out[rng.random(shape) < 0.1] = np.nan
        return out

    knobs = make_knobs(n, seed=rng.integers(0, 9, runs), p=rng.choice([0.0, 0.5], runs),
                       tau=rng.random(runs), prior=rng.uniform(0.5, 2.0, (runs, n)))
    metrics = {"test_loss": values(runs, evals, n), "market_share": values(runs, evals, n),
               "potential": values(runs, evals)}
    if probers:
        metrics["probe_risk"] = values(runs, evals, len(probers))
    steps = np.cumsum(rng.integers(1, 5, evals)) - 1
    return knobs, steps, metrics, n, list(probers)


@settings(max_examples=60, deadline=None)
@given(case=arrays())
def test_frame_round_trips_to_the_metric_arrays(case):
    knobs, steps, metrics, n, probers = case
    runs, evals = len(knobs.seed), len(steps)
    frame = simulation_frame(knobs, steps, metrics, n, probers)
    assert len(frame) == runs * evals * n
    grid = (runs, evals, n)
    np.testing.assert_array_equal(frame["run"].to_numpy().reshape(grid),
                                  np.broadcast_to(np.arange(runs)[:, None, None], grid))
    np.testing.assert_array_equal(frame["step"].to_numpy().reshape(grid),
                                  np.broadcast_to(steps[None, :, None], grid))
    np.testing.assert_array_equal(frame["learner"].to_numpy().reshape(grid),
                                  np.broadcast_to(np.arange(n), grid))
    for name in ("test_loss", "market_share"):  # learner metrics: exactly the array
        assert frame[name].dtype == metrics[name].dtype
        np.testing.assert_array_equal(frame[name].to_numpy().reshape(grid), metrics[name])
    potential = frame["potential"].to_numpy().reshape(grid)  # market: repeated per learner
    for learner in range(n):
        np.testing.assert_array_equal(potential[:, :, learner], metrics["potential"])
    flagged = frame["is_prober"].to_numpy().reshape(grid)[0, 0]
    assert flagged.tolist() == [i in probers for i in range(n)]
    if probers:  # prober metrics on the probers' rows, NaN on every other learner's
        risk = frame["probe_risk"].to_numpy().reshape(grid)
        np.testing.assert_array_equal(risk[:, :, probers], metrics["probe_risk"])
        assert np.isnan(np.delete(risk, probers, axis=2)).all()
    else:
        assert "probe_risk" not in frame
    for name in SCALAR_KNOBS:  # each row carries its run's knobs
        np.testing.assert_array_equal(frame[name].to_numpy(),
                                      np.asarray(getattr(knobs, name))[frame["run"]])
    np.testing.assert_array_equal(frame["prior"].to_numpy(),
                                  knobs.prior[frame["run"], frame["learner"]])


@settings(max_examples=40, deadline=None)
@given(case=arrays())
def test_frames_of_one_kind_hold_that_kind_alone(case):
    knobs, steps, metrics, n, probers = case
    runs, evals = len(knobs.seed), len(steps)
    learner = simulation_frame(knobs, steps, metrics, n, probers, "learner")
    assert len(learner) == runs * evals * n
    assert {"test_loss", "market_share"} <= set(learner) and not {"potential", "probe_risk"} \
        & set(learner)
    market = simulation_frame(knobs, steps, metrics, n, probers, "market")
    assert len(market) == runs * evals and "learner" not in market and "prior" not in market
    np.testing.assert_array_equal(market["potential"].to_numpy().reshape(runs, evals),
                                  metrics["potential"])
    prober = simulation_frame(knobs, steps, metrics, n, probers, "prober")
    assert len(prober) == runs * evals * len(probers)
    if probers:
        np.testing.assert_array_equal(
            prober["probe_risk"].to_numpy().reshape(runs, evals, len(probers)),
            metrics["probe_risk"])
        assert prober["learner"].tolist()[: len(probers)] == probers  # the probers' own indices
        # joining the prober frame back on (run, step, learner) gives the "all" frame's column
        full = simulation_frame(knobs, steps, metrics, n, probers)
        joined = full[["run", "step", "learner"]].merge(
            prober[["run", "step", "learner", "probe_risk"]], how="left")
        np.testing.assert_array_equal(joined["probe_risk"], full["probe_risk"])


@settings(max_examples=40, deadline=None)
@given(case=arrays())
def test_dataset_holds_the_metric_arrays_with_knob_coordinates(case):
    knobs, steps, metrics, n, probers = case
    diverged = np.full(len(knobs.seed), -1)
    ds = simulation_dataset(knobs, steps, metrics, n, probers, diverged, {"family": "f"})
    assert ds["test_loss"].dims == ("run", "step", "learner")
    assert ds["potential"].dims == ("run", "step")
    for name, values in metrics.items():
        np.testing.assert_array_equal(ds[name].values, values)
        assert ds[name].attrs["description"] == METRICS.get(name).meaning
    if probers:
        assert ds["probe_risk"].dims == ("run", "step", "prober")
        assert ds["prober"].values.tolist() == probers
    np.testing.assert_array_equal(ds["step"].values, steps)
    for name in KNOB_NAMES:
        np.testing.assert_array_equal(ds[name].values, np.asarray(getattr(knobs, name)))
    assert ds["prior"].dims == ("run", "learner") and ds.attrs == {"family": "f"}
    assert ds["is_prober"].values.tolist() == [i in probers for i in range(n)]


def test_an_unknown_kind_names_the_kinds():
    knobs = make_knobs(3)
    metrics = {"test_loss": np.zeros((1, 1, 3))}
    with pytest.raises(ValueError, match="kind must be one of") as error:
        simulation_frame(knobs, np.array([0]), metrics, 3, [], "learners")
    assert all(kind in str(error.value) for kind in FRAME_KINDS)


# --------------------------------------------------------------- on a real simulation


@pytest.fixture(scope="module")
def result(mixture_market):
    spec = EngineSpec(Logistic(), 3, 8, 20, eval_every=10,
                      probing=ProbingSpec(probers=(2, 0), n_probe=10, probe_batch=4))
    knobs = make_knobs(3, seed=[0, 1, 2, 0, 1, 2], p=[0, 0, 0, 1, 1, 1], tau=0.5,
                       prior=[[1, 2, 3]] * 6)
    return simulate(mixture_market, spec, knobs)


def test_result_methods_convert_the_results_own_arrays(result):
    frame = result.to_dataframe()
    assert len(frame) == result.n_runs * len(result.eval_steps) * 3
    assert list(frame.columns[: len(KNOB_NAMES) + 1]) == ["run", *KNOB_NAMES]
    grid = result.metrics["test_loss"].shape
    for name, values in result.metrics.items():
        if METRICS.get(name).kind == "learner":
            np.testing.assert_array_equal(frame[name].to_numpy().reshape(grid), values)
    risk = frame["probe_risk"].to_numpy().reshape(grid)
    np.testing.assert_array_equal(risk[:, :, [2, 0]], result.metrics["probe_risk"])
    assert frame["prior"].tolist()[:3] == [1.0, 2.0, 3.0]
    ds = result.to_xarray()
    for name, values in result.metrics.items():
        np.testing.assert_array_equal(ds[name].values, values)
    assert ds["prober"].values.tolist() == [2, 0]
    assert ds.attrs["family"] == "logistic" and ds.attrs["probers"] == [2, 0]
    np.testing.assert_array_equal(ds["p"].values, result.knobs.p)
    np.testing.assert_array_equal(ds["diverged_step"].values, result.diverged_step)


def hand_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over axis 0, ignoring NaN, by hand."""
    count = np.sum(~np.isnan(values), axis=0)
    mean = np.nanmean(values, axis=0)
    sem = np.nanstd(values, axis=0, ddof=1) / np.sqrt(count)
    return mean, sem


@pytest.mark.parametrize("metric", ["test_accuracy", "probe_risk", "potential"])
def test_summarise_equals_a_hand_groupby(result, metric):
    stats = result.summarise(metric, by=("p",))
    assert isinstance(stats, pd.DataFrame)
    kind = METRICS.get(metric).kind
    keys = ["p"] if kind == "market" else ["p", "learner"]
    assert list(stats.columns) == [*keys, "mean", "sem", "std", "n"]
    final = result.final(metric)  # [R, k] or [R]
    entries = {"learner": [0, 1, 2], "prober": [2, 0], "market": [None]}[kind]
    assert len(stats) == 2 * len(entries)
    for p in (0.0, 1.0):
        rows = stats[stats["p"] == p]
        mean, sem = hand_stats(final[np.asarray(result.knobs.p) == p])
        if kind != "market":  # one row per learner, sorted by learner index
            order = np.argsort(entries)
            assert rows["learner"].tolist() == sorted(entries)
            mean, sem = mean[order], sem[order]
        np.testing.assert_allclose(rows["mean"], np.atleast_1d(mean), rtol=1e-6)
        np.testing.assert_allclose(rows["sem"], np.atleast_1d(sem), rtol=1e-5)
        assert (rows["n"] == 3).all()


def test_summarise_at_an_earlier_step_and_over_every_run(result):
    stats = result.summarise("test_loss", by=(), step=0)
    np.testing.assert_allclose(stats["mean"], result.metrics["test_loss"][:, 0].mean(axis=0),
                               rtol=1e-6)
    assert stats["n"].tolist() == [result.n_runs] * 3


def test_summarise_rejects_what_it_cannot_group_by(result):
    with pytest.raises(ValueError, match="by must name knobs"):
        result.summarise("test_loss", by=("gamma",))
    with pytest.raises(KeyError, match="did you mean 'test_loss'"):
        result.summarise("test_los")
