"""Inputs that cannot hurt (issue 10, items 4, 9 and 10): YAML alias bombs and duplicate keys,
non-UTF-8 configs, counts bounded by memory and time estimates, knob intervals that stay
finite in float32, path tokens limited to the documented ones, safe names, finite options,
file modes that follow the umask, and data-derived text escaped in figures. Config-level only:
nothing here compiles the engine."""

from __future__ import annotations

import copy
import errno
import math
import os
import re
import stat
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from userchoice import atomic
from userchoice.atomic import atomic_write
from userchoice.experiments import paths as cp
from userchoice.experiments.config import (
    INDEX_LIMIT,
    MEMORY_LIMIT,
    TIME_LIMIT,
    ConfigError,
    KnobsConfig,
    YAMLRefused,
    config_from_dict,
    load_config,
    parse_override,
    read_yaml_file,
    size_estimates,
    yaml_load,
)
from userchoice.knobs import BY_NAME, make_knobs, validate_knobs

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "userchoice" / "configs"

VALID: dict[str, Any] = {
    "name": "trap_tiny",
    "data": {"dataset": "trap", "options": {"gap": 10.0, "n_users": 200}},
    "market": {"n_learners": 2},
    "learner": {"family": "squared"},
    "engine": {"batch_size": 10, "steps": 40, "eval_every": 20},
    "probing": {"probers": [0], "source": "preferred", "n_probe": 10, "probe_batch": 10},
    "knobs": {"seed": 3, "tau": 0.7, "p": [0, 1], "eta": 0.02},
}

BASE_YAML = """\
name: trap_tiny
data: {dataset: trap, options: {gap: 10.0, n_users: 200}}
market: {n_learners: 2}
learner: {family: squared}
engine: {batch_size: 10, steps: 40, eval_every: 20}
knobs: {seed: 2, tau: 0.7, eta: 0.02}
"""


def with_value(path: str, value: Any, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(VALID if raw is None else raw)
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def config_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw, "exp.yaml")
    return str(caught.value)


# ---------------------------------------------------------------------------------------------
# YAML: no aliases, no anchors, no merge keys, no duplicate keys, UTF-8 only
# ---------------------------------------------------------------------------------------------


