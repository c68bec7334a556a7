"""One market, every lens (`userchoice compare`): each dynamics' numbers are those of its
config run alone; derived configs keep the market; bad requests are clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.compare import LENSES, admitted, derive, lens_table, route_overrides, wide
from userchoice.experiments.config import ConfigError
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.runner import config_hash, run_experiment
from userchoice.knobs import DYNAMICS, KNOBS
from userchoice.metrics import get_metric

MSGD = ["engine.steps=40", "engine.eval_every=20", "knobs.seed=[0,1]"]
SMALL = [*MSGD, "population.steps=8", "population.eval_every=4", "equilibrium.steps=20",
         "equilibrium.max_rounds=2"]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    args = ["compare", "quick/census_bad", "--out", str(out), "--no-figure"]
    for text in SMALL:
        args += ["--set", text]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_each_dynamics_equals_its_config_run_alone(compared, tmp_path):
    out, output = compared
    table = pd.read_csv(out / "compare.csv")
    assert list(dict.fromkeys(table["dynamics"])) == list(DYNAMICS)
    for dynamics in DYNAMICS:
        # msgd: the user's own config with its overrides; the others: the file compare wrote
        if dynamics == "msgd":
            alone = load_experiment("quick/census_bad", MSGD)
        else:
            alone = load_experiment(out / "configs" / f"{dynamics}.yaml")
        run_experiment(alone, tmp_path / dynamics)
        mine = table[table["dynamics"] == dynamics].reset_index(drop=True)
        theirs = lens_table(tmp_path / dynamics)
        pd.testing.assert_frame_equal(mine[theirs.columns], theirs, check_dtype=False,
                                      rtol=1e-12)
        assert set(theirs["lens"]) == {"global_risk", "share", "social_loss"}
        assert set(theirs["metric"]) == set(vars(LENSES[dynamics]).values())
        assert theirs["n"].eq(2).all()  # both seeds
    assert "one market, every lens" in output


def test_shares_sum_to_one_in_every_dynamics(compared):
    out, _ = compared
    table = pd.read_csv(out / "compare.csv")
    shares = table[table["lens"] == "share"].groupby("dynamics")["mean"].sum()
    assert shares.to_dict() == pytest.approx(dict.fromkeys(DYNAMICS, 1.0), abs=1e-4)
    side = wide(table)
    assert list(side.columns[-3:]) == list(DYNAMICS) and len(side) == 5 + 5 + 1


def test_lenses_name_metrics_of_their_own_dynamics():
    for dynamics, lens in LENSES.items():
        for name in vars(lens).values():
            assert dynamics in get_metric(name).dynamics, (dynamics, name)
        assert get_metric(lens.global_risk).kind == get_metric(lens.share).kind == "learner"
        assert get_metric(lens.social_loss).kind == "market"


def test_derived_configs_keep_the_market():
    base = load_experiment("quick/census_bad")
    assert config_hash(derive(base, "msgd")) == config_hash(base)  # the market unchanged
    for dynamics in ("population", "equilibrium"):
        cfg = derive(base, dynamics)
        assert cfg.dynamics == dynamics and cfg.name == f"census_bad_{dynamics}"
        assert cfg.data == base.data and cfg.market == base.market
        assert cfg.knobs.seed == base.knobs.seed
        assert cfg.probing is not None and cfg.probing.probers == base.probing.probers
    assert derive(base, "population").population.groups.by == "favourite"
    assert derive(base, "equilibrium").equilibrium.setting == "dataset"
    judged = load_experiment("quick/census_bad", ["engine.choice_loss=zero_one"])
    assert derive(judged, "equilibrium").equilibrium.choice_loss == "zero_one"  # one market
    # overrides land last
    assert derive(base, "population", ["population.steps=7"]).population.steps == 7


def test_markets_a_dynamics_does_not_admit_are_refused_with_the_reason():
    base = load_experiment("quick/census_bad")
    no_prefs = load_experiment("quick/census_bad", ["market.preferences=null"])
    assert admitted(no_prefs)["population"] is not None
    with pytest.raises(ConfigError, match=r"population.*market.preferences"):
        derive(no_prefs, "population")
    regression = load_experiment("quick/census_bad", ["learner.family=squared"])
    reasons = admitted(regression)
    assert reasons["msgd"] is None and reasons["population"] is None
    assert reasons["equilibrium"] is not None
    with pytest.raises(ConfigError, match=r"equilibrium.*'squared' is not a classifier"):
        derive(regression, "equilibrium")
    with pytest.raises(ConfigError, match="'gradient' is not one of"):
        derive(base, "gradient")
    with pytest.raises(ConfigError, match=r"streaming market.*'population'"):
        derive(load_experiment("quick/dean_census_groups"), "msgd")


def test_cli_refuses_an_unknown_dynamics_before_running(tmp_path):
    result = CliRunner().invoke(app, ["compare", "quick/census_bad", "--dynamics",
                                      "msgd,gradient", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "gradient" in result.output
    assert not (tmp_path / "o").exists()  # nothing ran


KNOB_NAMES = [k.name for k in KNOBS]


@given(st.lists(st.sampled_from(
    [*(f"knobs.{k}=1" for k in KNOB_NAMES), "engine.steps=3", "population.steps=3",
     "equilibrium.lr=0.5", "market.n_learners=3", "data.options.seed=1"]), max_size=6),
    st.sets(st.sampled_from(DYNAMICS), min_size=1))
def test_overrides_go_where_they_are_read(overrides, dynamics):
    routed = route_overrides(overrides, sorted(dynamics))
    readers = {k.name: k.dynamics for k in KNOBS}
    for d, mine in routed.items():
        for text in overrides:
            key = text.split("=")[0].split(".")
            wanted = {"engine": d == "msgd", "population": d == "population",
                      "equilibrium": d == "equilibrium",
                      "knobs": d in readers.get(key[-1], ())}.get(key[0], True)
            assert (text in mine) == wanted, (d, text)
