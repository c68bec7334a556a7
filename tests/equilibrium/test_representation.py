"""A representation ladder of a dataset's users (``equilibrium.features``): the first k
features and the bias; dropped features are zeroed, which must equal removing them."""

from __future__ import annotations

import numpy as np
import pytest

from userchoice.equilibrium import EquilibriumData, EquilibriumSpec, simulate_equilibrium
from userchoice.equilibrium.data import with_bias
from userchoice.experiments.config import ConfigError
from userchoice.experiments.equilibrium import representation
from userchoice.knobs import make_knobs


def _users(seed: int = 0, n: int = 240, d: int = 4) -> EquilibriumData:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.standard_normal(n) > 0).astype(int)
    return EquilibriumData(with_bias(x), y, name="toy")


@pytest.mark.parametrize("k", [1, 2, 4])
def test_zeroed_features_equal_removed_features(k):
    users = _users()
    kept = EquilibriumData(np.concatenate([users.x[:, :k], users.x[:, -1:]], axis=1), users.y)
    spec, knobs = EquilibriumSpec(3, steps=150), make_knobs(3, seed=[0, 1], temperature=0.3)
    zeroed = simulate_equilibrium(representation(users, k), spec, knobs)
    removed = simulate_equilibrium(kept, spec, knobs)
    # The providers' random starts are drawn in each shape, so the two runs start apart in
    # the kept coordinates; a zero column changes no score, so both reach the same equilibrium
    # up to the solver's tolerance (tol = 1e-3 on shares) and a relabelling of the providers
    # (which one takes which niche depends on the starts).
    # (The Bayes risk is a non-convex search with random restarts: not compared.)
    for name in ("social_loss", "equilibrium_share", "global_loss"):
        a, b = np.asarray(zeroed.metrics[name]), np.asarray(removed.metrics[name])
        if a.ndim == 2:  # per provider
            a, b = np.sort(a, axis=1), np.sort(b, axis=1)
        np.testing.assert_allclose(a, b, rtol=0, atol=3 * spec.tol, err_msg=name)
    assert zeroed.converged.all() and removed.converged.all()


def test_the_ladder_keeps_the_bias_and_the_first_k_columns():
    users = _users(d=5)
    two = representation(users, 2)
    np.testing.assert_array_equal(two.x[:, :2], users.x[:, :2])
    np.testing.assert_array_equal(two.x[:, 2:5], 0.0)
    np.testing.assert_array_equal(two.x[:, -1], 1.0)
    assert two.provenance["features"] == 2
    assert representation(users, None) is users
    np.testing.assert_array_equal(representation(users, 5).x, users.x)


def test_more_features_than_the_users_have_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"equilibrium.features = 6.*5 features"):
        representation(_users(d=5), 6)
