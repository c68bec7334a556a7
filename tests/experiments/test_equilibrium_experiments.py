"""Share-maximising equilibria (Jagadeesan et al.) through the experiment layer: configs, the
planner, the runner and store, claim checks, figures and the neighbours target."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import edited_config

from userchoice import analysis
from userchoice.equilibrium import paper_knobs, setting3, simulate_equilibrium
from userchoice.experiments.config import ConfigError, config_from_dict
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.plan import make_plan
from userchoice.experiments.runner import run_experiment
from userchoice.experiments.store import ResultsDir

BASE = {
    "name": "eq", "dynamics": "equilibrium", "market": {"n_learners": 2},
    "equilibrium": {"setting": 3, "D": 1, "n_points": 400, "steps": 200, "max_rounds": 20},
    "static_grid": {"equilibrium.D": [1, 2], "market.n_learners": [2, 3]},
    "knobs": {"seed": 2, "temperature": 0.3},
}


def cfg(**changes):
    return edited_config(BASE, **changes)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("equilibrium") / "eq"
    run_experiment(cfg(), out)
    return out


def test_a_sweep_stores_shares_per_round_and_the_equilibrium(swept):
    store = ResultsDir(swept)
    runs, learners, market = (store.table(n) for n in ("runs", "learners", "market"))
    assert len(runs) == 8 and (runs["status"] == "done").all()
    # Shares after every round sum to one; the market table ends with the Bayes risk.
    sums = learners.groupby(["run_id", "step"])["equilibrium_share"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-5)
    final = market.sort_values("step").groupby("run_id").tail(1)
    assert final["bayes_risk"].notna().all() and final["social_loss"].notna().all()
    assert run_experiment(cfg(), swept).skipped == 8  # resume: nothing to do


def test_stored_numbers_equal_the_dynamics_run_alone(swept):
    """A run group of the sweep gives the numbers ``simulate_equilibrium`` gives alone."""
    plan = make_plan(cfg())
    group = next(g for g in plan.groups if g.static == {"equilibrium.D": 2,
                                                        "market.n_learners": 3})
    alone = simulate_equilibrium(setting3(2, n_points=400, seed=0, pad_to=5), group.spec.spec,
                                 paper_knobs(3, seed=[0, 1]))
    market = ResultsDir(swept).joined("market")
    part = market[(market["equilibrium_D"] == 2) & (market["market_n_learners"] == 3)]
    final = part.sort_values("step").groupby("seed").tail(1).sort_values("seed")
    np.testing.assert_allclose(final["social_loss"].to_numpy(),
                               alone.metrics["social_loss"], rtol=1e-6)


def test_checks_and_figures_of_equilibrium_results(swept):
    from userchoice.plots import make_figures

    res = analysis.load_results(swept)
    (two, three) = analysis.check_claims(res, [
        {"kind": "versus_bayes", "where": {"market_n_learners": 2}, "relation": "equal",
         "tol": 0.05},
        {"kind": "market_compare", "metric": "social_loss", "along": "equilibrium_D",
         "at": 2, "than": 1, "where": {"market_n_learners": 3}}])
    assert two.answer == "yes" and three.answer in ("yes", "unclear")
    stems = {f.stem for f in make_figures(swept)}
    assert {"social_loss_vs_equilibrium_D", "social_loss_vs_bayes_risk"} <= stems


@pytest.mark.parametrize(("changes", "message"), [
    ({"equilibrium": None}, "equilibrium is required"),
    ({"equilibrium.D": None}, "equilibrium.D is required"),
    ({"equilibrium.setting": "dataset"}, "needs a data section"),
    ({"engine": {"batch_size": 1, "steps": 1}}, "engine is not a section"),
    ({"knobs.tau": 0.2}, "knobs.tau is read by dynamics msgd"),
    ({"equilibrium.loss_temperature": 0}, "loss_temperature"),
    ({"market.n_learners": 0, "static_grid": None}, "n_learners"),
    ({"knobs.temperature": 0}, "temperature"),
    ({"probing": {"probers": [0], "refresh_every": 5}}, "probing.refresh_every does not apply"),
])
def test_bad_equilibrium_configs_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        cfg(**changes)


def test_market_counts_are_a_static_axis_of_equilibria_only():
    config = load_experiment("quick/census_good")
    raw = config.model_dump(mode="json")
    raw["static_grid"] = {"market.n_learners": [2, 3]}
    with pytest.raises(ConfigError, match="applies to dynamics 'equilibrium' only"):
        config_from_dict(raw)


def test_the_shipped_equilibrium_configs_are_neighbours():
    from userchoice.reproduce import select_configs

    names = {p.stem for p in select_configs("neighbours", "quick")}
    assert {"jagadeesan_setting1", "jagadeesan_setting2", "jagadeesan_setting3",
            "jagadeesan_setting3_probing"} <= names
