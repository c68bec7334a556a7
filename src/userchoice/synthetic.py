"""Synthetic markets that need no files: a Gaussian mixture (the trap is in ``theory``)."""

from __future__ import annotations

import numpy as np

from userchoice.data.dataset import Dataset
from userchoice.market import Market
from userchoice.preferences import Preferences


def split_mask(rng: np.random.Generator, n_users: int, test_fraction: float) -> np.ndarray:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    return rng.random(n_users) < test_fraction


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
    test = split_mask(rng, n_users, test_fraction)
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
