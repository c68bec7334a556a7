"""MovieLens ratings (the paper's MovieLens setting) → ``Dataset``.

Pipeline (SPEC §7): read the ratings → keep the ``n_movies`` most-rated movies (ties: lower
movie id first) and the users with at least one rating among them → y = each user's ratings of
those movies (0 where unrated), w = the rated mask → x = the user's factors from a biased matrix
factorisation fitted on the kept ratings → seeded split of users.

Files, detected from their content (the name is not trusted):

- ML-100K ``u.data``: tab-separated ``user item rating timestamp``;
- ML-1M / ML-10M ``ratings.dat``: ``user::movie::rating::timestamp``;
- ML-latest / ML-25M / ML-32M ``ratings.csv``: ``userId,movieId,rating,timestamp`` with a header;

plain, gzipped, or inside the official zips (``ml-100k.zip`` → ``u.data``, ``ml-10m.zip`` →
``ml-10M100K/ratings.dat``, ``ml-latest*.zip`` → ``ratings.csv``). Parsing is one pass of pandas'
C reader over the decompressed bytes (``::`` is first rewritten to a tab); only when that pass
fails or yields a missing/non-numeric value is the file scanned line by line to name the first
bad line, so well-formed files pay nothing for the diagnosis. Every rating must lie on the
release's star scale (``RATING_SCALES``: ML-100K/1M 1–5 whole stars, ML-10M and later 0.5–5 in
halves; the release is told from the archive or folder name, 0.5–5 in halves when none names
it): −1, 0, 6 or 1e9 is a ``DataFormatError`` naming the file, line and value.

Matrix factorisation: ``fit_biased_mf`` is scikit-surprise's ``SVD`` algorithm (r̂ = μ + b_u + b_i
+ p_uᵀq_i, plain per-rating SGD, same initial draws from ``numpy.random.RandomState(seed)``, same
visiting order: users by first appearance, each user's ratings in input order, no shuffling),
compiled with numba. Given the same ratings in the same order it reproduces
``surprise.SVD(n_factors=5, random_state=0)`` to rounding (tested when surprise is installed), so
the user factors are those the paper's reference scripts compute, without the dependency.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from userchoice.data import common
from userchoice.data.common import DataFormatError, DatasetNotFoundError
from userchoice.data.dataset import Dataset

FIELDS = ("user", "item", "rating", "timestamp")
EXPECTED_LINE = ("'user item rating timestamp' separated by tabs (u.data), '::' (ratings.dat) "
                 "or commas after a 'userId,movieId,rating,timestamp' header (ratings.csv)")
# Ratings files inside the official archives / in a data directory, most wanted first
# (ML-10M is the paper's; ML-1M shares its format).
RATINGS_NAMES = ("ratings.dat", "ratings.csv", "u.data")
# The official archives holding each of those (searched in that order; any other *.zip last).
ARCHIVE_GROUPS = (("ml-10m.zip", "ml-1m.zip"),
                  ("ml-32m.zip", "ml-25m.zip", "ml-latest.zip", "ml-latest-small.zip"),
                  ("ml-100k.zip",))
FETCH_HINT = ("Get it with:  userchoice data fetch movielens --variant ml-10m\n"
              "or use a local copy:  userchoice data import movielens /path/to/ratings.dat")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class RatingScale:
    """The star ratings a MovieLens release allows: ``low`` to ``high`` in steps of ``step``."""

    name: str
    low: float
    high: float
    step: float

    def holds(self, values: np.ndarray | float) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        units = values / self.step
        with np.errstate(invalid="ignore"):
            return (values >= self.low) & (values <= self.high) & (np.floor(units) == units)

    @property
    def expected(self) -> str:
        steps = "whole stars" if self.step == 1 else f"steps of {self.step:g}"
        return f"a rating from {self.low:g} to {self.high:g} in {steps} ({self.name})"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "low": self.low, "high": self.high, "step": self.step}


_WHOLE = ("ML-100K/ML-1M", 1.0, 5.0, 1.0)
_HALVES = ("ML-10M/ML-latest/ML-25M/ML-32M", 0.5, 5.0, 0.5)
# Each release's scale (GroupLens READMEs): whole stars up to ML-1M, half stars from ML-10M on.
RATING_SCALES = {
    "ml-100k": RatingScale(*_WHOLE), "ml-1m": RatingScale(*_WHOLE),
    "ml-10m": RatingScale(*_HALVES), "ml-latest-small": RatingScale(*_HALVES),
    "ml-latest": RatingScale(*_HALVES), "ml-25m": RatingScale(*_HALVES),
    "ml-32m": RatingScale(*_HALVES),
}
# A file whose release cannot be told from its name gets the widest MovieLens scale.
ANY_SCALE = RatingScale("MovieLens, release not known from the file name", 0.5, 5.0, 0.5)
_RELEASE_NAME = re.compile(r"^ml-(100k|1m|10m|10m100k|latest-small|latest|25m|32m)$")


def rating_scale(path: str | Path, member: str | None = None) -> RatingScale:
    """The rating scale of a ratings file, from the release named by the archive, the folder
    or the zip member's folder (``ml-100k.zip``, ``ml-1m/ratings.dat``, ``ml-10M100K/...``);
    ``ANY_SCALE`` (0.5–5 in halves, every release's ratings) when none names one."""
    path = Path(path)
    names = [path.parent.name, path.name, *(member or "").split("/")[:-1]]
    for name in reversed(names):
        stem = name.lower()
        for suffix in (".gz", ".zip"):
            stem = stem.removesuffix(suffix)
        found = _RELEASE_NAME.match(stem)
        if found:
            release = "ml-10m" if found[1] == "10m100k" else f"ml-{found[1]}"
            return RATING_SCALES[release]
    return ANY_SCALE


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingsFormat:
    """How a ratings file is laid out (detected by ``read_ratings``)."""

    name: str  # "u.data", "ratings.dat" or "ratings.csv" style
    separator: str  # as written in the file: "\t", "::" or ","
    header: bool
    n_fields: int  # 3 (no timestamp) or 4

    def describe(self) -> dict[str, Any]:
        return {"style": self.name, "separator": self.separator, "header": self.header,
                "fields": self.n_fields}


def _choose_member(path: Path, member: str | None) -> str | None:
    """The ratings member of a zip archive (None for other files, or to let ``open_binary``
    report a broken archive / HTML page)."""
    if member is not None:
        return member
    with open(path, "rb") as raw:
        head = raw.read(4)
    if path.suffix.lower() != ".zip" and head != b"PK\x03\x04":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError):
        return None  # open_binary raises the precise DataFormatError (HTML page, bad zip)
    for wanted in RATINGS_NAMES:
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if base == wanted or base == wanted + ".gz":
                return name
    raise DataFormatError(path, f"has no MovieLens ratings file among its members {names[:10]}",
                          expected="a member named " + " or ".join(RATINGS_NAMES))


