"""The shipped experiment configs (configs/paper, configs/local, configs/quick).

Every YAML validates and expands to its engine groups without loading data; the grids and the
settings are the paper's (SPEC §7); local configs differ from the paper's only in their data;
every quick config runs end to end (the CI check that the whole pipeline works on real data)
and `userchoice resume` of its results finds every run finished.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.experiments.config import load_config
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.plan import make_groups
from userchoice.experiments.runner import run_experiment
from userchoice.families import make_family

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SETS = ("paper", "local", "quick")
NAMES = sorted([
    "census_bad", "census_bad_leader", "census_bad_majority", "census_good",
    "census_good_2probe", "census_good_kappa", "census_good_leader", "census_good_majority",
    "census_nprobe", "movielens_bad", "movielens_bad_leader", "movielens_bad_majority",
    "movielens_good", "movielens_good_kappa", "movielens_good_leader",
    "movielens_good_majority", "amazon_bad", "amazon_good", "amazon_good_kappa",
    "census_nn_bad", "census_nn_good",
])
ALL = [(kind, name) for kind in SETS for name in NAMES]
P_CENSUS = [0, 0.1, 0.2, 0.4, 0.6, 0.8]
P_MOVIELENS = [0, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.5, 2]
P_AMAZON = [0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]
KAPPA = [0, 0.2, 0.4]

# name → (runs, groups) in the paper's grid (SPEC §7): seeds × p × κ × static values.
GRID = {
    "census_bad": (15, 1), "census_bad_leader": (15, 1), "census_bad_majority": (15, 1),
    "census_good": (15 * 6, 1), "census_good_2probe": (15 * 6, 1),
    "census_good_kappa": (15 * 6 * 3, 1), "census_good_leader": (15 * 6, 1),
    "census_good_majority": (15 * 6, 1), "census_nprobe": (15 * 5, 5),
    "movielens_bad": (11, 1), "movielens_bad_leader": (11, 1), "movielens_bad_majority": (11, 1),
    "movielens_good": (11 * 9, 1), "movielens_good_kappa": (11 * 9 * 3, 1),
    "movielens_good_leader": (11 * 9, 1), "movielens_good_majority": (11 * 9, 1),
    "amazon_bad": (3, 1), "amazon_good": (3 * 7, 1), "amazon_good_kappa": (3 * 7 * 3, 1),
    "census_nn_bad": (3, 1), "census_nn_good": (3 * 6, 1),
}


def config_path(kind: str, name: str) -> Path:
    return CONFIGS / kind / f"{name}.yaml"


def family_of(config):
    return make_family(config.learner.family, **config.learner.options)


def as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("kind", SETS)
def test_each_set_ships_every_experiment(kind):
    assert sorted(p.stem for p in (CONFIGS / kind).glob("*.yaml")) == NAMES


@pytest.mark.parametrize(("kind", "name"), ALL)
def test_config_validates_and_expands_without_data(kind, name):
    config = load_config(config_path(kind, name))
    assert config.name == name
    assert config.description.strip()
    assert config.reported.get("metric") in ("test_accuracy", "test_loss")
    groups = make_groups(config, family_of(config))
    n_runs = sum(len(g.run_ids) for g in groups)
    assert len({rid for g in groups for rid in g.run_ids}) == n_runs  # ids are distinct
    if kind != "quick":
        assert (n_runs, len(groups)) == GRID[name]
    else:
        assert n_runs <= 8 and config.engine.steps <= 500  # CI-sized


@pytest.mark.parametrize("name", NAMES)
def test_paper_settings(name):
    """SPEC §7: n, T, B, η and schedule, λ, N_probe, P, S, seeds, τ, init, p and κ grids."""
    c = load_config(config_path("paper", name))
    good = "_good" in name or name == "census_nprobe"
    assert c.data.path is None  # the full data from the data directory
    assert c.knobs.tau == (0.7 if good else 0.3)
    assert c.init.kind == ("erm" if good else "random")
    assert c.engine.choice == "tau_mixture" and c.engine.normalisation == "mean"
    assert c.probing is not None and c.probing.refresh_every == 0
    if not good:
        assert c.knobs.p == 0
    scenario = "leader" if "leader" in name else "majority" if "majority" in name else None
    if name.startswith("census"):
        nn = name.startswith("census_nn")
        assert c.data.dataset == "census" and c.data.options["test_fraction"] == 0.01
        assert c.learner.family == ("mlp" if nn else "logistic")
        assert (c.engine.steps, c.engine.batch_size, c.engine.eval_every) == (
            1000 if nn else 4000, 150, 100)
        assert c.engine.schedule == "constant" and c.knobs.eta == 0.01 and c.knobs.lam == 1e-9
        assert (c.probing.n_probe, c.probing.probe_batch) == (100, 150)
        assert c.knobs.seed == (3 if nn else 15)
        if nn:
            assert c.learner.options == {"hidden": 64}
            if good:
                assert c.init.options["batch_size"] == 512 and c.init.options["epochs"] == 5
        elif good:
            assert c.init.options == {"steps": 4000, "eta": 0.01}
    elif name.startswith("movielens"):
        assert c.data.dataset == "movielens" and c.data.options["test_fraction"] == 0.1
        assert c.learner.family == "masked_multi_squared"
        assert c.learner.options["gradient_scaling"] == "paper"
        assert (c.engine.steps, c.engine.batch_size, c.engine.eval_every) == (4000, 50, 500)
        assert c.engine.schedule == "inv_sqrt" and c.knobs.eta == 5 and c.knobs.lam == 1e-3
        assert (c.probing.n_probe, c.probing.probe_batch) == (1000, 100)
        assert c.knobs.seed == 11  # seeds 0..10
        if good:
            assert c.init.options == {"ridge": 1e-3, "ridge_convention": "paper"}
    else:
        assert c.data.dataset == "amazon"
        assert c.data.options["n_per_category"] == 3333
        assert c.data.options["test_fraction"] == 0.05 and c.data.options["intercept"]
        assert c.market.preferences == "category" and c.market.n_learners == 9
        assert len(c.market.options["categories"]) == 9
        assert (c.engine.steps, c.engine.batch_size) == (20000, 150)
        assert c.knobs.eta == 0.05 and c.knobs.lam == 1e-9 and c.knobs.seed == 3
        assert (c.probing.n_probe, c.probing.probe_batch) == (500, 15)
        assert len(c.probing.probers) == 1
    if not name.startswith("amazon"):
        assert c.market.n_learners == 5
        assert c.market.preferences == (scenario or "clusters")
        assert c.probing.probers == ([4] if scenario else [2, 3] if "2probe" in name else [2])
        assert c.probing.source == {"leader": "leader", "majority": "median",
                                    None: "preferred"}[scenario]
        if scenario == "leader":
            assert c.probing.leader == 0
    if good and name != "census_nprobe":
        grid = (P_MOVIELENS if name.startswith("movielens") else
                P_AMAZON if name.startswith("amazon") else P_CENSUS)
        assert c.knobs.p == grid
    assert as_list(c.knobs.kappa) == (KAPPA if name.endswith("_kappa") else [0])
    if name == "census_nprobe":
        assert c.knobs.p == 0.8
        assert c.static_grid == {"probing.n_probe": [5, 10, 25, 50, 100]}


def test_reported_numbers_of_spec_section_9():
    good = load_config(config_path("paper", "census_good")).reported
    assert good["prober"] == {0: 0.60, 0.8: 0.78} and good["pooled"] == 0.79
    nprobe = load_config(config_path("paper", "census_nprobe")).reported
    assert nprobe["by_n_probe"] == {5: 0.68, 50: 0.78, 100: 0.79}
    movielens = load_config(config_path("paper", "movielens_good")).reported
    assert (movielens["worst_p0"], movielens["prober_best"], movielens["pooled"]) == (
        6.2, 3.5, 3.0)
    assert load_config(config_path("paper", "census_bad")).reported["worst_p0"] == 0.60


@pytest.mark.parametrize("name", NAMES)
def test_local_differs_from_paper_only_in_data(name):
    paper = load_config(config_path("paper", name)).model_dump()
    local = load_config(config_path("local", name)).model_dump()
    assert local["data"]["path"].startswith("${SHARED_DATA}/")
    for section in ("learner", "init", "engine", "knobs", "static_grid", "reported"):
        assert local[section] == paper[section], section
    probers = paper["probing"].pop("probers"), local["probing"].pop("probers")
    assert local["probing"] == paper["probing"]
    if name.startswith("amazon"):  # 6 of the paper's 9 categories are in the substitute
        assert local["market"]["n_learners"] == 6
        assert local["data"]["options"]["allow_missing_categories"] is True
        # the prober is the same category in both
        cats = {k: c["market"]["options"]["categories"] for k, c in (("p", paper), ("l", local))}
        assert cats["p"][probers[0][0]] == cats["l"][probers[1][0]]
    else:
        assert local["market"] == paper["market"] and probers[0] == probers[1]


@pytest.mark.parametrize("name", NAMES)
def test_quick_keeps_the_experiment_shape(name):
    paper = load_config(config_path("paper", name))
    quick = load_config(config_path("quick", name))
    local = load_config(config_path("local", name))
    assert quick.data.path == local.data.path
    assert quick.market == local.market and quick.learner == paper.learner
    assert quick.probing.probers == local.probing.probers
    assert quick.probing.source == paper.probing.source
    assert (quick.knobs.tau, quick.init.kind) == (paper.knobs.tau, paper.init.kind)
    assert len(as_list(quick.knobs.p)) == min(2, len(as_list(paper.knobs.p)))
    assert len(as_list(quick.knobs.kappa)) == min(2, len(as_list(paper.knobs.kappa)))


@pytest.fixture(scope="session")
def quick_results(tmp_path_factory) -> Path:
    """One results folder per session, shared with test_reproduce (which then resumes)."""
    path = tmp_path_factory.getbasetemp() / "quick-results"
    path.mkdir(exist_ok=True)
    return path


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is not staged here")
@pytest.mark.parametrize("name", NAMES)
def test_quick_config_runs_end_to_end(name, quick_results):
    config = load_experiment(config_path("quick", name))
    for path in as_list(config.data.path):
        if not Path(path).exists():
            pytest.skip(f"{path} is not staged on this machine")
    summary = run_experiment(config, quick_results / name)
    assert summary.total == summary.done + summary.skipped
    assert summary.failed == 0 and summary.diverged == 0
    # `userchoice resume` of what `run` wrote (its config read back from the manifest, keys
    # sorted, int keys now strings) is the same sweep: nothing is computed (nor compiled)
    result = CliRunner().invoke(app, ["resume", str(quick_results / name)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (f"0 done, 0 diverged, 0 failed, {summary.total} already finished"
            in " ".join(result.output.split())), result.output
