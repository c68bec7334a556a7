"""Sub-populations as sufficient statistics (host side, NumPy), and initial allocations.

Every group's risk is a quadratic form R_j(θ) = θᵀA_jθ − 2 b_jᵀθ + c_j:

- quadratic groups (Dean et al.'s synthetic markets): R_j(θ) = ‖θ − φ_j‖² + σ², i.e.
  A_j = I, b_j = φ_j, c_j = ‖φ_j‖² + σ²;
- empirical groups (least squares on the group's rows): R_j(θ) = ‖X_jθ − y_j‖² / N_j, i.e.
  A_j = X_jᵀX_j / N_j, b_j = X_jᵀy_j / N_j, c_j = y_jᵀy_j / N_j.

So the population dynamics never touch a row of data: a market of a million users with G groups
costs G · d² numbers.

Logistic groups (``loss="logistic"``, binary labels y ∈ {0, 1}) are the exception: R_j(θ) =
mean_{r ∈ j} log(1 + exp(x_rᵀθ)) − y_r·x_rᵀθ + ridge·‖θ‖² has no sufficient statistics, so the
``GroupSet`` keeps the rows (``x``, ``y``, ``row_group``) and the dynamics solve for the
weighted logistic minimiser by Newton's method (``population.logistic``). Their ``A``, ``b``,
``c`` hold each group's quadratic surrogate at its own optimum, A_j = ½∇²R_j(θ*_j),
b_j = A_jθ*_j, c_j = θ*_jᵀA_jθ*_j + R_j(θ*_j) (the second-order expansion: the same minimiser
and minimal risk, and the curvature there); ``optimum`` and ``min_risk`` are the solver's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

ALLOCATIONS: tuple[str, ...] = ("even", "jitter")
BETAS: tuple[str, ...] = ("uniform", "count")
LOSSES: tuple[str, ...] = ("squared", "logistic", "auto")
LOGISTIC_RIDGE = 1e-4  # the default ridge of logistic groups: separable rows have no minimiser


@dataclass(frozen=True)
class GroupSet:
    """G sub-populations: risk R_j(θ) = θᵀA_jθ − 2 b_jᵀθ + c_j, mass β_j, N_j rows.

    ``A`` [G, d, d] (symmetric positive semi-definite), ``b`` [G, d], ``c`` [G], ``beta`` [G]
    (the masses β_j that weight groups in the reported risks), ``counts`` [G] (rows per group:
    1 for quadratic groups; the authors' ``beta_count`` retraining weights use them), ``names``
    (one label per group), ``kind`` (``"quadratic"`` or ``"empirical"``), ``provenance`` (how
    the groups were built; JSON-able).

    ``loss``: ``"squared"`` (the quadratic risks above) or ``"logistic"`` (empirical groups
    with binary labels; then ``x`` [R, d], ``y`` [R] in {0, 1} and ``row_group`` [R] (each
    row's group index) are the rows, ``ridge`` > 0 the ridge of every group's risk, and
    ``A``, ``b``, ``c`` — which may be passed as None — are set to the quadratic surrogate at
    each group's optimum, see the module docstring).
    """

    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    beta: np.ndarray
    counts: np.ndarray
    names: tuple[str, ...]
    kind: str
    provenance: dict[str, Any] = field(default_factory=dict)
    loss: str = "squared"
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    row_group: np.ndarray | None = None
    ridge: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in ("squared", "logistic"):
            raise ValueError(f"loss must be 'squared' or 'logistic', got {self.loss!r}")
        if self.loss == "logistic":
            self._fit_logistic()
        elif self.x is not None or self.y is not None or self.row_group is not None:
            raise ValueError("x, y and row_group (the rows) belong to logistic groups only; "
                             "squared groups are their sufficient statistics A, b, c")
        A = np.asarray(self.A, dtype=float)
        if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] < 1 or A.shape[1] < 1:
            raise ValueError(f"A must have shape [G, d, d] with G, d ≥ 1, got {A.shape}")
        g, d = A.shape[:2]
        expected = {"b": (g, d), "c": (g,), "beta": (g,), "counts": (g,)}
        arrays = {"A": A}
        for name, shape in expected.items():
            value = np.asarray(getattr(self, name), dtype=float)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {list(shape)} for {g} groups in "
                                 f"{d} dimensions, got {list(value.shape)}")
            arrays[name] = value
        for name, value in arrays.items():
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be finite")
        if not np.allclose(A, np.swapaxes(A, 1, 2), rtol=1e-10, atol=1e-12):
            raise ValueError("A must be symmetric: A_j = A_jᵀ for every group j")
        lowest = np.linalg.eigvalsh(A).min(axis=1)
        scale = np.maximum(1.0, np.abs(A).max(axis=(1, 2)))
        if np.any(lowest < -1e-9 * scale):
            j = int(np.argmin(lowest / scale))
            raise ValueError(f"A must be positive semi-definite; group {j} has eigenvalue "
                             f"{lowest[j]:.3g}")
        if np.any(arrays["beta"] <= 0):
            raise ValueError(f"beta (group masses) must be positive, got "
                             f"{arrays['beta'].tolist()}")
        if np.any(arrays["counts"] < 1):
            raise ValueError("counts (rows per group) must be ≥ 1")
        names = tuple(str(n) for n in self.names)
        if len(names) != g:
            raise ValueError(f"names has {len(names)} labels for {g} groups")
        if self.kind not in ("quadratic", "empirical"):
            raise ValueError(f"kind must be 'quadratic' or 'empirical', got {self.kind!r}")
        if self.loss == "logistic" and self.kind != "empirical":
            raise ValueError("loss 'logistic' needs kind 'empirical' (groups of labelled rows)")
        for name, value in arrays.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "provenance", dict(self.provenance))

    def _fit_logistic(self) -> None:
        """Check the rows, solve each group's own logistic regression, set A, b, c (the
        surrogate), ``optimum`` and ``min_risk``."""
        import jax

        from userchoice.population.logistic import fit_groups

        if self.x is None or self.y is None or self.row_group is None:
            raise ValueError("logistic groups need their rows: x [R, d], y [R], row_group [R]")
        x = np.asarray(self.x, float)
        y = np.asarray(self.y, float)
        rows = np.asarray(self.row_group)
        if x.ndim != 2 or 0 in x.shape or y.shape != (x.shape[0],) \
                or rows.shape != (x.shape[0],):
            raise ValueError(f"logistic groups: x must be [R, d], y and row_group [R]; got "
                             f"{list(x.shape)}, {list(y.shape)}, {list(rows.shape)}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("x and y must be finite")
        check_binary(y)
        counts = np.asarray(self.counts, float)
        g = counts.shape[0] if counts.ndim == 1 else -1
        if not np.issubdtype(rows.dtype, np.integer) or g < 1 or rows.min() < 0 \
                or rows.max() >= g:
            raise ValueError(f"row_group must hold group indices (integers in [0, {g - 1}])")
        if not np.array_equal(np.bincount(rows, minlength=g), counts):
            raise ValueError("counts must be the number of rows of each group in row_group")
        ridge = float(self.ridge)
        if not (np.isfinite(ridge) and ridge > 0):
            raise ValueError(f"ridge must be > 0 for logistic groups (a group with separable "
                             f"rows has no minimiser otherwise), got {self.ridge!r}")
        member = np.eye(g)[rows]
        with jax.enable_x64(True):
            theta, floor, hessian = (np.asarray(a, float) for a in fit_groups(
                x, y, member, counts, np.float64(ridge)))
        if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(floor))):
            raise ValueError("logistic groups: the solver did not converge (non-finite optimum)")
        A = 0.5 * (hessian + np.swapaxes(hessian, 1, 2))
        b = np.einsum("gde,ge->gd", A, theta)
        c = np.einsum("gd,gd->g", b, theta) + floor
        for name, value in (("A", A), ("b", b), ("c", c)):
            given = getattr(self, name)
            if given is not None and not np.allclose(given, value, rtol=1e-8, atol=1e-10):
                raise ValueError(f"{name}: logistic groups derive A, b, c from their rows "
                                 f"(pass None)")
            object.__setattr__(self, name, value)
        for name, value in (("x", x), ("y", y), ("row_group", rows.astype(np.int64)),
                            ("ridge", ridge), ("optimum", theta), ("min_risk", floor)):
            object.__setattr__(self, name, value)  # optimum/min_risk: the cached properties

    @property
    def n_groups(self) -> int:
        return int(self.A.shape[0])

    @property
    def dim(self) -> int:
        return int(self.A.shape[1])

    @functools.cached_property
    def optimum(self) -> np.ndarray:
        """Each group's own minimiser θ*_j = A_j⁺ b_j, [G, d] (the minimum-norm one if A_j is
        singular; logistic groups: the Newton solver's, set when the groups are made)."""
        return np.stack([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(self.A, self.b,
                                                                              strict=True)])

    @functools.cached_property
    def min_risk(self) -> np.ndarray:
        """min_θ R_j(θ) = c_j − b_jᵀθ*_j, [G] (≥ 0; rounding below 0 is clipped). Raises if a
        group's risk is unbounded below (b_j outside the range of A_j). Logistic groups: the
        minimal logistic risk, by the solver."""
        theta = self.optimum
        residual = np.einsum("gde,ge->gd", self.A, theta) - self.b
        scale = np.maximum(1.0, np.abs(self.b).max(axis=1))
        if np.any(np.abs(residual).max(axis=1) > 1e-8 * scale):
            raise ValueError("a group's risk is unbounded below: b_j is not in the range of A_j")
        return np.maximum(self.c - np.einsum("gd,gd->g", self.b, theta), 0.0)

    @property
    def isotropic(self) -> bool:
        """Every A_j is a positive multiple of the identity (quadratic groups): retraining is
        then a weighted mean, with no linear solve. False for logistic groups."""
        if self.loss == "logistic":
            return False
        scale = np.einsum("gdd->g", self.A) / self.dim
        return bool(np.all(scale > 0) and np.allclose(
            self.A, scale[:, None, None] * np.eye(self.dim), rtol=0, atol=1e-12 * scale.max()))

    def risk(self, theta: np.ndarray) -> np.ndarray:
        """R_j(θ_i) for parameters ``theta`` [n, d]: [n, G] (NumPy; for checks and plots)."""
        theta = np.atleast_2d(np.asarray(theta, float))
        if self.loss == "logistic":
            z = theta @ self.x.T
            losses = np.logaddexp(0.0, z) - self.y[None, :] * z
            means = np.stack([losses[:, self.row_group == j].mean(axis=1)
                              for j in range(self.n_groups)], axis=1)
            return means + self.ridge * (theta**2).sum(axis=1)[:, None]
        return (np.einsum("nd,gde,ne->ng", theta, self.A, theta) - 2 * theta @ self.b.T
                + self.c[None, :])

    def __repr__(self) -> str:
        kind = self.kind if self.loss == "squared" else f"{self.kind}, logistic"
        return (f"GroupSet({kind}, G={self.n_groups}, d={self.dim}, "
                f"names={list(self.names)[:6]}{'…' if self.n_groups > 6 else ''})")


def check_binary(y: np.ndarray, name: str = "y") -> None:
    """Raise unless every label is 0 or 1 (what a logistic group fits)."""
    bad = np.unique(y[(y != 0) & (y != 1)])
    if bad.size:
        raise ValueError(f"{name}: logistic groups need labels in {{0, 1}}, got also "
                         f"{bad[:5].tolist()}{' …' if bad.size > 5 else ''} (use "
                         f"loss='squared' for regression labels)")


def _loss(loss: str, y: np.ndarray) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    if loss == "auto":
        return "logistic" if np.all((y == 0) | (y == 1)) else "squared"
    return loss


def _beta(beta: Any, n_groups: int, counts: np.ndarray | None = None) -> np.ndarray:
    if beta is None or (isinstance(beta, str) and beta == "uniform"):
        return np.ones(n_groups)
    if isinstance(beta, str):
        if beta == "count" and counts is not None:
            return np.asarray(counts, float)
        allowed = list(BETAS) if counts is not None else ["uniform"]
        raise ValueError(f"beta must be one of {allowed} or an array of {n_groups} positive "
                         f"masses, got {beta!r}")
    value = np.asarray(beta, float)
    if value.shape != (n_groups,):
        raise ValueError(f"beta must have one mass per group ({n_groups}), got shape "
                         f"{list(value.shape)}")
    if not np.all(np.isfinite(value) & (value > 0)):
        raise ValueError(f"beta (group masses) must be positive and finite, got {value.tolist()}")
    return value


def quadratic_groups(phi: Any, *, sigma2: float = 1.0, beta: Any = None,
                     names: Sequence[str] | None = None) -> GroupSet:
    """Groups with risk R_j(θ) = ‖θ − φ_j‖² + σ² (``phi`` [G, d]; ``beta``: masses, default 1)."""
    phi = np.asarray(phi, float)
    if phi.ndim != 2 or 0 in phi.shape:
        raise ValueError(f"phi must be a non-empty 2-D array [G, d], got shape {list(phi.shape)}")
    if not np.all(np.isfinite(phi)):
        raise ValueError("phi must be finite")
    if not (np.isfinite(sigma2) and sigma2 >= 0):
        raise ValueError(f"sigma2 must be a finite number ≥ 0, got {sigma2!r}")
    g, d = phi.shape
    names = tuple(str(i) for i in range(g)) if names is None else tuple(names)
    return GroupSet(
        A=np.broadcast_to(np.eye(d), (g, d, d)).copy(), b=phi.copy(),
        c=(phi**2).sum(axis=1) + float(sigma2), beta=_beta(beta, g), counts=np.ones(g),
        names=names, kind="quadratic",
        provenance={"builder": "quadratic_groups", "sigma2": float(sigma2), "n_groups": g,
                    "dim": d})


def gaussian_groups(n_groups: int, dim: int, *, seed: int = 0, sigma2: float = 1.0,
                    beta: Any = None) -> GroupSet:
    """Quadratic groups with φ = ``numpy.random.default_rng(seed).standard_normal((G, d))``, as
    Dean et al.'s experiment (b) draws them."""
    for name, value in (("n_groups", n_groups), ("dim", dim)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    phi = np.random.default_rng(seed).standard_normal((n_groups, dim))
    groups = quadratic_groups(phi, sigma2=sigma2, beta=beta)
    provenance = {**groups.provenance, "builder": "gaussian_groups", "seed": int(seed)}
    return GroupSet(groups.A, groups.b, groups.c, groups.beta, groups.counts, groups.names,
                    groups.kind, provenance)


def _merge_small(values: list[Any], sizes: list[int], min_size: int
                 ) -> tuple[list[list[int]], list[str]]:
    """Which label indices form each group: labels with fewer than ``min_size`` rows are merged
    together (smallest first); if even all of them together stay below ``min_size``, they join
    the smallest group that is large enough. Returns the members of each group and the notes
    the provenance records."""
    small = [i for i in range(len(values)) if sizes[i] < min_size]
    large = [i for i in range(len(values)) if sizes[i] >= min_size]
    members = [[i] for i in large]
    notes: list[str] = []
    if small:
        small.sort(key=lambda i: (sizes[i], str(values[i])))
        merged_size = sum(sizes[i] for i in small)
        labels = [str(values[i]) for i in small]
        if merged_size >= min_size:
            members.append(sorted(small))
            notes.append(f"merged the groups with fewer than {min_size} rows ({labels}) into "
                         f"one group")
        elif large:
            target = min(range(len(members)), key=lambda m: (sizes[members[m][0]], m))
            notes.append(f"merged the groups with fewer than {min_size} rows ({labels}; "
                         f"{merged_size} rows together) into the smallest large group "
                         f"{values[members[target][0]]!s}")
            members[target] = sorted(members[target] + small)
        else:
            raise ValueError(f"labels: every group has fewer than min_size={min_size} rows "
                             f"({merged_size} rows in all); lower min_size")
    return members, notes


def empirical_groups(x: Any, y: Any, labels: Any, *, beta: Any = "uniform", min_size: int = 30,
                     ridge: float | None = None, groups: Sequence[Any] | None = None,
                     prefix: str = "", loss: str = "squared") -> GroupSet:
    """Least-squares groups R_j(θ) = ‖X_jθ − y_j‖²/N_j (+ ``ridge``·‖θ‖²), one per distinct
    value of ``labels`` (one label per row of ``x``); with ``loss="logistic"`` logistic groups
    R_j(θ) = mean_{r ∈ j} log(1 + exp(x_rᵀθ)) − y_r·x_rᵀθ + ``ridge``·‖θ‖² (labels y in
    {0, 1}; else an error), which keep their rows; ``loss="auto"``: logistic when every label
    is 0 or 1, else squared. ``ridge``: default 0 (squared) or ``LOGISTIC_RIDGE`` = 1e-4
    (logistic, where it must be > 0); it applies to every coordinate, an intercept column too.

    ``beta``: ``"uniform"`` (β_j = 1), ``"count"`` (β_j = N_j) or an array of masses (one per
    group, after merging). ``min_size``: groups with fewer rows are merged — all such groups
    together into one (named ``"a+b+c"``, smallest first), and if that merged group is still
    too small, into the smallest group that is large enough (``provenance["merged"]`` says
    which). ``groups``: the label values to use, in order (default: the sorted distinct
    labels); naming one that has no rows is an error. ``prefix`` starts each name
    (``"RAC1P="``).
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    labels = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must be a non-empty 2-D array [N, d], got shape {list(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must be 1-D with one label per row of x ({x.shape[0]}), got shape "
                         f"{list(y.shape)} (population groups fit scalar regression)")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have one entry per row of x ({x.shape[0]}), got shape "
                         f"{list(labels.shape)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    if not isinstance(min_size, int | np.integer) or isinstance(min_size, bool) or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size!r}")
    loss = _loss(loss, y)
    if ridge is None:
        ridge = LOGISTIC_RIDGE if loss == "logistic" else 0.0
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number ≥ 0, got {ridge!r}")
    if loss == "logistic":
        check_binary(y)
    values = list(np.unique(labels)) if groups is None else list(groups)
    if not values:
        raise ValueError("groups must name at least one group")
    sizes = [int(np.sum(labels == v)) for v in values]
    empty = [v for v, s in zip(values, sizes, strict=True) if s == 0]
    if empty:
        raise ValueError(f"groups: {[str(v) for v in empty]} have no rows in labels "
                         f"(distinct labels: {[str(v) for v in np.unique(labels)]})")
    members, notes = _merge_small(values, sizes, int(min_size))
    d = x.shape[1]
    A, b, c, counts, names = [], [], [], [], []
    row_group = np.full(x.shape[0], -1, np.int64)  # rows of no named group stay out (−1)
    for j, member in enumerate(members):
        rows = np.isin(labels, [values[i] for i in member])
        row_group[rows] = j
        xj, yj = x[rows], y[rows]
        nj = xj.shape[0]
        A.append(xj.T @ xj / nj + ridge * np.eye(d))
        b.append(xj.T @ yj / nj)
        c.append(float(yj @ yj) / nj)
        counts.append(nj)
        names.append(prefix + "+".join(str(values[i]) for i in member))
    counts_arr = np.asarray(counts, float)
    beta_desc = beta if isinstance(beta, str) or beta is None else "array"
    provenance = {"builder": "empirical_groups", "rows": int(x.shape[0]), "dim": d,
                  "min_size": int(min_size), "ridge": float(ridge), "beta": beta_desc,
                  "merged": notes, "loss": loss,
                  "sizes": {str(v): s for v, s in zip(values, sizes, strict=True)}}
    common = dict(beta=_beta(beta, len(members), counts_arr), counts=counts_arr,
                  names=tuple(names), kind="empirical", provenance=provenance)
    if loss == "logistic":
        used = row_group >= 0
        return GroupSet(A=None, b=None, c=None, loss="logistic", x=x[used], y=y[used],
                        row_group=row_group[used], ridge=float(ridge), **common)
    return GroupSet(A=np.stack(A), b=np.stack(b), c=np.asarray(c), **common)


def groups_from_dataset(dataset: Any, by: str | Any, *, min_size: int = 30,
                        beta: Any = "uniform", split: str = "train",
                        ridge: float | None = None, loss: str = "squared") -> GroupSet:
    """Empirical groups from a ``userchoice.data.dataset.Dataset``: one per value of the
    per-user attribute ``by`` (e.g. ``"RAC1P"``; or an int array of labels, one per user of
    the split), on the ``split`` users (``"train"``, ``"test"`` or ``"all"``). Labels ``y``
    must be 1-D: regression (``loss="squared"``) or binary labels in {0, 1}
    (``loss="logistic"``, e.g. ACSEmployment; ``"auto"`` picks by the labels); ``ridge`` as in
    ``empirical_groups``."""
    splits = ("train", "test", "all")
    if split not in splits:
        raise ValueError(f"split must be one of {list(splits)}, got {split!r}")
    parts = ("train", "test") if split == "all" else (split,)
    x = np.concatenate([np.asarray(getattr(dataset, f"x_{p}")) for p in parts])
    y = np.concatenate([np.asarray(getattr(dataset, f"y_{p}")) for p in parts])
    if y.ndim != 1:
        raise ValueError(f"dataset: population groups need 1-D labels y, got y of "
                         f"shape {list(y.shape)}")
    if isinstance(by, str):
        known = list(dataset.attributes_train)
        if by not in known:
            raise ValueError(f"by: the dataset has no attribute {by!r}; it has {known}")
        labels = np.concatenate([np.asarray(getattr(dataset, f"attributes_{p}")[by])
                                 for p in parts])
        prefix = f"{by}="
    else:
        labels, prefix = np.asarray(by), ""
        if labels.shape != (x.shape[0],):
            raise ValueError(f"by must name an attribute or give one label per {split} user "
                             f"({x.shape[0]}), got shape {list(labels.shape)}")
    groups = empirical_groups(x, y, labels, beta=beta, min_size=min_size, ridge=ridge,
                              prefix=prefix, loss=loss)
    provenance = {**groups.provenance, "builder": "groups_from_dataset",
                  "by": by if isinstance(by, str) else "labels", "split": split,
                  "dataset": dict(getattr(dataset, "provenance", {}) or {})}
    return replace(groups, provenance=provenance)


def validate_allocation(allocation: Any, n_learners: int, n_groups: int,
                        name: str = "allocation") -> np.ndarray:
    """An [n, G] allocation: non-negative, finite, each group's column summing to 1."""
    value = np.asarray(allocation, float)
    if value.shape != (n_learners, n_groups):
        raise ValueError(f"{name} must have shape [n_learners={n_learners}, "
                         f"G={n_groups}], got {list(value.shape)}")
    if not np.all(np.isfinite(value)) or np.any(value < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    sums = value.sum(axis=0)
    if not np.allclose(sums, 1.0, rtol=0, atol=1e-6):
        j = int(np.argmax(np.abs(sums - 1)))
        raise ValueError(f"{name}: each group's column must sum to 1 over the learners; group "
                         f"{j} sums to {sums[j]:.6g}")
    return value


def initial_allocation(kind: str | Any, n_learners: int, n_groups: int, *, seed: int = 0,
                       scale: float = 1e-4) -> np.ndarray:
    """Initial allocation α⁰ [n, G]: ``"even"`` (every entry 1/n); ``"jitter"`` (Dean et al.'s
    experiment (b): α_ij ∝ 1 + scale·u_ij, u = ``default_rng(seed).random((n, G))``, each
    group normalised); or an explicit [n, G] array, validated (non-negative, columns sum
    to 1)."""
    for name, value in (("n_learners", n_learners), ("n_groups", n_groups)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(kind, str):
        if kind == "even":
            return np.full((n_learners, n_groups), 1.0 / n_learners)
        if kind == "jitter":
            if not (np.isfinite(scale) and scale >= 0):
                raise ValueError(f"scale must be a finite number ≥ 0, got {scale!r}")
            raw = 1.0 + scale * np.random.default_rng(seed).random((n_learners, n_groups))
            return raw / raw.sum(axis=0, keepdims=True)
        raise ValueError(f"allocation must be one of {list(ALLOCATIONS)} or an [n, G] array, "
                         f"got {kind!r}")
    return validate_allocation(kind, n_learners, n_groups)