def _read_bytes(path: Path, member: str | None) -> bytes:
    with common.open_binary(path, member) as handle:  # decompression errors → DataFormatError
        data = handle.read()
        if member is not None and member.endswith(".gz"):
            data = gzip.decompress(data)
    return data


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _detect_format(path: Path, data: bytes) -> tuple[RatingsFormat, int]:
    """Format from the first non-empty line; returns it and that line's number."""
    lineno, first = 0, ""
    for lineno, raw in enumerate(io.BytesIO(data), start=1):  # noqa: B007
        first = raw.decode("utf-8", "replace").rstrip("\r\n")
        if first.strip():
            break
    else:
        raise DataFormatError(path, "is empty", expected=EXPECTED_LINE)
    styles = (("::", "ratings.dat"), ("\t", "u.data"), (",", "ratings.csv"))
    found = next(((sep, style) for sep, style in styles if sep in first), None)
    if found is None:
        raise DataFormatError(path, f"cannot tell the format of {first[:80]!r}", line=lineno,
                              expected=EXPECTED_LINE)
    separator, style = found
    fields = [f.strip() for f in first.split(separator)]
    header = not _is_number(fields[0])
    if header and (lineno != 1 or not fields[0].lower().startswith("user")):
        raise DataFormatError(path, f"{fields[0][:40]!r} is not a user id in {first[:80]!r}",
                              line=lineno, expected=EXPECTED_LINE)
    if len(fields) not in (3, 4):
        raise DataFormatError(path, f"has {len(fields)} fields in {first[:80]!r}", line=lineno,
                              expected="3 or 4 fields: " + EXPECTED_LINE)
    return RatingsFormat(style, separator, header, len(fields)), lineno


