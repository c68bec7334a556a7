"""Closed-form facts about the trap instance (``data.synthetic.trap_market``), used as oracles.

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
