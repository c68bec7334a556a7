"""Population dynamics through the experiment layer: configs, the planner, the runner, the
results store (groups, allocations and phases tables), resume, claim checks and the
neighbours reproduction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import edited_config

from userchoice import analysis
from userchoice.experiments.config import ConfigError, config_from_dict
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.plan import make_plan
from userchoice.experiments.runner import config_hash, run_experiment
from userchoice.experiments.store import ResultsDir

PHI = np.array([[0.0, 1.0], [1.0, 1.0], [0.6, 0.0]])

BASE = {
    "name": "pop",
    "dynamics": "population",
    "market": {"n_learners": 2},
    "population": {
        "groups": {"kind": "quadratic", "phi": PHI.tolist()},
        "steps": 400, "allocation": "even", "eval_every": 10,
    },
    "static_grid": {"population.allocation": [
        "even",
        {"name": "perturbation 1", "alpha": [[0.496, 0.511, 0.498], [0.504, 0.489, 0.502]]},
        {"name": "perturbation 3", "alpha": [[0.486, 0.505, 0.503], [0.514, 0.495, 0.497]]},
    ]},
    "knobs": {"seed": 1, "epsilon": 0.1},
}


def cfg(**changes):
    return edited_config(BASE, **changes)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("population") / "pop"
    summary = run_experiment(cfg(), out)
    return out, summary


def closed_form_total_risk(alloc: np.ndarray) -> float:
    """Segmented: each group with the learner it allocates to; a learner at its groups' mean
    φ; total risk = Σ_j σ² + Σ_j ‖φ_j − mean of its segment‖² (β = 1, σ² = 1)."""
    owner = alloc.argmax(axis=0)
    total = float(len(PHI))
    for learner in np.unique(owner):
        members = PHI[owner == learner]
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def test_a_sweep_writes_every_table_and_resumes_with_nothing_to_do(swept):
    out, summary = swept
    assert (summary.total, summary.done, summary.failed) == (3, 3, 0)
    store = ResultsDir(out)
    for name in ("runs", "learners", "market", "groups", "allocations", "phases"):
        assert len(store.table(name)), name
    groups = store.table("groups")
    assert set(groups["user_group"]) == {0, 1, 2}
    again = run_experiment(cfg(), out)
    assert (again.skipped, again.done) == (3, 0)


def test_stored_equilibria_are_the_closed_forms(swept):
    out, _ = swept
    store = ResultsDir(out)
    market = store.joined("market")
    alloc = store.joined("allocations")
    final_step = alloc["step"].max()
    for name, part in market.groupby("population_allocation"):
        last = part.sort_values("step").iloc[-1]
        first = part.sort_values("step").iloc[0]
        if name == "even":  # the unstable equilibrium: never left
            assert last["total_risk"] == pytest.approx(4.173, abs=1e-3)
            assert last["total_risk"] == pytest.approx(first["total_risk"], abs=1e-9)
            assert last["segmentation"] == 0
            continue
        a = alloc[(alloc["population_allocation"] == name) & (alloc["step"] == final_step)]
        matrix = a.pivot(index="learner", columns="user_group", values="allocation").to_numpy()
        assert last["segmentation"] == 1
        assert last["total_risk"] == pytest.approx(closed_form_total_risk(matrix), abs=1e-6)


def test_total_risk_never_rises_in_the_stored_trajectories(swept):
    market = ResultsDir(swept[0]).table("market").sort_values(["run_id", "step"])
    for _, run in market.groupby("run_id"):
        assert np.all(np.diff(run["total_risk"].to_numpy()) <= 1e-9)


def test_claim_checks_read_the_population_tables(swept):
    res = analysis.load_results(swept[0])
    assert res.dynamics == "population" and res.metric == "learner_risk"
    verdicts = analysis.check_claims(res, [
        {"kind": "fixed_point", "where": {"population_allocation": "even"},
         "total_risk": 4.173},
        {"kind": "segmented", "where": {"population_allocation": "perturbation 1"}},
        {"kind": "segmented", "where": {"population_allocation": "even"}},
        {"kind": "fixed_point", "where": {"population_allocation": "perturbation 1"}},
    ])
    assert [v.answer for v in verdicts] == ["yes", "yes", "no", "no"]


def test_figures_of_population_results(swept, tmp_path):
    from userchoice.plots import make_figures

    stems = {f.stem for f in make_figures(swept[0])}
    assert {"risk_vs_round", "allocation_vs_round", "group_excess_risk"} <= stems


def test_entry_phases_table_and_its_checks(tmp_path):
    config = cfg(**{"population.entry": "largest", "population.max_learners": 4,
                    "static_grid": None,
                    "population.groups": {"kind": "gaussian", "n_groups": 12, "dim": 3},
                    "population.allocation": "jitter", "knobs.seed": 2})
    out = tmp_path / "entry"
    run_experiment(config, out)
    store = ResultsDir(out)
    phases = store.table("phases")
    assert sorted(phases["phase"].unique()) == [0, 1, 2]
    assert (phases.groupby("phase")["n_learners"].first().to_numpy() == [2, 3, 4]).all()
    learners = store.table("learners")
    assert learners["learner"].max() == 3  # learners enter up to the cap
    res = analysis.load_results(out)
    (verdict,) = analysis.check_claims(res, [{"kind": "falls_with_entry"}])
    assert verdict.answer == "yes"


# --------------------------------------------------------------------------- bad configs

@pytest.mark.parametrize(("changes", "message"), [
    ({"population": None}, "population is required"),
    ({"engine": {"batch_size": 1, "steps": 1}}, "engine is a section of dynamics 'msgd'"),
    ({"knobs.tau": 0.5}, "knobs.tau is read by dynamics msgd"),
    ({"population.groups": {"kind": "dataset", "by": "RAC1P"}}, "needs a data section"),
    ({"population.entry": "largest"}, "go together"),
    ({"population.groups": {"kind": "quadratic", "phi": [[0, 1], [1]]}}, "rows of one length"),
    ({"population.groups": {"kind": "gaussian", "n_groups": 3}}, "groups.dim is required"),
    ({"probing": {"probers": [0], "n_probe": 10}}, "probing.n_probe is an MSGD-P field"),
    ({"knobs.epsilon": 1.0}, "epsilon"),
    ({"knobs.epsilon": 0.0}, "epsilon"),
    ({"learner": {"family": "squared"}}, "learner is a section of dynamics 'msgd'"),
])
def test_bad_population_configs_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        cfg(**changes)


def test_spec_errors_surface_as_config_errors():
    with pytest.raises(ConfigError, match="max_learners"):
        make_plan(cfg(**{"population.entry": "largest", "population.max_learners": 1}))
    with pytest.raises(ConfigError, match="population"):
        make_plan(cfg(**{"static_grid": None,
                         "population.allocation": [[0.5, 0.5, 0.5], [0.1, 0.5, 0.5]]}))


def test_an_msgd_config_may_not_set_a_population_knob():
    config = load_experiment("quick/census_good")
    raw = config.model_dump(mode="json")
    raw["knobs"]["epsilon"] = 0.3
    with pytest.raises(ConfigError, match=r"knobs\.epsilon is read by dynamics population"):
        config_from_dict(raw)


def test_msgd_config_hashes_ignore_fields_added_for_other_dynamics():
    """Sweeps written before dynamics, probing.start and engine.arrival existed resume: the
    new fields at their defaults leave the config hash (and the run ids) unchanged."""
    from userchoice.experiments.plan import make_groups

    config = load_experiment("quick/census_good")
    raw = config.model_dump(mode="json", exclude={"dynamics", "population"})
    raw["engine"].pop("arrival")
    raw["probing"].pop("start")
    bare = config_from_dict(raw)
    explicit = config_from_dict({**raw, "dynamics": "msgd",
                                 "engine": {**raw["engine"], "arrival": "uniform"},
                                 "probing": {**raw["probing"], "start": "start"}})
    assert config_hash(bare) == config_hash(explicit) == config_hash(config)
    changed = config_from_dict({**raw, "engine": {**raw["engine"], "arrival": "shuffle"}})
    assert config_hash(changed) != config_hash(bare)
    from userchoice.families import Logistic

    ids = [make_groups(c, Logistic())[0].run_ids for c in (bare, explicit)]
    assert ids[0] == ids[1]


def test_the_neighbours_target_holds_the_neighbouring_models_only():
    from userchoice.reproduce import select_configs

    names = {p.stem for p in select_configs("neighbours", "quick")}
    assert {"su_dean_census_zeta", "dean_synthetic_3groups", "dean_synthetic_entry",
            "dean_census_groups", "dean_synthetic_3groups_probing"} <= names
    paper = {p.stem for p in select_configs("paper", "quick")}
    assert not names & paper


def test_census_groups_from_the_shipped_sample(tmp_path):
    config = load_experiment("quick/dean_census_groups")
    plan = make_plan(config)
    groups = plan.market
    assert groups.kind == "empirical" and groups.n_groups >= 2
    assert all(count >= 30 for count in groups.counts)  # small race groups merged
    assert len(plan.inputs) == 1  # the sample's sha256 is part of every run id


def test_population_frames_keep_learners_that_are_present(swept):
    learners = ResultsDir(swept[0]).table("learners")
    assert not learners["share"].isna().any()
    assert set(learners["learner"]) == {0, 1}
    pd.testing.assert_series_equal(
        learners.groupby(["run_id", "step"])["share"].sum().round(12),
        pd.Series(1.0, index=learners.groupby(["run_id", "step"])["share"].sum().index,
                  name="share"))


def test_groups_from_a_preference_construction():
    """`by: favourite`: the users' favourites under k-means preferences form the groups."""
    config = load_experiment("quick/dean_census_groups")
    raw = config.model_dump(mode="json")
    raw["market"].update(preferences="clusters", options={"seed": 0})
    raw["population"]["groups"].update(by="favourite", n_groups=4, min_size=1)
    plan = make_plan(config_from_dict(raw))
    assert plan.market.n_groups == 4 and plan.market.counts.sum() == 1616
    raw["market"]["preferences"] = None
    with pytest.raises(ConfigError, match=r"needs market\.preferences"):
        make_plan(config_from_dict(raw))


def test_classification_groups_from_a_config(tmp_path):
    """`groups.loss: logistic`: ACSEmployment's 0/1 labels, weighted logistic retraining."""
    config = load_experiment("quick/dean_census_groups")
    raw = config.model_dump(mode="json")
    raw["data"]["options"]["task"] = "ACSEmployment"
    raw["population"]["groups"]["loss"] = "logistic"
    raw["population"].update(steps=30, eval_every=10)
    out = tmp_path / "logistic"
    summary = run_experiment(config_from_dict(raw), out)
    assert summary.done == 1
    market = ResultsDir(out).table("market")
    assert np.all(np.diff(market.sort_values("step")["total_risk"].to_numpy()) <= 1e-9)
    manifest = ResultsDir(out).read_manifest()
    assert manifest["market_provenance"]["groups"]["loss"] == "logistic"
    raw["population"]["groups"]["loss"] = "squared"
    raw["data"]["options"]["task"] = "ACSTravelTimeDean"
    with pytest.raises(ConfigError, match="loss"):
        raw["population"]["groups"]["loss"] = "hinge"
        config_from_dict(raw)
