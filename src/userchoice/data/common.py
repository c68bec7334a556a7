"""What every data loader shares: locating files, reading them safely, splitting, provenance.

Errors name the file (and line/column where known) and what was expected; a missing dataset
names the exact ``userchoice data fetch`` / ``data import`` command that provides it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import platformdirs

APP_NAME = "userchoice"
ENV_DATA_DIR = "USERCHOICE_DATA"


class DataFormatError(ValueError):
    """A data file is not in the expected format."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None,
                 column: str | None = None, expected: str | None = None) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        message = f"{where}: {problem}"
        if expected:
            message += f" (expected {expected})"
        super().__init__(message)
        self.path, self.line, self.column = Path(path), line, column


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not in the data directory; the message says how to get it."""

    def __init__(self, name: str, searched: list[Path], hint: str) -> None:
        places = "\n  ".join(str(p) for p in searched) or "(nowhere)"
        super().__init__(f"dataset {name!r} not found; looked in:\n  {places}\n{hint}")
        self.name = name


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` (``--data-dir``), else $USERCHOICE_DATA, else the
    platform's user data folder (platformdirs: ``$XDG_DATA_HOME/userchoice``, by default
    ``~/.local/share/userchoice`` on Linux; ``~/Library/Application Support/userchoice`` on
    macOS; ``%LOCALAPPDATA%\\userchoice`` on Windows)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict[str, Any]:
    """Provenance of one input file: path, size and sha256."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


_HTML_PREFIXES = (b"<!doctype html", b"<html", b"<?xml", b"<head")


def _looks_like_html(head: bytes) -> bool:
    return head.lstrip().lower().startswith(_HTML_PREFIXES)


# What a damaged compressed file raises while it is read: a corrupt deflate stream (zlib), a
# truncated gzip or zip member (EOFError: left alone it reaches click as Ctrl-D, "Aborted."), a
# bad gzip header or CRC, a bad zip member CRC or header, an LZMA-compressed zip member.
DECOMPRESSION_ERRORS: tuple[type[BaseException], ...] = (
    zlib.error, EOFError, gzip.BadGzipFile, zipfile.BadZipFile, lzma.LZMAError)
REPAIR_HINT = ("re-fetch it (userchoice data fetch ...) or import a good copy "
               "(userchoice data import ...)")


def corrupt_file_error(path: str | Path, error: BaseException,
                       member: str | None = None) -> DataFormatError:
    """The ``DataFormatError`` for a decompression failure while reading ``path``."""
    inside = f"member {member} " if member else ""
    detail = str(error) or type(error).__name__
    return DataFormatError(path, f"{inside}is truncated or corrupt ({type(error).__name__}: "
                                 f"{detail}); {REPAIR_HINT}",
                           expected="a complete, undamaged file")


@contextmanager
def open_binary(path: str | Path, member: str | None = None) -> Iterator[IO[bytes]]:
    """Open a plain, gzip or zip file for reading bytes.

    A zip is read from ``member`` (default: its only data file). A file that is really an HTML
    page (a failed download saved under the right name) is reported as such. Decompression
    errors raised while the handle is read (``DECOMPRESSION_ERRORS``: a corrupt or truncated
    gzip/zip) become a ``DataFormatError`` naming the file and saying how to replace it; this
    is the one place every loader's reads go through.
    """
    path = Path(path)
    try:
        with _open_binary(path, member) as handle:
            yield handle
    except DECOMPRESSION_ERRORS as error:
        raise corrupt_file_error(path, error, member) from error


@contextmanager
def _open_binary(path: Path, member: str | None) -> Iterator[IO[bytes]]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as raw:
        head = raw.read(512)
    if _looks_like_html(head):
        raise DataFormatError(path, "is an HTML page, not a data file (a failed or blocked "
                                    "download?)", expected="the original data file")
    if path.suffix.lower() == ".zip" or head[:4] == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise DataFormatError(path, f"is not a valid zip archive ({error}); "
                                        f"{REPAIR_HINT}") from error
        with archive:
            names = [n for n in archive.namelist() if not n.endswith("/")
                     and not Path(n).name.startswith(".")]
            if member is None:
                data_names = [n for n in names if not n.lower().endswith((".pdf", ".txt", ".md"))]
                if len(data_names) != 1:
                    raise DataFormatError(path, f"has {len(data_names)} data members "
                                          f"{data_names[:5]}; name one", expected="one member")
                member = data_names[0]
            matches = [n for n in names if n == member or n.endswith("/" + member)]
            if not matches:
                raise DataFormatError(path, f"has no member {member!r}",
                                      expected=f"one of {names[:10]}")
            try:
                opened = archive.open(matches[0])
            except (OSError, *DECOMPRESSION_ERRORS) as error:  # a damaged archive's offsets
                raise corrupt_file_error(path, error, matches[0]) from error
            with opened as handle:
                yield handle
        return
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            yield handle
        return
    with open(path, "rb") as handle:
        yield handle


def read_through(path: str | Path, member: str | None = None, chunk: int = 1 << 22) -> int:
    """Read (and so decompress) the whole of a file or zip member; returns its size in bytes.
    A damaged file raises ``DataFormatError`` (see ``open_binary``)."""
    size = 0
    with open_binary(path, member) as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            size += len(block)
    return size


@contextmanager
def open_text(path: str | Path, member: str | None = None,
              encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Like ``open_binary`` but decoded text (undecodable bytes are replaced, not fatal)."""
    with open_binary(path, member) as handle:
        yield io.TextIOWrapper(handle, encoding=encoding, errors="replace", newline="")


def check_nonempty(path: str | Path, n_rows: int, what: str = "rows") -> None:
    if n_rows == 0:
        raise DataFormatError(path, f"contains no {what}", expected=f"at least one {what[:-1]}")


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Scale columns to zero mean, unit variance using training statistics only.

    Constant columns are centred but not scaled (their std is taken as 1).
    """
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std, {"mean": mean.tolist(), "std": std.tolist()}


def split_indices(n: int, test_fraction: float, seed: int,
                  stratify: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split of n rows (stratified by ``stratify`` if given)."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split, got {n}")
    indices = np.arange(n)
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed,
                                   stratify=stratify)
    return np.sort(train), np.sort(test)
