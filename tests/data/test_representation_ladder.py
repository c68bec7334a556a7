"""The offline representation ladder: census ``n_features`` (nested feature subsets) and
amazon ``pca_components`` (the embeddings' first k principal components)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from userchoice.data.amazon import load_amazon
from userchoice.data.census import ACSEmployment, load_census, write_synthetic_acs
from userchoice.data.embeddings import HashingEmbedder
from userchoice.data.registry import get_dataset

# ------------------------------------------------------------------------------ census


@pytest.fixture(scope="module")
def person_file(tmp_path_factory) -> Path:
    return write_synthetic_acs(tmp_path_factory.mktemp("acs") / "psam_p01.csv", 400, seed=5)


@pytest.fixture(scope="module")
def full(person_file):
    return load_census(person_file, test_fraction=0.2)


def test_census_k_feature_design_is_the_first_k_columns(person_file, full):
    n = len(ACSEmployment.features)
    assert full.n_features == n and "n_features" not in full.provenance
    for k in (1, 4, n):
        ds = load_census(person_file, test_fraction=0.2, n_features=k)
        assert ds.feature_names == ACSEmployment.features[:k]
        np.testing.assert_array_equal(ds.x_train, full.x_train[:, :k])
        np.testing.assert_array_equal(ds.x_test, full.x_test[:, :k])
        np.testing.assert_array_equal(ds.y_train, full.y_train)
        for split in ("train", "test"):
            for name, values in getattr(full, f"attributes_{split}").items():
                np.testing.assert_array_equal(getattr(ds, f"attributes_{split}")[name], values)
        assert ds.provenance["n_features"] == k
        assert ds.provenance["task"]["features"] == list(ACSEmployment.features[:k])


@pytest.mark.parametrize("bad", [0, -1, 17, 2.0, True, "3"])
def test_census_n_features_out_of_range(person_file, bad):
    with pytest.raises(ValueError, match=r"n_features must be an integer from 1 to 16"):
        load_census(person_file, n_features=bad)


def test_census_n_features_is_a_loader_option(person_file):
    ds = get_dataset("census").load({"n_features": 2, "test_fraction": 0.2}, path=person_file)
    assert ds.feature_names == ("AGEP", "SCHL")


# ------------------------------------------------------------------------------ amazon

_WORDS = [f"w{i}" for i in range(300)]


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> list[Path]:
    """Two categories of 60 reviews of random words (a hashed bag of words of full rank)."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("amazon")
    paths = []
    for c, category in enumerate(("Gift_Cards", "Software")):
        lines = [json.dumps({"rating": float(rng.integers(1, 6)), "title": "",
                             "text": " ".join(rng.choice(_WORDS, 12)),
                             "user_id": f"U{c}_{i}", "timestamp": i})
                 for i in range(60)]
        path = folder / f"{category}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


D = 16


def _amazon(paths, **options):
    return load_amazon(paths, categories=["Gift_Cards", "Software"], n_per_category=60,
                       test_fraction=0.2, embedder=HashingEmbedder(dim=D), **options)


@pytest.fixture(scope="module")
def plain(reviews):
    return _amazon(reviews)


def test_amazon_pca_at_full_width_is_a_rotation(reviews, plain):
    assert "pca" not in plain.provenance
    ds = _amazon(reviews, pca_components=D)
    assert ds.x_train.shape == plain.x_train.shape  # D components + the intercept
    assert ds.feature_names == (*(f"pc{i}" for i in range(D)), "intercept")
    assert np.all(ds.x_train[:, -1] == 1)
    for split in ("x_train", "x_test"):  # same pairwise distances: an orthogonal map
        np.testing.assert_allclose(pdist(getattr(ds, split)[:, :-1]),
                                   pdist(getattr(plain, split)[:, :-1]), rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(ds.y_train, plain.y_train)


def test_amazon_pca_components_are_nested_with_non_increasing_variance(reviews, plain):
    z = plain.x_train[:, :-1]  # the standardised training embeddings
    total = z.var(axis=0, ddof=1).sum()
    previous = None
    cumulative = []
    for k in (2, 8, D):
        ds = _amazon(reviews, pca_components=k)
        ratios = np.asarray(ds.provenance["pca"]["explained_variance_ratio"])
        assert len(ratios) == k and np.all(np.diff(ratios) <= 1e-12)
        pcs = ds.x_train[:, :-1]
        # the projection's columns: centred, uncorrelated, variance = explained variance
        np.testing.assert_allclose(pcs.mean(0), 0, atol=1e-9)
        cov = np.cov(pcs, rowvar=False)
        np.testing.assert_allclose(cov, np.diag(ratios * total), atol=1e-8)
        if previous is not None:  # the first components do not depend on k
            np.testing.assert_allclose(pcs[:, :previous.shape[1]], previous, atol=1e-8)
        previous = pcs
        cumulative.append(ratios.sum())
    assert np.all(np.diff(cumulative) > 0) and cumulative[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("bad, match", [
    (0, "must be a positive integer"), (True, "must be a positive integer"),
    (2.5, "must be a positive integer"), (D + 1, r"exceeds the embedding width \(16\)"),
])
def test_amazon_pca_components_out_of_range(reviews, bad, match):
    with pytest.raises(ValueError, match=f"pca_components.*{match}"):
        _amazon(reviews, pca_components=bad)


def test_amazon_pca_is_deterministic_and_a_loader_option(reviews):
    entry = get_dataset("amazon")
    assert "pca_components" in entry.options()
    a, b = (_amazon(reviews, pca_components=4) for _ in range(2))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
