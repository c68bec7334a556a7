"""Synthetic markets that need no files: the overspecialisation trap and a Gaussian mixture."""

from __future__ import annotations

import numpy as np

from userchoice.data.dataset import Dataset, Market
from userchoice.preferences import Preferences


def _split(rng: np.random.Generator, n_users: int, test_fraction: float) -> np.ndarray:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    return rng.random(n_users) < test_fraction


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
    test = _split(rng, n_users, test_fraction)
    dataset = Dataset(
        x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test],
        feature_names=tuple([f"z{i}" for i in range(dim)] + [f"g*z{i}" for i in range(dim)]),
        provenance={"source": "synthetic.trap_market", "gap": gap, "noise": noise,
                    "n_users": n_users, "dim": dim, "minority_share": minority_share,
                    "test_fraction": test_fraction, "seed": seed},
    )
    return Market(
        dataset,
        Preferences.from_favourite(group[~test], 2),
        Preferences.from_favourite(group[test], 2),
        name=f"trap(gap={gap})",
    )


def gaussian_mixture_market(
    n_learners: int = 3,
    n_users: int = 3000,
    dim: int = 4,
    separation: float = 3.0,
    label_noise: float = 0.05,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Market:
    """Classification market: one Gaussian blob of users per learner, labels from one global
    linear rule (flipped with probability ``label_noise``); favourite = the user's blob.

    Features end with a constant 1 so linear learners have an intercept. Each blob sees a
    different piece of the decision boundary, so a learner fitted on its own blob alone can be
    poor elsewhere while a pooled model is good everywhere.
    """
    if n_learners < 1 or n_users < 2 * n_learners:
        raise ValueError(f"need n_learners >= 1 and n_users >= 2·n_learners, got {n_learners}, "
                         f"{n_users}")
    if not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must lie in [0, 0.5), got {label_noise}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_learners, dim))
    centres *= separation / np.linalg.norm(centres, axis=1, keepdims=True)
    blob = rng.integers(0, n_learners, n_users).astype(np.int32)
    z = centres[blob] + rng.standard_normal((n_users, dim))
    rule = rng.standard_normal(dim)
    rule /= np.linalg.norm(rule)
    y = (z @ rule > 0).astype(float)
    flip = rng.random(n_users) < label_noise
    y[flip] = 1.0 - y[flip]
    x = np.concatenate([z, np.ones((n_users, 1))], axis=1)
    cost = np.linalg.norm(z[:, None, :] - centres[None], axis=2)
    test = _split(rng, n_users, test_fraction)
    dataset = Dataset(
        x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test],
        feature_names=tuple([f"x{i}" for i in range(dim)] + ["intercept"]),
        provenance={"source": "synthetic.gaussian_mixture_market", "n_learners": n_learners,
                    "n_users": n_users, "dim": dim, "separation": separation,
                    "label_noise": label_noise, "test_fraction": test_fraction, "seed": seed},
    )
    return Market(
        dataset,
        Preferences.from_scores(cost[~test], favourite=blob[~test]),
        Preferences.from_scores(cost[test], favourite=blob[test]),
        name="gaussian_mixture",
    )
