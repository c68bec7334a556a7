"""Su & Dean's streaming protocol (ICML 2024; ../shared/NEIGHBOURS.md §A): its metrics against
closed forms and plain loops, its claim checks on curves of known shape, its shipped configs,
and the acceptance run: quick/su_dean_census_zeta shows the published shape (ζ-potential
decreasing, ordered by ζ at the end, path length concave in log t)."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import userchoice
from userchoice.analysis import ClaimData, Results, check_claims, load_results
from userchoice.engine import EngineSpec, init_run, make_knobs, market_arrays, simulate, step
from userchoice.experiments.config import ConfigError, config_from_dict, load_config
from userchoice.experiments.paths import load_experiment
from userchoice.experiments.plan import make_groups, run_id
from userchoice.experiments.runner import run_experiment
from userchoice.families import Logistic, Squared, make_family
from userchoice.plots import make_figures

CONFIGS = Path(userchoice.__file__).resolve().parent / "configs"
NAMES = ("su_dean_census_zeta", "su_dean_movielens_zeta")
SETS = ("paper", "local", "quick")
ZETAS = [0.0, 0.2, 0.5, 0.8, 1.0]


def su_dean_spec(family=None, **fields) -> EngineSpec:
    return EngineSpec(family or Logistic(), 3, **{
        "batch_size": 1, "steps": 60, "eval_every": 20, "choice": "zeta_random",
        "schedule": "inv", "normalisation": "su_dean", "arrival": "stream", "init": "uniform",
        "dtype": "float64", **fields})


@pytest.fixture(scope="module")
def zeta_runs(mixture_market):
    spec = su_dean_spec()
    knobs = make_knobs(3, seed=[0, 1, 2], zeta=[0.0, 0.4, 1.0], eta=1.0)
    with jax.enable_x64(True):
        return spec, knobs, simulate(mixture_market, spec, knobs)


# ---------------------------------------------------------------------------------------------
# The metrics
# ---------------------------------------------------------------------------------------------


def test_metrics_apply_where_they_mean_something():
    zeta = su_dean_spec()
    assert {"zeta_potential", "update_all_zeta_potential", "oracle_choice_accuracy",
            "path_length"} <= set(zeta.metrics)
    other = EngineSpec(Logistic(), 3, 4, 4)  # tau_mixture: ζ is not its knob
    assert "zeta_potential" not in other.metrics
    # Path length (work at every step) and oracle accuracy are recorded by default under
    # Su & Dean's rule only; any spec records them when asked.
    assert "path_length" not in other.metrics and "oracle_choice_accuracy" not in other.metrics
    asked = EngineSpec(Logistic(), 3, 4, 4, metrics=("path_length", "oracle_choice_accuracy"))
    assert asked.metrics == ("oracle_choice_accuracy", "path_length") or set(asked.metrics) == {
        "path_length", "oracle_choice_accuracy"}
    regression = su_dean_spec(Squared(), update_all=False)
    assert "oracle_choice_accuracy" not in regression.metrics
    assert "update_all_zeta_potential" not in regression.metrics
    with pytest.raises(ValueError, match="does not apply"):
        EngineSpec(Logistic(), 3, 4, 4, metrics=("zeta_potential",))


def test_zeta_potential_is_the_potential_under_zeta_random(zeta_runs):
    """Under zeta_random P(i) = ζ/n + (1−ζ)·1[i = argmin], so Φ = (1−ζ)·E[min] + ζ·E[mean]."""
    _, _, result = zeta_runs
    np.testing.assert_allclose(result.metric("zeta_potential"), result.metric("potential"),
                               rtol=1e-12)


def test_oracle_accuracy_and_zeta_potential_from_the_final_parameters(zeta_runs,
                                                                        mixture_market):
    _, knobs, result = zeta_runs
    ds = mixture_market.dataset
    x, y = np.asarray(ds.x_test, float), np.asarray(ds.y_test, float)
    for run in range(knobs.n_runs):
        scores = np.asarray(result.final_params[run]) @ x.T  # [n, Nt]
        losses = np.logaddexp(0.0, scores) - y * scores
        best = np.argmin(losses, axis=0)
        accuracy = np.mean((scores[best, np.arange(len(y))] > 0) == (y > 0.5))
        np.testing.assert_allclose(result.final("oracle_choice_accuracy")[run], accuracy)
        zeta = float(knobs.zeta[run])
        expected = (1 - zeta) * losses.min(axis=0).mean() + zeta * losses.mean()
        np.testing.assert_allclose(result.final("zeta_potential")[run], expected, rtol=1e-10)


def test_path_length_is_the_sum_of_step_lengths_of_a_hand_written_loop(zeta_runs,
                                                                        mixture_market):
    spec, knobs, result = zeta_runs
    with jax.enable_x64(True):
        data = market_arrays(mixture_market, spec.dtype)
        step_fn = jax.jit(functools.partial(step, spec))
        for run in range(knobs.n_runs):
            ctx, state = init_run(spec, data, knobs.at(run))
            total = np.zeros(spec.n_learners)
            for t in range(spec.steps):
                new = step_fn(data, ctx, state, t)
                total += np.linalg.norm(np.asarray(new.theta) - np.asarray(state.theta), axis=1)
                state = new
            np.testing.assert_allclose(np.asarray(state.path_length), total, rtol=1e-12)
            np.testing.assert_allclose(result.final("path_length")[run], total, rtol=1e-10)
    assert np.all(np.diff(result.metric("path_length"), axis=1) >= 0)  # it only grows


# ---------------------------------------------------------------------------------------------
# The claim checks on curves of known shape
# ---------------------------------------------------------------------------------------------

STEPS = np.arange(0, 1001, 10)


def curves_results(metric: str, curve, zetas=(0.0, 0.5, 1.0), seeds: int = 4) -> ClaimData:
    """Results whose ``metric`` follows ``curve(step, zeta)`` plus a little seed noise."""
    rng = np.random.default_rng(0)
    rows = []
    for z in zetas:
        for seed in range(seeds):
            for learner in range(2):
                rows += [{"run_id": f"{z}-{seed}", "step": int(t), "zeta": z, "seed": seed,
                          "learner": learner, "test_loss": 1.0,
                          metric: curve(t, z) * (1 + 1e-3 * rng.standard_normal())}
                         for t in STEPS]
    frame = pd.DataFrame(rows)
    market = frame[frame["learner"] == 0].drop(columns="learner")
    res = Results(Path("."), {}, frame[["run_id", "zeta", "seed"]].drop_duplicates(), frame,
                  "test_loss", [], market)
    return ClaimData.from_results(res)


def answers(data: ClaimData, *checks: dict) -> list[str]:
    return [v.answer for v in check_claims(data, list(checks))]


def test_decreasing_allows_small_noise_but_not_a_rising_curve():
    falling = curves_results("zeta_potential", lambda t, z: (1 + z) / np.sqrt(t + 1))
    rising = curves_results("zeta_potential", lambda t, z: 1 + z + t / 1000)
    bumpy = curves_results("zeta_potential",
                           lambda t, z: 1 + z + 1 / (t + 1) + 0.3 * np.sin(t / 20))
    check = {"kind": "decreasing", "metric": "zeta_potential"}
    assert answers(falling, check) == ["yes"]
    assert answers(rising, check) == ["no"]
    assert answers(bumpy, check) == ["no"]  # rises at far more than 10% of the steps


def test_ordered_by_reads_the_final_values_along_the_knob():
    up = curves_results("zeta_potential", lambda t, z: 1 + z + 1 / (t + 1))
    down = curves_results("zeta_potential", lambda t, z: 2 - z)
    check = {"kind": "ordered_by", "metric": "zeta_potential", "along": "zeta"}
    assert answers(up, check) == ["yes"]
    assert answers(down, check) == ["no"]
    assert answers(down, {**check, "increasing": False}) == ["yes"]
    assert answers(up, {**check, "metric": "path_length"}) == ["not tested"]


@pytest.mark.parametrize(("curve", "answer"), [
    (lambda t, z: (1 + z) * np.log(t + 1), "yes"),  # like log t
    (lambda t, z: np.sqrt(np.log(t + 1)), "yes"),  # flatter than log t
    (lambda t, z: t / 100, "no"),  # convex in log t
])
def test_concave_in_log_t(curve, answer):
    data = curves_results("path_length", curve)
    assert answers(data, {"kind": "concave_in_log_t", "metric": "path_length"},
                   {"kind": "concave_in_log_t", "metric": "path_length", "segments": 4}
                   ) == [answer, answer]


# ---------------------------------------------------------------------------------------------
# The shipped configs
# ---------------------------------------------------------------------------------------------


def config_path(kind: str, name: str) -> Path:
    return CONFIGS / kind / f"{name}.yaml"


@pytest.mark.parametrize("kind", SETS)
@pytest.mark.parametrize("name", NAMES)
def test_config_has_su_dean_settings(kind, name):
    c = load_config(config_path(kind, name))
    assert c.name == name and "Su & Dean" in c.description
    assert (c.market.n_learners, c.engine.batch_size, c.engine.choice, c.engine.schedule,
            c.init.kind) == (3, 1, "zeta_random", "inv", "uniform")
    assert (c.knobs.eta, c.knobs.lam, c.probing) == (1.0, 0.0, None)
    assert c.engine.eval_every <= 20  # enough points for log–log curves
    quick = kind == "quick"
    assert c.engine.steps == (500 if quick else 2000)
    assert c.knobs.zeta == ([0.0, 0.5, 1.0] if quick else ZETAS)
    census = name.startswith("su_dean_census")
    assert c.engine.arrival == ("stream" if census or kind == "paper" else "uniform")
    if census:
        assert c.data.dataset == "census" and c.learner.family == "logistic"
        assert c.data.options["test_fraction"] == 0.2
    else:
        assert c.data.dataset == "movielens" and c.learner.family == "masked_multi_squared"
        assert c.learner.options == {"gradient_scaling": "paper"}
        assert c.data.options["test_fraction"] == (0.0086 if kind == "paper" else 0.2)
    assert c.data.path == {
        ("census", True): "${DATA_DIR}/census/csv_pal_2018.zip",
        ("census", False): "${SAMPLE_DATA}/acs_2017_1yr_person_AL_sample5000.csv.gz",
        ("movielens", True): "${DATA_DIR}/movielens/ml-10m.zip",
        ("movielens", False): "${DATA_DIR}/movielens/ml-100k.zip"}[c.data.dataset,
                                                                  kind == "paper"]
    reported = c.reported
    assert reported["metric"] == "test_loss" and "ICML 2024" in reported["source"]
    assert {check["kind"] for check in reported["checks"]} == {
        "decreasing", "ordered_by", "concave_in_log_t"}
    if census:
        assert (reported["potential_start"], reported["potential_end"],
                reported["update_all_end"]) == ({0: 0.50}, {0: 0.24}, 0.50)
    groups = make_groups(c, make_family(c.learner.family, **c.learner.options))
    assert len(groups) == 1 and len(groups[0].run_ids) == len(c.knobs.zeta) * c.knobs.seed
    spec = groups[0].spec
    assert (spec.arrival, spec.init) == (c.engine.arrival, "uniform")


@pytest.mark.parametrize("name", NAMES)
def test_local_differs_from_paper_only_in_data(name):
    paper = load_config(config_path("paper", name)).model_dump()
    local = load_config(config_path("local", name)).model_dump()
    for section in ("market", "learner", "init", "knobs", "reported"):
        assert local[section] == paper[section], section
    # MovieLens 100K has fewer training users than T: with replacement there
    differ = {"arrival"} if name.startswith("su_dean_movielens") else set()
    assert {k for k in paper["engine"] if paper["engine"][k] != local["engine"][k]} == differ


def base_config(**engine) -> dict:
    return {"name": "ids", "data": {"dataset": "mixture", "options": {"n_users": 200}},
            "market": {"n_learners": 2}, "learner": {"family": "logistic"},
            "engine": {"batch_size": 4, "steps": 10, **engine}, "knobs": {"seed": 2}}


def test_new_fields_at_their_defaults_keep_the_run_ids():
    ids = {}
    for label, engine, init in (("plain", {}, None), ("uniform", {"arrival": "uniform"}, None),
                                ("stream", {"arrival": "stream"}, None),
                                ("init", {}, {"kind": "uniform"})):
        raw = base_config(**engine)
        if init:
            raw["init"] = init
        ids[label] = run_id(config_from_dict(raw), {}, {"seed": 0})
    assert ids["plain"] == ids["uniform"]  # the default is not part of the identity
    assert len({ids["plain"], ids["stream"], ids["init"]}) == 3


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="arrival"):
        config_from_dict(base_config(arrival="sequential"))
    raw = {**base_config(), "init": {"kind": "uniform", "options": {"steps": 3}}}
    with pytest.raises(ConfigError, match=r"init\.kind 'uniform' takes no options"):
        config_from_dict(raw)


# ---------------------------------------------------------------------------------------------
# Acceptance: the published shape on the ACS sample
# ---------------------------------------------------------------------------------------------


def test_quick_census_run_shows_the_published_shape(tmp_path):
    config = load_experiment(config_path("quick", "su_dean_census_zeta"))
    summary = run_experiment(config, tmp_path / "out")
    assert summary.failed == 0 and summary.diverged == 0 and summary.done == 6
    verdicts = check_claims(tmp_path / "out", config.reported["checks"])
    assert [v.answer for v in verdicts] == ["yes", "yes", "yes"], verdicts
    res = load_results(tmp_path / "out")
    final = res.market[res.market["step"] == config.engine.steps]
    assert final.groupby("zeta")["zeta_potential"].mean().is_monotonic_increasing
    figures = dict(make_figures(res, overview=False))
    assert {"zeta_potential_loglog", "path_length_vs_iteration"} <= set(figures)
    ax = figures["zeta_potential_loglog"].axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert figures["path_length_vs_iteration"].axes[0].get_xscale() == "log"
    zeta0 = [line for line in ax.lines if line.get_gid() == "zeta-0"]
    expected = final[final["zeta"] == 0]["zeta_potential"].mean()
    assert zeta0 and zeta0[0].get_ydata()[-1] == pytest.approx(expected, rel=1e-6)


def test_su_dean_figures_are_skipped_without_the_zeta_rule(tmp_path):
    raw = {**base_config(eval_every=5), "knobs": {"seed": 2, "tau": 0.5}, "baseline": False}
    run_experiment(config_from_dict(raw), tmp_path / "plain")
    kinds = {stem.split("__")[0] for stem, _ in make_figures(tmp_path / "plain", overview=False)}
    assert "metric_vs_iteration" in kinds
    assert not kinds & {"zeta_potential_loglog", "path_length_vs_iteration"}

