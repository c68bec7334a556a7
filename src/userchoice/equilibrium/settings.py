"""The synthetic settings of Jagadeesan et al. (NeurIPS 2023; NEIGHBOURS §C), seeded, and the
closed form of setting 1.

Every generator draws with ``numpy.random.default_rng(seed)`` and returns ``EquilibriumData``
with a constant bias feature as the last column. The paper's market: 10,000 points, user
temperature c = 0.3 (the knob ``temperature``: ``paper_knobs``), loss temperature T = 0.1
(``EquilibriumSpec.loss_temperature``), uniform prior weights w = 1/m.

1. ``setting1(alpha)``: x ≡ 1 (no information), y = 0 with probability α, else 1. Bayes risk
   min(α, 1 − α). ``exact=True``: the two label classes as two weighted points (α, 1 − α), the
   population itself rather than a sample.
2. ``setting2(sigma)``: x = (x₁, 1); y = 0 w.p. 0.4 with x₁ ~ N(+1, σ²), y = 1 w.p. 0.6 with
   x₁ ~ N(−1, σ²).
3. ``setting3(D)``: four groups with probabilities (0.7, 0.15, 0.1, 0.05), y ~ Bernoulli(½),
   x ∈ R⁴ with x_k ~ N(±1, 1) (+ for y = 1) on the informative coordinates and N(0, 1) on the
   others: group i (0-based) has its first i coordinates uninformative. Representation D keeps
   the first D − 1 coordinates plus the bias (D = 1: the bias alone); ``pad_to`` zero-pads the
   features so every D shares one shape (and one compilation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from userchoice.equilibrium.data import EquilibriumData
from userchoice.knobs import Knobs, make_knobs

N_POINTS = 10_000
TEMPERATURE = 0.3  # c, the users' choice temperature (the knob ``temperature``)
LOSS_TEMPERATURE = 0.1  # T, inside the soft 0-1 loss
SETTING2_PRIORS = (0.4, 0.6)  # P(y = 0), P(y = 1)
SETTING3_GROUPS = (0.7, 0.15, 0.1, 0.05)
SETTING3_DIM = 4


def _count(n_points: Any) -> int:
    if not isinstance(n_points, int | np.integer) or isinstance(n_points, bool) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
    return int(n_points)


def _real(name: str, value: Any, low: float, high: float, closed: bool = True) -> float:
    v = float(value)
    ok = low <= v <= high if closed else low < v < high
    if not (math.isfinite(v) and ok):
        bounds = f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g})"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")
    return v


def setting1(alpha: float, *, n_points: int = N_POINTS, seed: int = 0,
             exact: bool = False) -> EquilibriumData:
    """Setting 1: no information; y = 0 with probability ``alpha``."""
    alpha = _real("alpha", alpha, 0.0, 1.0)
    provenance = {"setting": 1, "alpha": alpha, "seed": seed, "exact": bool(exact)}
    if exact:
        return EquilibriumData(np.ones((2, 1)), np.array([0, 1]), np.array([alpha, 1 - alpha]),
                               name="setting1", provenance=provenance)
    n = _count(n_points)
    y = (np.random.default_rng(seed).random(n) >= alpha).astype(np.int64)
    return EquilibriumData(np.ones((n, 1)), y, name="setting1",
                           provenance={**provenance, "n_points": n})


def setting2(sigma: float, *, n_points: int = N_POINTS, seed: int = 0) -> EquilibriumData:
    """Setting 2: one informative feature of noise ``sigma`` (larger σ: a worse
    representation)."""
    sigma = _real("sigma", sigma, 0.0, math.inf)
    n = _count(n_points)
    rng = np.random.default_rng(seed)
    y = (rng.random(n) >= SETTING2_PRIORS[0]).astype(np.int64)
    x1 = np.where(y == 0, 1.0, -1.0) + sigma * rng.standard_normal(n)
    return EquilibriumData(np.stack([x1, np.ones(n)], axis=1), y, name="setting2",
                           provenance={"setting": 2, "sigma": sigma, "seed": seed,
                                       "n_points": n})


def setting3(D: int, *, n_points: int = N_POINTS, seed: int = 0,
             pad_to: int | None = None) -> EquilibriumData:
    """Setting 3: representation ``D`` ∈ 1 … 5 (its first D − 1 coordinates plus the bias);
    ``pad_to`` ≥ D: zero columns before the bias up to that many features."""
    if not isinstance(D, int | np.integer) or isinstance(D, bool) \
            or not 1 <= D <= SETTING3_DIM + 1:
        raise ValueError(f"D must be an integer in [1, {SETTING3_DIM + 1}], got {D!r}")
    width = int(D) if pad_to is None else pad_to
    if not isinstance(width, int | np.integer) or isinstance(width, bool) or width < D:
        raise ValueError(f"pad_to must be an integer ≥ D = {D}, got {pad_to!r}")
    n = _count(n_points)
    rng = np.random.default_rng(seed)
    group = rng.choice(len(SETTING3_GROUPS), size=n, p=SETTING3_GROUPS)
    y = rng.integers(0, 2, n)
    informative = np.arange(SETTING3_DIM)[None, :] >= group[:, None]
    mean = np.where(informative, np.where(y == 1, 1.0, -1.0)[:, None], 0.0)
    z = mean + rng.standard_normal((n, SETTING3_DIM))
    x = np.zeros((n, width))
    x[:, : D - 1] = z[:, : D - 1]
    x[:, -1] = 1.0
    return EquilibriumData(x, y, name="setting3",
                           provenance={"setting": 3, "D": int(D), "seed": seed, "n_points": n,
                                       "pad_to": width})


def alpha_star(m: int, c: float = TEMPERATURE) -> float | None:
    """Setting 1's threshold: the α above which a provider gains share by deviating from the
    homogeneous profile (all predict the majority label 1) to the minority label, i.e. the
    root of α·E/(E + m − 1) + (1 − α)/(1 + (m − 1)E) = 1/m with E = e^{1/c}. None for m ≤ 2
    (or when the root is not below ½: no threshold among α < ½)."""
    if not isinstance(m, int | np.integer) or isinstance(m, bool) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    c = _real("c", c, 0.0, math.inf, closed=False)
    if m <= 2:
        return None
    e = math.exp(1.0 / c)
    a, b = e / (e + m - 1), 1.0 / (1.0 + (m - 1) * e)  # share at the minority vs majority
    root = (1.0 / m - b) / (a - b)
    return root if root < 0.5 else None


def bayes_risk_setting1(alpha: float) -> float:
    """min(α, 1 − α): the best single model predicts the majority label."""
    alpha = _real("alpha", alpha, 0.0, 1.0)
    return min(alpha, 1.0 - alpha)


def paper_knobs(n_providers: int, **values: Any) -> Knobs:
    """``make_knobs(n_providers, ...)`` with the paper's user temperature c = 0.3 unless
    ``temperature`` is given."""
    return make_knobs(n_providers, **{"temperature": TEMPERATURE, **values})
