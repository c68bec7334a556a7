"""Peer-model probing (SPEC §4): spec validation, source assignment with noise, pseudo-labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from userchoice.families import Logistic, MaskedMultiSquared, Squared
from userchoice.probing import ProbeDraws, ProbingSpec, draw_probe_sets, pseudo_labels, source_index

ALPHA = 1e-3  # significance level of the goodness-of-fit tests (fixed seeds: deterministic)

# ------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"probers": ()}, "probers"),
        ({"probers": (1, 2, 1)}, "probers"),
        ({"probers": (0,), "source": "leader"}, "leader"),
        ({"probers": (0,), "source": "subset"}, "subset"),
        ({"probers": (0,), "source": "subset", "subset": ()}, "subset"),
        ({"probers": (0,), "source": "oracle"}, "source"),
        ({"probers": (0,), "refresh_every": -1}, "refresh_every"),
        ({"probers": (0,), "n_probe": 0}, "n_probe"),
        ({"probers": (0,), "probe_batch": 0}, "probe_batch"),
    ],
)
def test_spec_rejects_invalid_fields(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ProbingSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"probers": (0, 5)}, "probers"),
        ({"probers": (-1,)}, "probers"),
        ({"probers": (0,), "source": "leader", "leader": 5}, "leader"),
        ({"probers": (0,), "source": "leader", "leader": -1}, "leader"),
        ({"probers": (0,), "source": "subset", "subset": (0, 9)}, "subset"),
    ],
)
def test_validate_rejects_out_of_range_indices(kwargs, field):
    spec = ProbingSpec(**kwargs)
    with pytest.raises(ValueError, match=field):
        spec.validate(5)
    indices = [*spec.probers, *(spec.subset or ()), spec.leader or 0]
    if min(indices) >= 0:
        spec.validate(100)  # the same indices are fine in a market large enough


def test_validate_accepts_good_specs_and_needs_two_learners():
    ProbingSpec(probers=(2, 3), source="preferred").validate(5)
    ProbingSpec(probers=(4,), source="leader", leader=0).validate(5)
    ProbingSpec(probers=(0,), source="subset", subset=(1, 2)).validate(3)
    ProbingSpec(probers=(0,), refresh_every=10).validate(2)
    with pytest.raises(ValueError, match="2 learners"):
        ProbingSpec(probers=(0,)).validate(1)


def test_validate_negative_indices_in_range_check():
    # Negative indices must not wrap around silently.
    with pytest.raises(ValueError, match="probers"):
        ProbingSpec(probers=(-1,)).validate(100)
    with pytest.raises(ValueError, match="subset"):
        ProbingSpec(probers=(0,), source="subset", subset=(-2,)).validate(100)


# --------------------------------------------------------------------------- source indices


def _favourites(rng, shape, n):
    return jnp.asarray(rng.integers(0, n, shape), jnp.int32)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 7))
def test_source_without_noise_is_intended_learner(seed, n):
    rng = np.random.default_rng(seed)
    for spec in (
        ProbingSpec(probers=(0, 1), source="preferred", n_probe=40),
        ProbingSpec(probers=(0, 1), source="leader", leader=n - 1, n_probe=40),
    ):
        draws = draw_probe_sets(jax.random.key(seed), spec, 1000, jnp.float32)
        assert draws.users.shape == (2, 40)
        fav = _favourites(rng, (2, 40), n)
        src = np.asarray(source_index(spec, fav, draws, jnp.asarray(0.0), n))
        want = np.asarray(fav) if spec.source == "preferred" else np.full((2, 40), n - 1)
        np.testing.assert_array_equal(src, want)


@pytest.mark.parametrize("kappa", [0.2, 0.4])
def test_noisy_fraction_and_uniform_other_sources_leader(kappa):
    n, n_probe, leader = 5, 20_000, 2
    spec = ProbingSpec(probers=(3,), source="leader", leader=leader, n_probe=n_probe)
    draws = draw_probe_sets(jax.random.key(11), spec, 500, jnp.float32)
    fav = jnp.zeros((1, n_probe), jnp.int32)
    src = np.asarray(source_index(spec, fav, draws, jnp.asarray(kappa), n))[0]
    noisy = src != leader
    # Binomial: |fraction − κ| < 4 standard deviations (≈0.012 at κ = 0.4, N = 20k).
    sd = np.sqrt(kappa * (1 - kappa) / n_probe)
    assert abs(noisy.mean() - kappa) < 4 * sd
    # Noise is exactly the coin: a noisy source is never the intended learner.
    np.testing.assert_array_equal(noisy, np.asarray(draws.noise_coin)[0] < kappa)
    counts = np.bincount(src[noisy], minlength=n)
    assert counts[leader] == 0
    others = np.delete(counts, leader)
    assert chisquare(others).pvalue > ALPHA


def test_noisy_preferred_source_is_uniform_over_other_learners():
    n, n_probe, kappa = 4, 24_000, 0.5
    spec = ProbingSpec(probers=(0,), source="preferred", n_probe=n_probe)
    draws = draw_probe_sets(jax.random.key(5), spec, 500, jnp.float32)
    fav = _favourites(np.random.default_rng(5), (1, n_probe), n)
    src = np.asarray(source_index(spec, fav, draws, jnp.asarray(kappa), n))[0]
    fav = np.asarray(fav)[0]
    noisy = np.asarray(draws.noise_coin)[0] < kappa
    np.testing.assert_array_equal(src[~noisy], fav[~noisy])
    assert np.all(src[noisy] != fav[noisy])
    sd = np.sqrt(kappa * (1 - kappa) / n_probe)
    assert abs(noisy.mean() - kappa) < 4 * sd
    for f in range(n):
        counts = np.bincount(src[noisy & (fav == f)], minlength=n)
        assert counts[f] == 0
        assert chisquare(np.delete(counts, f)).pvalue > ALPHA, f


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 9),
    intended=st.integers(0, 8),
    pick=st.one_of(
        st.floats(0.0, 1.0, exclude_max=True, width=32),
        st.just(float(np.nextafter(np.float32(1), np.float32(0)))),
    ),
)
def test_noisy_source_is_in_range_and_never_intended(n, intended, pick):
    intended = intended % n
    spec = ProbingSpec(probers=(0,), source="preferred", n_probe=1)
    draws = ProbeDraws(
        users=jnp.zeros((1, 1), jnp.int32),
        noise_coin=jnp.zeros((1, 1), jnp.float32),
        noise_pick=jnp.full((1, 1), pick, jnp.float32),
    )
    fav = jnp.full((1, 1), intended, jnp.int32)
    src = int(source_index(spec, fav, draws, jnp.asarray(1.0), n)[0, 0])
    assert 0 <= src < n and src != intended
    # The pick maps monotonically onto the other learners in index order.
    others = [i for i in range(n) if i != intended]
    assert src == others[min(int(np.float32(pick) * (n - 1)), n - 2)]


# ---------------------------------------------------------------------------- pseudo-labels

N_LEARNERS, D, N_SETS, N_PROBE, M = 5, 3, 2, 40, 6


def _peers(family, seed, n=N_LEARNERS):
    rng = np.random.default_rng(seed)
    shape = (n, M, D) if isinstance(family, MaskedMultiSquared) else (n, D)
    theta = jnp.asarray(rng.normal(size=shape))
    probe_x = jnp.asarray(rng.normal(size=(N_SETS, N_PROBE, D)))
    return rng, theta, probe_x


def _np_scores(theta, probe_x):
    """[n, S, Np] or [n, S, Np, m] scores computed in NumPy float64."""
    theta, probe_x = np.asarray(theta), np.asarray(probe_x)
    if theta.ndim == 3:
        return np.einsum("sbd,nmd->nsbm", probe_x, theta)
    return np.einsum("sbd,nd->nsb", probe_x, theta)


def _threshold(family, score):
    return (score > 0).astype(float) if family.task == "classification" else score


FAMS = [
    pytest.param(Logistic(), id="logistic"),
    pytest.param(Squared(), id="squared"),
    pytest.param(MaskedMultiSquared(n_outputs=M), id="mms"),
]


@pytest.mark.parametrize("family", FAMS)
@pytest.mark.parametrize("n", [4, 5])  # even n: the median averages the two middle scores
def test_median_source_matches_numpy_median(family, n):
    spec = ProbingSpec(probers=(0, 1), source="median", n_probe=N_PROBE)
    with jax.enable_x64(True):
        _, theta, probe_x = _peers(family, 1, n)
        labels = np.asarray(pseudo_labels(family, spec, theta, probe_x, None))
    want = _threshold(family, np.median(_np_scores(theta, probe_x), axis=0))
    assert labels.shape == want.shape
    np.testing.assert_allclose(labels, want, rtol=1e-12, atol=1e-12)
    if family.task == "classification":
        assert 0 < labels.mean() < 1  # both classes occur, so thresholding is exercised


@pytest.mark.parametrize("family", FAMS)
def test_subset_source_uses_only_group(family):
    group = (0, 2, 3)
    spec = ProbingSpec(probers=(1,), source="subset", subset=group, n_probe=N_PROBE)
    with jax.enable_x64(True):
        rng, theta, probe_x = _peers(family, 2)
        labels = np.asarray(pseudo_labels(family, spec, theta, probe_x, None))
        want = _threshold(family, np.median(_np_scores(theta, probe_x)[list(group)], axis=0))
        np.testing.assert_allclose(labels, want, rtol=1e-12, atol=1e-12)
        # Learners outside G can change arbitrarily without moving the labels ...
        outside = theta.at[1].set(-100 * theta[1]).at[4].set(jnp.asarray(
            rng.normal(0, 50, theta[4].shape)))
        np.testing.assert_array_equal(
            np.asarray(pseudo_labels(family, spec, outside, probe_x, None)), labels
        )
        # ... while flipping the members of G does move them.
        inside = theta.at[jnp.asarray(group)].multiply(-1.0)
        assert not np.array_equal(
            np.asarray(pseudo_labels(family, spec, inside, probe_x, None)), labels
        )


@pytest.mark.parametrize("family", FAMS)
def test_leader_source_uses_leader_predictions(family):
    leader = 3
    spec = ProbingSpec(probers=(0, 1), source="leader", leader=leader, n_probe=N_PROBE)
    with jax.enable_x64(True):
        _, theta, probe_x = _peers(family, 3)
        draws = draw_probe_sets(jax.random.key(0), spec, 100, jnp.float64)
        fav = jnp.zeros((N_SETS, N_PROBE), jnp.int32)
        src = source_index(spec, fav, draws, jnp.asarray(0.0), N_LEARNERS)
        labels = np.asarray(pseudo_labels(family, spec, theta, probe_x, src))
    want = _threshold(family, _np_scores(theta, probe_x)[leader])
    np.testing.assert_allclose(labels, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", FAMS)
def test_preferred_source_uses_each_users_source(family):
    spec = ProbingSpec(probers=(0, 4), source="preferred", n_probe=N_PROBE)
    with jax.enable_x64(True):
        rng, theta, probe_x = _peers(family, 4)
        src = jnp.asarray(rng.integers(0, N_LEARNERS, (N_SETS, N_PROBE)), jnp.int32)
        labels = np.asarray(pseudo_labels(family, spec, theta, probe_x, src))
    scores = _np_scores(theta, probe_x)
    s_idx, b_idx = np.meshgrid(np.arange(N_SETS), np.arange(N_PROBE), indexing="ij")
    want = _threshold(family, scores[np.asarray(src), s_idx, b_idx])
    assert labels.shape == want.shape
    np.testing.assert_allclose(labels, want, rtol=1e-12, atol=1e-12)
    if isinstance(family, MaskedMultiSquared):
        assert labels.shape == (N_SETS, N_PROBE, M)
