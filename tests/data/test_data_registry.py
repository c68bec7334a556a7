"""The dataset registry: one place that names every dataset; a user's own loader (registered
or named by import path in YAML) is validated, loaded by ``build_market`` and listed by the CLI;
unknown names and options are errors that say what exists."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from userchoice import reproduce as rp
from userchoice.cli import app
from userchoice.data.dataset import Dataset
from userchoice.data.fetch import import_file, inventory, plan
from userchoice.data.registry import (
    DATASETS,
    DatasetEntry,
    get_dataset,
    register_dataset,
)
from userchoice.experiments.config import ConfigError, config_from_dict
from userchoice.experiments.plan import build_market, load_dataset
from userchoice.market import Market
from userchoice.preferences import Preferences
from userchoice.registry import RegistryError

THIS_MODULE = Path(__file__).stem  # importable by name: pytest puts tests/ on sys.path
BUILT_IN = ("census", "movielens", "amazon", "trap", "mixture")


def _points(n_users: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(-3, 0.3, (n_users // 2, 2)),
                        rng.normal(3, 0.3, (n_users - n_users // 2, 2))])
    y = (x[:, 0] > 0).astype(float)
    test = np.arange(n_users) % 4 == 0
    return Dataset(x[~test], y[~test], x[test], y[test], provenance={"source": "tiny"})


def load_tiny_points(n_users: int = 40, seed: int = 0) -> Dataset:
    """Two blobs of points (a test dataset)."""
    return _points(n_users, seed)


def load_tiny_market(n_learners: int, n_users: int = 30, seed: int = 0) -> Market:
    """A market with its own preferences: user u's favourite is u mod n_learners."""
    ds = _points(n_users, seed)
    return Market(ds,
                  Preferences.from_favourite(np.arange(ds.n_train) % n_learners, n_learners),
                  Preferences.from_favourite(np.arange(len(ds.y_test)) % n_learners,
                                             n_learners),
                  name="tiny market")


def load_tiny_market_declared(n_learners: int, n_users: int = 30) -> Market:
    """The same market, declaring its kind for use by import path."""
    return load_tiny_market(n_learners, n_users)


load_tiny_market_declared.kind = "market"


