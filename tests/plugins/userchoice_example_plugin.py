"""A plug-in that lives outside ``userchoice``: one of each extension kind.

Importing this module registers a learner family, a choice rule, a probing source, a metric and
a dataset loader under short names; a YAML config may also name the classes by import path
(``userchoice_example_plugin:SquaredHinge``). Nothing in ``userchoice`` is edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from userchoice.choice import CHOICE_RULES, ChoiceDraws
from userchoice.data.dataset import Dataset
from userchoice.data.registry import DATASETS, DatasetEntry
from userchoice.families import FAMILIES
from userchoice.metrics import register
from userchoice.probing import SOURCES


@dataclass(frozen=True)
class SquaredHinge:
    """Linear classifier with the squared hinge loss max(0, 1 − (2y − 1)·s)²."""

    init_std: float = 0.01
    name: str = "squared_hinge"
    task: str = "classification"

    @property
    def train_scale(self) -> float:
        return 1.0

    def init(self, key: jax.Array, n_learners: int, n_features: int, dtype: Any) -> Any:
        return self.init_std * jax.random.normal(key, (n_learners, n_features), dtype)

    def score(self, theta: Any, x: jax.Array) -> jax.Array:
        return x @ theta

    def loss(self, score: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
        return jnp.maximum(0.0, 1.0 - (2.0 * y - 1.0) * score) ** 2

    def pseudo_label(self, score: jax.Array) -> jax.Array:
        return (score > 0).astype(score.dtype)


@dataclass(frozen=True)
class InverseLoss:
    """Users pick a learner with probability proportional to 1/(loss + 0.1) (sampled exactly by
    Gumbel-max on the log weights)."""

    def weights(self, losses: jax.Array) -> jax.Array:
        return -jnp.log(losses + 0.1)

    def draw(self, key, batch_size, n_learners, dtype) -> ChoiceDraws:
        return ChoiceDraws(gumbel=jax.random.gumbel(key, (batch_size, n_learners), dtype))

    def choose(self, losses, favourite, rank, draws, knobs) -> jax.Array:
        return jnp.argmax(self.weights(losses) + draws.gumbel, axis=-1).astype(jnp.int32)

    def probabilities(self, losses, favourite, rank, knobs) -> jax.Array:
        return jax.nn.softmax(self.weights(losses), axis=-1)


@dataclass(frozen=True)
class MeanScore:
    """Pseudo-labels from the mean score of all learners (an aggregate source: no κ)."""

    per_user = False

    def check(self, spec) -> None:
        return None

    def validate(self, spec, n_learners: int) -> None:
        return None

    def combine(self, spec, scores: jax.Array) -> jax.Array:
        return scores.mean(axis=0)


@register("worst_test_loss", kind="market", label="worst learner's test loss",
          meaning="the largest test loss over the learners")
def worst_test_loss(ev) -> jax.Array:
    return ev.test_losses.mean(axis=1).max()


def two_blobs(n_users: int = 600, dim: int = 3, test_fraction: float = 0.25,
              seed: int = 0) -> Dataset:
    """Two Gaussian blobs of users, labels from a linear rule; no preferences (the config's
    market section builds them)."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(dim)
    centre[0] = 2.5
    blob = rng.integers(0, 2, n_users)
    z = rng.standard_normal((n_users, dim)) + np.where(blob[:, None] == 1, centre, -centre)
    y = (z[:, 1] + 0.3 * z[:, 0] > 0).astype(float)
    x = np.concatenate([z, np.ones((n_users, 1))], axis=1)
    test = rng.random(n_users) < test_fraction
    return Dataset(x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test],
                   provenance={"source": "userchoice_example_plugin.two_blobs", "seed": seed})


FAMILIES.register("squared_hinge", SquaredHinge)
CHOICE_RULES.register("inverse_loss", InverseLoss())
SOURCES.register("mean_score", MeanScore())
DATASETS.register("two_blobs", DatasetEntry(name="two_blobs", loader=two_blobs, kind="dataset",
                                            description="two Gaussian blobs (example plug-in)"))
