"""The engine against the NumPy reference, and the engine's own invariants."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import regression_market

from userchoice.engine import (
    EngineSpec,
    Knobs,
    knob_grid,
    make_knobs,
    predraw,
    simulate,
)
from userchoice.families import MLP, Logistic, MaskedMultiSquared, Squared
from userchoice.probing import ProbingSpec
from userchoice.reference import run_reference

RTOL = 1e-8  # acceptance: engine == reference within 1e-8 relative (float64)
ATOL = 1e-12  # for values that are exactly zero in exact arithmetic (e.g. distance at t = 0)


def assert_matches_reference(market, spec, knobs: Knobs) -> None:
    result = simulate(market, spec, knobs)
    ref = run_reference(market, spec, knobs, predraw(market, spec, int(knobs.seed[0])))
    assert set(result.metrics) == set(ref.metrics)
    for name, expected in ref.metrics.items():
        np.testing.assert_allclose(result.metrics[name][0], expected, rtol=RTOL, atol=ATOL,
                                   equal_nan=True, err_msg=name)
    for got, expected in zip(jax.tree_util.tree_leaves(result.final_params),
                             jax.tree_util.tree_leaves(ref.final_params), strict=True):
        np.testing.assert_allclose(got[0], expected, rtol=RTOL, atol=ATOL)
    if spec.update_all:
        for got, expected in zip(jax.tree_util.tree_leaves(result.final_update_all),
                                 jax.tree_util.tree_leaves(ref.final_update_all), strict=True):
            np.testing.assert_allclose(got[0], expected, rtol=RTOL, atol=ATOL)
    assert result.diverged_step[0] == ref.diverged_step == -1


def assert_same_runs(a, b, rtol: float = 2e-6) -> None:
    """Same arrivals and choices bit for bit; every value equal up to a few ulp.

    Two compiled programs (another batch size, an unused probing branch) may let XLA sum in
    another order, so values can differ in the last bits; the discrete path must not.
    """
    np.testing.assert_array_equal(a.metrics["batch_share"], b.metrics["batch_share"])
    np.testing.assert_array_equal(a.diverged_step, b.diverged_step)
    for name in a.metrics:
        np.testing.assert_allclose(a.metrics[name], b.metrics[name], rtol=rtol, atol=rtol * 1e-3,
                                   equal_nan=True, err_msg=name)
    for x, y in zip(jax.tree_util.tree_leaves(a.final_params),
                    jax.tree_util.tree_leaves(b.final_params), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * 1e-3)


def probe(probers, source, **kw):
    return ProbingSpec(tuple(probers), source, n_probe=kw.pop("n_probe", 24),
                       probe_batch=kw.pop("probe_batch", 6), **kw)


# (family, choice rule, probing, extra spec fields, knob overrides)
CLASSIFICATION_CASES = {
    "msgd": (Logistic(), "tau_mixture", None, {}, {}),
    "median-su_dean-inv_sqrt": (
        Logistic(), "tau_mixture", probe([2], "median"),
        {"normalisation": "su_dean", "schedule": "inv_sqrt"}, {}),
    "leader-noisy-argmin": (Logistic(), "argmin", probe([1], "leader", leader=0), {},
                            {"kappa": 0.3}),
    "subset-online-zeta": (Logistic(), "zeta_random", probe([2], "subset", subset=(0, 1),
                                                            refresh_every=5), {}, {"zeta": 0.3}),
    "preferred-noisy-online-logit-two-probers": (
        Logistic(), "logit", probe([0, 2], "preferred", refresh_every=3), {},
        {"kappa": 0.4, "temperature": 0.3, "prior": [1.0, 2.0, 0.5]}),
    "preferred-additive": (Logistic(), "additive_rank", probe([1], "preferred"), {},
                           {"tau": 0.2}),
    "mlp-preferred-noisy-online": (MLP(hidden=6), "tau_mixture",
                                   probe([1], "preferred", refresh_every=4), {}, {"kappa": 0.2}),
    "eval-remainder-inv": (Logistic(), "tau_mixture", probe([0], "median"),
                           {"schedule": "inv", "eval_every": 7}, {}),
    # users who choose by another loss than the learners train on
    "choice-loss-soft01-logit": (Logistic(), "logit", probe([1], "median"),
                                 {"choice_loss": "soft01", "loss_temperature": 0.5},
                                 {"temperature": 0.2}),
    "choice-loss-zero-one-tau": (Logistic(), "tau_mixture", None, {"choice_loss": "zero_one"},
                                 {}),
    "choice-loss-logistic-mlp": (MLP(hidden=6), "argmin", None,
                                 {"choice_loss": "logistic", "loss_temperature": 2.0}, {}),
}


@pytest.mark.parametrize("case", list(CLASSIFICATION_CASES))
def test_engine_matches_reference_classification(mixture_market, case):
    family, rule, probing, extra, overrides = CLASSIFICATION_CASES[case]
    spec = EngineSpec(family, 3, 16, 24, **{"eval_every": 6, **extra}, choice=rule,
                      probing=probing, dtype="float64")
    knobs = make_knobs(3, **{"seed": 5, "tau": 0.4, "p": 0.0 if probing is None else 0.8,
                             "eta": 0.2, "lam": 0.01, **overrides})
    assert_matches_reference(mixture_market, spec, knobs)


REGRESSION_CASES = {
    "squared-median-inv": (Squared(), None, "tau_mixture", probe([1], "median"),
                           {"schedule": "inv"}, {}),
    "squared-leader-additive-no-update-all": (
        Squared(), None, "additive_rank", probe([2], "leader", leader=1, refresh_every=6),
        {"update_all": False}, {"tau": 0.5, "kappa": 0.25}),
    "movielens-paper-scaling-preferred-online": (
        MaskedMultiSquared(n_outputs=5, gradient_scaling="paper"), 5, "tau_mixture",
        probe([0], "preferred", refresh_every=5), {}, {"eta": 0.01, "kappa": 0.3}),
    "movielens-consistent-subset-logit": (
        MaskedMultiSquared(n_outputs=5, gradient_scaling="consistent", init_kind="normal"), 5,
        "logit", probe([2], "subset", subset=(0, 2)), {}, {"eta": 0.1, "temperature": 2.0}),
}


@pytest.mark.parametrize("case", list(REGRESSION_CASES))
def test_engine_matches_reference_regression(case):
    family, n_outputs, rule, probing, extra, overrides = REGRESSION_CASES[case]
    market = regression_market(n_outputs=n_outputs, seed=3)
    spec = EngineSpec(family, 3, 12, 20, **{"eval_every": 5, **extra}, choice=rule,
                      probing=probing, dtype="float64")
    knobs = make_knobs(3, **{"seed": 11, "tau": 0.3, "p": 0.6, "eta": 0.05, "lam": 0.001,
                             **overrides})
    assert_matches_reference(market, spec, knobs)


def mixed_knobs(n_runs: int, n_learners: int, seed: int = 0) -> Knobs:
    rng = np.random.default_rng(seed)
    return make_knobs(
        n_learners,
        seed=rng.permutation(10 * n_runs)[:n_runs],
        tau=rng.random(n_runs),
        p=rng.choice([0.0, 0.3, 1.0, 2.0], n_runs),
        kappa=rng.random(n_runs) * 0.5,
        eta=rng.uniform(0.05, 0.3, n_runs),
        lam=rng.choice([0.0, 1e-3], n_runs),
    )


@pytest.mark.parametrize(("dtype", "rtol"), [("float32", 2e-6), ("float64", 1e-13)])
def test_run_alone_equals_run_inside_a_batch_of_64(mixture_market, dtype, rtol):
    spec = EngineSpec(Logistic(), 3, 16, 30, eval_every=10, dtype=dtype,
                      probing=probe([2], "preferred", refresh_every=7))
    batch = mixed_knobs(64, 3)
    together = simulate(mixture_market, spec, batch)
    for r in (0, 17, 63):
        assert_same_runs(simulate(mixture_market, spec, batch.run(r)), together.run(r), rtol)
        # Its batch mates are genuinely different runs.
        assert not np.allclose(together.final_params[r], together.final_params[(r + 1) % 64])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunking_and_worker_threads_do_not_change_results(mixture_market, dtype):
    spec = EngineSpec(Logistic(), 3, 16, 20, eval_every=10, dtype=dtype,
                      probing=probe([1], "median"))
    knobs = mixed_knobs(7, 3, seed=4)._replace(kappa=np.zeros(7))
    whole = simulate(mixture_market, spec, knobs, chunk_size=7)
    serial = simulate(mixture_market, spec, knobs, chunk_size=3, workers=1)
    threaded = simulate(mixture_market, spec, knobs, chunk_size=3, workers=3)
    assert serial.final_params.dtype == np.dtype(dtype)
    assert_same_runs(whole, serial)
    # Same program, same inputs: which thread ran a chunk cannot matter at all.
    for name in serial.metrics:
        np.testing.assert_array_equal(serial.metrics[name], threaded.metrics[name], err_msg=name)


def test_p_zero_reproduces_msgd_exactly(mixture_market):
    base = EngineSpec(Logistic(), 3, 16, 40, eval_every=10)
    probed = EngineSpec(Logistic(), 3, 16, 40, eval_every=10,
                        probing=probe([0, 2], "preferred", refresh_every=5))
    knobs = knob_grid(3, seed=[0, 1, 2], tau=[0.2, 0.8], eta=0.3)
    msgd = simulate(mixture_market, base, knobs)
    msgd_p = simulate(mixture_market, probed, knobs)
    msgd_p.metrics = {k: v for k, v in msgd_p.metrics.items() if k not in ("probe_risk", "psi")}
    assert_same_runs(msgd, msgd_p)
    # …and p > 0 does change the probers (so the comparison above is not vacuous).
    moved = simulate(mixture_market, probed, knobs._replace(p=np.full(6, 1.0)))
    assert not np.allclose(moved.final_params[:, 0], msgd.final_params[:, 0])


def test_tau_one_sends_every_user_to_its_favourite(mixture_market):
    spec = EngineSpec(Logistic(), 3, 32, 30, eval_every=10)
    result = simulate(mixture_market, spec, knob_grid(3, seed=range(3), tau=1.0, eta=0.2))
    favourite = mixture_market.preferences_test.favourite
    expected = np.bincount(favourite, minlength=3) / favourite.size
    np.testing.assert_allclose(result.metrics["market_share"], np.broadcast_to(expected, (3, 4, 3)))
    # Every learner's local loss is its loss on exactly the users who prefer it.
    x_train = mixture_market.dataset.x_train
    y_train = mixture_market.dataset.y_train
    fav_train = mixture_market.preferences_train.favourite
    # A learner nobody prefers never moves: drop learner 2's users and check it stays put.
    keep = fav_train != 2
    from userchoice.data.dataset import Dataset
    from userchoice.market import Market
    from userchoice.preferences import Preferences
    ds = mixture_market.dataset
    reduced = Market(
        Dataset(x_train[keep], y_train[keep], ds.x_test, ds.y_test),
        Preferences(mixture_market.preferences_train.rank[keep]),
        mixture_market.preferences_test,
    )
    result = simulate(reduced, spec, knob_grid(3, seed=range(3), tau=1.0, eta=0.2))
    distance = result.final("distance_to_init")
    assert np.all(distance[:, 2] == 0) and np.all(distance[:, :2] > 0)
    assert np.all(result.final("batch_share")[:, 2] == 0)


def test_tau_zero_is_pure_argmin(mixture_market):
    knobs = knob_grid(3, seed=range(4), tau=0.0, eta=0.2)
    mixture = simulate(mixture_market, EngineSpec(Logistic(), 3, 16, 30, eval_every=10), knobs)
    argmin = simulate(mixture_market,
                      EngineSpec(Logistic(), 3, 16, 30, eval_every=10, choice="argmin"), knobs)
    assert_same_runs(mixture, argmin)


@pytest.mark.parametrize("rule", ["tau_mixture", "argmin", "zeta_random", "logit", "additive_rank"])
def test_market_shares_sum_to_one(mixture_market, rule):
    spec = EngineSpec(Logistic(), 3, 16, 20, eval_every=5, choice=rule)
    result = simulate(mixture_market, spec, mixed_knobs(6, 3)._replace(
        p=np.zeros(6), kappa=np.zeros(6), zeta=np.linspace(0, 1, 6),
        temperature=np.geomspace(1e-3, 1e3, 6)))
    np.testing.assert_allclose(result.metrics["market_share"].sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(result.metrics["batch_share"][:, 1:].sum(axis=-1), 1.0, rtol=1e-5)


def test_potential_is_experienced_loss_and_psi_adds_probe_risk(small_trap):
    from userchoice.fitting import erm_init
    spec = EngineSpec(Squared(), 2, 20, 30, eval_every=10, dtype="float64",
                      probing=probe([0], "preferred"))
    result = simulate(small_trap, spec, knob_grid(2, seed=0, tau=0.7, p=[0.0, 1.5], eta=0.05),
                      init_params=erm_init(small_trap, Squared()))
    # Φ_τ = E[(1−τ)·min_i ℓ_i + τ·ℓ_π] at the initial ERM models, computed independently.
    theta0 = erm_init(small_trap, Squared())
    ds, fav = small_trap.dataset, small_trap.preferences_test.favourite
    losses = (ds.x_test @ theta0.T - ds.y_test[:, None]) ** 2
    phi = np.mean(0.3 * losses.min(axis=1) + 0.7 * losses[np.arange(len(fav)), fav])
    np.testing.assert_allclose(result.metrics["potential"][:, 0], phi, rtol=1e-10)
    psi = result.metrics["potential"] + np.array([0.0, 1.5])[:, None] * \
        result.metrics["probe_risk"][..., 0]
    np.testing.assert_allclose(result.metrics["psi"], psi, rtol=1e-12)


def test_diverging_run_is_flagged_and_others_are_unaffected(mixture_market):
    spec = EngineSpec(Squared(), 3, 12, 40, eval_every=10)
    market = regression_market(seed=5)
    knobs = make_knobs(3, seed=[0, 1, 2], tau=0.5, eta=[0.05, 50.0, 0.05])
    result = simulate(market, spec, knobs)
    assert result.diverged_step[0] == -1 and result.diverged_step[2] == -1
    assert 0 <= result.diverged_step[1] < 40
    # NaN everywhere after divergence, as the README promises (market_share too: it used to
    # stay finite while test_loss became inf)
    later = result.eval_steps > result.diverged_step[1]
    for name, values in result.metrics.items():
        assert np.isnan(values[1][later]).all(), name
    for name in ("test_loss", "market_share", "potential", "distance_to_init"):
        assert np.isfinite(result.metrics[name][0]).all(), name
    assert_same_runs(simulate(market, spec, knobs.run(2)), result.run(2))


def test_online_refresh_changes_labels_and_huge_period_equals_offline(mixture_market):
    knobs = knob_grid(3, seed=range(3), tau=0.6, p=1.0, eta=0.3)

    def run(refresh):
        spec = EngineSpec(Logistic(), 3, 16, 40, eval_every=10,
                          probing=probe([0], "preferred", refresh_every=refresh))
        return simulate(mixture_market, spec, knobs)

    offline, never, online = run(0), run(1000), run(2)
    np.testing.assert_array_equal(offline.final_params, never.final_params)
    assert not np.allclose(offline.final_params, online.final_params)


def test_float32_by_default_and_float64_on_request(mixture_market):
    # Shared init + argmin: the only randomness left is integer arrivals, identical in both.
    knobs = make_knobs(3, seed=0, eta=0.2)
    theta0 = np.random.default_rng(0).normal(size=(3, mixture_market.dataset.n_features))
    results = {
        dtype: simulate(mixture_market, EngineSpec(Logistic(), 3, 8, 20, eval_every=10,
                                                   choice="argmin", dtype=dtype),
                        knobs, init_params=theta0)
        for dtype in ("float32", "float64")
    }
    assert results["float32"].final_params.dtype == np.float32
    assert results["float64"].final_params.dtype == np.float64
    np.testing.assert_allclose(results["float32"].final("test_loss"),
                               results["float64"].final("test_loss"), rtol=1e-5)


def test_eval_steps_include_start_and_end():
    spec = EngineSpec(Logistic(), 2, 4, 25, eval_every=10)
    assert spec.eval_steps.tolist() == [0, 10, 20, 25]


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("tau", 1.5, r"tau=1.5 .*\[0, 1\]"),
        ("tau", -0.1, r"tau=-0.1 .*\[0, 1\]"),
        ("kappa", 2.0, r"kappa=2.0 .*\[0, 1\]"),
        ("p", -1.0, r"p=-1.0 .*p in \[0, 1e\+06\]"),
        ("eta", 0.0, r"eta=0.0 .*eta in \(0, 1e\+06\]"),
        ("lam", -1.0, r"lam=-1.0 .*lam in \[0, 1e\+06\]"),
        ("temperature", 0.0, r"temperature=0.0 .*temperature in \[1e-06, 1e\+06\]"),
        ("zeta", 3.0, r"zeta=3.0 .*\[0, 1\]"),
    ],
)
def test_out_of_range_knobs_are_named(mixture_market, knob, value, message):
    spec = EngineSpec(Logistic(), 3, 8, 10, probing=probe([0], "preferred"))
    with pytest.raises(ValueError, match=message):
        simulate(mixture_market, spec, make_knobs(3, **{knob: value}))


def test_probing_knobs_need_a_probing_spec(mixture_market):
    spec = EngineSpec(Logistic(), 3, 8, 10)
    with pytest.raises(ValueError, match=r"p=0.5 needs probing"):
        simulate(mixture_market, spec, make_knobs(3, p=0.5))
    median = EngineSpec(Logistic(), 3, 8, 10, probing=probe([0], "median"))
    with pytest.raises(ValueError, match=r"kappa.*'median' source"):
        simulate(mixture_market, median, make_knobs(3, kappa=0.1))


def test_bad_static_spec_is_named():
    with pytest.raises(ValueError, match=r"probers entry 5 out of range; allowed \[0, 2\]"):
        EngineSpec(Logistic(), 3, 8, 10, probing=probe([5], "preferred"))
    with pytest.raises(ValueError, match="non-empty subset G"):
        EngineSpec(Logistic(), 3, 8, 10, probing=probe([0], "subset", subset=()))
    with pytest.raises(ValueError, match=r"leader 7 out of range"):
        EngineSpec(Logistic(), 3, 8, 10, probing=probe([0], "leader", leader=7))
    with pytest.raises(ValueError, match="unknown choice rule 'best'"):
        EngineSpec(Logistic(), 3, 8, 10, choice="best")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        EngineSpec(Logistic(), 3, 0, 10)
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        EngineSpec(Logistic(), 3, 8, 10, schedule="cosine")


def test_bad_market_or_shapes_are_named(mixture_market):
    n_train = mixture_market.dataset.n_train
    with pytest.raises(ValueError, match=rf"batch_size B={n_train + 1} .*allowed \[1, {n_train}\]"):
        simulate(mixture_market, EngineSpec(Logistic(), 3, n_train + 1, 5), make_knobs(3))
    with pytest.raises(ValueError, match="n_learners=4 but the market"):
        simulate(mixture_market, EngineSpec(Logistic(), 4, 8, 5), make_knobs(4))
    with pytest.raises(ValueError, match="expects labels y of trailing shape"):
        simulate(mixture_market, EngineSpec(MaskedMultiSquared(n_outputs=3), 3, 8, 5),
                 make_knobs(3))
    with pytest.raises(ValueError, match="init_params leaf has shape"):
        simulate(mixture_market, EngineSpec(Logistic(), 3, 8, 5), make_knobs(3),
                 init_params=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="knob sequences must share one length"):
        make_knobs(3, seed=[0, 1], tau=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="prior must have shape"):
        make_knobs(3, prior=[1.0, 2.0])
    with pytest.raises(ValueError, match="unknown knob"):
        make_knobs(3, tua=0.5)


def test_summarise_groups_runs_by_knobs(mixture_market):
    spec = EngineSpec(Logistic(), 3, 8, 10, eval_every=5)
    result = simulate(mixture_market, spec, knob_grid(3, seed=range(3), tau=[0.2, 0.9]))
    stats = result.summarise("test_loss", by=("tau",))  # a DataFrame: tau × learner
    assert sorted(set(stats["tau"])) == pytest.approx([0.2, 0.9])
    for tau, part in stats.groupby("tau"):
        chosen = np.isclose(np.asarray(result.knobs.tau), tau)
        values = result.final("test_loss")[chosen]
        assert part["learner"].tolist() == [0, 1, 2] and (part["n"] == 3).all()
        np.testing.assert_allclose(part["mean"], values.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(part["sem"], values.std(axis=0, ddof=1) / np.sqrt(3),
                                   rtol=1e-5)
    with pytest.raises(ValueError, match="by must name knobs"):
        result.summarise("test_loss", by=("gamma",))
