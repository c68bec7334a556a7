"""Experiment configs: every bad field is a ConfigError naming it, overrides, grids, fuzzing."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from userchoice.experiments.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
)
from userchoice.experiments.plan import make_groups, run_id
from userchoice.experiments.runner import config_hash
from userchoice.families import make_family

VALID: dict[str, Any] = {
    "name": "trap_tiny",
    "description": "a tiny trap market",
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 200}},
    "market": {"n_learners": 2},
    "learner": {"family": "squared"},
    "init": {"kind": "erm"},
    "engine": {"batch_size": 10, "steps": 40, "eval_every": 20},
    "probing": {"probers": [0], "source": "preferred", "n_probe": 10, "probe_batch": 10},
    "knobs": {"seed": 3, "tau": 0.7, "p": [0, 1], "eta": 0.02},
    "static_grid": {"probing.n_probe": [5, 10]},
}


def with_value(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def error_of(function, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        function(*args, **kwargs)
    return str(caught.value)


def test_the_valid_config_validates():
    config = config_from_dict(VALID)
    assert isinstance(config, ExperimentConfig)
    assert config.knobs.axes()["seed"] == [0, 1, 2]
    assert config.probing.n_probe == 10


# (dotted field path, bad value, text the message must show for the value)
BAD_FIELDS = [
    ("knobs.tau", 1.5, "1.5"),
    ("knobs.tau", [0.5, 2.0], "2.0"),
    ("knobs.kappa", -0.1, "-0.1"),
    ("knobs.p", -1, "-1"),
    ("knobs.eta", 0, "0"),
    ("knobs.eta", math.inf, "inf"),
    ("knobs.eta", math.nan, "nan"),
    ("knobs.zeta", 2, "2"),
    ("knobs.temperature", -1.0, "-1.0"),
    ("knobs.seed", 0, "0"),
    ("knobs.seed", [-1], "-1"),
    ("knobs.tau", [], "[]"),
    ("engine.steps", 0, "0"),
    ("engine.steps", 2.5, "2.5"),
    ("engine.batch_size", -3, "-3"),
    ("engine.eval_every", "often", "'often'"),
    ("engine.choice", "best", "'best'"),
    ("engine.schedule", "cosine", "'cosine'"),
    ("engine.normalisation", "sum", "'sum'"),
    ("engine.dtype", "float16", "'float16'"),
    ("engine.update_all", "maybe", "'maybe'"),
    ("probing.source", "oracle", "'oracle'"),
    ("probing.probers", [], "[]"),
    ("probing.n_probe", 0, "0"),
    ("probing.refresh_every", -1, "-1"),
    ("market.preferences", "random", "'random'"),
    ("market.n_learners", 0, "0"),
    ("data.dataset", "imagenet", "'imagenet'"),
    ("learner.family", "svm", "'svm'"),
    ("init.kind", "zeros", "'zeros'"),
    ("baseline", "sometimes", "'sometimes'"),
    ("name", "has spaces", "'has spaces'"),
    ("name", "", "''"),
    ("surprise", 1, "1"),  # unknown top-level key
    ("engine.bogus", 3, "3"),  # unknown nested key
    ("knobs.sigma", 0.5, "0.5"),
]


@pytest.mark.parametrize(("path", "value", "shown"), BAD_FIELDS,
                         ids=[f"{p}={v!r}" for p, v, _ in BAD_FIELDS])
def test_a_bad_value_is_a_config_error_naming_the_field_and_value(path, value, shown):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(with_value(path, value), "exp.yaml")
    message = str(caught.value)
    assert "exp.yaml" in message
    assert f"  {path}" in message, message  # the dotted path, as the user wrote it
    assert shown in message, message


def test_the_knob_error_names_the_bad_list_element():
    message = error_of(config_from_dict,
                                with_value("knobs.tau", [0.5, 2.0]))
    assert "knobs.tau.1" in message and "2.0" in message


@pytest.mark.parametrize(("grid", "shown"), [
    ({"engine.bogus": [1]}, "'engine.bogus'"),
    ({"steps": [1]}, "'steps'"),
    ({"probing.n_probe": []}, "'probing.n_probe'"),
    ({"probing.n_probe": 5}, "5"),
])
def test_a_bad_static_grid_is_a_config_error(grid, shown):
    message = error_of(config_from_dict,
                                with_value("static_grid", grid))
    assert "static_grid" in message and shown in message, message


def test_an_unknown_static_key_lists_the_allowed_ones():
    message = error_of(config_from_dict,
                                with_value("static_grid", {"engine.bogus": [1]}))
    assert "engine.steps" in message and "probing.n_probe" in message


def test_an_unknown_hyphenated_key_is_named():
    message = error_of(config_from_dict,
                                with_value("engine.eval-every", 3))
    assert "engine.eval-every" in message, message


def test_a_missing_required_field_is_named():
    raw = copy.deepcopy(VALID)
    del raw["engine"]["steps"]
    message = error_of(config_from_dict, raw)
    assert "engine.steps" in message and "Field required" in message


@pytest.mark.parametrize("raw", [[1, 2], "text", None, 3])
def test_the_top_level_must_be_a_mapping(raw):
    message = error_of(config_from_dict, raw, "exp.yaml")
    assert "mapping" in message and type(raw).__name__ in message


def test_load_config_reads_yaml(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(VALID))
    assert load_config(path) == config_from_dict(VALID)


@pytest.mark.parametrize(("text", "needle"), [
    ("- just\n- a list\n", "mapping"),
    ("plain words", "mapping"),
    ("", "mapping"),
    ("name: [unclosed\n", "not valid YAML"),
    ("a: b: c\n", "not valid YAML"),
    ("name: x\n\tengine: {}\n", "not valid YAML"),
])
def test_load_config_rejects_a_non_mapping_or_invalid_yaml(tmp_path, text, needle):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    message = error_of(load_config, path)
    assert needle in message and str(path) in message


def test_load_config_of_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- overrides (--set a.b=value)

@pytest.mark.parametrize(("text", "path", "value"), [
    ("engine.steps=20", ["engine", "steps"], 20),
    ("knobs.eta=0.5", ["knobs", "eta"], 0.5),
    ("knobs.tau=.25", ["knobs", "tau"], 0.25),
    ("knobs.p=[0, 0.5, 1]", ["knobs", "p"], [0, 0.5, 1]),
    ("engine.update_all=false", ["engine", "update_all"], False),
    ("engine.choice=argmin", ["engine", "choice"], "argmin"),
    ("data.options={gap: 3.0}", ["data", "options"], {"gap": 3.0}),
    ("name=a=b", ["name"], "a=b"),
    ("market.attribute=null", ["market", "attribute"], None),
])
def test_an_override_value_is_parsed_as_yaml(text, path, value):
    assert parse_override(text) == (path, value)


def test_overrides_apply_without_mutating_the_input():
    raw = copy.deepcopy(VALID)
    before = copy.deepcopy(raw)
    config = config_from_dict(raw, overrides=["engine.steps=80", "knobs.p=[0, 0.5, 1]",
                                              "knobs.seed=5", "market.options.alpha=2"])
    assert raw == before
    assert config.engine.steps == 80
    assert config.knobs.p == [0.0, 0.5, 1.0]
    assert config.knobs.axes()["seed"] == [0, 1, 2, 3, 4]
    assert config.market.options == {"alpha": 2}
    assert config.engine.batch_size == VALID["engine"]["batch_size"]  # siblings kept


def test_load_config_applies_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(VALID))
    assert load_config(path, ["engine.steps=60"]).engine.steps == 60


@pytest.mark.parametrize(("text", "needle"), [
    ("engine.steps", "key.sub=value"),
    ("=3", "names no field"),
    ("knobs.tau=[0.1, 0.2", "not valid YAML"),
    ("engine.steps.x=3", "not a section"),
    ("engine.steps=0", "engine.steps"),
    ("engine.stepz=10", "engine.stepz"),
])
def test_a_bad_override_is_a_config_error(text, needle):
    message = error_of(config_from_dict, VALID, overrides=[text])
    assert needle in message, message


def test_apply_overrides_creates_missing_sections():
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


# ---------------------------------------------------------------------------------- grids

def test_an_integer_seed_expands_to_a_range():
    config = config_from_dict(with_value("knobs.seed", 15))
    assert config.knobs.axes()["seed"] == list(range(15))
    explicit = config_from_dict(with_value("knobs.seed", [3, 7]))
    assert explicit.knobs.axes()["seed"] == [3, 7]


def test_the_grid_size_is_the_product_of_the_axis_lengths():
    raw = with_value("knobs", {"seed": 4, "tau": [0.0, 0.5, 1.0], "p": [0, 1], "eta": [0.01, 0.1],
                               "kappa": 0.1})
    raw["static_grid"] = {"probing.n_probe": [5, 10], "engine.batch_size": [10, 20, 30]}
    config = config_from_dict(raw)
    groups = make_groups(config, make_family("squared"))
    assert len(groups) == 2 * 3
    for group in groups:
        assert len(group.run_ids) == 4 * 3 * 2 * 2 == group.knobs.n_runs
        assert len(set(group.run_ids)) == len(group.run_ids)
        # seed varies slowest; each run's knobs match its row
        assert [r["seed"] for r in group.rows] == sorted(r["seed"] for r in group.rows)
        for r, row in enumerate(group.rows):
            assert float(group.knobs.tau[r]) == pytest.approx(row["tau"])
            assert row["run_id"] == run_id(config, group.static, {
                k: row[k] for k in ("seed", "tau", "p", "kappa", "eta", "lam", "temperature",
                                    "zeta")})
    assert {tuple(sorted(g.static.items())) for g in groups} == {
        (("engine.batch_size", b), ("probing.n_probe", n)) for b in (10, 20, 30) for n in (5, 10)}
    assert len({rid for g in groups for rid in g.run_ids}) == 6 * 48


# ------------------------------------------------------------------------------ fuzzing

SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats()
           | st.text(max_size=12))
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=8) | st.integers(-3, 3), inner,
                                       max_size=3), max_leaves=6)
KEYS = st.sampled_from(["name", "data", "dataset", "options", "market", "n_learners", "engine",
                        "steps", "batch_size", "knobs", "seed", "tau", "p", "eta", "probing",
                        "probers", "static_grid", "probing.n_probe", "engine.steps", "prior",
                        "family", "kind", "bogus"]) | st.text(max_size=8)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def mutated_configs(draw) -> dict[str, Any]:
    raw = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(raw)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = raw
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(JSONISH)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = draw(JSONISH)
        else:
            parent.append(draw(JSONISH))
    return raw


def _validates_or_config_error(raw: Any) -> ExperimentConfig | None:
    try:
        config = config_from_dict(raw)
    except ConfigError:
        return None
    assert isinstance(config, ExperimentConfig)
    return config


def _has_non_str_keys(node: Any) -> bool:
    if isinstance(node, dict):
        return any(not isinstance(k, str) or _has_non_str_keys(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_non_str_keys(v) for v in node)
    return False


def _run_ids(config: ExperimentConfig) -> list[str] | str:
    try:
        family = make_family(config.learner.family, **config.learner.options)
        return [rid for group in make_groups(config, family) for rid in group.run_ids]
    except (TypeError, ValueError) as error:  # options the family or the engine rejects
        return type(error).__name__


@settings(max_examples=200, deadline=None)
@given(mutated_configs())
def test_a_mutated_config_validates_or_raises_config_error(raw):
    before = copy.deepcopy(raw)
    config = _validates_or_config_error(raw)
    if config is not None:
        # what the manifest stores (JSON) validates to the same config and config hash,
        # which is what `userchoice resume` relies on
        stored = json.loads(json.dumps(config.model_dump(mode="json")))
        again = config_from_dict(stored)
        assert config_hash(again) == config_hash(config)
        if not _has_non_str_keys(config.model_dump()):  # see test_run_ids_of_int_keyed_options
            assert _run_ids(again) == _run_ids(config)  # resume finds the same runs
    assert repr(raw) == repr(before)  # never mutated (repr: NaN != NaN)


@pytest.mark.parametrize("weights", [{2: 0.3, 10: 0.7}, {1: 0.5, "b": 2.0}])
def test_run_ids_of_int_keyed_options(weights):
    config = config_from_dict(with_value("data.options.weights", weights))
    stored = config_from_dict(json.loads(json.dumps(config.model_dump(mode="json"))))
    assert config_hash(stored) == config_hash(config)
    assert _run_ids(stored) == _run_ids(config)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSONISH, st.dictionaries(KEYS, JSONISH, max_size=6)))
def test_an_arbitrary_document_validates_or_raises_config_error(raw):
    _validates_or_config_error(raw)


@pytest.fixture(scope="module")
def yaml_file(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "exp.yaml"


@settings(max_examples=200, deadline=None)
@given(mutated_configs(), st.data())
def test_mutated_yaml_text_loads_or_raises_config_error(yaml_file, raw, data):
    text = yaml.safe_dump(raw, sort_keys=False)
    if data.draw(st.booleans()):  # and damage the text itself
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.text(alphabet=":-[]{}#&*!|>'\"%@` \n\tab1.", max_size=4)) \
            + text[at + data.draw(st.integers(0, 3)):]
    yaml_file.write_text(text)
    try:
        config = load_config(yaml_file)
    except ConfigError:
        return
    assert isinstance(config, ExperimentConfig)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abcdeknopstu._=[]{}:, 0123456789-\n", max_size=20),
                max_size=3))
def test_random_overrides_apply_or_raise_config_error(overrides):
    before = copy.deepcopy(VALID)
    try:
        config = config_from_dict(VALID, overrides=overrides)
    except ConfigError:
        pass
    else:
        assert isinstance(config, ExperimentConfig)
    assert before == VALID


# --- cross-field rules, static-grid values, YAML 1.2 floats, strict counts -------------------


def _base() -> dict:
    return {"name": "t", "data": {"dataset": "trap"}, "market": {"n_learners": 2},
            "learner": {"family": "squared"}, "engine": {"batch_size": 4, "steps": 10}}


def test_probing_knobs_without_probing_are_config_errors():
    with pytest.raises(ConfigError, match=r"knobs.p > 0 needs probing \(.*a probing: section"):
        config_from_dict({**_base(), "knobs": {"p": [0, 0.5]}})
    median = {**_base(), "probing": {"probers": [0], "source": "median"}}
    with pytest.raises(ConfigError, match=r"knobs.kappa > 0 needs a per-user.*'median'"):
        config_from_dict({**median, "knobs": {"kappa": 0.2}})


@pytest.mark.parametrize(("grid", "message"), [
    ({"engine.steps": [0]}, r"static_grid\['engine.steps'\] value 0"),
    ({"engine.choice": ["best"]}, r"static_grid\['engine.choice'\] value 'best'"),
    ({"probing.n_probe": [10]}, r"static_grid\['probing.n_probe'\] needs a probing section"),
])
def test_static_grid_values_are_validated_like_their_fields(grid, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({**_base(), "static_grid": grid})


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: t\ndata: {dataset: trap, options: {gap: 1e1}}\n"
                    "market: {n_learners: 2}\nlearner: {family: squared}\n"
                    "engine: {batch_size: 4, steps: 10}\nknobs: {eta: 1e-3, lam: 5E-9}\n")
    cfg = load_config(path)
    assert cfg.data.options["gap"] == 10.0 and cfg.knobs.eta == 0.001 and cfg.knobs.lam == 5e-9


def test_booleans_are_not_counts():
    for section, field in (("engine", "steps"), ("engine", "batch_size")):
        raw = _base()
        raw[section] = {**raw[section], field: True}
        with pytest.raises(ConfigError, match=rf"{section}.{field}"):
            config_from_dict(raw)
    with pytest.raises(ConfigError, match=r"knobs.seed"):
        config_from_dict({**_base(), "knobs": {"seed": True}})


def test_unknown_loader_option_is_a_config_error():
    from userchoice.experiments.plan import build_market

    cfg = config_from_dict({**_base(), "data": {"dataset": "trap", "options": {"gapp": 1.0}}})
    with pytest.raises(ConfigError, match=r"data.options for dataset 'trap'.*gapp"):
        build_market(cfg)
