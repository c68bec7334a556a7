"""Amazon reviews: one user per review, x = sentence embedding of its text, y = 1[rating ≥ 4].

Readers (one JSON object per line, plain or gzip, streamed line by line):

- **Amazon Reviews 2023** per-category files ``<Category>.jsonl`` (fields ``rating``, ``title``,
  ``text``, ``asin``, ``user_id``, …); the category is the file name (``All_Beauty.jsonl`` →
  ``All_Beauty``).
- **flat multi-category** JSONL in the 2023 field names plus a ``category`` field on each line
  (e.g. the ``reviews_flat.jsonl.gz`` substitute); a record's own ``category`` wins over the
  file name.
- **Amazon Review Data 2018** (``overall``, ``reviewText``, ``summary``); the category is the
  file name without a 5-core suffix (``All_Beauty_5.json.gz`` → ``All_Beauty``).

Text. By default only the review body (``text`` / ``reviewText``) is embedded, as in the paper's
scripts. ``text_fields=("title", "text")`` embeds ``title + " " + text`` instead (``summary`` is
the 2018 title). The body is the default for a second reason: 2018 titles are often generated
from the star rating ("Five Stars", "One Star": 1,552 of 5,269 All_Beauty 5-core reviews), which
would leak the label into the features.

Records without text. The 2018 release omits ``reviewText`` on some reviews (5 of the 5,269
All_Beauty 5-core records). Such records, and any whose chosen text is empty or only
whitespace, are skipped and counted (``missing_text="skip"``, the default) or rejected
(``missing_text="error"``). A 2023 line without a ``text`` field, a line without a rating, a
rating that is not a number from 1 to 5 or a line that is not JSON is always a format error
naming the file and line.

Duplicates. A review present twice (the same reviewer, time, rating, title and text in one
category: an exact repeat, or the 2018 5-core files' copies of one review under several product
variants) is one user: repeats are dropped before sampling, so no review can be both a training
and a test user, and counted in the provenance (``duplicates_dropped``). Records without a
reviewer id or time are repeats only when the whole record repeats.

Sampling follows the paper: read at most ``max_lines_per_category`` lines (records) of each
category (3·3,333 = 9,999: the first lines of a per-category file), then draw
``min(available, n_per_category)`` of them per category without replacement, the rows pandas'
``DataFrame.sample(n, random_state=seed)`` would draw. Test users are a split stratified by
category; embeddings are standardised with training statistics, then a constant 1 column is
appended (``intercept=True``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from userchoice.data import common
from userchoice.data.common import (
    DataFormatError,
    DatasetNotFoundError,
    check_nonempty,
    file_record,
    open_text,
    split_indices,
)
from userchoice.data.dataset import Dataset
from userchoice.data.embeddings import Embedder, make_embedder

PAPER_CATEGORIES: tuple[str, ...] = (
    "All_Beauty", "Gift_Cards", "Magazine_Subscriptions", "Digital_Music",
    "Musical_Instruments", "Handmade_Products", "Software", "Industrial_and_Scientific",
    "Subscription_Boxes",
)
PAPER_N_PER_CATEGORY = 3333
PAPER_MAX_LINES = 3 * PAPER_N_PER_CATEGORY
TEXT_FIELDS = ("title", "text")
MISSING_TEXT = ("skip", "error")
FILE_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.json.gz")
FETCH_HINT = ("Get it with:  userchoice data fetch amazon --category All_Beauty ...\n"
              "or use a local copy:  userchoice data import amazon /path/to/All_Beauty.jsonl")
EXPECTED_FIELDS = ("one JSON object per line with 'rating' and 'text' (Amazon Reviews 2023) "
                   "or 'overall' and 'reviewText' (Amazon Review Data 2018)")
# (rating field, title field, text field) of each release.
_FORMATS = {"2023": ("rating", "title", "text"), "2018": ("overall", "summary", "reviewText")}


class MissingCategoryError(DatasetNotFoundError):
    """Requested Amazon categories are absent from the input files."""

    def __init__(self, missing: Sequence[str], present: Sequence[str],
                 files: Sequence[Path]) -> None:
        read = "\n  ".join(str(p) for p in files) or "(no files)"
        fetch = " ".join(f"--category {c}" for c in missing)
        message = (f"Amazon categories not found in the input: {', '.join(missing)}\n"
                   f"read:\n  {read}\n"
                   f"categories present: {', '.join(present) or '(none)'}\n"
                   f"Get them with:  userchoice data fetch amazon {fetch}\n"
                   f"or choose categories that exist, or allow_missing_categories=True to run "
                   f"without them (the omission is recorded in the provenance).")
        FileNotFoundError.__init__(self, message)
        self.name = "amazon"
        self.missing = tuple(missing)


def category_from_path(path: str | Path) -> str:
    """The category a per-category file holds, from its name: ``All_Beauty.jsonl.gz`` and
    ``All_Beauty_5.json.gz`` (a 2018 5-core file) → ``All_Beauty``."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return re.sub(r"_5$", "", name)


