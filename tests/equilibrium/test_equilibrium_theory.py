"""The equilibrium against the paper's theory: setting 1's closed form (NEIGHBOURS §C) and the
non-monotone social loss of setting 3."""

from __future__ import annotations

import math

import numpy as np
import pytest

from userchoice.equilibrium import (
    EquilibriumSpec,
    alpha_star,
    bayes_risk_setting1,
    paper_knobs,
    setting1,
    setting3,
    simulate_equilibrium,
    stack_data,
)

C = 0.3
# Gradient ascent is local: from the homogeneous profile no warm start reaches the minority
# label. A best response that also starts from −θ_j and from its peers' parameters is a global
# one in setting 1 (x ≡ 1: a provider predicts one label or the other).
SPEC_KW = {"extra_starts": ("peers", "flip")}


def threshold(m: int, c: float = C) -> float | None:
    """Solve α·E/(E + m − 1) + (1 − α)/(1 + (m − 1)E) > 1/m for α (E = e^{1/c}), from §C."""
    if m <= 2:
        return None
    e = math.exp(1 / c)
    at_minority, at_majority = e / (e + m - 1), 1 / (1 + (m - 1) * e)
    root = (1 / m - at_majority) / (at_minority - at_majority)
    return root if root < 0.5 else None


def nash_splits(m: int, alpha: float, c: float = C) -> list[int]:
    """The numbers k of providers at the minority label that form a pure Nash equilibrium with
    0-1 losses: no provider gains share by switching labels."""
    e = math.exp(1 / c)

    def minority(k):  # the share of one of k providers predicting the minority label 0
        return alpha * e / (k * e + m - k) + (1 - alpha) / (k + (m - k) * e)

    def majority(k):  # the share of one of m − k providers predicting the majority label 1
        return alpha / (k * e + m - k) + (1 - alpha) * e / (k + (m - k) * e)

    return [k for k in range(m + 1)
            if (k == 0 or minority(k) >= majority(k - 1))
            and (k == m or majority(k) >= minority(k + 1))]


def test_the_threshold_is_the_formula_of_section_c():
    for m in (1, 2, 3, 4, 5, 10):
        assert alpha_star(m, C) == threshold(m)
    assert nash_splits(3, threshold(3) - 0.01) == [0]
    assert nash_splits(3, threshold(3) + 0.01) == [1]


@pytest.mark.parametrize("m", [3, 4, 5])
def test_setting1_homogeneous_below_the_threshold_split_above(m):
    a = threshold(m)
    alphas = [a - 0.05, a + 0.05, 0.45]
    data = stack_data([setting1(alpha, exact=True) for alpha in alphas])
    result = simulate_equilibrium(data, EquilibriumSpec(m, **SPEC_KW),
                                  paper_knobs(m, seed=[0, 1, 2]))
    assert result.converged.all()
    social, bayes = result.metrics["social_loss"], result.metrics["bayes_risk"]
    np.testing.assert_allclose(bayes, [bayes_risk_setting1(alpha) for alpha in alphas],
                               atol=1e-3)
    for r, alpha in enumerate(alphas):
        at_minority = int((result.final_theta[r, :, 0] < 0).sum())
        expected = nash_splits(m, alpha)
        assert expected == [at_minority], (alpha, expected, at_minority)
        if alpha < a:
            assert social[r] == pytest.approx(bayes[r], abs=2e-3)  # homogeneous
        else:
            assert social[r] < 0.5 * bayes[r]  # split: users find their label


def test_setting1_with_two_providers_matches_the_bayes_risk_for_every_alpha():
    alphas = [0.05, 0.2, 0.35, 0.48]
    data = stack_data([setting1(alpha, exact=True) for alpha in alphas])
    result = simulate_equilibrium(data, EquilibriumSpec(2, **SPEC_KW),
                                  paper_knobs(2, seed=[0, 1, 2, 3]))
    assert result.converged.all()
    np.testing.assert_allclose(result.metrics["social_loss"], alphas, atol=2e-3)
    np.testing.assert_allclose(result.metrics["social_loss"], result.metrics["bayes_risk"],
                               atol=2e-3)


@pytest.mark.slow
def test_setting3_social_loss_is_non_monotone_with_three_providers_only():
    """m = 3: D = 2 (a better representation) raises social loss above D = 1, where three
    uninformed providers split the labels; m = 2: social loss falls with D, as the Bayes risk
    does (the paper's shape, at 1,000 points and 500 steps)."""
    ds = [1, 2, 3, 4, 5]
    data = stack_data([setting3(d, n_points=1000, seed=d, pad_to=5) for d in ds])
    social = {}
    for m in (2, 3):
        spec = EquilibriumSpec(m, steps=500)
        result = simulate_equilibrium(data, spec, paper_knobs(m, seed=ds))
        assert result.converged.all()
        social[m], bayes = result.metrics["social_loss"], result.metrics["bayes_risk"]
    assert np.all(np.diff(bayes) < 0)
    assert np.all(np.diff(social[2]) < 0)
    np.testing.assert_allclose(social[2], bayes, atol=0.01)
    assert social[3][1] > 2 * social[3][0]