def _bad_line(path: Path, member: str | None, fmt: RatingsFormat,
              scale: RatingScale | None = None) -> DataFormatError | None:
    """The first line that breaks ``fmt`` or has a rating off ``scale`` (a slow scan, run only
    after the fast parse or range check failed)."""
    expected = f"{fmt.n_fields} {fmt.separator!r}-separated fields: " + ", ".join(
        FIELDS[: fmt.n_fields])
    with common.open_binary(path, member) as handle:
        stream = gzip.GzipFile(fileobj=handle) if member and member.endswith(".gz") else handle
        for lineno, raw in enumerate(stream, start=1):
            if lineno == 1:
                raw = raw.removeprefix(_BOM)
                if fmt.header:
                    continue
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                continue
            fields = line.split(fmt.separator)
            if len(fields) != fmt.n_fields:
                return DataFormatError(path, f"has {len(fields)} fields in {line[:80]!r}",
                                       line=lineno, expected=expected)
            for name, text in zip(FIELDS, fields, strict=False):
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                integral = name != "rating"
                if not math.isfinite(value) or (integral and not value.is_integer()):
                    kind = "an integer" if integral else "a finite number"
                    return DataFormatError(path, f"{name} {text.strip()[:40]!r} is not {kind} "
                                           f"in {line[:80]!r}", line=lineno, column=name,
                                           expected=expected)
                if name == "rating" and scale is not None and not scale.holds(value):
                    return DataFormatError(path, f"rating {text.strip()[:40]!r} is outside the "
                                           f"star range in {line[:80]!r}", line=lineno,
                                           column="rating", expected=scale.expected)
    return None


def _parse(path: Path, member: str | None, data: bytes, fmt: RatingsFormat,
           scale: RatingScale) -> pd.DataFrame:
    """``data`` with "::" already rewritten to tabs (the caller does it, so that only one copy
    of the file's bytes is alive); every rating must lie on ``scale``."""
    separator = "\t" if fmt.separator == "::" else fmt.separator
    names = list(FIELDS[: fmt.n_fields])
    problem = None
    try:
        frame = pd.read_csv(
            io.BytesIO(data), sep=separator, header=None, names=names,
            skiprows=1 if fmt.header else 0, dtype=dict.fromkeys(names, np.float64),
            engine="c", quoting=csv.QUOTE_NONE, skip_blank_lines=True, na_filter=True,
        )
    except (ValueError, pd.errors.ParserError) as error:
        frame, problem = None, str(error).splitlines()[0]
    if frame is not None:
        user, item, rating = (frame[name].to_numpy() for name in FIELDS[:3])
        if (all(np.isfinite(v).all() for v in (user, item, rating))
                and (np.floor(user) == user).all() and (np.floor(item) == item).all()
                and (fmt.n_fields == 3 or not frame["timestamp"].isna().any())):
            off_scale = np.flatnonzero(~scale.holds(rating))
            if not off_scale.size:
                return pd.DataFrame({"user": user.astype(np.int64),
                                     "item": item.astype(np.int64), "rating": rating})
            problem = (f"{off_scale.size} ratings outside the star range, the first "
                       f"{rating[off_scale[0]]:g}")
            expected = scale.expected
        else:
            problem = "a missing, non-finite or non-integer value"
            expected = EXPECTED_LINE
    else:
        expected = EXPECTED_LINE
    error = _bad_line(path, member, fmt, scale)
    if error is None:  # the scan found nothing the fast parser objected to: report it as is
        error = DataFormatError(path, f"could not be parsed ({problem})", expected=expected)
    raise error


