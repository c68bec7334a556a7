"""The shipped experiment configs (package data: userchoice/configs/{paper,local,quick}).

Every YAML validates and expands to its engine groups without loading data; the grids and the
settings are the paper's (SPEC §7); local configs differ from the paper's only in their data;
every data path is the shipped sample or a file of the data directory exactly where `userchoice
data fetch` / `data import` put it, and a missing one names the command that gets it (from a
plan, `run` and `reproduce`); a shipped config runs by SET/NAME and copies out; every quick
config runs end to end (the CI check that the whole pipeline works on real data) and
`userchoice resume` of its results finds every run finished.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

import userchoice
from userchoice.cli import app
from userchoice.data.common import DatasetNotFoundError
from userchoice.data.fetch import fetch_options_for, import_file, plan
from userchoice.experiments import paths as cp
from userchoice.experiments.config import ConfigError, load_config
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.plan import make_groups, make_plan
from userchoice.experiments.runner import run_experiment
from userchoice.families import make_family

CONFIGS = Path(userchoice.__file__).resolve().parent / "configs"  # package data
SAMPLE = "${SAMPLE_DATA}/acs_2017_1yr_person_AL_sample5000.csv.gz"
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
    from userchoice.reproduce import is_neighbour  # neighbouring models: tested on their own

    shipped = sorted(p.stem for p in (CONFIGS / kind).glob("*.yaml"))
    assert [name for name in shipped if not is_neighbour(name)] == NAMES


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
    # the paper's files, where `userchoice data fetch` puts them (test_data_paths_...)
    assert c.data.path == {
        "census": "${DATA_DIR}/census/csv_pal_2018.zip",  # ACS 2018 1-Year, Alabama
        "movielens": "${DATA_DIR}/movielens/ml-10m.zip",
        "amazon": [f"${{DATA_DIR}}/amazon/{cat}.jsonl"
                   for cat in c.data.options.get("categories", ())],
    }[c.data.dataset]
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
    assert local["data"]["path"] == {"census": SAMPLE,
                                     "movielens": "${DATA_DIR}/movielens/ml-100k.zip",
                                     "amazon": "${DATA_DIR}/amazon/reviews_flat.jsonl.gz",
                                     }[local["data"]["dataset"]]
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


@pytest.mark.parametrize("name", NAMES)
def test_quick_config_runs_end_to_end(name, quick_results):
    config = load_experiment(config_path("quick", name))  # census: the shipped sample
    for path in as_list(config.data.path):
        if not Path(path).exists():
            pytest.skip(f"{path} is not staged on this machine (no {SHARED_DATA})")
    summary = run_experiment(config, quick_results / name)
    assert summary.total == summary.done + summary.skipped
    assert summary.failed == 0 and summary.diverged == 0
    # `userchoice resume` of what `run` wrote (its config read back from the manifest, keys
    # sorted, int keys now strings) is the same sweep: nothing is computed (nor compiled)
    result = CliRunner().invoke(app, ["resume", str(quick_results / name)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (f"0 done, 0 diverged, 0 failed, {summary.total} already finished"
            in " ".join(result.output.split())), result.output


# --------------------------------------------------------------------------------------------
# Where the data of the shipped configs comes from
# --------------------------------------------------------------------------------------------


def data_paths(kind: str, name: str) -> list[str]:
    return as_list(load_config(config_path(kind, name)).data.path)


@pytest.mark.parametrize("kind", SETS)
def test_census_sets_run_on_the_shipped_sample_or_the_fetched_file(kind):
    census = [n for n in NAMES if n.startswith("census")]
    paths = {p for n in census for p in data_paths(kind, n)}
    assert paths == ({"${DATA_DIR}/census/csv_pal_2018.zip"} if kind == "paper" else {SAMPLE})
    if kind != "paper":
        for n in census:  # the description says what the data is
            assert "ACS sample shipped with the package" in load_config(
                config_path(kind, n)).description
    sample = cp.sample_data_dir() / SAMPLE.rsplit("/", 1)[1]
    with gzip.open(sample, "rt") as handle:
        assert sum(1 for _ in handle) == 5001  # every row of the 5,000-row sample + header
    assert sample.stat().st_size < 300_000
    assert (cp.sample_data_dir() / "SOURCE.md").read_text().count("public domain") == 1


def test_data_paths_are_where_fetch_and_import_put_the_files(tmp_path, monkeypatch):
    """Every ${DATA_DIR} path is <data dir>/<dataset>/<file>: a file that `data fetch` writes
    under exactly that name (its plan's file), or else one `data import` writes there."""
    monkeypatch.setenv("USERCHOICE_DATA", str(tmp_path / "data"))
    seen = set()
    for kind, name in ALL:
        config = load_config(config_path(kind, name))
        for raw in data_paths(kind, name):
            if raw.startswith("${SAMPLE_DATA}/"):
                assert (cp.sample_data_dir() / raw.split("/", 1)[1]).is_file()
                continue
            token, dataset, filename = raw.split("/")
            assert (token, dataset) == ("${DATA_DIR}", config.data.dataset), raw
            seen.add((dataset, filename))
    fetched = {key for key in seen if fetch_options_for(*key) is not None}
    assert fetched == {("census", "csv_pal_2018.zip"), ("movielens", "ml-10m.zip"),
                       ("movielens", "ml-100k.zip"), *(("amazon", f"{c}.jsonl") for c in (
                           "All_Beauty", "Gift_Cards", "Magazine_Subscriptions",
                           "Digital_Music", "Musical_Instruments", "Handmade_Products",
                           "Software", "Industrial_and_Scientific", "Subscription_Boxes"))}
    for dataset, filename in fetched:
        options = fetch_options_for(dataset, filename)
        assert filename in {d.filename for d in plan(dataset, **options)}
    # the one imported file: `data import amazon FILE` keeps FILE's name under amazon/
    (imported,) = seen - fetched
    assert imported == ("amazon", "reviews_flat.jsonl.gz")
    source = tmp_path / "reviews_flat.jsonl.gz"
    record = {"category": "Software", "rating": 5.0, "title": "t", "text": "works",
              "user_id": "u", "timestamp": 1}
    source.write_bytes(gzip.compress(json.dumps(record).encode() + b"\n"))
    target = import_file("amazon", source)
    assert str(target) == load_experiment(config_path("quick", "amazon_good")).data.path


@pytest.mark.parametrize(("kind", "name", "command"), [
    ("quick", "movielens_good", "userchoice data fetch movielens --variant ml-100k"),
    ("quick", "amazon_good", "userchoice data import amazon /path/to/reviews_flat.jsonl.gz"),
    ("paper", "census_good", "userchoice data fetch census --state AL --year 2018"),
    ("paper", "amazon_bad", "userchoice data fetch amazon --category All_Beauty --category "
                            "Gift_Cards --category Magazine_Subscriptions"),
])
def test_missing_data_names_the_command_that_gets_it(kind, name, command, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv("USERCHOICE_DATA", str(tmp_path / "empty"))
    config = load_experiment(config_path(kind, name))  # loads: a config is valid without data
    message = cp.missing_data(config)
    assert message is not None and command in message
    assert str(tmp_path / "empty" / config.data.dataset) in message  # where it looked
    if kind == "quick":  # the plan (what `run` and `reproduce` do first) says the same
        with pytest.raises(DatasetNotFoundError) as caught:
            make_plan(config)
        assert command in str(caught.value)
    assert cp.missing_data(load_experiment(config_path("quick", "census_good"))) is None


def test_run_and_reproduce_name_the_command_for_missing_data(tmp_path, monkeypatch):
    from userchoice import reproduce as rp

    monkeypatch.setenv("USERCHOICE_DATA", str(tmp_path / "empty"))
    runner = CliRunner()
    result = runner.invoke(app, ["run", "quick/movielens_good", "--out", str(tmp_path / "r")],
                           terminal_width=200)
    assert result.exit_code == 2, result.output
    assert "userchoice data fetch movielens --variant ml-100k" in result.output
    with pytest.raises(rp.ReproduceError) as caught:
        rp.reproduce("amazon", tmp_path / "out", quick=True, figures=False)
    assert set(caught.value.errors) == {"amazon_bad", "amazon_good", "amazon_good_kappa"}
    assert "userchoice data import amazon /path/to/reviews_flat.jsonl.gz" in str(caught.value)


def test_a_shipped_config_runs_by_its_set_and_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file of that name here: the shipped one
    config = load_experiment("quick/census_good")
    assert config == load_experiment(config_path("quick", "census_good"))
    assert config.data.path == str(cp.sample_data_dir() / SAMPLE.rsplit("/", 1)[1])
    assert load_experiment("paper/census_good.yaml").knobs.seed == 15
    with pytest.raises(ConfigError, match=r"did you mean quick/census_good\?"):
        load_experiment("quick/census_god")
    with pytest.raises(ConfigError, match=r"does not exist.*SET/NAME"):
        load_experiment("nowhere/census_good")
    # a file of that name in the working directory wins over the shipped config
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "census_good").write_text(
        config_path("quick", "census_good").read_text().replace("seed: 2", "seed: 1"))
    assert load_experiment("quick/census_good").knobs.seed == 1


def test_configs_list_show_and_copy(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["configs", "list"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert all(f"{kind}/{name}" in listed.output for kind, name in ALL)
    shown = runner.invoke(app, ["configs", "show", "quick/census_good"])
    assert shown.output == config_path("quick", "census_good").read_text()
    where = runner.invoke(app, ["configs", "show", "--path", "local/census_good"])
    assert Path(where.output.strip()) == config_path("local", "census_good")
    bad = runner.invoke(app, ["configs", "show", "quick/census_god"])
    assert bad.exit_code == 2 and "did you mean quick/census_good" in bad.output
    copied = runner.invoke(app, ["configs", "copy", "quick/census_good", str(tmp_path / "mine")])
    assert copied.exit_code == 0, copied.output
    copy = tmp_path / "mine" / "census_good.yaml"
    assert copy.read_bytes() == config_path("quick", "census_good").read_bytes()
    # the copy, away from the package, resolves its data exactly as the shipped file does
    assert load_experiment(copy).data == load_experiment(config_path("quick", "census_good")).data
    again = runner.invoke(app, ["configs", "copy", "quick/census_good", str(tmp_path / "mine")])
    assert again.exit_code == 2 and "--force" in again.output
    forced = runner.invoke(app, ["configs", "copy", "quick/census_bad", str(copy), "--force"])
    assert forced.exit_code == 0 and load_config(copy).name == "census_bad"


def test_configs_folder_overrides_and_its_messages(tmp_path, monkeypatch):
    from userchoice import reproduce as rp

    (tmp_path / "mine" / "quick").mkdir(parents=True)
    (tmp_path / "mine" / "quick" / "census_x.yaml").write_text(
        config_path("quick", "census_good").read_text())
    monkeypatch.setenv(cp.CONFIGS_ENV, str(tmp_path / "mine"))
    assert cp.list_configs() == {"quick": ["census_x"]}
    assert load_experiment("quick/census_x").name == "census_good"
    with pytest.raises(FileNotFoundError, match=r"no paper/ folder.*--configs DIR"):
        rp.select_configs("census", "paper")
    monkeypatch.setenv(cp.CONFIGS_ENV, str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match=re.escape(f"from ${cp.CONFIGS_ENV}")):
        rp.configs_root()
    monkeypatch.delenv(cp.CONFIGS_ENV)
    assert rp.configs_root() == CONFIGS
    with pytest.raises(FileNotFoundError, match="from --configs"):
        rp.configs_root(tmp_path / "nothing")
    result = CliRunner().invoke(app, ["reproduce", "census", "--quick", "--configs",
                                      str(tmp_path), "--out", str(tmp_path / "o")],
                                terminal_width=200)
    assert result.exit_code == 2 and "--configs" in result.output
    assert "configs=" not in result.output
