"""Closed-form facts about the trap instance (``trap_market``, defined here), used as oracles.

In the trap, users have z ~ N(0, I), group g, features x = [z, g·z] and
y = zᵀ(β₀ + g·Γ·u) + ε·N(0, 1) with β₀ ⟂ u unit vectors. Then:

- the pooled optimum θ* = [β₀, Γu] has risk ε² on everyone;
- the group-0 specialist (ERM on group 0) is [β₀, 0]: it never sees the second block and
  errs by Γ² on every group-1 user, so its global risk is ε² + s₁·Γ²;
- the minimum-norm group-1 specialist is [β₁/2, β₁/2] with β₁ = β₀ + Γu: on group 0 it
  predicts zᵀβ₁/2, off by |β₁/2 − β₀|² = (1 + Γ²)/4, so its global risk is ε² + s₀(1 + Γ²)/4.

With τ-mixture choice at these ERM models every user keeps picking its own group's
specialist (each is the loss minimiser on its own group), so MSGD stays there: the trap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from userchoice.data.dataset import Dataset
from userchoice.market import Market
from userchoice.preferences import Preferences
from userchoice.synthetic import split_mask


@dataclass(frozen=True)
class TrapPrediction:
    pooled_risk: float
    specialist_risks: tuple[float, float]  # global risk of the group-0 and group-1 ERM models


def trap_prediction(gap: float, noise: float, minority_share: float) -> TrapPrediction:
    """Population risks in the trap instance (``minority_share`` = share of group 1)."""
    if not 0 < minority_share < 1:
        raise ValueError(f"minority_share must lie in (0, 1), got {minority_share}")
    base = noise**2
    return TrapPrediction(
        pooled_risk=base,
        specialist_risks=(
            base + minority_share * gap**2,
            base + (1 - minority_share) * (1 + gap**2) / 4,
        ),
    )


def trap_market(
    gap: float = 1.0,
    noise: float = 0.1,
    n_users: int = 4000,
    dim: int = 2,
    minority_share: float = 0.5,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Market:
    """Two user groups whose best linear models differ by ``gap`` (Γ); two learners.

    Users have z ~ N(0, I_dim) and group g ∈ {0, 1}; features x = [z, g·z], so the single
    linear model θ* = [β₀, Γ·u] fits both groups exactly (β₀ ⟂ u, |β₀| = |u| = 1):
    y = zᵀ(β₀ + g·Γ·u) + noise·N(0, 1). Each user's favourite learner is its group.
    A learner fitted on group 0 alone never sees the second block and errs by Γ² on group 1.
    """
    if dim < 2:
        raise ValueError(f"dim must be >= 2 (β₀ and u need orthogonal directions), got {dim}")
    if not 0 < minority_share < 1:
        raise ValueError(f"minority_share must lie in (0, 1), got {minority_share}")
    if noise < 0 or gap < 0:
        raise ValueError(f"noise and gap must be >= 0, got noise={noise}, gap={gap}")
    rng = np.random.default_rng(seed)
    beta0 = np.zeros(dim)
    beta0[0] = 1.0
    direction = np.zeros(dim)
    direction[1] = 1.0
    group = (rng.random(n_users) < minority_share).astype(np.int32)
    z = rng.standard_normal((n_users, dim))
    x = np.concatenate([z, group[:, None] * z], axis=1)
    y = z @ beta0 + group * gap * (z @ direction) + noise * rng.standard_normal(n_users)
    test = split_mask(rng, n_users, test_fraction)
    dataset = Dataset(
        x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test],
        feature_names=tuple([f"z{i}" for i in range(dim)] + [f"g*z{i}" for i in range(dim)]),
        provenance={"source": "theory.trap_market", "gap": gap, "noise": noise,
                    "n_users": n_users, "dim": dim, "minority_share": minority_share,
                    "test_fraction": test_fraction, "seed": seed},
    )
    return Market(
        dataset,
        Preferences.from_favourite(group[~test], 2),
        Preferences.from_favourite(group[test], 2),
        name=f"trap(gap={gap})",
    )