@dataclass
class Reviews:
    """Reviews read from files, one entry per kept review (parallel lists/arrays)."""

    category: list[str] = field(default_factory=list)
    rating: list[float] = field(default_factory=list)
    title: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    file: list[int] = field(default_factory=list)  # index into ``files``
    line: list[int] = field(default_factory=list)  # 1-based line number in that file
    key: list[tuple] = field(default_factory=list)  # the review's identity (see ``_review_key``)
    files: list[dict[str, Any]] = field(default_factory=list)  # per-file reading record

    def __len__(self) -> int:
        return len(self.rating)

    def texts(self, text_fields: Sequence[str] = ("text",)) -> list[str]:
        """The text to embed for each review: the chosen fields joined by one space."""
        _check_text_fields(text_fields)
        return [_compose(self.title[i], self.text[i], text_fields) for i in range(len(self))]

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.category))

    def first_occurrences(self) -> np.ndarray:
        """Indices of the reviews whose key was not seen earlier (file order): each review once."""
        seen: set[tuple] = set()
        keep = []
        for i, key in enumerate(self.key):
            if key not in seen:
                seen.add(key)
                keep.append(i)
        return np.asarray(keep, dtype=np.int64)


def _check_text_fields(text_fields: Sequence[str]) -> tuple[str, ...]:
    fields = tuple(text_fields)
    if not fields or any(f not in TEXT_FIELDS for f in fields) or len(set(fields)) != len(fields):
        raise ValueError(f"text_fields must be a non-empty selection of {list(TEXT_FIELDS)} "
                         f"(in order), got {list(text_fields)}")
    return fields


def _compose(title: str, text: str, text_fields: Sequence[str]) -> str:
    parts = {"title": title.strip(), "text": text.strip()}
    return " ".join(parts[f] for f in text_fields if parts[f])


