"""The equilibrium's building blocks: the logit choice, the choice losses, best responses,
probing, the generators and bad input."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userchoice.data.dataset import Dataset
from userchoice.equilibrium import (
    CHOICE_LOSSES,
    EQUILIBRIUM_SOURCES,
    EquilibriumData,
    EquilibriumProbing,
    EquilibriumSpec,
    alpha_star,
    best_response,
    choice_probabilities,
    from_dataset,
    market,
    paper_knobs,
    setting1,
    setting2,
    setting3,
    simulate_equilibrium,
    stack_data,
)
from userchoice.equilibrium.step import response_objective
from userchoice.knobs import make_knobs

# ------------------------------------------------------------------------- the logit choice


@settings(max_examples=60, deadline=None)
@given(losses=st.lists(st.floats(0.0, 1e4), min_size=12, max_size=12),
       temperature=st.floats(1e-3, 1e3),
       prior=st.lists(st.floats(1e-6, 1e6), min_size=3, max_size=3))
def test_logit_choice_is_finite_and_sums_to_one(losses, temperature, prior):
    probs = np.asarray(_choice(np.reshape(losses, (3, 4)).astype(np.float32),
                               np.asarray(prior, np.float32), np.float32(temperature)))
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-5)
    # the lowest loss is the likeliest choice when the prior is uniform
    uniform = np.asarray(_choice(np.reshape(losses, (3, 4)).astype(np.float32),
                                 np.ones(3, np.float32), np.float32(temperature)))
    best = np.argmin(np.reshape(losses, (3, 4)), axis=0)
    assert np.all(uniform[best, np.arange(4)] >= uniform.max(axis=0) - 1e-6)


_choice = jax.jit(choice_probabilities)


def test_logit_choice_matches_the_formula_and_the_prior():
    losses = np.array([[0.2, 1.0], [0.5, 0.0]])
    prior = np.array([3.0, 1.0])
    c = 0.3
    raw = prior[:, None] * np.exp(-losses / c)
    np.testing.assert_allclose(choice_probabilities(losses, prior, c), raw / raw.sum(0),
                               rtol=1e-6)
    # scaling the prior does not change the choice (w is normalised)
    np.testing.assert_allclose(choice_probabilities(losses, 7 * prior, c),
                               choice_probabilities(losses, prior, c), rtol=1e-6)


# ------------------------------------------------------------------------- choice losses


def test_soft01_and_its_multiclass_form_agree_on_two_classes():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 2)).astype(np.float32)
    y = rng.integers(0, 2, 50)
    T = 0.1
    soft = CHOICE_LOSSES.get("soft01")
    multi = CHOICE_LOSSES.get("soft01_multiclass")
    np.testing.assert_allclose(multi(f, y, T), soft(f[:, 1] - f[:, 0], y, T), atol=1e-6)
    s = jax.nn.softmax(f / T, axis=-1)
    half_l1 = 0.5 * np.abs(np.eye(2)[y] - s).sum(-1)
    np.testing.assert_allclose(multi(f, y, T), half_l1, atol=1e-6)
    np.testing.assert_allclose(soft(f[:, 1], y, T),
                               np.abs(y - 1 / (1 + np.exp(-f[:, 1] / T))), atol=1e-6)


def test_zero_one_and_logistic_losses():
    f = np.array([2.0, -1.0, 0.5, -3.0], np.float32)
    y = np.array([1, 1, 0, 0])
    np.testing.assert_array_equal(CHOICE_LOSSES.get("zero_one")(f, y, 0.1), [0, 1, 1, 0])
    np.testing.assert_allclose(CHOICE_LOSSES.get("logistic")(f, y, 0.5),
                               np.log1p(np.exp(-np.where(y == 1, 1, -1) * f / 0.5)), rtol=1e-6)
    scores = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(CHOICE_LOSSES.get("zero_one")(scores, np.array([1, 2]), 1.0),
                                  [0, 1])


# ------------------------------------------------------------------------- best responses

BR_SPEC = EquilibriumSpec(3, steps=40, lr=2.0)  # a large step: the ascent overshoots often
BR_POINTS = 24


@functools.cache
def _respond():
    def share_gain(data, theta, j, knobs):
        objective = response_objective(BR_SPEC, data, theta, j, knobs)
        new = best_response(BR_SPEC, data, theta, j, knobs)
        before = market(BR_SPEC, data, theta, knobs).shares[j]
        after = market(BR_SPEC, data, theta.at[j].set(new), knobs).shares[j]
        return before, after, objective(theta[j]), objective(new)

    return jax.jit(share_gain)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), j=st.integers(0, 2),
       c=st.floats(0.05, 3.0), scale=st.floats(0.01, 3.0))
def test_a_best_response_never_lowers_the_responders_share(seed, j, c, scale):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(BR_POINTS, 2)), np.ones((BR_POINTS, 1))], axis=1)
    data = EquilibriumData(x, rng.integers(0, 2, BR_POINTS),
                           rng.random(BR_POINTS) + 0.1).arrays()
    knobs = make_knobs(3, temperature=c, prior=rng.random(3) + 0.1).at(0)
    knobs = jax.tree_util.tree_map(jnp.asarray, knobs)
    theta = jnp.asarray(scale * rng.normal(size=(3, 3)), jnp.float32)
    before, after, obj_before, obj_after = _respond()(data, theta, jnp.int32(j), knobs)
    assert float(obj_after) >= float(obj_before)
    assert float(after) >= float(before) - 1e-6  # no probing: the objective is the share


# ------------------------------------------------------------------------- simulate


@pytest.fixture(scope="module")
def setting2_runs():
    """Users who choose by correctness (zero-one loss), providers who ascend a soft share."""
    data = stack_data([setting2(s, n_points=300, seed=i) for i, s in enumerate((0.5, 2.0))])
    spec = EquilibriumSpec(3, choice_loss="zero_one", train_loss="soft01", steps=300)
    return simulate_equilibrium(data, spec, paper_knobs(3, seed=[0, 1])), spec


def test_shares_sum_to_one_and_metrics_are_consistent(setting2_runs):
    result, _ = setting2_runs
    shares = result.metrics["equilibrium_share"]
    assert shares.shape == (2, 3)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-5)
    # social loss = Σ_j S_j · (mean loss of j's users)
    np.testing.assert_allclose((shares * result.metrics["provider_loss"]).sum(axis=1),
                               result.metrics["social_loss"], rtol=1e-4)
    assert result.converged.dtype == bool and result.converged.shape == (2,)
    np.testing.assert_array_equal(result.metrics["rounds"], result.rounds)
    np.testing.assert_array_equal(result.metrics["converged"], result.converged)
    r = result.rounds[0]
    np.testing.assert_allclose(result.share_history[0, r], shares[0], rtol=1e-6)
    assert np.all(np.isnan(result.share_history[0, r + 1:]))
    # a noisier feature cannot make the best single model better
    bayes = result.metrics["bayes_risk"]
    assert bayes[0] < bayes[1]
    # zero-one losses: the Bayes risk is an error rate of the sample, the losses are 0 or 1
    assert np.all(np.isclose(bayes * 300, np.round(bayes * 300), atol=1e-3))
    losses = result.metrics["provider_loss"]
    assert np.all((losses >= 0) & (losses <= 1))
    # E_x[ℓ_j] = S_j·(loss of j's users) + (1 − S_j)·(loss of the others): between the two
    glob = result.metrics["global_loss"]
    assert np.all((glob >= 0) & (glob <= 1)) and glob.shape == (2, 3)
    own = result.metrics["equilibrium_share"] * losses
    assert np.all(glob >= own - 1e-6)  # E_x[ℓ_j] ≥ E_x[P_j ℓ_j] = S_j · (loss of j's users)


def test_one_provider_serves_everyone():
    result = simulate_equilibrium(setting1(0.3, exact=True), EquilibriumSpec(1, steps=50),
                                  paper_knobs(1, seed=[0]))
    np.testing.assert_allclose(result.metrics["equilibrium_share"], 1.0)
    assert result.converged.all()
    # a sole provider serves every user: its global loss is its users' loss and the social loss
    np.testing.assert_allclose(result.metrics["global_loss"][:, 0],
                               result.metrics["social_loss"], rtol=1e-5)
    np.testing.assert_allclose(result.metrics["global_loss"], result.metrics["provider_loss"],
                               rtol=1e-5)


def test_probing_with_p_zero_equals_no_probing_exactly():
    # two rounds at most, so a run out of rounds is seen too
    data = setting2(1.0, n_points=200, seed=3)
    knobs = paper_knobs(3, seed=[0, 1], p=[0.0, 0.0])
    short = {"steps": 100, "max_rounds": 2, "tol": 1e-9}
    plain = simulate_equilibrium(data, EquilibriumSpec(3, **short), paper_knobs(3, seed=[0, 1]))
    assert not plain.converged.any() and np.all(plain.rounds == 2)  # recorded, not raised
    assert np.all(plain.metrics["converged"] == 0)
    probing = EquilibriumSpec(3, probing=EquilibriumProbing((1,), "majority"), **short)
    probed = simulate_equilibrium(data, probing, knobs)
    np.testing.assert_array_equal(probed.final_theta, plain.final_theta)
    for name in plain.metrics:
        np.testing.assert_array_equal(probed.metrics[name], plain.metrics[name])
    risk = probed.metrics["equilibrium_probe_risk"]
    assert np.all(np.isnan(risk[:, [0, 2]])) and np.all(np.isfinite(risk[:, 1]))
    # a positive p pulls the prober toward its source's labels
    pulled = simulate_equilibrium(data, probing, paper_knobs(3, seed=[0, 1], p=[0.0, 5.0]))
    assert pulled.metrics["equilibrium_probe_risk"][1, 1] < risk[1, 1]


def test_multiclass_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    x = np.concatenate([np.eye(3)[y] + 0.5 * rng.normal(size=(150, 3)), np.ones((150, 1))], 1)
    data = EquilibriumData(x, y)
    multi = EquilibriumSpec(2, choice_loss="soft01_multiclass", steps=100)
    result = simulate_equilibrium(data, multi, paper_knobs(2, seed=[0]))
    assert result.final_theta.shape == (1, 2, 4, 3)
    assert result.metrics["bayes_risk"][0] < 0.5  # informative features
    np.testing.assert_allclose(result.metrics["equilibrium_share"].sum(), 1.0, rtol=1e-5)


# ------------------------------------------------------------------------- probing sources


def test_probing_sources_label_from_the_right_peers():
    # three providers' scores on four users; provider 2 leads the market
    scores = jnp.array([[1.0, -1.0, 2.0, -3.0], [-1.0, -2.0, 1.0, 1.0], [3.0, 1.0, -1.0, -1.0]])
    shares = jnp.array([0.2, 0.3, 0.5])
    probs = jnp.array([[0.1, 0.8, 0.1, 0.2], [0.7, 0.05, 0.1, 0.2], [0.2, 0.15, 0.8, 0.6]])

    def labels(source, prober=0, **kw):
        probing = EquilibriumProbing((prober,), source, **kw)
        return np.asarray(EQUILIBRIUM_SOURCES.get(source).labels(
            probing, jnp.asarray(prober), scores, probs, shares, False)).tolist()

    assert labels("median") == [1, 0, 1, 0]  # medians 1, −1, 1, −1 over all three
    assert labels("majority") == [1, 0, 0, 0]  # providers 1, 2: means 1, −0.5, 0, 0 (ties → 0)
    assert labels("leader") == [1, 1, 0, 0]  # provider 2's labels
    assert labels("leader", prober=2) == [0, 0, 1, 1]  # the leader asks the runner-up
    assert labels("leader", leader=1) == [0, 0, 1, 1]
    assert labels("subset", subset=(0, 1)) == [0, 0, 1, 1]  # provider 1 alone (not the prober)
    # each user's likeliest other provider: 1, 2, 2, 2 for the users 0 … 3
    assert labels("preferred") == [0, 1, 0, 0]


# ------------------------------------------------------------------------- generators


def test_generators_draw_the_papers_settings():
    d1 = setting1(0.3, n_points=20_000, seed=1)
    assert d1.x.shape == (20_000, 1) and np.all(d1.x == 1)
    assert abs((d1.y == 0).mean() - 0.3) < 0.015
    d2 = setting2(0.5, n_points=20_000)
    assert abs((d2.y == 0).mean() - 0.4) < 0.015
    assert abs(d2.x[d2.y == 0, 0].mean() - 1) < 0.03 and abs(d2.x[d2.y == 1, 0].std() - .5) < .03
    d3 = setting3(5, n_points=20_000)
    sign = np.where(d3.y == 1, 1.0, -1.0)
    # coordinate k is informative for groups 0 … k: E[sign·x_k] = P(group ≤ k)
    np.testing.assert_allclose((sign[:, None] * d3.x[:, :4]).mean(0),
                               np.cumsum([0.7, 0.15, 0.1, 0.05]), atol=0.03)
    own = from_dataset(Dataset(np.arange(6.0).reshape(3, 2), np.array([0, 1, 1]),
                               np.ones((1, 2)), np.array([0])), split="all")
    assert own.x.shape == (4, 3) and np.all(own.x[:, -1] == 1) and own.y.tolist() == [0, 1, 1, 0]
    padded = setting3(2, n_points=50, pad_to=5)
    np.testing.assert_array_equal(padded.x[:, 1:4], 0.0)
    np.testing.assert_array_equal(padded.x[:, [0, 4]], setting3(2, n_points=50).x)


def test_alpha_star_solves_the_deviation_inequality():
    c = 0.3
    e = np.exp(1 / c)
    for m in (3, 4, 5, 8):
        a = alpha_star(m, c)
        gain = a * e / (e + m - 1) + (1 - a) / (1 + (m - 1) * e)
        assert gain == pytest.approx(1 / m)
    assert alpha_star(3, c) > alpha_star(4, c) > alpha_star(5, c)  # more rivals: split sooner
    assert alpha_star(1) is None and alpha_star(2) is None


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n_providers": 0}, "n_providers"),
    ({"n_providers": 2, "loss_temperature": 0.0}, "loss_temperature"),
    ({"n_providers": 2, "loss_temperature": -1.0}, "loss_temperature"),
    ({"n_providers": 2, "steps": 0}, "steps"),
    ({"n_providers": 2, "choice_loss": "zero_one"}, "not differentiable"),
    ({"n_providers": 2, "choice_loss": "hinge"}, "unknown choice loss"),
    ({"n_providers": 2, "extra_starts": ("copy",)}, "extra_starts"),
    ({"n_providers": 1, "probing": EquilibriumProbing((0,))}, "at least 2 providers"),
])
def test_bad_spec_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EquilibriumSpec(**kwargs)


@pytest.mark.parametrize("c", [0.0, -0.3])
def test_bad_temperature_names_the_knob(c):
    with pytest.raises(ValueError, match="temperature"):
        simulate_equilibrium(setting1(0.3, exact=True), EquilibriumSpec(2, steps=5),
                             make_knobs(2, temperature=c))


def test_bad_knobs_and_data_are_rejected():
    spec = EquilibriumSpec(2, steps=5)
    with pytest.raises(ValueError, match="not read by the equilibrium"):
        simulate_equilibrium(setting1(0.3, exact=True), spec, paper_knobs(2, tau=0.5))
    with pytest.raises(ValueError, match=r"p=0\.5 needs probing"):
        simulate_equilibrium(setting1(0.3, exact=True), spec, paper_knobs(2, p=0.5))
    with pytest.raises(ValueError, match="made for 3 learners"):
        simulate_equilibrium(setting1(0.3, exact=True), spec, paper_knobs(3))
    with pytest.raises(ValueError, match="run axis of 2 runs"):
        simulate_equilibrium(stack_data([setting1(.1, exact=True)] * 2), spec, paper_knobs(2))
    with pytest.raises(ValueError, match="takes only binary labels"):
        simulate_equilibrium(EquilibriumData(np.ones((3, 1)), [0, 1, 2]), spec, paper_knobs(2))
    with pytest.raises(ValueError, match="alpha"):
        setting1(1.5)
    with pytest.raises(ValueError, match="D must be"):
        setting3(6)
