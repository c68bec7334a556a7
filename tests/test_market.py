"""Preference constructions from data (SPEC §6), checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from userchoice.data.dataset import Dataset
from userchoice.market import make_market
from userchoice.preferences import preferences_from_data


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(5, 3))
    x = centres[rng.integers(0, 5, 1200)] + rng.normal(size=(1200, 3))
    return x[:1000], x[1000:]


def test_clusters_follow_kmeans_and_rank_by_distance(features):
    x_train, x_test = features
    train, test, record = preferences_from_data("clusters", 5, x_train, x_test, seed=42)
    scaler = StandardScaler().fit(x_train)
    model = KMeans(n_clusters=5, random_state=42, n_init=10).fit(scaler.transform(x_train))
    np.testing.assert_array_equal(train.favourite, model.labels_)
    np.testing.assert_array_equal(test.favourite, model.predict(scaler.transform(x_test)))
    distances = model.transform(scaler.transform(x_train))
    order = np.argsort(train.rank, axis=1)  # learners from favourite to least preferred
    ranked = np.take_along_axis(distances, order, axis=1)
    assert np.all(np.diff(ranked, axis=1) >= 0)
    assert sum(record["train_shares"]) == pytest.approx(1.0)


def test_leader_gives_exactly_the_majority_share_to_learner_zero(features):
    x_train, x_test = features
    train, test, _ = preferences_from_data("leader", 5, x_train, x_test, seed=3)
    assert (train.favourite == 0).sum() == round(0.8 * len(x_train))
    assert (test.favourite == 0).sum() == round(0.8 * len(x_test))
    # The rest are spread over learners 1..4 by k-means: all of them are used.
    assert set(np.unique(train.favourite[train.favourite != 0])) == {1, 2, 3, 4}
    other, _, _ = preferences_from_data("leader", 5, x_train, x_test, seed=4)
    assert not np.array_equal(train.favourite, other.favourite)
    again, _, _ = preferences_from_data("leader", 5, x_train, x_test, seed=3)
    np.testing.assert_array_equal(train.favourite, again.favourite)


@pytest.mark.parametrize("n", [3, 5, 6])
def test_majority_splits_the_share_equally_among_half_the_learners(features, n):
    x_train, x_test = features
    train, _, _ = preferences_from_data("majority", n, x_train, x_test, seed=1)
    half = -(-n // 2)
    counts = np.bincount(train.favourite, minlength=n)
    assert counts[:half].sum() == round(0.8 * len(x_train))
    assert counts[:half].max() - counts[:half].min() <= 1
    assert counts[half:].sum() == len(x_train) - counts[:half].sum()


def test_category_and_feature_bins():
    x = np.zeros((6, 2))
    cats = np.array(["b", "a", "c", "a", "b", "c"])
    train, _, record = preferences_from_data("category", 3, x, x[:3], attribute_train=cats,
                                                attribute_test=cats[:3])
    np.testing.assert_array_equal(train.favourite, [1, 0, 2, 0, 1, 2])
    assert record["categories"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"categories \['z'\] outside"):
        preferences_from_data("category", 3, x, x[:1], attribute_train=cats,
                              attribute_test=np.array(["z"]))
    with pytest.raises(ValueError, match="n_learners = number of categories"):
        preferences_from_data("category", 2, x, x, attribute_train=cats, attribute_test=cats)

    ages = np.array([18, 25, 39, 40, 60, 90])
    train, _, _ = preferences_from_data("feature", 5, x, x, attribute_train=ages,
                                        attribute_test=ages, thresholds=(25, 40, 55, 65))
    np.testing.assert_array_equal(train.favourite, [0, 1, 1, 2, 3, 4])
    # Second choice is an adjacent age band.
    second = np.argsort(train.rank, axis=1)[:, 1]
    assert np.all(np.abs(second - train.favourite) == 1)


def test_bad_construction_arguments_are_named(features):
    x_train, x_test = features
    with pytest.raises(ValueError, match="preferences must be one of"):
        preferences_from_data("random", 3, x_train, x_test)
    with pytest.raises(ValueError, match="majority_share"):
        preferences_from_data("leader", 3, x_train, x_test, majority_share=1.5)
    with pytest.raises(ValueError, match="need attribute_train"):
        preferences_from_data("category", 3, x_train, x_test)


def test_make_market_uses_dataset_attributes(features):
    x_train, x_test = features
    ds = Dataset(x_train, np.zeros(len(x_train)), x_test, np.zeros(len(x_test)),
                 attributes_train={"age": np.linspace(18, 90, len(x_train))},
                 attributes_test={"age": np.linspace(18, 90, len(x_test))})
    market = make_market(ds, "feature", 3, attribute="age", thresholds=(40, 60))
    assert market.n_learners == 3 and market.provenance["attribute"] == "age"
    with pytest.raises(ValueError, match="attribute 'income' not in the dataset"):
        make_market(ds, "feature", 3, attribute="income", thresholds=(40, 60))
