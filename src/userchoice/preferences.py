"""Inherent preferences: each user's ranking of the learners (rank 0 = favourite).

Only the favourite π(u) drives the paper's dynamics, but the full ranking is kept because
other choice rules (``additive_rank``) use it. Constructors that build preferences from data
(clusters, leader, majority, category, feature bins) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Preferences:
    """``rank[u, i]`` is the position of learner i in user u's ranking; ``favourite = argmin``."""

    rank: np.ndarray  # [N, n] int, each row a permutation of 0..n-1

    def __post_init__(self) -> None:
        rank = np.asarray(self.rank)
        if rank.ndim != 2 or rank.shape[1] < 1:
            raise ValueError(f"rank must have shape [n_users, n_learners], got {rank.shape}")
        n = rank.shape[1]
        if not np.array_equal(np.sort(rank, axis=1), np.broadcast_to(np.arange(n), rank.shape)):
            raise ValueError(f"each row of rank must be a permutation of 0..{n - 1}")
        object.__setattr__(self, "rank", rank.astype(np.int32))

    @property
    def n_learners(self) -> int:
        return int(self.rank.shape[1])

    @property
    def favourite(self) -> np.ndarray:
        return np.argmin(self.rank, axis=1).astype(np.int32)

    def __len__(self) -> int:
        return int(self.rank.shape[0])

    @classmethod
    def from_favourite(cls, favourite: np.ndarray, n_learners: int) -> Preferences:
        """Favourite first, then the other learners in index order."""
        favourite = np.asarray(favourite)
        if favourite.ndim != 1:
            raise ValueError(f"favourite must be 1-D, got shape {favourite.shape}")
        if n_learners < 1:
            raise ValueError(f"n_learners must be >= 1, got {n_learners}")
        if favourite.size and (favourite.min() < 0 or favourite.max() >= n_learners):
            raise ValueError(f"favourite entries must lie in [0, {n_learners - 1}]")
        learners = np.arange(n_learners)
        # Others keep index order: rank = index + 1 for learners below the favourite, else index.
        rank = np.where(learners[None, :] < favourite[:, None], learners + 1, learners)
        rank[np.arange(favourite.size), favourite] = 0
        return cls(rank)

    @classmethod
    def from_scores(cls, cost: np.ndarray, favourite: np.ndarray | None = None) -> Preferences:
        """Rank learners by ascending cost (e.g. distance to cluster centres).

        With ``favourite`` given, that learner is forced to rank 0 and the rest keep cost order.
        """
        cost = np.asarray(cost, dtype=float)
        if cost.ndim != 2:
            raise ValueError(f"cost must have shape [n_users, n_learners], got {cost.shape}")
        if favourite is not None:
            favourite = np.asarray(favourite)
            if favourite.shape != (cost.shape[0],):
                raise ValueError(
                    f"favourite must have one entry per user ({cost.shape[0]}), "
                    f"got shape {favourite.shape}"
                )
            if favourite.size and (favourite.min() < 0 or favourite.max() >= cost.shape[1]):
                raise ValueError(f"favourite entries must lie in [0, {cost.shape[1] - 1}]")
            cost = cost.copy()
            cost[np.arange(cost.shape[0]), np.asarray(favourite)] = -np.inf
        order = np.argsort(cost, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(cost.shape[1])[None, :], axis=1)
        return cls(rank)
