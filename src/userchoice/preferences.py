"""Inherent preferences: each user's ranking of the learners (rank 0 = favourite).

Only the favourite π(u) drives the paper's dynamics, but the full ranking is kept because
other choice rules (``additive_rank``) use it. Constructors that build preferences from data
(clusters, leader, majority, category, feature bins) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from userchoice.reprs import SummaryRepr, short_list


@dataclass(frozen=True, repr=False)
class Preferences(SummaryRepr):
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

    def favourite_shares(self) -> np.ndarray:
        """Share of the users whose favourite each learner is, [n]."""
        return np.bincount(self.favourite, minlength=self.n_learners) / max(1, len(self))

    def _summary_rows(self) -> list[tuple[str, str]]:
        return [("users", f"{len(self):,}"), ("learners", str(self.n_learners)),
                ("favourite_shares", short_list(f"{s:.3g}" for s in self.favourite_shares()))]

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


# --------------------------------------------------------------- built from data (SPEC §6)

PREFERENCE_MODES: tuple[str, ...] = ("clusters", "leader", "majority", "category", "feature")


def _kmeans(x_train: np.ndarray, k: int, seed: int, n_init: int):
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    if x_train.shape[0] < k:
        raise ValueError(f"cannot form {k} clusters from {x_train.shape[0]} users")
    scaler = StandardScaler().fit(x_train)
    model = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(scaler.transform(x_train))
    return scaler, model


def _distances(scaler, model, x: np.ndarray) -> np.ndarray:
    return model.transform(scaler.transform(x))  # [N, k] distance to each centre


def _random_split(n_users: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly round(share·N) users, chosen uniformly at random."""
    chosen = np.zeros(n_users, bool)
    chosen[rng.permutation(n_users)[: round(share * n_users)]] = True
    return chosen


def preferences_from_data(
    mode: str,
    n_learners: int,
    x_train: np.ndarray,
    x_test: np.ndarray,
    *,
    attribute_train: np.ndarray | None = None,
    attribute_test: np.ndarray | None = None,
    seed: int = 42,
    n_init: int = 10,
    majority_share: float = 0.8,
    thresholds: tuple[float, ...] | None = None,
    categories: tuple | None = None,
) -> tuple[Preferences, Preferences, dict]:
    """Preferences of training and test users built as in SPEC §6; returns (train, test, record).

    - ``clusters``: k-means (k = n, ``seed``, ``n_init``) on the standardised training
      features; favourite = own cluster; the rest ranked by distance to the centres.
    - ``leader``: a random ``majority_share`` of users → learner 0; the rest k-means into
      learners 1..n−1.
    - ``majority``: a random ``majority_share`` split equally among ⌈n/2⌉ learners; the rest
      k-means into the remaining learners.
    - ``category``: one learner per value of ``attribute`` (``categories`` fixes the order).
    - ``feature``: bins of ``attribute`` cut at ``thresholds`` (n = len(thresholds) + 1).

    Test users get preferences by the same rule (centres fitted on training users only).
    Users outside a k-means part rank the other learners by distance to the global mean.
    """
    if mode not in PREFERENCE_MODES:
        raise ValueError(f"preferences must be one of {list(PREFERENCE_MODES)}, got {mode!r}")
    if n_learners < 1:
        raise ValueError(f"n_learners must be >= 1, got {n_learners}")
    if not 0 < majority_share < 1:
        raise ValueError(f"majority_share must lie in (0, 1), got {majority_share}")
    x_train = np.asarray(x_train, float)
    x_test = np.asarray(x_test, float)
    record: dict = {"mode": mode, "n_learners": n_learners, "seed": seed}

    if mode in ("category", "feature"):
        if attribute_train is None or attribute_test is None:
            raise ValueError(f"preferences {mode!r} need attribute_train and attribute_test")
        if mode == "category":
            values = np.asarray(attribute_train)
            order = tuple(categories) if categories is not None else tuple(np.unique(values))
            if len(order) != n_learners:
                raise ValueError(f"category preferences need n_learners = number of categories "
                                 f"({len(order)}: {list(order)}), got {n_learners}")
            lookup = {c: i for i, c in enumerate(order)}
            favs = []
            for split, attr in (("train", attribute_train), ("test", attribute_test)):
                unknown = sorted({str(a) for a in attr if a not in lookup})
                if unknown:
                    raise ValueError(f"{split} users have categories {unknown[:5]} outside "
                                     f"{list(order)}")
                favs.append(np.array([lookup[a] for a in attr], np.int32))
            record["categories"] = [str(c) for c in order]
            prefs = [Preferences.from_favourite(f, n_learners) for f in favs]
        else:
            if thresholds is None or len(thresholds) + 1 != n_learners:
                raise ValueError(f"feature preferences need len(thresholds) + 1 = n_learners "
                                 f"({n_learners}), got thresholds={thresholds}")
            edges = np.asarray(sorted(thresholds), float)
            prefs = []
            for attr in (attribute_train, attribute_test):
                bins = np.searchsorted(edges, np.asarray(attr, float), side="right")
                cost = np.abs(bins[:, None] - np.arange(n_learners)[None, :]).astype(float)
                prefs.append(Preferences.from_scores(cost + 1e-3 * np.arange(n_learners),
                                                     favourite=bins))
            record["thresholds"] = [float(t) for t in edges]
        train, test = prefs
    else:
        rng = np.random.default_rng(seed)
        if mode == "clusters":
            n_pooled, clustered_learners = 0, np.arange(n_learners)
        elif mode == "leader":
            n_pooled, clustered_learners = 1, np.arange(1, n_learners)
        else:
            n_pooled = -(-n_learners // 2)
            clustered_learners = np.arange(n_pooled, n_learners)
        record.update(n_init=n_init, majority_share=majority_share if n_pooled else None)
        if len(clustered_learners):
            scaler, model = _kmeans(x_train, len(clustered_learners), seed, n_init)
            record["kmeans_inertia"] = float(model.inertia_)
        centre = x_train.mean(axis=0)
        prefs = []
        for x in (x_train, x_test):
            cost = np.zeros((x.shape[0], n_learners))
            if len(clustered_learners):
                cost[:, clustered_learners] = _distances(scaler, model, x)
            if n_pooled:
                far = np.linalg.norm(x - centre, axis=1)
                cost[:, :n_pooled] = far[:, None] + 1e-9 * np.arange(n_pooled)
            favourite = np.argmin(cost, axis=1)
            if n_pooled:
                pooled = _random_split(x.shape[0], majority_share, rng)
                dealt = np.zeros(x.shape[0], int)  # pooled users dealt round-robin: equal parts
                dealt[rng.permutation(np.flatnonzero(pooled))] = np.arange(pooled.sum()) % n_pooled
                favourite = np.where(pooled, dealt, favourite)
                if len(clustered_learners):  # the rest go to their nearest k-means learner
                    nearest = clustered_learners[np.argmin(cost[:, clustered_learners], axis=1)]
                    favourite = np.where(pooled, favourite, nearest)
            prefs.append(Preferences.from_scores(cost, favourite=favourite))
        train, test = prefs
    record["train_shares"] = (np.bincount(train.favourite, minlength=n_learners)
                              / len(train)).round(4).tolist()
    return train, test, record
