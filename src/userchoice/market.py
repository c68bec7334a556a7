"""Market: a dataset plus every user's preferences over the learners (train and test).

``make_market`` builds one from a dataset and a preference construction (SPEC §6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from userchoice.data.dataset import Dataset
from userchoice.preferences import Preferences, preferences_from_data
from userchoice.reprs import SummaryRepr, number, short_list


@dataclass(frozen=True, repr=False)
class Market(SummaryRepr):
    """What the engine runs on: a dataset plus every user's preferences (train and test).

    Test users carry preferences too, so expected market shares, local losses and the
    potential Φ can be measured on the held-out sample.
    """

    dataset: Dataset
    preferences_train: Preferences
    preferences_test: Preferences
    name: str = "market"
    provenance: dict[str, Any] = field(default_factory=dict)  # how preferences were built

    def __post_init__(self) -> None:
        ds = self.dataset
        if len(self.preferences_train) != ds.n_train:
            raise ValueError(
                f"preferences_train has {len(self.preferences_train)} users, "
                f"x_train has {ds.n_train}"
            )
        if len(self.preferences_test) != np.shape(ds.x_test)[0]:
            raise ValueError(
                f"preferences_test has {len(self.preferences_test)} users, "
                f"x_test has {np.shape(ds.x_test)[0]}"
            )
        if self.preferences_train.n_learners != self.preferences_test.n_learners:
            raise ValueError("preferences_train and preferences_test rank different learner counts")

    @property
    def n_learners(self) -> int:
        return self.preferences_train.n_learners

    def _summary_rows(self) -> list[tuple[str, str]]:
        ds = self.dataset
        rows = [("name", repr(self.name)), ("data", repr(ds.name)),
                ("learners", str(self.n_learners)),
                ("train", f"{number(ds.n_train)} users × {ds.n_features} features"),
                ("test", f"{number(np.shape(ds.x_test)[0])} users")]
        if self.provenance.get("mode"):
            rows.append(("preferences", str(self.provenance["mode"])))
        shares = self.preferences_train.favourite_shares()
        rows.append(("favourite_shares", short_list(f"{s:.3g}" for s in shares)))
        return rows


def make_market(dataset: Dataset, preferences: str, n_learners: int, *,
                attribute: str | None = None, name: str | None = None, **options: Any) -> Market:
    """A market from a dataset and a preference construction (``preferences_from_data``).

    ``attribute`` names the per-user attribute used by ``category`` / ``feature`` preferences
    (e.g. ``"category"``, ``"AGEP"``).
    """
    attr_train = attr_test = None
    if attribute is not None:
        if attribute not in dataset.attributes_train:
            raise ValueError(f"attribute {attribute!r} not in the dataset; it has "
                             f"{sorted(dataset.attributes_train)}")
        attr_train = dataset.attributes_train[attribute]
        attr_test = dataset.attributes_test[attribute]
    train, test, record = preferences_from_data(
        preferences, n_learners, np.asarray(dataset.x_train), np.asarray(dataset.x_test),
        attribute_train=attr_train, attribute_test=attr_test, **options)
    record["attribute"] = attribute
    return Market(dataset, train, test, name=name or f"{preferences}", provenance=record)