def bomb(levels: int = 9, indent: str = "  ") -> str:
    """A "billion laughs" bomb: 9 levels of 9 aliases each expand to 9⁹ ≈ 387 million strings."""
    lines = [f'{indent}l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"{indent}l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def fast_and_small(function, *args):
    """``function(*args)`` must raise ConfigError or YAMLRefused within a second and never
    allocate much: nothing may expand."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises((ConfigError, YAMLRefused)) as caught:
            function(*args)
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert peak < 20e6, f"allocated {peak / 1e6:.0f} MB"
    return str(caught.value)


def test_the_yaml_reader_refuses_an_alias_bomb_fast():
    message = fast_and_small(yaml_load, "reported:\n" + bomb())
    assert "anchor &l0" in message and "line 2" in message


@pytest.mark.parametrize("where", ["reported", "data_options", "description"])
def test_an_alias_bomb_anywhere_in_a_config_file_names_the_file_and_line(tmp_path, where):
    text = BASE_YAML
    if where == "reported":
        text += "reported:\n" + bomb()
    elif where == "data_options":
        text = text.replace("data: {dataset: trap, options: {gap: 10.0, n_users: 200}}",
                            "data:\n  dataset: trap\n  options:\n" + bomb(indent="    "))
    else:
        text += "bombs:\n" + bomb() + "description: *l8\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    message = fast_and_small(load_config, path)
    assert str(path) in message and "line " in message
    assert "anchors and aliases" in message
    fast_and_small(cp.load_experiment, path)


def test_an_alias_alone_is_refused_too():
    with pytest.raises(YAMLRefused, match=r"alias \*x"):
        yaml_load("a: *x\n")  # an alias without an anchor: refused before PyYAML's own error
    with pytest.raises(YAMLRefused, match=r"anchor &x"):
        yaml_load("a: &x 1\nb: 2\n")


def test_an_alias_in_a_set_override_is_a_config_error():
    value = "[&a [lol, lol, lol], [*a, *a, *a]]"
    message = fast_and_small(parse_override, f"reported.x={value}")
    assert "override 'reported.x=" in message and "anchor &a" in message
    fast_and_small(config_from_dict, VALID, "exp.yaml", [f"description={value}"])


def test_merge_keys_are_refused():
    with pytest.raises(YAMLRefused, match=r"merge keys"):
        yaml_load("a:\n  <<: {x: 1}\n  y: 2\n")


@pytest.mark.parametrize(("text", "key", "line", "first"), [
    ("name: a\nname: b\n", "'name'", 2, 1),
    ("knobs:\n  tau: 0.3\n  eta: 0.1\n  tau: 0.7\n", "'tau'", 4, 2),
    ("reported: {0: a, 0.0: b}\n", "0.0", 1, 1),  # equal as Python keys: the last would win
])
def test_duplicate_keys_are_refused_naming_the_key_and_line(text, key, line, first):
    with pytest.raises(YAMLRefused) as caught:
        yaml_load(text)
    assert f"duplicate key {key} (first at line {first})" in caught.value.problem
    assert caught.value.problem_mark.line + 1 == line


def test_a_duplicate_key_in_a_file_or_override_is_a_config_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(BASE_YAML.replace("market: {n_learners: 2}",
                                      "market: {n_learners: 2}\nmarket: {n_learners: 3}"))
    with pytest.raises(ConfigError,
                       match=rf"{re.escape(str(path))}, line 4, column 1: duplicate key 'market'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"override 'knobs=\{tau: 1, tau: 0\}'.*duplicate key"):
        parse_override("knobs={tau: 1, tau: 0}")


def test_plain_yaml_still_reads_as_before():
    text = "a: 1e-3\nb: [1, 2]\nc: {d: .inf}\n=: 4\nreported: {0: 1, 0.8: 2}\n"
    assert yaml_load(text) == {"a": 1e-3, "b": [1, 2], "c": {"d": math.inf}, "=": 4,
                               "reported": {0: 1, 0.8: 2}}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "latin-1"])
def test_a_config_that_is_not_utf8_says_it_must_be(tmp_path, encoding):
    path = tmp_path / "exp.yaml"
    path.write_bytes((BASE_YAML + "description: café à Zürich\n").encode(encoding))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text.*must be UTF-8") as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_a_utf8_config_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes((BASE_YAML + "description: café\n").encode("utf-8-sig"))
    assert load_config(path).description == "café"


def test_a_folder_given_as_a_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        read_yaml_file(tmp_path)


# ---------------------------------------------------------------------------------------------
# Counts bounded by memory and time estimates
# ---------------------------------------------------------------------------------------------


COUNTS = [
    # (fields set, the field the message names, the estimate it shows)
    ({"engine.steps": 10**12}, "engine.steps = 1000000000000", r"TB for the evaluation list"),
    ({"engine.steps": 10**9, "engine.eval_every": 10**8, "probing.probe_batch": 10**5},
     "engine.steps = 1000000000", r"[0-9.]+ hours of simulation at 1e\+09"),
    ({"probing.n_probe": 10**9}, "probing.n_probe = 1000000000", r"GB of working memory"),
    ({"probing.probe_batch": 10**9}, "probing.probe_batch = 1000000000", r"working memory"),
    ({"engine.batch_size": 10**10}, "engine.batch_size = 10000000000", r"working memory.*32-bit"),
    ({"knobs.seed": 10**9}, "knobs.seed = 1000000000", r"to plan 2000000000 runs"),
    ({"market.n_learners": 10**9}, "market.n_learners = 1000000000", r"TB"),
    ({"data.options.n_users": 10**11}, "data.options.n_users = 100000000000",
     r"for the market's data"),
]


@pytest.mark.parametrize(("fields", "named", "estimate"), COUNTS,
                         ids=[next(iter(f)) for f, _, _ in COUNTS])
def test_every_count_is_bounded_naming_the_field_and_the_estimate(fields, named, estimate):
    raw = VALID
    for path, value in fields.items():
        raw = with_value(path, value, raw)
    started = time.perf_counter()
    message = config_error(raw)
    assert time.perf_counter() - started < 1.0  # nothing is built
    assert f"\n  {named} " in message and " needs " in message, message
    assert "the limit is" in message, message
    assert re.search(estimate, message), message


@pytest.mark.parametrize(("path", "value"), [
    ("engine.eval_every", 1),  # 41 evaluation points
    ("knobs.tau", list(np.linspace(0, 1, 10**4))),  # 60,000 runs
    ("probing.n_probe", 10**5),
    ("data.options.n_users", 10**6),
])
def test_large_but_reasonable_counts_pass(path, value):
    config_from_dict(with_value(path, value))


def test_a_static_grid_value_is_bounded_too():
    raw = with_value("static_grid", {"probing.n_probe": [10, 10**9]})
    assert "probing.n_probe = 1000000000" in config_error(raw)


def test_the_engine_int32_indices_are_a_limit():
    raw = with_value("engine.eval_every", 10**10, with_value("engine.steps", INDEX_LIMIT + 1))
    raw["knobs"]["seed"] = 1
    raw["knobs"]["p"] = 0
    message = config_error(raw)
    assert "engine.steps = 2147483648" in message and "32-bit" in message


def test_the_paper_scale_is_well_inside_the_bounds():
    """T = 10⁵, 15 seeds × 48 grid points, N_probe = 10⁴, 10 learners, 10⁶ users, float64."""
    raw = with_value("data.options.n_users", 10**6)
    raw["engine"] = {"batch_size": 1000, "steps": 10**5, "eval_every": 100, "dtype": "float64"}
    raw["market"]["n_learners"] = 10
    raw["probing"] = {"probers": [0, 1], "n_probe": 10**4, "probe_batch": 1000}
    raw["knobs"] = {"seed": 15, "p": list(np.linspace(0, 2, 16)), "kappa": [0, 0.2, 0.4],
                    "tau": 0.7}
    estimates = size_estimates(config_from_dict(raw))
    assert estimates["runs"] == 720
    for key in ("results_bytes", "plan_bytes", "run_bytes", "data_bytes"):
        assert estimates[key] < MEMORY_LIMIT / 10, key
    assert estimates["seconds"] < TIME_LIMIT / 10


def test_every_shipped_config_is_inside_the_bounds():
    paths = sorted(CONFIGS.glob("*/*.yaml"))
    assert len(paths) >= 60
    for path in paths:
        estimates = size_estimates(load_config(path))
        assert estimates["results_bytes"] < MEMORY_LIMIT / 100, path
        assert estimates["seconds"] < TIME_LIMIT / 100, path


# ---------------------------------------------------------------------------------------------
# Knob intervals: values stay finite in float32
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("knob", "value"), [("p", 1e300), ("lam", 1e300), ("eta", 1e300),
                                             ("temperature", 1e300), ("temperature", 1e-300)])
def test_huge_knob_values_are_rejected_by_the_config_and_the_engine(knob, value):
    raw = with_value(f"knobs.{knob}", value)
    assert f"knobs.{knob}" in config_error(raw)
    with pytest.raises(ValueError, match=rf"{knob}=.*out of range"):
        validate_knobs(make_knobs(2, **{knob: value}), 2, probing=_AnyProbing())


def test_prior_weights_are_bounded():
    with pytest.raises(ValueError, match=r"prior=1e\+300 is out of range"):
        validate_knobs(make_knobs(2, prior=[1.0, 1e300]), 2)
    assert "knobs.prior" in config_error(with_value("knobs.prior", [1.0, 1e300]))


def test_the_bounds_leave_every_value_and_its_mix_finite_in_float32():
    for name in ("p", "eta", "lam", "temperature", "prior"):
        interval = BY_NAME[name].interval
        assert interval.high is not None and interval.high <= 1e6
        high = np.float32(interval.high)
        assert np.isfinite(high * high) and np.isfinite(np.float32(1) + high)
    assert BY_NAME["temperature"].interval.low > 0
    assert np.log(np.float32(BY_NAME["prior"].interval.low)) > -np.inf
    KnobsConfig.model_validate({"p": 1e6, "lam": 1e6, "eta": 1e6, "temperature": 1e-6})


class _AnyProbing:
    per_user_source = True
    source = "preferred"


# ---------------------------------------------------------------------------------------------
# Path tokens: only the documented ones
# ---------------------------------------------------------------------------------------------


def test_an_environment_variable_is_not_a_path_token(tmp_path, monkeypatch):
    monkeypatch.setenv("UC_SECRET_TOKEN", "s3cr3t")
    with pytest.raises(ConfigError) as caught:
        cp.expand_path("${UC_SECRET_TOKEN}/x", base_dir=tmp_path, where="data.options.cache_dir")
    message = str(caught.value)
    assert message.startswith("data.options.cache_dir: ${UC_SECRET_TOKEN} is not an allowed")
    assert "${SHARED_DATA}, ${DATA_DIR}, ${CONFIG_DIR}" in message
    assert "s3cr3t" not in message
    assert cp.expand_path("${CONFIG_DIR}/x", base_dir=tmp_path) == str(tmp_path.resolve() / "x")
    assert cp.expand_path("${DATA_DIR}/x", base_dir=tmp_path, data_dir=tmp_path / "d") == \
        str(tmp_path / "d" / "x")


# ---------------------------------------------------------------------------------------------
# Names: never outside the results folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "../x", "a/b", "x" * 101, "x" * 300])
def test_names_that_could_escape_or_overflow_are_refused(name):
    message = config_error(with_value("name", name))
    assert "name:" in message


def test_ordinary_names_still_validate():
    for name in ("census_good", "run-1.v2", "x" * 100, "a..b"):
        assert config_from_dict(with_value("name", name)).name == name


# ---------------------------------------------------------------------------------------------
# Options: every number finite
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "value", "shown"), [
    ("data.options.gap", math.nan, "data.options.gap is nan"),
    ("data.options.gap", math.inf, "data.options.gap is inf"),
    ("market.options.weights", [1.0, -math.inf], "market.options.weights[1] is -inf"),
    ("init.options.eta", math.nan, "init.options.eta is nan"),
    ("learner.options.extra", {"scale": math.inf}, "learner.options.extra.scale is inf"),
])
def test_non_finite_options_are_refused_naming_the_path(path, value, shown):
    message = config_error(with_value(path, value))
    assert shown in message, message


def test_non_finite_options_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(BASE_YAML.replace("gap: 10.0", "gap: .nan"))
    with pytest.raises(ConfigError, match=r"data\.options\.gap is nan"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"data\.options\.gap is inf"):
        config_from_dict(VALID, "exp.yaml", ["data.options.gap=.inf"])


# ---------------------------------------------------------------------------------------------
# atomic writes: the umask decides the mode; failures name the target and leave nothing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        written = atomic_write(tmp_path / "f.json", lambda out: out.write(b"{}"))
        plain = tmp_path / "plain"
        plain.write_bytes(b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EIO])
def test_a_failed_write_names_the_target_and_leaves_the_old_file(tmp_path, monkeypatch, code):
    target = tmp_path / "manifest.json"
    target.write_text("old")

    def fail(_fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "fsync", fail)
    with pytest.raises(OSError) as caught:
        atomic_write(target, lambda out: out.write(b"new"))
    assert caught.value.errno == code and caught.value.filename == str(target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temp file


def test_replacing_a_folder_or_a_long_name_fails_cleanly(tmp_path):
    folder = tmp_path / "report.html"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        atomic_write(folder, lambda out: out.write(b"x"))
    assert caught.value.filename == str(folder)
    long = tmp_path / ("n" * 300)
    with pytest.raises(OSError) as caught:
        atomic_write(long, lambda out: out.write(b"x"))
    assert caught.value.errno == errno.ENAMETOOLONG and caught.value.filename == str(long)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    near_limit = tmp_path / ("m" * 250)  # fits NAME_MAX; its temporary name must fit too
    atomic_write(near_limit, lambda out: out.write(b"x"))
    assert near_limit.read_bytes() == b"x"


# ---------------------------------------------------------------------------------------------
# Figures: a `$` in a data-derived name is text, not mathtext
# ---------------------------------------------------------------------------------------------


class _Named:
    """Enough of ``analysis.Results`` for the label helpers."""

    name = "amazon $\\fake$ sweep"
    manifest: dict = {}  # noqa: RUF012 (a stand-in, never mutated)

    def learner_name(self, learner: int) -> str:
        return f"learner {learner} (Gift $\\fake$ Cards)"


def test_learner_names_with_dollars_are_drawn_literally(tmp_path):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from userchoice import plots

    label = plots._learner_label(_Named(), 0, [0])
    assert label == "learner 0 (Gift \\$\\fake\\$ Cards) — prober"
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    fig.legend(handles=[Line2D([], [], label=label)])
    plots._title(fig, _Named(), "test loss", {"kappa": 0.2}, plots.PlotOptions())
    fig.savefig(tmp_path / "f.png")  # mathtext would fail on the unknown symbol \fake
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert plots.plain_text("A$B") == "A\\$B"


def test_yaml_module_is_only_used_through_the_loader():
    assert issubclass(YAMLRefused, yaml.YAMLError)