def _rating(path: Path, line: int, record: dict, field_name: str) -> float:
    value = record[field_name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 1 <= value <= 5:
        raise DataFormatError(path, f"{field_name} is {value!r}", line=line,
                              column=field_name, expected="a star rating from 1 to 5")
    return float(value)


def _string(path: Path, line: int, record: dict, field_name: str) -> str:
    value = record.get(field_name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataFormatError(path, f"{field_name} is a {type(value).__name__}", line=line,
                              column=field_name, expected="a string")
    return value


def _parse(path: Path, line: int, raw: str) -> dict:
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as error:
        raise DataFormatError(path, f"is not valid JSON ({error.msg} at column {error.colno})",
                              line=line, expected=EXPECTED_FIELDS) from error
    if not isinstance(record, dict):
        raise DataFormatError(path, f"holds a JSON {type(record).__name__}, not an object",
                              line=line, expected=EXPECTED_FIELDS)
    return record


_REVIEWER_FIELDS = ("user_id", "reviewerID")
_TIME_FIELDS = ("timestamp", "unixReviewTime", "timestamp_ms")


def _review_key(category: str, record: dict, rating: float, title: str, text: str) -> tuple:
    """Who wrote what when: (category, reviewer, time, rating, title, text); a record with no
    reviewer id or time is identified by its whole content."""
    reviewer = next((record[f] for f in _REVIEWER_FIELDS if record.get(f) is not None), None)
    when = next((record[f] for f in _TIME_FIELDS if record.get(f) is not None), None)
    if reviewer is None or when is None:
        return (category, "record", json.dumps(record, sort_keys=True, default=str))
    return (category, str(reviewer), str(when), rating, title, text)


def _review_fields(path: Path, number: int, record: dict) -> tuple[str, float, str, str]:
    """(release, rating, title, text) of one record, checked (``DataFormatError`` otherwise)."""
    if "rating" in record:
        release = "2023"
    elif "overall" in record:
        release = "2018"
    else:
        raise DataFormatError(path, f"has no rating (fields: {sorted(record)[:12]})",
                              line=number, expected=EXPECTED_FIELDS)
    rating_field, title_field, text_field = _FORMATS[release]
    if release == "2023" and "text" not in record:
        raise DataFormatError(path, "has a rating but no 'text' field",
                              line=number, column="text", expected=EXPECTED_FIELDS)
    rating = _rating(path, number, record, rating_field)
    title = _string(path, number, record, title_field)
    text = _string(path, number, record, text_field)
    return release, rating, title, text


def _record_category(path: Path, number: int, record: dict, default: str) -> str:
    category = record.get("category", default)
    if not isinstance(category, str) or not category:
        raise DataFormatError(path, f"category is {category!r}", line=number,
                              column="category", expected="a category name")
    return category


def verify_file(path: str | Path) -> dict[str, Any]:
    """What ``userchoice data import amazon`` checks before it replaces anything: the whole file
    decompressed and every line a review record (JSON object, category, a 1–5 rating, text
    fields of the right type). ``DataFormatError`` otherwise; returns a summary. Streams: the
    records are not kept."""
    path = Path(path)
    default = category_from_path(path)
    counts: Counter[str] = Counter()
    formats: set[str] = set()
    lines = 0
    with open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            lines = number
            if not raw.strip():
                continue
            record = _parse(path, number, raw)
            category = _record_category(path, number, record, default)
            release, *_ = _review_fields(path, number, record)
            formats.add(release)
            counts[category] += 1
    check_nonempty(path, sum(counts.values()), "reviews")
    return {"lines": lines, "reviews": dict(counts), "formats": sorted(formats)}


def _first_record(path: Path) -> dict | None:
    with open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                return _parse(path, number, raw)
    return None


def read_reviews(paths: Iterable[str | Path], *, categories: Sequence[str] | None = None,
                 max_lines_per_category: int | None = PAPER_MAX_LINES,
                 text_fields: Sequence[str] = ("text",),
                 missing_text: str = "skip") -> Reviews:
    """Stream reviews from JSONL files (2023 per-category, flat multi-category or 2018).

    Keeps reviews of ``categories`` (all if None), at most ``max_lines_per_category`` lines
    (records) of each category across all files, in file order; reading a file stops as soon
    as nothing more can be kept, so only the first lines of a large file are read. Per-category
    files of other categories are not read. ``text_fields`` decides what "no text" means (see
    the module docstring for ``missing_text``).
    """
    fields = _check_text_fields(text_fields)
    if missing_text not in MISSING_TEXT:
        raise ValueError(f"missing_text must be one of {list(MISSING_TEXT)}, got {missing_text!r}")
    if max_lines_per_category is not None and max_lines_per_category < 1:
        raise ValueError(f"max_lines_per_category must be >= 1 or None, got "
                         f"{max_lines_per_category}")
    wanted = None if categories is None else set(categories)
    cap = math.inf if max_lines_per_category is None else max_lines_per_category
    seen: Counter[str] = Counter()  # lines read per category (the cap counts these)
    out = Reviews()

    def full(category: str) -> bool:
        return seen[category] >= cap

    for path in (Path(p) for p in paths):
        stem_category = category_from_path(path)
        first = _first_record(path)
        if first is None:
            check_nonempty(path, 0, "reviews")
        flat = isinstance(first, dict) and "category" in first
        unwanted = wanted is not None and stem_category not in wanted
        if not flat and (unwanted or full(stem_category)):
            reason = "not requested" if unwanted else "already full"
            out.files.append({"path": str(path), "bytes": path.stat().st_size,
                              "status": f"not read (category {stem_category!r} {reason})"})
            continue
        record_info: dict[str, Any] = {**file_record(path), "category_from":
                                       "records" if flat else "file name",
                                       "formats": [], "lines_read": 0, "kept": 0,
                                       "skipped_no_text": 0, "stopped_early": False}
        out.files.append(record_info)
        index = len(out.files) - 1
        formats: set[str] = set()
        skipped = 0
        with open_text(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if (wanted is not None and all(full(c) for c in wanted)) or \
                        (not flat and full(stem_category)):
                    record_info["stopped_early"] = True
                    break
                record_info["lines_read"] = number
                if not raw.strip():
                    continue
                record = _parse(path, number, raw)
                category = _record_category(path, number, record, stem_category)
                if (wanted is not None and category not in wanted) or full(category):
                    continue
                seen[category] += 1
                release, rating, title, text = _review_fields(path, number, record)
                formats.add(release)
                if not _compose(title, text, fields):
                    if missing_text == "error":
                        raise DataFormatError(path, f"review has no text in {list(fields)}",
                                              line=number, column=_FORMATS[release][2],
                                              expected="a non-empty review text")
                    skipped += 1
                    continue
                out.category.append(category)
                out.rating.append(rating)
                out.title.append(title)
                out.text.append(text)
                out.file.append(index)
                out.line.append(number)
                out.key.append(_review_key(category, record, rating, title, text))
                record_info["kept"] += 1
        record_info["formats"] = sorted(formats)
        record_info["skipped_no_text"] = skipped
        record_info["status"] = "read"
    return out


def find_amazon_files(root: str | Path | None = None) -> list[Path]:
    """Review files in ``<data dir>/amazon`` (``*.jsonl[.gz]``, ``*.json[.gz]``; hidden files
    and 2023 ``meta_*`` product files are ignored); DatasetNotFoundError if there are none."""
    folder = common.data_dir(root) / "amazon"
    files = _review_files(folder) if folder.is_dir() else []
    if not files:
        raise DatasetNotFoundError("amazon", [folder], FETCH_HINT)
    return files


def _review_files(folder: Path) -> list[Path]:
    found = {p for pattern in FILE_PATTERNS for p in folder.glob(pattern)}
    return sorted(p for p in found if p.is_file() and not p.name.startswith((".", "meta_")))


def _resolve_paths(paths: str | Path | Sequence[str | Path] | None,
                   root: str | Path | None) -> list[Path]:
    if paths is None:
        return find_amazon_files(root)
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            files = _review_files(path)
            if not files:
                raise DatasetNotFoundError("amazon", [path], FETCH_HINT)
            out.extend(files)
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not out:
        raise ValueError("paths is empty; pass review files or None for the data directory")
    return out


def sample_per_category(categories: np.ndarray, order: Sequence[str], n_per_category: int,
                        seed: int) -> np.ndarray:
    """Row indices: for each category in ``order``, ``min(available, n_per_category)`` rows
    drawn without replacement with ``RandomState(seed).choice`` (= pandas ``sample``)."""
    chosen = []
    for category in order:
        rows = np.flatnonzero(categories == category)
        k = min(len(rows), n_per_category)
        pick = np.random.RandomState(seed).choice(len(rows), size=k, replace=False)
        chosen.append(rows[pick])
    return np.concatenate(chosen) if chosen else np.zeros(0, int)


def load_amazon(
    paths: str | Path | Sequence[str | Path] | None = None,
    *,
    data_dir: str | Path | None = None,
    categories: Sequence[str] | None = PAPER_CATEGORIES,
    n_per_category: int = PAPER_N_PER_CATEGORY,
    max_lines_per_category: int | None = PAPER_MAX_LINES,
    test_fraction: float = 0.05,
    seed: int = 0,
    intercept: bool = True,
    standardise: bool = True,
    text_fields: Sequence[str] = ("text",),
    missing_text: str = "skip",
    allow_missing_categories: bool = False,
    embedder: Embedder | str | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    pca_components: int | None = None,
) -> Dataset:
    """Amazon review users (SPEC §7): embeddings of review text, label rating ≥ 4.

    ``paths``: review files or folders (default: ``<data dir>/amazon``). ``categories``: the
    categories to keep, in learner order (default the paper's 9; None = every category found).
    A requested category absent from the input is an error naming it, unless
    ``allow_missing_categories`` (then it is dropped and listed in the provenance).
    ``n_per_category`` reviews are sampled per category (fewer where fewer exist) with ``seed``,
    which also seeds the category-stratified test split. ``embedder``: an embedder object, a
    name (``"all-MiniLM-L6-v2"``, ``"hashing"``) or None for all-MiniLM-L6-v2 cached under
    ``cache_dir`` (default ``<data dir>/cache/embeddings``).

    Attributes per user: ``category`` (str), ``rating`` (stars), and where the review came
    from: ``file`` (index into ``provenance["files"]``) and ``line`` (1-based line number).

    ``pca_components``: project the (standardised) embeddings on their first k principal
    components, fitted on the training split (scikit-learn ``PCA``, ``svd_solver="full"``:
    deterministic), before the intercept is appended: a representation ladder (k = 2, 8, 32,
    384); k is at most the embedding width and the number of training reviews. None: the
    embeddings as they are.
    """
    if pca_components is not None and (isinstance(pca_components, bool) or not isinstance(
            pca_components, int | np.integer) or pca_components < 1):
        raise ValueError(f"data.options.pca_components must be a positive integer (at most "
                         f"the embedding width, 384 for MiniLM) or None, got "
                         f"{pca_components!r}")
    if categories is not None:
        categories = list(dict.fromkeys(categories))
        if not categories or not all(isinstance(c, str) and c for c in categories):
            raise ValueError(f"categories must be a non-empty list of names or None, got "
                             f"{categories!r}")
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    fields = _check_text_fields(text_fields)
    files = _resolve_paths(paths, data_dir)
    reviews = read_reviews(files, categories=categories,
                           max_lines_per_category=max_lines_per_category, text_fields=fields,
                           missing_text=missing_text)
    unique = reviews.first_occurrences()
    read_counts = reviews.counts()
    category_all = np.array(reviews.category, dtype=object)[unique]
    available = dict(Counter(category_all.tolist()))
    omitted: list[str] = []
    if categories is None:
        order = sorted(available)
    else:
        omitted = [c for c in categories if c not in available]
        if omitted and not allow_missing_categories:
            raise MissingCategoryError(omitted, sorted(available), files)
        order = [c for c in categories if c in available]
    if not order:
        raise MissingCategoryError(categories or ["(any)"], [], files)

    rows = unique[sample_per_category(category_all, order, n_per_category, seed)]
    category = np.array([reviews.category[i] for i in rows], dtype=str)
    rating = np.array([reviews.rating[i] for i in rows], float)
    y = (rating >= 4).astype(float)
    texts = [_compose(reviews.title[i], reviews.text[i], fields) for i in rows]
    attributes = {"category": category, "rating": rating,
                  "file": np.array([reviews.file[i] for i in rows], np.int64),
                  "line": np.array([reviews.line[i] for i in rows], np.int64)}

    n_test = math.ceil(test_fraction * len(rows))
    small = {c: int((category == c).sum()) for c in order if (category == c).sum() < 2}
    if small or n_test < len(order):
        raise ValueError(f"cannot split {len(rows)} reviews into a test set stratified by "
                         f"{len(order)} categories with test_fraction={test_fraction}: need at "
                         f"least 2 reviews per category (short: {small or 'none'}) and at least "
                         f"one test review per category; raise test_fraction or "
                         f"n_per_category")
    train, test = split_indices(len(rows), test_fraction, seed, stratify=category)

    model = make_embedder(embedder, cache_dir=cache_dir if cache_dir is not None else
                          common.data_dir(data_dir) / "cache" / "embeddings",
                          batch_size=batch_size, device=device)
    hits0, misses0 = getattr(model, "hits", 0), getattr(model, "misses", 0)
    vectors = np.asarray(model.embed(texts), np.float64)
    x_train, x_test = vectors[train], vectors[test]
    if standardise:
        x_train, x_test, _ = common.standardise(x_train, x_test)
    names = [f"emb{i}" for i in range(vectors.shape[1])]
    pca = None
    if pca_components is not None:
        k = int(pca_components)
        if k > min(vectors.shape[1], len(train)):
            raise ValueError(f"data.options.pca_components={k} exceeds the embedding width "
                             f"({vectors.shape[1]}) or the training reviews ({len(train)})")
        from sklearn.decomposition import PCA

        fitted = PCA(n_components=k, svd_solver="full").fit(x_train)
        x_train, x_test = fitted.transform(x_train), fitted.transform(x_test)
        names = [f"pc{i}" for i in range(k)]
        pca = {"components": k, "fitted_on": "train", "svd_solver": "full",
               "explained_variance_ratio": fitted.explained_variance_ratio_.tolist()}
    if intercept:
        x_train = np.concatenate([x_train, np.ones((len(train), 1))], axis=1)
        x_test = np.concatenate([x_test, np.ones((len(test), 1))], axis=1)
        names.append("intercept")

    per_category = {}
    for c in order:
        mask = category == c
        per_category[c] = {
            "available": available[c], "duplicates_dropped": read_counts[c] - available[c],
            "sampled": int(mask.sum()),
            "train": int(mask[train].sum()), "test": int(mask[test].sum()),
            "label_rate": float(y[mask].mean()),
        }
    provenance = {
        "source": "amazon",
        "files": reviews.files,
        "categories": list(order),
        "categories_requested": None if categories is None else list(categories),
        "categories_omitted": omitted,
        "per_category": per_category,
        "n_per_category": n_per_category,
        "max_lines_per_category": max_lines_per_category,
        "short_categories": [c for c in order if available[c] < n_per_category],
        "text_fields": list(fields),
        "missing_text": missing_text,
        "skipped_no_text": sum(f["skipped_no_text"] for f in reviews.files),
        "duplicates_dropped": len(reviews) - len(unique),
        "duplicate_rule": "same category, reviewer, time, rating, title and text (or the "
                          "whole record): the first is kept, before sampling",
        "label": "rating >= 4",
        "label_rate": float(y.mean()),
        "sampling": "numpy RandomState(seed).choice per category (= pandas DataFrame.sample)",
        "seed": seed,
        "split": {"test_fraction": test_fraction, "stratify": "category", "seed": seed,
                  "n_train": len(train), "n_test": len(test)},
        "embedder": {"name": getattr(model, "name", type(model).__name__),
                     "identity": getattr(model, "identity", None),
                     "dim": int(vectors.shape[1]),
                     "cache_hits": getattr(model, "hits", 0) - hits0,
                     "cache_misses": getattr(model, "misses", 0) - misses0},
        "standardised": standardise,
        "intercept": intercept,
        **({"pca": pca} if pca is not None else {}),
    }
    return Dataset(
        x_train=x_train, y_train=y[train], x_test=x_test, y_test=y[test],
        feature_names=tuple(names), provenance=provenance,
        attributes_train={name: values[train] for name, values in attributes.items()},
        attributes_test={name: values[test] for name, values in attributes.items()},
    )
