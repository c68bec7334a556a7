"""The users of a share-competition market: features, labels and (optional) point weights.

``x`` includes the constant bias feature (the predictors f_j(x) = θ_jᵀx have no bias of their
own; ``with_bias`` appends one). Data may be shared by every run ([N, d], [N]) or carry a
leading run axis ([R, N, d], [R, N]): runs that differ by their data (a sweep over σ in
setting 2, seeds that redraw the points) go through one compiled program as long as the shapes
agree (``stack_data``; a representation of fewer features can be zero-padded, which leaves the
model unchanged: a zero feature never moves a score).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.engine.spec import as_array


class DataArrays(NamedTuple):
    """One run's data as device arrays (``weight`` sums to 1)."""

    x: jax.Array  # [N, d]
    y: jax.Array  # [N] int32
    weight: jax.Array  # [N]


@dataclass(frozen=True)
class EquilibriumData:
    """Users x [N, d] (or [R, N, d]), labels y [N] (or [R, N]) in 0 … n_classes − 1, and
    point weights (default uniform; normalised to sum to 1 per run: E_x is Σ_x weight(x)·…).

    ``n_classes``: default max(y) + 1, at least 2. ``name``, ``provenance`` (JSON-able): how
    the data were made.
    """

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None = None
    n_classes: int | None = None
    name: str = "data"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x = np.asarray(self.x, float)
        if x.ndim not in (2, 3) or 0 in x.shape:
            raise ValueError(f"x must have shape [N, d] or [R, N, d] (non-empty), got "
                             f"{list(x.shape)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x must be finite")
        y_raw = np.asarray(self.y)
        if y_raw.shape != x.shape[:-1]:
            raise ValueError(f"y must have shape {list(x.shape[:-1])} (one label per row of x), "
                             f"got {list(y_raw.shape)}")
        if y_raw.dtype.kind not in "iub" and not np.all(np.mod(y_raw, 1) == 0):
            raise ValueError("y must hold integer class labels")
        y = y_raw.astype(np.int64)
        if np.any(y < 0):
            raise ValueError(f"y must hold labels ≥ 0, got {int(y.min())}")
        k = max(2, int(y.max()) + 1) if self.n_classes is None else self.n_classes
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 2:
            raise ValueError(f"n_classes must be an integer ≥ 2, got {self.n_classes!r}")
        if int(y.max()) >= k:
            raise ValueError(f"y holds label {int(y.max())}, outside 0 … n_classes − 1 = {k - 1}")
        if self.weight is None:
            weight = np.full(y.shape, 1.0 / y.shape[-1])
        else:
            weight = np.asarray(self.weight, float)
            if weight.shape != y.shape:
                raise ValueError(f"weight must have shape {list(y.shape)}, got "
                                 f"{list(weight.shape)}")
            if not np.all(np.isfinite(weight) & (weight >= 0)):
                raise ValueError("weight must be finite and ≥ 0")
            total = weight.sum(axis=-1, keepdims=True)
            if np.any(total <= 0):
                raise ValueError("weight must have a positive sum (per run)")
            weight = weight / total
        for name, value in (("x", x), ("y", y), ("weight", weight)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "n_classes", int(k))
        object.__setattr__(self, "provenance", dict(self.provenance))

    @property
    def per_run(self) -> bool:
        """Whether the data carry a leading run axis."""
        return self.x.ndim == 3

    @property
    def n_runs(self) -> int | None:
        """Runs the data were made for (None: shared by every run)."""
        return int(self.x.shape[0]) if self.per_run else None

    @property
    def n_points(self) -> int:
        return int(self.x.shape[-2])

    @property
    def dim(self) -> int:
        return int(self.x.shape[-1])

    def run(self, index: int) -> EquilibriumData:
        """One run's data, without the run axis (shared data: itself)."""
        if not self.per_run:
            return self
        return EquilibriumData(self.x[index], self.y[index], self.weight[index], self.n_classes,
                               self.name, self.provenance)

    def arrays(self, dtype: Any = jnp.float32) -> DataArrays:
        """The device arrays (with the run axis, if any)."""
        return DataArrays(as_array(self.x, dtype), as_array(self.y, jnp.int32),
                          as_array(self.weight, dtype))

    def __repr__(self) -> str:
        runs = f"R={self.n_runs}, " if self.per_run else ""
        return (f"EquilibriumData({self.name!r}, {runs}N={self.n_points}, d={self.dim}, "
                f"K={self.n_classes})")


def with_bias(x: Any) -> np.ndarray:
    """``x`` with a constant 1 appended as its last feature."""
    x = np.asarray(x, float)
    return np.concatenate([x, np.ones((*x.shape[:-1], 1))], axis=-1)


def from_dataset(dataset: Any, *, split: str = "train", bias: bool = True,
                 name: str | None = None) -> EquilibriumData:
    """Bring-your-own features: the users of a ``userchoice`` ``Dataset`` split (``"train"``,
    ``"test"`` or ``"all"``), their integer class labels, with a bias feature appended unless
    ``bias=False`` (the features already hold one)."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    parts = ("train", "test") if split == "all" else (split,)
    x = np.concatenate([np.asarray(getattr(dataset, f"x_{p}"), float) for p in parts])
    y = np.concatenate([np.asarray(getattr(dataset, f"y_{p}")) for p in parts])
    if y.ndim != 1:
        raise ValueError(f"the dataset's labels must be one class label per user, got shape "
                         f"{list(y.shape)}")
    provenance = {"from_dataset": dict(getattr(dataset, "provenance", {}) or {}),
                  "split": split, "bias": bool(bias)}
    return EquilibriumData(with_bias(x) if bias else x, y, name=name or "dataset",
                           provenance=provenance)


def stack_data(datasets: Sequence[EquilibriumData], name: str | None = None) -> EquilibriumData:
    """Per-run data from one shared data set per run (all of one shape and class count)."""
    datasets = list(datasets)
    if not datasets:
        raise ValueError("stack_data needs at least one data set")
    first = datasets[0]
    for i, d in enumerate(datasets):
        if d.per_run:
            raise ValueError(f"datasets[{i}] already has a run axis")
        if d.x.shape != first.x.shape or d.n_classes != first.n_classes:
            raise ValueError(f"datasets[{i}] has shape {list(d.x.shape)} and {d.n_classes} "
                             f"classes; datasets[0] has {list(first.x.shape)} and "
                             f"{first.n_classes} (pad features to one width first)")
    return EquilibriumData(
        np.stack([d.x for d in datasets]), np.stack([d.y for d in datasets]),
        np.stack([d.weight for d in datasets]), first.n_classes, name or first.name,
        {"stacked": [d.provenance for d in datasets]})