def read_ratings(path: str | Path, *, member: str | None = None,
                 scale: RatingScale | str | None = None) -> pd.DataFrame:
    """Read a MovieLens ratings file into a DataFrame with columns user, item (int64) and
    rating (float64), in file order.

    ``path`` may be plain, gzipped or a zip (its ratings member is found by name unless
    ``member`` is given). Every rating must lie on the release's star scale (``scale``: a
    ``RatingScale``, a release name such as ``"ml-1m"``, or None to tell it from the file name,
    see ``rating_scale``). The detected format is in ``frame.attrs["format"]``, the scale in
    ``frame.attrs["rating_scale"]`` (and the zip member in ``frame.attrs["member"]``). Raises
    ``DataFormatError`` naming the file, the line and what was expected for a malformed line, a
    rating off the scale, an empty file, a truncated or corrupt gzip/zip or an HTML page saved
    in its place.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    member = _choose_member(path, member)
    if isinstance(scale, str):
        if scale not in RATING_SCALES:
            raise ValueError(f"scale must be one of {list(RATING_SCALES)}, got {scale!r}")
        scale = RATING_SCALES[scale]
    scale = rating_scale(path, member) if scale is None else scale
    data = _read_bytes(path, member)
    data = data.removeprefix(_BOM)
    fmt, _ = _detect_format(path, data)
    if fmt.separator == "::":
        data = data.replace(b"::", b"\t")
    frame = _parse(path, member, data, fmt, scale)
    del data
    common.check_nonempty(path, len(frame), "ratings")
    frame.attrs["format"] = fmt.describe()
    frame.attrs["member"] = member
    frame.attrs["rating_scale"] = scale.describe()
    return frame


def verify_file(path: str | Path) -> dict[str, Any]:
    """What ``userchoice data import movielens`` checks before it replaces anything: the whole
    file decompressed and every line parsed, ratings on the release's star scale
    (``DataFormatError`` otherwise), no user rating a movie twice. Returns a summary."""
    frame = read_ratings(path)
    repeated = frame.duplicated(["user", "item"]).to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        user, item = int(frame["user"].iat[row]), int(frame["item"].iat[row])
        raise DataFormatError(path, f"user {user} rates movie {item} more than once "
                                    f"({int(repeated.sum())} repeated user-movie pairs)",
                              expected="one rating per user and movie")
    return {"ratings": len(frame), "users": int(frame["user"].nunique()),
            "movies": int(frame["item"].nunique()), "format": frame.attrs["format"],
            "member": frame.attrs["member"], "rating_scale": frame.attrs["rating_scale"]}


# ---------------------------------------------------------------------------------------------
# Ratings matrix
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatingsMatrix:
    """The top-m movies' ratings, dense (y, w) and in file order (rows, cols, values).

    Users are sorted by id; columns are the kept movies, most-rated first (ties: lower id).
    """

    y: np.ndarray  # [n_users, m] rating, 0 where unrated
    w: np.ndarray  # [n_users, m] 1 where rated
    user_ids: np.ndarray  # [n_users]
    movie_ids: np.ndarray  # [m]
    movie_counts: np.ndarray  # [m] ratings each kept movie has in the whole input
    rows: np.ndarray  # [K] user index of each kept rating, input order
    cols: np.ndarray  # [K] movie index
    values: np.ndarray  # [K] rating
    n_ratings_read: int
    n_users_read: int
    n_movies_read: int


def ratings_matrix(frame: pd.DataFrame, n_movies: int = 200) -> RatingsMatrix:
    """Keep the ``n_movies`` most-rated movies (ties → lower movie id) and the users with at
    least one rating among them; a user rating a kept movie twice is an error."""
    if isinstance(n_movies, bool) or not isinstance(n_movies, int | np.integer) or n_movies < 1:
        raise ValueError(f"n_movies must be a positive integer, got {n_movies!r}")
    missing = [c for c in ("user", "item", "rating") if c not in frame.columns]
    if missing:
        raise ValueError(f"ratings frame lacks columns {missing}; has {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError("ratings frame is empty")
    users = frame["user"].to_numpy()
    items = frame["item"].to_numpy()
    ratings = frame["rating"].to_numpy(dtype=np.float64)
    item_codes, item_ids = pd.factorize(items)
    counts = np.bincount(item_codes, minlength=len(item_ids))
    by_popularity = np.lexsort((item_ids, -counts))[:n_movies]
    column = np.full(len(item_ids), -1, dtype=np.int64)
    column[by_popularity] = np.arange(len(by_popularity))
    cols = column[item_codes]
    kept = cols >= 0
    cols = cols[kept]
    rows, user_ids = pd.factorize(users[kept], sort=True)
    rows = rows.astype(np.int64)
    values = ratings[kept]
    m = len(by_popularity)
    keys = np.sort(rows * m + cols)
    dup = np.flatnonzero(keys[1:] == keys[:-1])
    if dup.size:
        row, col = divmod(int(keys[dup[0]]), m)
        raise ValueError(f"user {user_ids[row]} rated movie {item_ids[by_popularity[col]]} more "
                         f"than once ({dup.size} repeated user-movie pairs among kept ratings)")
    y = np.zeros((len(user_ids), m))
    w = np.zeros((len(user_ids), m))
    y[rows, cols] = values
    w[rows, cols] = 1.0
    return RatingsMatrix(
        y=y, w=w, user_ids=np.asarray(user_ids), movie_ids=np.asarray(item_ids[by_popularity]),
        movie_counts=counts[by_popularity], rows=rows, cols=cols, values=values,
        n_ratings_read=len(frame), n_users_read=int(pd.Series(users).nunique()),
        n_movies_read=len(item_ids),
    )


# ---------------------------------------------------------------------------------------------
# Biased matrix factorisation (scikit-surprise's SVD)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorModel:
    """r̂(u, i) = global_mean + user_bias[u] + item_bias[i] + user_factors[u]·item_factors[i]."""

    global_mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    train_rmse: float
    settings: dict[str, Any]

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users, items = np.asarray(users), np.asarray(items)
        return (self.global_mean + self.user_bias[users] + self.item_bias[items]
                + np.einsum("nk,nk->n", self.user_factors[users], self.item_factors[items]))


def _sgd_epochs(users, items, ratings, mean, bu, bi, pu, qi, n_epochs, lr, reg):
    """surprise's SVD.sgd loop, in place (plain Python; compiled by ``_sgd_kernel``)."""
    n_factors = pu.shape[1]
    for _ in range(n_epochs):
        for n in range(ratings.shape[0]):
            u = users[n]
            i = items[n]
            dot = 0.0
            for f in range(n_factors):
                dot += qi[i, f] * pu[u, f]
            err = ratings[n] - (mean + bu[u] + bi[i] + dot)
            bu[u] += lr * (err - reg * bu[u])
            bi[i] += lr * (err - reg * bi[i])
            for f in range(n_factors):
                puf = pu[u, f]
                qif = qi[i, f]
                pu[u, f] += lr * (err * qif - reg * puf)
                qi[i, f] += lr * (err * puf - reg * qif)


