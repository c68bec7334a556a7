"""Learner families: losses, gradients, pseudo-labels, initialisation (SPEC §2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from scipy.special import expit

from userchoice.families import (
    FAMILIES,
    MLP,
    Logistic,
    MaskedMultiSquared,
    Squared,
    correct,
    learner_losses,
    learner_scores,
    make_family,
    softplus,
)

B, D, M = 7, 3, 5


def _one_learner(family, key, d, dtype):
    return jax.tree_util.tree_map(lambda a: a[0], family.init(key, 1, d, dtype))


def _problem(family, seed):
    """A random one-learner problem in float64 (call inside ``jax.enable_x64``)."""
    rng = np.random.default_rng(seed)
    theta = _one_learner(family, jax.random.key(seed), D, jnp.float64)
    # Move parameters away from the init so every term of the gradient is exercised.
    theta = jax.tree_util.tree_map(
        lambda a: a + jnp.asarray(rng.normal(0.0, 0.5, a.shape)), theta
    )
    x = jnp.asarray(rng.normal(size=(B, D)))
    w = None
    if isinstance(family, MaskedMultiSquared):
        y = jnp.asarray(rng.normal(size=(B, family.n_outputs)))
        w = jnp.asarray((rng.random((B, family.n_outputs)) < 0.6).astype(float))
    elif family.task == "classification":
        y = jnp.asarray((rng.random(B) < 0.5).astype(float))
    else:
        y = jnp.asarray(rng.normal(size=B))
    return theta, x, y, w


def _train_objective(family, x, y, w):
    def objective(theta):
        return family.train_scale * jnp.mean(family.loss(family.score(theta, x), y, w))

    return objective


FAMILY_CASES = [
    pytest.param(Logistic(), id="logistic"),
    pytest.param(Squared(), id="squared"),
    pytest.param(MaskedMultiSquared(n_outputs=M, gradient_scaling="paper"), id="mms-paper"),
    pytest.param(
        MaskedMultiSquared(n_outputs=M, gradient_scaling="consistent"), id="mms-consistent"
    ),
    pytest.param(MLP(hidden=8), id="mlp"),
]


@pytest.mark.parametrize("family", FAMILY_CASES)
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_gradient_matches_central_differences(family, seed):
    with jax.enable_x64(True):
        theta, x, y, w = _problem(family, seed)
        objective = _train_objective(family, x, y, w)
        flat, unravel = ravel_pytree(theta)
        assert flat.dtype == jnp.float64
        grad = np.asarray(ravel_pytree(jax.grad(objective)(theta))[0])

        h = 1e-6
        steps = h * jnp.eye(flat.size, dtype=flat.dtype)
        f = jax.vmap(lambda v: objective(unravel(v)))
        fd = np.asarray((f(flat + steps) - f(flat - steps)) / (2 * h))
        # Central differences in float64 with h=1e-6 are accurate to ~1e-9 relative; 1e-6 is a
        # loose bound that any missing factor (2, m, 1/B) or wrong sign would violate.
        scale = np.max(np.abs(grad))
        assert scale > 0
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * scale)


# --------------------------------------------------------------------------- logistic loss


@pytest.mark.parametrize("family", [Logistic(), MLP(hidden=4)], ids=["logistic", "mlp"])
@settings(max_examples=30, deadline=None)
@given(
    s=st.floats(-30.0, 30.0, allow_nan=False),
    y=st.sampled_from([0.0, 1.0]),
)
def test_logistic_loss_formula_moderate_scores(family, s, y):
    with jax.enable_x64(True):
        got = float(family.loss(jnp.asarray([s]), jnp.asarray([y]), None)[0])
    # σ(s) and 1 − σ(s) = σ(−s), each evaluated directly so the reference keeps full precision.
    want = -(y * np.log(expit(s)) + (1 - y) * np.log(expit(-s)))
    assert np.isfinite(got)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(s=st.floats(-700.0, 700.0, allow_nan=False))
def test_softplus_derivatives_are_the_logistic_functions(s):
    # the custom rule (one exponential for value and slope) against closed forms, to second
    # order (the rule is itself differentiable: Hessians of the logistic loss work)
    with jax.enable_x64(True):
        x = jnp.asarray(s, jnp.float64)
        value = float(softplus(x))
        slope = float(jax.grad(softplus)(x))
        curvature = float(jax.grad(jax.grad(softplus))(x))
    np.testing.assert_allclose(value, np.logaddexp(0.0, s), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(slope, expit(s), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(curvature, expit(s) * expit(-s), rtol=1e-12, atol=1e-300)


def test_softplus_passes_nan_and_infinities_through():
    with jax.enable_x64(True):
        x = jnp.asarray([np.nan, np.inf, -np.inf])
        value = np.asarray(softplus(x))
        slope = np.asarray(jax.vmap(jax.grad(softplus))(x))
    assert np.isnan(value[0]) and value[1] == np.inf and value[2] == 0.0
    assert np.isnan(slope[0]) and slope[1] == 1.0 and slope[2] == 0.0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("family", [Logistic(), MLP(hidden=4)], ids=["logistic", "mlp"])
def test_logistic_loss_extreme_scores(family, dtype):
    with jax.enable_x64(True):
        s = jnp.asarray([1e4, -1e4, 1e4, -1e4], dtype)
        y = jnp.asarray([0.0, 1.0, 1.0, 0.0], dtype)
        loss = np.asarray(family.loss(s, y, None))
        grad = np.asarray(jax.grad(lambda t: jnp.sum(family.loss(t, y, None)))(s))
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    # Wrong label: loss ≈ |s| (relative precision of the dtype); right label: loss ≈ 0.
    np.testing.assert_allclose(loss[:2], 1e4, rtol=1e-6)
    np.testing.assert_allclose(loss[2:], 0.0, atol=1e-6)
    # d/ds = σ(s) − y: ±1 for the wrong label, 0 for the right one.
    np.testing.assert_allclose(grad, [1.0, -1.0, 0.0, 0.0], atol=1e-6)


# --------------------------------------------------------------- masked multi-output squared


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scaling=st.sampled_from(["paper", "consistent"]))
def test_masked_loss_is_weighted_mean_over_outputs(seed, scaling):
    fam = MaskedMultiSquared(n_outputs=M, gradient_scaling=scaling)
    with jax.enable_x64(True):
        theta, x, y, w = _problem(fam, seed)
        loss = np.asarray(fam.loss(fam.score(theta, x), y, w))
        yhat = np.asarray(x) @ np.asarray(theta).T
        want = np.sum(np.asarray(w) * (yhat - np.asarray(y)) ** 2, axis=1) / M
        np.testing.assert_allclose(loss, want, rtol=1e-12)
        # No mask means every entry is rated.
        np.testing.assert_allclose(
            np.asarray(fam.loss(fam.score(theta, x), y, None)),
            np.asarray(fam.loss(fam.score(theta, x), y, jnp.ones_like(y))),
            rtol=1e-12,
        )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_masked_unrated_entries_do_not_matter(seed):
    fam = MaskedMultiSquared(n_outputs=M)
    with jax.enable_x64(True):
        theta, x, y, w = _problem(fam, seed)
        rng = np.random.default_rng(seed + 1)
        y2 = jnp.where(w > 0, y, jnp.asarray(rng.normal(0.0, 100.0, y.shape)))
        assert not np.array_equal(np.asarray(y), np.asarray(y2)) or np.all(np.asarray(w) > 0)
        f1, f2 = _train_objective(fam, x, y, w), _train_objective(fam, x, y2, w)
        np.testing.assert_allclose(float(f1(theta)), float(f2(theta)), rtol=1e-12)
        np.testing.assert_allclose(
            np.asarray(jax.grad(f1)(theta)), np.asarray(jax.grad(f2)(theta)), rtol=1e-12
        )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_masked_paper_gradient_is_unscaled_sum(seed):
    paper = MaskedMultiSquared(n_outputs=M, gradient_scaling="paper")
    consistent = MaskedMultiSquared(n_outputs=M, gradient_scaling="consistent")
    with jax.enable_x64(True):
        theta, x, y, w = _problem(paper, seed)
        g_paper = np.asarray(jax.grad(_train_objective(paper, x, y, w))(theta))
        g_cons = np.asarray(jax.grad(_train_objective(consistent, x, y, w))(theta))
    xn, yn, wn, th = (np.asarray(a) for a in (x, y, w, theta))
    # Per user 2·(w ⊙ (Θx − y)) xᵀ, averaged over the batch.
    want = 2.0 * (wn * (xn @ th.T - yn)).T @ xn / B
    np.testing.assert_allclose(g_paper, want, rtol=1e-10)
    np.testing.assert_allclose(g_paper, M * g_cons, rtol=1e-10)
    assert paper.train_scale == M and consistent.train_scale == 1.0


# ------------------------------------------------------------------------------ pseudo-labels


@settings(max_examples=30, deadline=None)
# XLA on CPU flushes float32 subnormals to zero, so they are excluded (they are not scores).
@given(
    st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False, width=32),
        min_size=1,
        max_size=20,
    )
)
def test_pseudo_label_thresholds_or_passes_through(scores):
    s = jnp.asarray(scores, jnp.float32)
    want = (np.asarray(scores, np.float32) > 0).astype(np.float32)
    for fam in (Logistic(), MLP(hidden=4)):
        got = np.asarray(fam.pseudo_label(s))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    for fam in (Squared(), MaskedMultiSquared(n_outputs=M)):
        np.testing.assert_array_equal(np.asarray(fam.pseudo_label(s)), np.asarray(s))
    mms = MaskedMultiSquared(n_outputs=M)
    mat = jnp.outer(s, jnp.arange(1.0, M + 1.0))
    np.testing.assert_array_equal(np.asarray(mms.pseudo_label(mat)), np.asarray(mat))


def test_pseudo_label_of_zero_score_is_negative_class():
    assert float(Logistic().pseudo_label(jnp.asarray(0.0))) == 0.0
    assert float(correct(Logistic(), jnp.asarray([0.0, 1e-3]), jnp.asarray([0.0, 1.0])).sum()) == 2


# ----------------------------------------------------------------------------- initialisation

N_INIT, D_INIT = 4, 9  # one shape for every init below, so JAX compiles each sampler once


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_init_shapes_dtypes_and_ranges(dtype):
    n, d, h = N_INIT, D_INIT, 64
    key = jax.random.key(1)
    with jax.enable_x64(True):
        for fam in (Logistic(), Squared()):
            theta = fam.init(key, n, d, dtype)
            assert theta.shape == (n, d) and theta.dtype == dtype
        uni = np.asarray(MaskedMultiSquared(n_outputs=M).init(key, n, d, dtype))
        assert uni.shape == (n, M, d) and uni.dtype == dtype
        # SPEC §5: U[0, 1); 180 draws, mean within 5 standard errors (0.29/√180 each).
        assert uni.min() >= 0.0 and uni.max() < 1.0
        assert abs(uni.mean() - 0.5) < 5 * np.sqrt(1 / 12 / uni.size)
        nor = MaskedMultiSquared(n_outputs=M, init_kind="normal", init_std=0.5)
        nor = np.asarray(nor.init(key, n, d, dtype))
        assert nor.shape == (n, M, d) and nor.min() < 0
        assert abs(nor.std() / 0.5 - 1) < 5 / np.sqrt(2 * nor.size)
        mlp = MLP().init(key, n, d, dtype)
        shapes = {k: v.shape for k, v in mlp.items()}
        assert shapes == {"w1": (n, d, h), "b1": (n, h), "w2": (n, h), "b2": (n,)}
        assert all(v.dtype == dtype for v in mlp.values())
    # PyTorch-style bounds: U(−1/√fan_in, 1/√fan_in), and the draws fill most of that range.
    for name, fan_in in (("w1", d), ("b1", d), ("w2", h), ("b2", h)):
        a = np.abs(np.asarray(mlp[name]))
        assert a.max() <= 1 / np.sqrt(fan_in)
        if a.size > 100:
            assert a.max() > 0.9 / np.sqrt(fan_in)
    # Independent learners get different parameters.
    assert not np.allclose(mlp["w1"][0], mlp["w1"][1])


def test_logistic_init_scale():
    with jax.enable_x64(True):
        big = np.asarray(Logistic(init_std=0.01).init(jax.random.key(2), 50, 200, jnp.float64))
    # 10,000 N(0, 0.01²) draws: sample std within 5% (its sd is ≈ 0.7%), mean within 5 s.e.
    assert abs(big.std() / 0.01 - 1) < 0.05
    assert abs(big.mean()) < 5 * 0.01 / 100


def test_learner_scores_and_losses_stack_learners():
    n, d = N_INIT, D_INIT
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, d)), jnp.float32)
    for fam in (Logistic(), MLP(), MaskedMultiSquared(n_outputs=M)):
        theta = fam.init(jax.random.key(1), n, d, jnp.float32)
        y = (
            jnp.asarray(rng.normal(size=(B, M)), jnp.float32)
            if isinstance(fam, MaskedMultiSquared)
            else jnp.asarray(rng.integers(0, 2, B), jnp.float32)
        )
        scores = learner_scores(fam, theta, x)
        losses = learner_losses(fam, theta, x, y, None)
        assert losses.shape == (n, B)
        for i in range(n):
            th_i = jax.tree_util.tree_map(lambda a, i=i: a[i], theta)
            np.testing.assert_allclose(scores[i], fam.score(th_i, x), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                losses[i], fam.loss(fam.score(th_i, x), y, None), rtol=1e-5, atol=1e-6
            )


# ------------------------------------------------------------------------------ make_family


def test_make_family_builds_each_family_with_options():
    assert isinstance(make_family("logistic"), Logistic)
    assert isinstance(make_family("squared"), Squared)
    mms = make_family("masked_multi_squared", n_outputs=7, gradient_scaling="consistent")
    assert isinstance(mms, MaskedMultiSquared) and mms.n_outputs == 7 and mms.train_scale == 1
    assert make_family("mlp", hidden=5).hidden == 5


def test_make_family_rejects_unknown_name():
    with pytest.raises(ValueError) as err:
        make_family("lasso")
    message = str(err.value)
    assert "lasso" in message
    for name in FAMILIES:
        assert name in message


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: MaskedMultiSquared(gradient_scaling="sum"), "gradient_scaling"),
        (lambda: MaskedMultiSquared(n_outputs=0), "n_outputs"),
        (lambda: MaskedMultiSquared(init_kind="zeros"), "init_kind"),
        (lambda: MLP(hidden=0), "hidden"),
    ],
)
def test_family_options_are_validated(build, field):
    with pytest.raises(ValueError, match=field):
        build()
