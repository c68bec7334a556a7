"""Theory checks on the trap instance: the overspecialisation trap and its escape by probing."""

from __future__ import annotations

import numpy as np
import pytest

from userchoice.engine import EngineSpec, knob_grid, simulate
from userchoice.families import Squared
from userchoice.fitting import erm_init, evaluate_loss, pooled_fit
from userchoice.probing import ProbingSpec
from userchoice.theory import trap_market, trap_prediction

NOISE = 0.1
SHARE = 0.5
SPEC = EngineSpec(Squared(), 2, 50, 1500, eval_every=500,
                  probing=ProbingSpec((0,), "preferred", n_probe=200, probe_batch=50))


def run_trap(gap: float, p_values: list[float]):
    market = trap_market(gap=gap, noise=NOISE, minority_share=SHARE, n_users=4000, seed=0)
    knobs = knob_grid(2, seed=range(3), p=p_values, tau=0.7, eta=0.02)
    result = simulate(market, SPEC, knobs, init_params=erm_init(market, Squared()))
    pooled = evaluate_loss(market, Squared(), pooled_fit(market, Squared()))
    return result, pooled


@pytest.fixture(scope="module")
def trapped():
    return {gap: run_trap(gap, [0.0, 1.0]) for gap in (1.0, 10.0)}


def specialist_risk(result, p: float) -> np.ndarray:
    return result.final("test_loss")[np.asarray(result.knobs.p) == p, 0]


def test_specialised_risk_grows_like_gap_squared(trapped):
    small = specialist_risk(trapped[1.0][0], 0.0)
    large = specialist_risk(trapped[10.0][0], 0.0)
    assert large.min() >= 50 * small.max()
    # …and matches the closed form ε² + s₁Γ² (test-set noise: 10%).
    for gap, risks in ((1.0, small), (10.0, large)):
        expected = trap_prediction(gap, NOISE, SHARE).specialist_risks[0]
        np.testing.assert_allclose(risks, expected, rtol=0.1)


def test_pooled_model_stays_at_noise_level(trapped):
    for gap, (result, pooled) in trapped.items():
        assert pooled < 1.3 * NOISE**2, gap
        # The update-all copies, which see every user, also reach the noise level.
        assert result.final("update_all_test_loss").max() < 1.5 * NOISE**2, gap


def test_preference_aware_probing_brings_prober_within_twice_pooled(trapped):
    result, pooled = trapped[10.0]
    rescued = specialist_risk(result, 1.0)
    assert rescued.max() <= 2 * pooled
    # The non-prober is untouched by learner 0's probing: it stays trapped.
    other = result.final("test_loss")[:, 1]
    expected = trap_prediction(10.0, NOISE, SHARE).specialist_risks[1]
    np.testing.assert_allclose(other, expected, rtol=0.1)


def test_tau_one_converges_to_partition_erm():
    """With τ = 1 each learner runs SGD on its own partition: the fixed point is its ERM."""
    market = trap_market(gap=3.0, noise=NOISE, n_users=2000, seed=1)
    spec = EngineSpec(Squared(), 2, 40, 3000, eval_every=1000, schedule="inv_sqrt",
                      update_all=False)
    result = simulate(market, spec, knob_grid(2, seed=range(2), tau=1.0, eta=0.1))
    erm = erm_init(market, Squared())
    # Learner 0 never sees the second feature block (it stays at its small random init);
    # learner 1 only identifies the sum of its two blocks.
    dim = 2
    np.testing.assert_allclose(result.final_params[:, 0, :dim], np.broadcast_to(erm[0, :dim],
                               (2, dim)), atol=0.03)
    sums = result.final_params[:, 1, :dim] + result.final_params[:, 1, dim:]
    np.testing.assert_allclose(sums, np.broadcast_to(erm[1, :dim] + erm[1, dim:], (2, dim)),
                               atol=0.03)