def load_tiny_file(path, *, data_dir=None, scale: float = 1.0) -> Dataset:
    """Points from a CSV file (x0, x1, y per line)."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    return Dataset(scale * rows[:-2, :2], rows[:-2, 2], scale * rows[-2:, :2], rows[-2:, 2])


@pytest.fixture
def registered():
    """Register the test loaders for one test, then remove them again."""
    names = ["tiny_points", "tiny_market", "tiny_files"]
    DATASETS.register("tiny_points", load_tiny_points)  # a bare callable: kind "dataset"
    register_dataset("tiny_market", load_tiny_market, kind="market",
                     market_args=("n_learners",), description="a tiny market with favourites")
    DATASETS.register("tiny_files", load_tiny_file)  # takes data_dir: file-backed
    yield names
    for name in names:
        DATASETS.unregister(name)


def config(dataset: str, *, n_learners: int = 2, preferences: str | None = None,
           **data) -> dict:
    market = {"n_learners": n_learners}
    if preferences is not None:
        market["preferences"] = preferences
    return {"name": "t", "data": {"dataset": dataset, **data}, "market": market,
            "learner": {"family": "logistic"}, "engine": {"batch_size": 4, "steps": 10}}


# --- built-in entries ----------------------------------------------------------------------


def test_the_built_in_datasets_and_their_kinds():
    assert DATASETS.named()[:5] == BUILT_IN
    assert {n: get_dataset(n).kind for n in BUILT_IN} == {
        "census": "dataset", "movielens": "dataset", "amazon": "dataset",
        "trap": "market", "mixture": "market"}
    assert DATASETS.named(fetchable=True)[:3] == ("census", "movielens", "amazon")
    assert not get_dataset("trap").file_backed and get_dataset("mixture").market_args == (
        "n_learners",)
    assert get_dataset("census").options() is not None and "task" in get_dataset(
        "census").options()


def test_data_never_imports_the_layers_above_at_module_level():
    above = ("userchoice.market", "userchoice.preferences", "userchoice.theory",
             "userchoice.synthetic", "userchoice.engine", "userchoice.experiments")
    folder = Path(__file__).resolve().parents[2] / "src" / "userchoice" / "data"
    for path in sorted(folder.glob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad = [n for n in names if n.startswith(above)]
            assert not bad, f"{path.name} imports {bad} at module level"


def test_mixture_gets_n_learners_from_the_market_section():
    market = build_market(config_from_dict(config("mixture", n_learners=3,
                                                  options={"n_users": 120})))
    assert market.n_learners == 3


# --- a user's own loader -------------------------------------------------------------------


def test_a_registered_dataset_loader_is_validated_and_built(registered):
    entry = get_dataset("tiny_points")
    assert entry.kind == "dataset" and not entry.file_backed
    assert entry.description == "Two blobs of points (a test dataset)."
    cfg = config_from_dict(config("tiny_points", preferences="clusters",
                                  options={"n_users": 48, "seed": 1}))
    market = build_market(cfg)
    assert isinstance(market, Market) and market.n_learners == 2
    assert market.dataset.n_train == 36  # 48 users, every 4th held out
    np.testing.assert_array_equal(market.dataset.x_train, _points(48, 1).x_train)
    # clusters preferences: the two blobs go to different learners
    fav = market.preferences_train.favourite
    left = market.dataset.x_train[:, 0] < 0
    assert len(set(fav[left])) == 1 and len(set(fav[~left])) == 1 and fav[left][0] != fav[~left][0]


def test_a_dataset_loader_needs_a_preference_construction(registered):
    with pytest.raises(ValueError, match=r"market\.preferences must be set for dataset"):
        build_market(config_from_dict(config("tiny_points")))


def test_a_registered_market_loader_keeps_its_preferences(registered):
    cfg = config_from_dict(config("tiny_market", n_learners=3, options={"n_users": 40}))
    market = build_market(cfg)
    assert market.name == "tiny market" and market.n_learners == 3
    np.testing.assert_array_equal(market.preferences_train.favourite,
                                  np.arange(market.dataset.n_train) % 3)
    # market.preferences rebuilds preferences on the market's dataset
    rebuilt = build_market(config_from_dict(config("tiny_market", n_learners=2,
                                                   preferences="clusters")))
    assert rebuilt.n_learners == 2 and rebuilt.provenance["mode"] == "clusters"


def test_a_loader_named_by_import_path_in_yaml(tmp_path):
    from userchoice.experiments.paths import load_experiment

    path = f"{THIS_MODULE}:load_tiny_market_declared"
    yaml_file = tmp_path / "exp.yaml"
    yaml_file.write_text(f"name: t\ndata: {{dataset: '{path}', options: {{n_users: 24}}}}\n"
                         "market: {n_learners: 2}\nlearner: {family: logistic}\n"
                         "engine: {batch_size: 4, steps: 10}\n")
    try:
        cfg = load_experiment(yaml_file)
        entry = get_dataset(path)
        assert entry.kind == "market" and entry.market_args == ("n_learners",)
        market = build_market(cfg)
        assert market.name == "tiny market" and market.dataset.n_train == 18
    finally:
        DATASETS.unregister(path)


def test_an_undeclared_market_loader_is_an_error_that_says_how_to_declare_it():
    path = f"{THIS_MODULE}:load_tiny_market"  # returns a Market but declares no kind
    try:
        cfg = config_from_dict(config(path, preferences=None))
        assert get_dataset(path).kind == "dataset"
        with pytest.raises(ValueError, match=r"declared kind 'dataset'.*returned Market.*"
                                             r"kind='market'"):
            build_market(cfg)
    finally:
        DATASETS.unregister(path)


def test_a_file_backed_loader_reads_data_path_and_is_importable(registered, tmp_path):
    rows = np.array([[0, 1, 0], [1, 0, 1], [2, 2, 1], [3, 1, 0], [4, 4, 1], [5, 0, 0]], float)
    csv = tmp_path / "points.csv"
    np.savetxt(csv, rows, delimiter=",")
    entry = get_dataset("tiny_files")
    assert entry.file_backed and entry.importable and not entry.fetchable
    assert entry.options() == ("scale",)  # path and data_dir are not options
    ds = load_dataset(config_from_dict(config("tiny_files", path=str(csv),
                                              options={"scale": 2.0})))
    np.testing.assert_array_equal(ds.x_train, 2.0 * rows[:4, :2])
    target = import_file("tiny_files", csv, root=tmp_path / "data")
    assert target == tmp_path / "data" / "tiny_files" / "points.csv"
    assert [f["file"] for f in inventory(tmp_path / "data")["tiny_files"]] == [str(target)]
    with pytest.raises(ValueError, match="dataset must be one of"):
        plan("tiny_files")  # no fetch plan


def test_a_fetch_plan_from_the_registry(registered, tmp_path):
    from userchoice.data.fetch import Download

    def tiny_plan(*, size: int = 3) -> list[Download]:
        return [Download(f"file:///nowhere/{size}.csv", f"{size}.csv")]

    register_dataset("tiny_fetch", load_tiny_file, file_backed=True, fetch_plan=tiny_plan)
    try:
        assert [d.filename for d in plan("tiny_fetch", size=5)] == ["5.csv"]
        with pytest.raises(ValueError, match=r"fetch option 'sise'.*did you mean 'size'"):
            plan("tiny_fetch", sise=5)
    finally:
        DATASETS.unregister("tiny_fetch")


def test_registering_is_idempotent_and_names_are_not_overwritten(registered):
    DATASETS.register("tiny_points", load_tiny_points)  # the same loader again: a no-op
    with pytest.raises(RegistryError, match="already registered"):
        DATASETS.register("tiny_points", load_tiny_market)
    with pytest.raises(RegistryError, match="kind must be one of"):
        DatasetEntry("bad", load_tiny_points, kind="table")  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="neither a DatasetEntry nor a loader"):
        DATASETS.register("not_callable", 42)


# --- errors that say what exists -----------------------------------------------------------


def test_an_unknown_dataset_names_the_field_the_choices_and_the_closest(registered):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(config("tiny_pionts"))
    message = str(caught.value)
    assert "data.dataset" in message and "did you mean 'tiny_points'?" in message
    for name in (*BUILT_IN, *registered):
        assert repr(name) in message
    with pytest.raises(ConfigError,
                       match=r"data\.dataset: cannot import module 'no_such_pkg\.loaders'"):
        config_from_dict(config("no_such_pkg.loaders:load"))


@pytest.mark.parametrize(("dataset", "key", "closest", "allowed"), [
    ("trap", "gapp", "gap", "noise"),
    ("tiny_points", "n_user", "n_users", "seed"),
    ("census", "test_frac", "test_fraction", "standardise"),
])
def test_an_unknown_loader_option_names_data_options_key(registered, dataset, key, closest,
                                                         allowed):
    cfg = config_from_dict(config(dataset, preferences="clusters", options={key: 1}))
    with pytest.raises(ConfigError) as caught:
        build_market(cfg)  # before any file is read or array built
    message = str(caught.value)
    assert f"data.options.{key}" in message and repr(dataset) in message
    assert f"did you mean {closest!r}?" in message and allowed in message


def test_options_that_come_from_elsewhere_are_not_options(registered):
    with pytest.raises(ConfigError, match=r"data\.options\.n_learners .*market\.n_learners"):
        build_market(config_from_dict(config("tiny_market", options={"n_learners": 3})))
    with pytest.raises(ConfigError, match=r"data\.path: dataset 'tiny_points' reads no files"):
        build_market(config_from_dict(config("tiny_points", preferences="clusters",
                                             path="x.csv")))


# --- where datasets are listed -------------------------------------------------------------


def test_the_cli_lists_registered_datasets(registered, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in (*BUILT_IN, *registered):
        assert name in result.output
    assert "a tiny market with favourites" in result.output
    info = runner.invoke(app, ["data", "info", "--data-dir", str(tmp_path)], terminal_width=200)
    assert info.exit_code == 0 and "userchoice data import tiny_files PATH" in info.output
    assert "tiny_points" not in info.output  # reads no files: nothing to list
    source = tmp_path / "p.csv"
    source.write_text("0,1,0\n")
    imported = runner.invoke(app, ["data", "import", "tiny_files", str(source), "--data-dir",
                                   str(tmp_path / "d")])
    assert imported.exit_code == 0 and (tmp_path / "d" / "tiny_files" / "p.csv").exists()
    assert runner.invoke(app, ["data", "import", "trap", str(source)]).exit_code == 2


def test_reproduce_targets_come_from_the_registry(registered, tmp_path):
    assert rp.targets()[0] == "paper" and rp.targets()[-2:] == ("nn", "neighbours")
    assert set(BUILT_IN) | set(registered) <= set(rp.targets())
    root = tmp_path / "configs"
    (root / "paper").mkdir(parents=True)
    for name in ("tiny_points_bad", "tiny_points_good", "tiny_points_nn_good", "census_bad",
                 "census_nn_bad", "trap_good", "dean_census_groups", "su_dean_census_zeta"):
        (root / "paper" / f"{name}.yaml").write_text("")

    def names(target: str) -> list[str]:
        return [p.stem for p in rp.select_configs(target, "paper", root)]

    assert names("tiny_points") == ["tiny_points_bad", "tiny_points_good"]
    assert names("census") == ["census_bad"]
    assert names("nn") == ["census_nn_bad", "tiny_points_nn_good"]
    assert names("trap") == ["trap_good"]
    assert len(names("paper")) == 6  # the founding paper's: not the neighbouring models'
    assert names("neighbours") == ["dean_census_groups", "su_dean_census_zeta"]
    with pytest.raises(ValueError, match=r"target must be one of.*did you mean 'census'"):
        rp.select_configs("censu", "paper", root)