_COMPILED: list = []


def _sgd_kernel():
    """``_sgd_epochs`` compiled with numba (no fast-math, so IEEE-identical to surprise's
    Cython; cached on disk). Without numba: the plain loop, with a warning (≈ 1000× slower)."""
    if not _COMPILED:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            warnings.warn("numba is not installed: fitting MovieLens factors with the plain "
                          "Python loop (minutes for millions of ratings); pip install numba",
                          RuntimeWarning, stacklevel=3)
            return _sgd_epochs
        _COMPILED.append(numba.njit(cache=True, nogil=True)(_sgd_epochs))
    return _COMPILED[0]


def fit_biased_mf(users: Sequence[int] | np.ndarray, items: Sequence[int] | np.ndarray,
                  ratings: Sequence[float] | np.ndarray, *, n_users: int | None = None,
                  n_items: int | None = None, n_factors: int = 5, n_epochs: int = 20,
                  lr: float = 0.005, reg: float = 0.02, init_std: float = 0.1,
                  seed: int = 0) -> FactorModel:
    """Biased MF by per-rating SGD, exactly as scikit-surprise's ``SVD`` (its defaults: 20
    epochs, lr 0.005, reg 0.02, factors ~ N(0, 0.1²) from ``RandomState(seed)``).

    ``users`` and ``items`` are 0-based indices (< ``n_users`` / ``n_items``), one per rating.
    Like surprise, internal ids follow first appearance, ratings are visited user by user (first
    appearance order; each user's ratings in input order) every epoch, and the user then item
    factor matrices are drawn in that order. Indices that never occur get zero bias and factors
    (surprise's convention for unknown users/items). Deterministic for a given input and seed.
    """
    users = np.asarray(users)
    items = np.asarray(items)
    ratings = np.asarray(ratings, dtype=np.float64)
    if not (users.ndim == items.ndim == ratings.ndim == 1 and
            len(users) == len(items) == len(ratings)):
        raise ValueError(f"users, items and ratings must be 1-D of one length, got shapes "
                         f"{users.shape}, {items.shape}, {ratings.shape}")
    if len(ratings) == 0:
        raise ValueError("no ratings to factorise")
    if not np.isfinite(ratings).all():
        raise ValueError("ratings must be finite")
    for name, value in (("n_factors", n_factors), ("n_epochs", n_epochs)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not (lr > 0 and reg >= 0 and init_std >= 0):
        raise ValueError(f"need lr > 0, reg >= 0, init_std >= 0; got {lr}, {reg}, {init_std}")
    n_users = int(users.max()) + 1 if n_users is None else int(n_users)
    n_items = int(items.max()) + 1 if n_items is None else int(n_items)
    for name, index, size in (("users", users, n_users), ("items", items, n_items)):
        if not np.issubdtype(index.dtype, np.integer) or index.min() < 0 or index.max() >= size:
            raise ValueError(f"{name} must be integer indices in [0, {size})")

    # surprise's inner ids: order of first appearance; visiting order: by inner user id, stable.
    inner_u, seen_users = pd.factorize(users, sort=False)
    inner_i, seen_items = pd.factorize(items, sort=False)
    order = np.argsort(inner_u, kind="stable")
    u_seq = np.ascontiguousarray(inner_u[order], dtype=np.int64)
    i_seq = np.ascontiguousarray(inner_i[order], dtype=np.int64)
    r_seq = np.ascontiguousarray(ratings[order])
    mean = float(np.mean(r_seq))
    rng = np.random.RandomState(seed)
    pu = rng.normal(0.0, init_std, size=(len(seen_users), n_factors))
    qi = rng.normal(0.0, init_std, size=(len(seen_items), n_factors))
    bu = np.zeros(len(seen_users))
    bi = np.zeros(len(seen_items))
    _sgd_kernel()(u_seq, i_seq, r_seq, mean, bu, bi, pu, qi, int(n_epochs), float(lr),
                  float(reg))

    user_bias, item_bias = np.zeros(n_users), np.zeros(n_items)
    user_factors, item_factors = np.zeros((n_users, n_factors)), np.zeros((n_items, n_factors))
    user_bias[seen_users], user_factors[seen_users] = bu, pu
    item_bias[seen_items], item_factors[seen_items] = bi, qi
    residual = (mean + bu[u_seq] + bi[i_seq] + np.einsum("nk,nk->n", pu[u_seq], qi[i_seq])
                - r_seq)
    return FactorModel(
        global_mean=mean, user_bias=user_bias, item_bias=item_bias, user_factors=user_factors,
        item_factors=item_factors, train_rmse=float(np.sqrt(np.mean(residual**2))),
        settings={"algorithm": "biased MF, per-rating SGD (scikit-surprise SVD)",
                  "n_factors": int(n_factors), "n_epochs": int(n_epochs), "lr": float(lr),
                  "reg": float(reg), "init_mean": 0.0, "init_std": float(init_std),
                  "seed": int(seed), "order": "users by first appearance, ratings in input order"},
    )


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


def find_ratings_file(data_dir: str | Path | None = None) -> Path:
    """The ratings file in ``<data dir>/movielens``, the paper's release first: ratings.dat
    (ML-10M/1M; plain, .gz, or one folder down as unpacked), ml-10m.zip, ml-1m.zip, then
    ratings.csv and the ML-latest/25M/32M zips, then u.data and ml-100k.zip, then any *.zip."""
    folder = common.data_dir(data_dir) / "movielens"
    searched: list[Path] = []
    for files, archives in zip(RATINGS_NAMES, ARCHIVE_GROUPS, strict=True):
        for name in (files, files + ".gz"):
            searched.append(folder / name)
            for hit in (folder / name, *sorted(folder.glob(f"*/{name}"))):
                if hit.is_file():
                    return hit
        for name in archives:
            searched.append(folder / name)
            if (folder / name).is_file():
                return folder / name
    searched.append(folder / "*.zip")
    others = sorted(folder.glob("*.zip")) if folder.is_dir() else []
    if others:
        return others[0]
    raise DatasetNotFoundError("movielens", searched, hint=FETCH_HINT)


def load_movielens(path: str | Path | None = None, *, data_dir: str | Path | None = None,
                   n_movies: int = 200, n_factors: int = 5, test_fraction: float = 0.1,
                   seed: int = 0, mf_epochs: int = 20, mf_lr: float = 0.005,
                   mf_reg: float = 0.02, mf_seed: int = 0) -> Dataset:
    """The paper's MovieLens users: x = MF user factors [N, n_factors], y = ratings of the
    ``n_movies`` most-rated movies [N, n_movies] (0 if unrated), w = rated mask.

    The factorisation is fitted on all kept ratings (train and test users), as the paper's
    reference does; the users are then split with ``seed`` (``test_fraction`` held out).
    ``path=None`` looks in ``<data dir>/movielens`` (see ``find_ratings_file``).
    """
    path = find_ratings_file(data_dir) if path is None else Path(path)
    frame = read_ratings(path)
    matrix = ratings_matrix(frame, n_movies)
    fmt, member = frame.attrs["format"], frame.attrs["member"]
    scale = frame.attrs["rating_scale"]
    del frame
    model = fit_biased_mf(matrix.rows, matrix.cols, matrix.values, n_users=len(matrix.user_ids),
                          n_items=len(matrix.movie_ids), n_factors=n_factors, n_epochs=mf_epochs,
                          lr=mf_lr, reg=mf_reg, seed=mf_seed)
    train, test = common.split_indices(len(matrix.user_ids), test_fraction, seed)
    x = model.user_factors
    provenance = {
        "source": "movielens",
        "files": [common.file_record(path)],
        "member": member,
        "format": fmt,
        "rating_scale": scale,
        "ratings_read": matrix.n_ratings_read,
        "users_read": matrix.n_users_read,
        "movies_read": matrix.n_movies_read,
        "n_movies": len(matrix.movie_ids),
        "movie_ids": matrix.movie_ids.tolist(),
        "movie_rating_counts": matrix.movie_counts.tolist(),
        "movie_rule": "most-rated first, ties by lower movie id",
        "ratings_kept": len(matrix.values),
        "users": len(matrix.user_ids),
        "mf": {**model.settings, "implementation": "numba",
               "fitted_on": "all kept ratings (train and test users)",
               "global_mean": model.global_mean, "train_rmse": model.train_rmse,
               "rating_std": float(np.std(matrix.values))},
        "split": {"test_fraction": test_fraction, "seed": seed, "n_train": len(train),
                  "n_test": len(test), "unit": "user"},
    }
    return Dataset(
        x_train=x[train], y_train=matrix.y[train], x_test=x[test], y_test=matrix.y[test],
        w_train=matrix.w[train], w_test=matrix.w[test],
        feature_names=tuple(f"f{k}" for k in range(n_factors)), provenance=provenance,
        attributes_train={"user_id": matrix.user_ids[train]},
        attributes_test={"user_id": matrix.user_ids[test]},
    )


# ---------------------------------------------------------------------------------------------
# Synthetic ratings (tests, benchmark)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticRatings:
    """Ratings drawn from r = μ + b_u + b_i + p_uᵀq_i + noise (then rounded/clipped if asked);
    ids are 1-based (user index + 1, movie index + 1)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    global_mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"user": self.users, "item": self.items, "rating": self.ratings})


def _distinct_pairs(rng: np.random.Generator, n_ratings: int, user_weight: np.ndarray,
                    movie_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n_ratings`` distinct (user, movie) pairs, marginals ∝ the weights (configuration
    model: pair a multinomial user list with a shuffled multinomial movie list, drop repeats,
    top up)."""
    n_movies = len(movie_weight)
    if n_ratings > len(user_weight) * n_movies:
        raise ValueError(f"cannot draw {n_ratings} distinct pairs from {len(user_weight)} users "
                         f"× {n_movies} movies")
    keys = np.empty(0, np.int64)
    while keys.size < n_ratings:
        k = int((n_ratings - keys.size) * 1.25) + 100
        u = np.repeat(np.arange(len(user_weight)), rng.multinomial(k, user_weight))
        i = rng.permutation(np.repeat(np.arange(n_movies), rng.multinomial(k, movie_weight)))
        keys = np.sort(np.concatenate([keys, u.astype(np.int64) * n_movies + i]))
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    keys = np.sort(rng.choice(keys, n_ratings, replace=False))
    return keys // n_movies, keys % n_movies


def synthetic_ratings(n_ratings: int, n_users: int, n_movies: int, seed: int = 0, *,
                      n_factors: int = 3, noise: float = 0.5, rating_step: float | None = 0.5,
                      popularity_exponent: float = 0.9, activity_sigma: float = 1.0
                      ) -> SyntheticRatings:
    """Distinct (user, movie) pairs with MovieLens-like skew (movie popularity ∝ rank^-0.9,
    log-normal user activity), sorted by user then movie, and low-rank biased ratings.
    ``rating_step`` rounds to that grid and clips to [step, 5]; ``None`` keeps exact values."""
    rng = np.random.default_rng(seed)
    popularity = rng.permutation(1.0 / np.arange(1, n_movies + 1) ** popularity_exponent)
    activity = rng.lognormal(0.0, activity_sigma, n_users)
    users, items = _distinct_pairs(rng, n_ratings, activity / activity.sum(),
                                   popularity / popularity.sum())
    mean = 3.5
    user_bias = rng.normal(0.0, 0.4, n_users)
    item_bias = rng.normal(0.0, 0.4, n_movies)
    scale = 0.8 / math.sqrt(max(n_factors, 1))
    user_factors = rng.normal(0.0, math.sqrt(scale), (n_users, n_factors))
    item_factors = rng.normal(0.0, math.sqrt(scale), (n_movies, n_factors))
    ratings = (mean + user_bias[users] + item_bias[items]
               + np.einsum("nk,nk->n", user_factors[users], item_factors[items])
               + noise * rng.standard_normal(n_ratings))
    if rating_step is not None:
        ratings = np.clip(np.round(ratings / rating_step) * rating_step, rating_step, 5.0)
    timestamps = rng.integers(789_652_009, 1_231_131_736, n_ratings)
    return SyntheticRatings(users + 1, items + 1, ratings, timestamps, mean, user_bias,
                            item_bias, user_factors, item_factors)


def write_synthetic_ratings(path: str | Path, n_ratings: int, n_users: int, n_movies: int,
                            seed: int = 0, fmt: str = "::", **kwargs: Any) -> SyntheticRatings:
    """Write ``synthetic_ratings(...)`` as a MovieLens file: ``fmt`` "::" (ratings.dat),
    "\\t" (u.data) or "," (ratings.csv, with header); gzipped if ``path`` ends in .gz."""
    if fmt not in ("::", "\t", ","):
        raise ValueError(f"fmt must be '::', '\\t' or ',', got {fmt!r}")
    data = synthetic_ratings(n_ratings, n_users, n_movies, seed, **kwargs)
    frame = pd.DataFrame({"userId": data.users, "movieId": data.items, "rating": data.ratings,
                          "timestamp": data.timestamps})
    text = frame.to_csv(sep="," if fmt == "," else "\t", header=fmt == ",", index=False,
                        float_format="%.6g", lineterminator="\n").encode()
    if fmt == "::":
        text = text.replace(b"\t", b"::")
    path = Path(path)
    if path.suffix == ".gz":
        text = gzip.compress(text, compresslevel=1, mtime=0)
    path.write_bytes(text)
    return data
