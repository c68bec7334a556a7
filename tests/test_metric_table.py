"""THE metric table: a metric registered there is computed by the engine, stored by the results
store in the table its kind names, drawn in the overview figure and listed in the report, with
no other edit; a metric the engine computes is always stored."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice import metrics
from userchoice.engine import EngineSpec
from userchoice.experiments.config import config_from_dict
from userchoice.experiments.runner import run_experiment
from userchoice.experiments.store import ResultsDir
from userchoice.families import Squared
from userchoice.probing import ProbingSpec

CONFIG = {
    "name": "metric_table",
    "data": {"dataset": "trap", "options": {"gap": 2.0, "n_users": 300}},
    "market": {"n_learners": 2},
    "learner": {"family": "squared"},
    "engine": {"batch_size": 10, "steps": 20, "eval_every": 10},
    "probing": {"probers": [0], "source": "preferred", "n_probe": 20, "probe_batch": 5},
    "knobs": {"seed": 2, "p": [0.0, 1.0], "tau": 0.5, "eta": 0.05},
    "baseline": False,
}


@pytest.fixture
def new_metrics():
    """Three metrics of the three kinds, registered as a user would, removed afterwards."""
    metrics.register("squared_norm", kind="learner", label="‖θ‖²",
                     meaning="squared norm of the parameters")(
        lambda ev: (ev.state.theta ** 2).sum(axis=1))
    metrics.register("prober_probe_x_mean", kind="prober", meaning="mean probe covariate",
                     applies=metrics.probing)(lambda ev: ev.ctx.probe_x.mean(axis=(1, 2)))
    metrics.register("spread", kind="market", meaning="largest minus smallest learner loss")(
        lambda ev: jnp.ptp(ev.test_losses.mean(axis=1)))
    yield ("squared_norm", "prober_probe_x_mean", "spread")
    for name in ("squared_norm", "prober_probe_x_mean", "spread"):
        metrics.METRICS.unregister(name)


def test_a_registered_metric_reaches_store_figures_and_report(new_metrics, tmp_path):
    from userchoice.plots import make_figures
    from userchoice.report import render_report

    run_experiment(config_from_dict(CONFIG), tmp_path / "out")
    store = ResultsDir(tmp_path / "out")
    learners, market = store.table("learners"), store.table("market")
    assert {"squared_norm", "prober_probe_x_mean"} <= set(learners.columns)
    assert "spread" in market.columns
    # prober-kind values sit on the probers' rows, NaN elsewhere
    assert learners.loc[learners["learner"] == 0, "prober_probe_x_mean"].notna().all()
    assert learners.loc[learners["learner"] == 1, "prober_probe_x_mean"].isna().all()
    per_learner = learners.groupby(["run_id", "step"])["test_loss"]
    spread = (per_learner.max() - per_learner.min()).to_numpy()
    np.testing.assert_allclose(market.set_index(["run_id", "step"])["spread"].to_numpy(),
                               spread, rtol=1e-4, atol=1e-6)
    figures = dict(make_figures(tmp_path / "out"))
    titles = " | ".join(ax.get_title() for ax in figures["metrics_overview"].axes)
    assert "‖θ‖²" in titles and "spread" in titles
    html = render_report([tmp_path / "out"])
    for name in new_metrics:
        assert name in html


def test_every_computed_metric_is_stored(new_metrics, tmp_path):
    """Whatever the spec computes, the store writes: columns = the spec's metric names."""
    run_experiment(config_from_dict(CONFIG), tmp_path / "out")
    store = ResultsDir(tmp_path / "out")
    stored = (set(store.table("learners").columns) | set(store.table("market").columns)) - {
        "run_id", "step", "learner", "is_prober"}
    spec = EngineSpec(Squared(), 2, 10, 20, probing=ProbingSpec((0,), n_probe=20, probe_batch=5))
    assert stored == set(spec.metrics)


def test_spec_metrics_default_to_the_applicable_table_rows():
    plain = EngineSpec(Squared(), 2, 10, 20, update_all=False)
    assert "test_accuracy" not in plain.metrics  # regression family
    assert "probe_risk" not in plain.metrics and "update_all_test_loss" not in plain.metrics
    assert plain.metrics == metrics.applicable(plain, defaults_only=True)
    # A metric that applies but is not a default (path length: work at every step) is left
    # out unless asked for.
    assert "path_length" in metrics.applicable(plain)
    assert "path_length" not in plain.metrics
    chosen = EngineSpec(Squared(), 2, 10, 20, metrics=("test_loss",))
    assert chosen.metrics == ("test_loss",)
    with pytest.raises(ValueError, match="does not apply"):
        EngineSpec(Squared(), 2, 10, 20, metrics=("probe_risk",))
    with pytest.raises(ValueError, match="unknown metric 'test_los'; did you mean 'test_loss'"):
        EngineSpec(Squared(), 2, 10, 20, metrics=("test_los",))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, metrics.NETWORK_MEDIAN_MAX + 2), columns=st.integers(1, 6),
       data=st.data())
def test_the_median_of_learners_is_numpys_median(n, columns, data):
    """Ties, signed zeros, infinities and NaN included: the sorting network gives exactly
    jnp.median's numbers (and jnp.median itself beyond NETWORK_MEDIAN_MAX)."""
    values = st.sampled_from([0.0, -0.0, 1.0, -2.5, 3.0, np.inf, -np.inf, np.nan]) | st.floats(
        -1e6, 1e6, width=32)
    x = np.asarray(data.draw(st.lists(values, min_size=n * columns, max_size=n * columns)),
                   np.float32).reshape(n, columns)
    got = np.asarray(metrics.median_of_learners(jnp.asarray(x)))
    np.testing.assert_array_equal(got, np.asarray(jnp.median(jnp.asarray(x), axis=0)))
