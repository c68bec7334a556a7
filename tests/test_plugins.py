"""An outside plug-in (tests/plugins/userchoice_example_plugin.py: a family, a choice rule, a
probing source, a metric and a dataset loader) used without editing userchoice: from YAML
through ``userchoice run``, and from Python through the step API."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

PLUGINS = Path(__file__).resolve().parent / "plugins"

CONFIG = """
name: plugin_market
plugins: [userchoice_example_plugin]
data: {{dataset: two_blobs, options: {{n_users: 500, seed: 3}}}}
market: {{preferences: clusters, n_learners: 3}}
learner: {{family: {family}}}
engine: {{batch_size: 20, steps: 40, eval_every: 20, choice: {choice}}}
probing: {{probers: [0], source: {source}, n_probe: 30, probe_batch: 10}}
knobs: {{seed: 2, p: [0, 0.5], eta: 0.1}}
baseline: false
"""


@pytest.fixture
def plugin_path(monkeypatch):
    """The plug-in importable (as an installed package would be); not imported here: the
    config's ``plugins:`` list (or an import path) imports it."""
    monkeypatch.syspath_prepend(str(PLUGINS))


@pytest.fixture
def plugin(plugin_path):
    import userchoice_example_plugin

    return userchoice_example_plugin


@pytest.mark.parametrize("names", [
    {"family": "squared_hinge", "choice": "inverse_loss", "source": "mean_score"},
    {"family": "userchoice_example_plugin:SquaredHinge",
     "choice": "userchoice_example_plugin:InverseLoss",
     "source": "userchoice_example_plugin:MeanScore"},
], ids=["registered-names", "import-paths"])
def test_plugin_runs_end_to_end_through_the_cli(plugin_path, tmp_path, names):
    from userchoice.cli import app
    from userchoice.experiments.store import ResultsDir

    config = tmp_path / "plugin.yaml"
    config.write_text(CONFIG.format(**names))
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = ResultsDir(out)
    runs, market = store.table("runs"), store.table("market")
    assert len(runs) == 4 and (runs["status"] == "done").all()
    # The plug-in metric reached the market table; the built-in ones are there too.
    assert {"worst_test_loss", "potential", "psi"} <= set(market.columns)
    learners = store.table("learners")
    worst = learners.groupby(["run_id", "step"])["test_loss"].max()
    got = market.set_index(["run_id", "step"])["worst_test_loss"]
    np.testing.assert_allclose(got.loc[worst.index].to_numpy(), worst.to_numpy(), rtol=1e-5)
    # With p > 0 the prober differs from p = 0 (the plug-in source fed it pseudo-labels).
    joined = store.joined("learners")
    final = joined[(joined["step"] == 40) & (joined["learner"] == 0)]
    by_p = final.groupby("p")["test_loss"].mean()
    assert by_p.loc[0.0] != pytest.approx(by_p.loc[0.5], rel=1e-6)


def test_plugin_config_in_a_fresh_process(tmp_path):
    """Nothing but the config names the plug-in: a new interpreter with it on PYTHONPATH."""
    config = tmp_path / "plugin.yaml"
    config.write_text(CONFIG.format(family="squared_hinge", choice="inverse_loss",
                                    source="mean_score"))
    env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    proc = subprocess.run([sys.executable, "-m", "userchoice", "run", str(config), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    market = pd.read_parquet(next((tmp_path / "out" / "market").glob("*.parquet")))
    assert "worst_test_loss" in market.columns


def test_plugin_through_the_step_api(plugin):
    import jax

    from userchoice.engine import EngineSpec, evaluate, init_run, knob_grid, market_arrays, simulate
    from userchoice.engine import step as engine_step
    from userchoice.market import make_market
    from userchoice.probing import ProbingSpec

    market = make_market(plugin.two_blobs(n_users=400, seed=1), "clusters", 3)
    spec = EngineSpec(plugin.SquaredHinge(), 3, batch_size=16, steps=30, eval_every=30,
                      choice="inverse_loss",
                      probing=ProbingSpec((0,), "mean_score", n_probe=20, probe_batch=8))
    assert "worst_test_loss" in spec.metrics
    knobs = knob_grid(3, seed=[5], p=0.8, eta=0.1)
    result = simulate(market, spec, knobs)
    data = market_arrays(market)
    ctx, state = init_run(spec, data, knobs.at(0))
    step = jax.jit(engine_step, static_argnums=0)
    for t in range(spec.steps):
        state = step(spec, data, ctx, state, t)
    values, _ = evaluate(spec, data, ctx, state)
    for name in ("worst_test_loss", "test_loss", "probe_risk", "market_share"):
        np.testing.assert_allclose(np.asarray(values[name]), result.final(name)[0], rtol=2e-5,
                                   err_msg=name)


def test_unknown_plugin_module_is_a_config_error(tmp_path):
    from userchoice.experiments.config import ConfigError, config_from_dict, yaml_load

    raw = yaml_load(textwrap.dedent(CONFIG.format(family="logistic", choice="argmin",
                                                  source="median")))
    raw["plugins"] = ["no_such_plugin_module"]
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_plugin_module'"):
        config_from_dict(raw)
