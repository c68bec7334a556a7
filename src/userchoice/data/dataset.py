"""Dataset: train/test arrays, feature names, per-user attributes and provenance.

A dataset knows nothing of learners or preferences; ``userchoice.market`` adds those."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from userchoice.reprs import SummaryRepr, number, short_list


def _as_2d(name: str, x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n_users, n_features], got shape {x.shape}")
    return x


@dataclass(frozen=True, repr=False)
class Dataset(SummaryRepr):
    """Users z = (x, y) split into train and test; ``w`` is an optional rated mask [N, m]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    w_train: np.ndarray | None = None
    w_test: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    # Per-user side information that is not a feature (e.g. category, raw age), one array each.
    attributes_train: dict[str, np.ndarray] = field(default_factory=dict)
    attributes_test: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x_train = _as_2d("x_train", self.x_train)
        x_test = _as_2d("x_test", self.x_test)
        if x_train.shape[1] != x_test.shape[1]:
            raise ValueError(
                f"x_test has {x_test.shape[1]} features but x_train has {x_train.shape[1]}"
            )
        if x_train.shape[0] < 1 or x_test.shape[0] < 1:
            raise ValueError("x_train and x_test need at least one user each")
        for split, x, y, w in (
            ("train", x_train, self.y_train, self.w_train),
            ("test", x_test, self.y_test, self.w_test),
        ):
            y = np.asarray(y)
            if y.shape[:1] != x.shape[:1] or y.ndim not in (1, 2):
                raise ValueError(
                    f"y_{split} must have shape [{x.shape[0]}] or [{x.shape[0]}, m] to match "
                    f"x_{split}, got {y.shape}"
                )
            if w is not None and np.shape(w) != y.shape:
                raise ValueError(f"w_{split} must have the shape of y_{split} {y.shape}, "
                                 f"got {np.shape(w)}")
        if (self.w_train is None) != (self.w_test is None):
            raise ValueError("w_train and w_test must both be given or both be None")
        if np.asarray(self.y_train).shape[1:] != np.asarray(self.y_test).shape[1:]:
            raise ValueError("y_train and y_test must have the same trailing shape")
        for split, attrs, rows in (("train", self.attributes_train, x_train.shape[0]),
                                   ("test", self.attributes_test, x_test.shape[0])):
            for name, values in attrs.items():
                if len(values) != rows:
                    raise ValueError(f"attributes_{split}[{name!r}] has {len(values)} entries "
                                     f"for {rows} users")
        if set(self.attributes_train) != set(self.attributes_test):
            raise ValueError("attributes_train and attributes_test must name the same attributes")
        if self.feature_names and len(self.feature_names) != x_train.shape[1]:
            raise ValueError(
                f"feature_names has {len(self.feature_names)} names for {x_train.shape[1]} features"
            )

    @property
    def n_features(self) -> int:
        return int(np.shape(self.x_train)[1])

    @property
    def n_train(self) -> int:
        return int(np.shape(self.x_train)[0])

    @property
    def name(self) -> str:
        """What the provenance calls the data (``"dataset"``, else ``"source"``)."""
        return str(self.provenance.get("dataset") or self.provenance.get("source") or "dataset")

    def _summary_rows(self) -> list[tuple[str, str]]:
        y = np.asarray(self.y_train)
        labels = f"scalar {y.dtype}" if y.ndim == 1 else f"{y.shape[1]} outputs, {y.dtype}"
        if self.w_train is not None:
            labels += f", rated mask ({np.mean(np.asarray(self.w_train) != 0):.1%} rated)"
        rows = [("name", repr(self.name)),
                ("train", f"{number(self.n_train)} users × {self.n_features} features"),
                ("test", f"{number(np.shape(self.x_test)[0])} users"),
                ("labels", labels)]
        if self.feature_names:
            rows.append(("features", short_list(self.feature_names)))
        if self.attributes_train:
            rows.append(("attributes", short_list(self.attributes_train)))
        files = self.provenance.get("files") or []
        if files:
            rows.append(("files", f"{len(files)}"))
        return rows
