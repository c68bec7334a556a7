"""Getting the real datasets into the data directory: ``fetch`` (download), ``import_file``
(a local copy) and ``inventory`` (what is where).

Nothing here runs unless the user asks. Downloads go through pooch (``pooch.retrieve``: HTTP
by requests, a temporary file, the sha256 checked where the published value is known) into a
hidden staging folder beside the destination; there they are verified further (size, archive
integrity, the archive member's sha256, a format check) and only then renamed into place, so an
interrupted or failed download never leaves a file the loaders would read. (pooch alone would
move a file into place before the archive checks, hence the staging folder.) An import is
verified as a whole (decompressed and every record parsed by the dataset's own reader,
``DatasetEntry.verify``) before anything is replaced, so a broken file never replaces a good
copy unless forced.

Which datasets can be imported (the file-backed ones) and fetched (those with a fetch plan:
``census_plan``, ``movielens_plan``, ``amazon_plan`` below) is the dataset registry's
(``userchoice.data.registry``); nothing here lists dataset names. A fetch plan may carry
``options_for(filename)``: the plan options whose download is that file; ``how_to_get`` uses it
to name the exact ``userchoice data fetch`` command for a file a config names but nobody
fetched yet (``missing_files_error``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from userchoice.atomic import atomic_write, current_umask
from userchoice.data.common import (
    DECOMPRESSION_ERRORS,
    DataFormatError,
    DatasetNotFoundError,
    data_dir,
    open_binary,
    read_through,
    sha256_file,
)
from userchoice.data.registry import DATASETS, DatasetEntry, DatasetOptionError

STATE_FIPS = {
    "AL": "01", "AK": "02", "AZ": "04", "AR": "05", "CA": "06", "CO": "08", "CT": "09",
    "DE": "10", "DC": "11", "FL": "12", "GA": "13", "HI": "15", "ID": "16", "IL": "17",
    "IN": "18", "IA": "19", "KS": "20", "KY": "21", "LA": "22", "ME": "23", "MD": "24",
    "MA": "25", "MI": "26", "MN": "27", "MS": "28", "MO": "29", "MT": "30", "NE": "31",
    "NV": "32", "NH": "33", "NJ": "34", "NM": "35", "NY": "36", "NC": "37", "ND": "38",
    "OH": "39", "OK": "40", "OR": "41", "PA": "42", "RI": "44", "SC": "45", "SD": "46",
    "TN": "47", "TX": "48", "UT": "49", "VT": "50", "VA": "51", "WA": "53", "WV": "54",
    "WI": "55", "WY": "56", "PR": "72",
}

MOVIELENS_VARIANTS = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "ml-10m": "https://files.grouplens.org/datasets/movielens/ml-10m.zip",
    "ml-latest-small": "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
    "ml-25m": "https://files.grouplens.org/datasets/movielens/ml-25m.zip",
    "ml-32m": "https://files.grouplens.org/datasets/movielens/ml-32m.zip",
}
# Ratings member of each archive, and its sha256 where known (ML-100K's u.data, see SOURCE.md).
MOVIELENS_MEMBERS = {
    "ml-100k": ("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
    "ml-1m": ("ratings.dat", None),
    "ml-10m": ("ratings.dat", None),
    "ml-latest-small": ("ratings.csv", None),
    "ml-25m": ("ratings.csv", None),
    "ml-32m": ("ratings.csv", None),
}

AMAZON_URL = ("https://huggingface.co/datasets/McAuley-Lab/Amazon-Reviews-2023/resolve/main/"
              "raw/review_categories/{category}.jsonl")
# (bytes, sha256) of the published 2023 files, from the dataset repository's LFS pointers.
AMAZON_FILES = {
    "All_Beauty": (326611506, "36ca7c48440a8247b2dca0174d095238422b506a8a80c114dca722b7715f1c94"),
    "Digital_Music": (78823304,
                      "9ac137137e55e34fce290670fdf44acee5afa2ffae541f4f3b366a835930a7c3"),
    "Gift_Cards": (50231035, "b7ceead0dd6378eebfc6f4736402f85cc08e8dcb328f813c95ca68fc62d9544e"),
    "Handmade_Products": (289025980,
                          "7576d7743e83806d155e506a6bce13c25d9979ab13522e9a1cf2dc593144e65c"),
    "Industrial_and_Scientific": (
        2347015351, "361f68c9535f038fab119099e79207099bee60b2cd7a98246c36b3b12c7aa678"),
    "Magazine_Subscriptions": (
        33297013, "bf36b04bbfb41f43c49b4adbdc13969014311ffb2344f706d13c35cdea5662da"),
    "Musical_Instruments": (
        1557845107, "63aee24d5b9eaf0069cf638703e2d62eb80fde5d2c00ca3d29881d645f6214b3"),
    "Software": (1869151448, "dc119f99c466a39a09e2513c9e48eb5821fb42b1459f3026bcf71b08e6770741"),
    "Subscription_Boxes": (8953020,
                           "52e08112faa2b8769b35d364cbd3b8ac674ddd56621b171e7531a5a2071f460f"),
}
PAPER_AMAZON_CATEGORIES = tuple(AMAZON_FILES)


class DownloadError(RuntimeError):
    """A download failed or did not verify; nothing was written to the data directory."""


@dataclass(frozen=True)
class Download:
    url: str
    filename: str
    size: int | None = None  # published byte size, when known
    sha256: str | None = None  # published sha256 of the file, when known
    member: str | None = None  # archive member to check
    member_sha256: str | None = None


def census_plan(*, states: tuple[str, ...] = ("AL",), year: int = 2018) -> list[Download]:
    """ACS 1-Year PUMS person files, one zip per state."""
    out = []
    for state in states:
        code = state.upper()
        if code not in STATE_FIPS:
            raise ValueError(f"unknown state {state!r}; use a postal code such as 'AL'")
        out.append(Download(
            f"https://www2.census.gov/programs-surveys/acs/data/pums/{year}/1-Year/"
            f"csv_p{code.lower()}.zip",
            f"csv_p{code.lower()}_{year}.zip", member=f"psam_p{STATE_FIPS[code]}.csv"))
    return out


_CENSUS_FILE = re.compile(r"^csv_p([a-z]{2})_(\d{4})\.zip$")


def _census_options_for(filename: str) -> dict[str, Any] | None:
    match = _CENSUS_FILE.match(filename)
    if not match or match[1].upper() not in STATE_FIPS:
        return None
    return {"states": (match[1].upper(),), "year": int(match[2])}


census_plan.options_for = _census_options_for  # type: ignore[attr-defined]


def movielens_plan(*, variant: str = "ml-10m") -> list[Download]:
    """One GroupLens MovieLens archive."""
    if variant not in MOVIELENS_VARIANTS:
        raise ValueError(f"variant must be one of {list(MOVIELENS_VARIANTS)}, got {variant!r}")
    member, member_sha = MOVIELENS_MEMBERS[variant]
    return [Download(MOVIELENS_VARIANTS[variant], f"{variant}.zip", member=member,
                     member_sha256=member_sha)]


movielens_plan.options_for = (  # type: ignore[attr-defined]
    lambda filename: {"variant": filename.removesuffix(".zip")}
    if filename.removesuffix(".zip") in MOVIELENS_VARIANTS and filename.endswith(".zip")
    else None)


def amazon_plan(*, categories: tuple[str, ...] = PAPER_AMAZON_CATEGORIES) -> list[Download]:
    """Amazon Reviews 2023 per-category JSONL files (the paper's nine by default)."""
    unknown = [c for c in categories if c not in AMAZON_FILES]
    if unknown:
        raise ValueError(f"no published checksum for categories {unknown}; known: "
                         f"{list(AMAZON_FILES)}")
    return [Download(AMAZON_URL.format(category=c), f"{c}.jsonl", *AMAZON_FILES[c])
            for c in categories]


amazon_plan.options_for = (  # type: ignore[attr-defined]
    lambda filename: {"categories": (filename.removesuffix(".jsonl"),)}
    if filename.endswith(".jsonl") and filename.removesuffix(".jsonl") in AMAZON_FILES
    else None)


def _entry(name: str, *, fetchable: bool = False) -> DatasetEntry:
    """The registry entry of a dataset ``data fetch`` (or ``data import``) supports."""
    names = DATASETS.named(fetchable=fetchable, importable=True)
    if name not in names:
        raise ValueError(f"dataset must be one of {list(names)}, got {name!r}")
    return DATASETS.get(name)


def plan(name: str, **options) -> list[Download]:
    """The files ``fetch`` would download for a dataset (the paper's by default); the options
    are those of the dataset's fetch plan (e.g. census: ``states``, ``year``)."""
    entry = _entry(name, fetchable=True)
    try:
        entry.check_fetch_options(options)
    except DatasetOptionError as error:
        raise ValueError(str(error)) from None
    return list(entry.fetch_function()(**options))


def _member_sha256(path: Path, member: str) -> str:
    digest = hashlib.sha256()
    with open_binary(path, member) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, item: Download) -> dict:
    """Check a downloaded file against what is known of the published one; returns a record."""
    record = {"file": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path),
              "pinned": item.sha256 is not None or item.member_sha256 is not None}
    if item.size is not None and record["bytes"] != item.size:
        raise DownloadError(f"{path.name}: {record['bytes']} bytes, expected {item.size}")
    if item.sha256 is not None and record["sha256"] != item.sha256:
        raise DownloadError(f"{path.name}: sha256 {record['sha256']} != published {item.sha256}")
    if item.member is not None:
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as error:
            raise DownloadError(f"{path.name}: not a valid zip archive ({error})") from error
        except DECOMPRESSION_ERRORS as error:  # a member that does not decompress
            raise DownloadError(f"{path.name}: corrupt archive ({type(error).__name__}: "
                                f"{error})") from error
        if bad is not None:
            raise DownloadError(f"{path.name}: corrupt member {bad}")
        try:
            digest = _member_sha256(path, item.member)
        except DataFormatError as error:
            raise DownloadError(str(error)) from error
        if item.member_sha256 is not None and digest != item.member_sha256:
            raise DownloadError(f"{path.name}:{item.member}: sha256 {digest} != published "
                                f"{item.member_sha256}")
        record["member"] = {"name": item.member, "sha256": digest}
    return record


class _Progress:
    """The progress-bar object pooch's ``HTTPDownloader`` drives (``total``, ``update``,
    ``reset``, ``close``), reporting ``(bytes done, total or None)``."""

    def __init__(self, report: Callable[[int, int | None], None]) -> None:
        self.report, self.total, self.done = report, 0, 0

    def update(self, n: int) -> None:
        self.done += n
        total = self.total or None
        self.report(min(self.done, total) if total else self.done, total)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


def _retrieve(item: Download, staging: Path, downloader: Callable | None,
              progress: Callable[[int, int | None], None] | None) -> Path:
    """``item`` downloaded by pooch into ``staging`` (its sha256 checked when published)."""
    import pooch

    pooch.get_logger().setLevel("WARNING")  # its "Downloading …" lines: the CLI says what runs
    if downloader is None:
        downloader = pooch.HTTPDownloader(
            progressbar=_Progress(progress) if progress is not None else False,
            chunk_size=1 << 20, timeout=60)
    known = f"sha256:{item.sha256}" if item.sha256 else None
    return Path(pooch.retrieve(item.url, known_hash=known, fname=item.filename, path=staging,
                               downloader=downloader))


def fetch(name: str, *, root: str | Path | None = None, force: bool = False,
          downloader: Callable | None = None,
          progress: Callable[[str, int, int | None], None] | None = None,
          **options) -> list[dict]:
    """Download a dataset's official files into ``<data dir>/<name>/`` and verify them.

    Files already present and verified are kept unless ``force``. Returns one record per file.
    ``downloader``: a pooch downloader (``(url, output_file, pooch, check_only=False)``; default
    ``pooch.HTTPDownloader``); ``progress(filename, bytes done, total or None)``.
    """
    target_dir = data_dir(root) / name
    target_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target_dir)
    records = []
    for item in plan(name, **options):
        final = target_dir / item.filename
        if final.exists() and not force:
            records.append({**verify(final, item), "status": "already present"})
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{item.filename}.", suffix=".tmp",
                                        dir=target_dir))
        try:
            report = None if progress is None else (
                lambda done, total, f=item.filename: progress(f, done, total))
            try:
                staged = _retrieve(item, staging, downloader, report)
            except ValueError as error:  # pooch: the sha256 differs from the published one
                raise DownloadError(f"{item.filename}: {error}") from error
            except OSError as error:  # requests' errors are OSErrors: offline, HTTP 404, …
                raise DownloadError(
                    f"could not download {item.url} ({error}). Without network access, get "
                    f"the file elsewhere and run:  userchoice data import {name} "
                    f"/path/to/{item.filename}") from error
            record = verify(staged, item)
            os.chmod(staged, 0o666 & ~current_umask())  # a temporary file's 0600 → open()'s
            os.replace(staged, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        records.append({**record, "file": str(final), "url": item.url, "status": "downloaded"})
    return records


# ---------------------------------------------------------------------------------------------
# Saying how to get a file a config names
# ---------------------------------------------------------------------------------------------

# The command-line flag of each fetch-plan option that differs from ``--<option>`` (the
# ``userchoice data fetch`` options; tuple-valued options repeat their flag).
CLI_FLAGS = {"states": "--state", "categories": "--category"}


def fetch_command(name: str, options: dict[str, Any]) -> str:
    """``userchoice data fetch NAME --flag value …`` for a fetch plan's options."""
    args = [name]
    for key, value in options.items():
        flag = CLI_FLAGS.get(key, f"--{key}")
        for item in value if isinstance(value, tuple | list) else (value,):
            args += [flag, str(item)]
    return "userchoice data fetch " + " ".join(args)


def fetch_options_for(name: str, filename: str) -> dict[str, Any] | None:
    """The fetch-plan options of dataset ``name`` whose download is ``filename`` (None: no
    download is called that, or the dataset cannot be fetched)."""
    try:
        entry = DATASETS.get(name)
        finder = getattr(entry.fetch_function(), "options_for", None) if entry.fetchable \
            else None
    except Exception:  # a user's dataset whose plan fails to import: no fetch hint
        return None
    if finder is None:
        return None
    options = finder(filename)
    if options is None:
        return None
    try:  # only options whose plan really names the file
        files = {d.filename for d in plan(name, **options)}
    except ValueError:
        return None
    return options if filename in files else None


def _merged(options: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One set of options downloading all of them (tuples joined), or None when a single-valued
    option differs (e.g. two survey years)."""
    merged: dict[str, Any] = {}
    for option in options:
        for key, value in option.items():
            if isinstance(value, tuple):
                merged[key] = (*merged.get(key, ()),
                               *(v for v in value if v not in merged.get(key, ())))
            elif merged.setdefault(key, value) != value:
                return None
    return merged


def how_to_get(name: str, missing: Sequence[str | Path], root: str | Path | None = None) -> str:
    """The commands that put each of ``missing`` (files of dataset ``name``) where a config
    names them: ``userchoice data fetch …`` for a file a download writes, ``userchoice data
    import …`` for the others; a file outside ``<data dir>/<name>/`` is the config's to fix."""
    folder = data_dir(root) / name
    try:  # a loader that says how its files are imported (features: X and y, --name)
        hint = getattr(DATASETS.get(name).load_function(), "import_hint", None)
    except Exception:  # a user's dataset whose loader fails to import: the generic hints
        hint = None
    if hint is not None:
        return hint([Path(p) for p in missing], folder)
    fetchable: dict[Path, dict[str, Any]] = {}
    imports: list[Path] = []
    elsewhere: list[Path] = []
    for item in map(Path, missing):
        if item.parent.resolve() != folder.resolve():
            elsewhere.append(item)
        elif (options := fetch_options_for(name, item.name)) is not None:
            fetchable[item] = options
        else:
            imports.append(item)
    lines = []
    if fetchable:
        merged = _merged(list(fetchable.values()))
        commands = [fetch_command(name, merged)] if merged is not None else \
            [fetch_command(name, o) for o in fetchable.values()]
        lines += ["Get it with:" if len(fetchable) == 1 else "Get them with:",
                  *(f"  {c}" for c in commands)]
        names = ", ".join(p.name for p in fetchable)
        lines += [f"or import a copy you have (it keeps its file name, so call it {names}):",
                  *(f"  userchoice data import {name} /path/to/{p.name}" for p in fetchable)]
    if imports:
        lines += ["Import it with:" if len(imports) == 1 else "Import them with:",
                  *(f"  userchoice data import {name} /path/to/{p.name}" for p in imports)]
    if elsewhere:
        lines += [f"{', '.join(map(str, elsewhere))} {'is' if len(elsewhere) == 1 else 'are'} "
                  f"not in the data directory ({folder}): fix data.path, or put the file there"]
    lines.append("(or run on a file you have: --set data.path=FILE; --data-dir DIR or "
                 "$USERCHOICE_DATA choose another data directory)")
    return "\n".join(lines)


def missing_files_error(name: str, paths: Any, root: str | Path | None = None
                        ) -> DatasetNotFoundError | None:
    """The error for the files of ``paths`` (a config's ``data.path``: a path or a list) that
    do not exist, saying how to get them (``how_to_get``); None when every one exists."""
    items = paths if isinstance(paths, list | tuple) else [paths]
    missing = [Path(p).expanduser() for p in items
               if isinstance(p, str | Path) and not Path(p).expanduser().exists()]
    if not missing:
        return None
    return DatasetNotFoundError(name, missing, how_to_get(name, missing, root))


class UnverifiedImportWarning(UserWarning):
    """``import_file(..., force=True)`` imported a file that did not verify."""


# A hidden temporary file of an import (``.<name>.<random>.tmp`` from the atomic write, or
# ``.<name>.link``) or staging folder of a fetch (``.fetch-<name>.<random>.tmp``) untouched
# this long belongs to no live import or download: a running copy writes to its file
# continuously and renames it the moment it is complete.
STALE_TEMP_SECONDS = 600.0


def _last_modified(path: Path) -> float:
    """A file's mtime; a staging folder's: the latest of it and its files (pooch writes a
    temporary file inside it)."""
    times = [path.lstat().st_mtime]
    if path.is_dir() and not path.is_symlink():
        times += [p.lstat().st_mtime for p in path.iterdir()]
    return max(times)


def remove_stale_temporaries(folder: str | Path, *, older_than: float = STALE_TEMP_SECONDS
                             ) -> list[Path]:
    """Remove the hidden temporary files a killed import (and the staging folders a killed
    fetch) left in ``folder``, those not modified for ``older_than`` seconds; returns what was
    removed. Visible files are never touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for path in folder.iterdir():
        name = path.name
        if not name.startswith(".") or not name.endswith((".tmp", ".link")):
            continue
        try:
            staging = name.startswith(".fetch-") and path.is_dir() and not path.is_symlink()
            if not (staging or path.is_symlink() or path.is_file()) \
                    or now - _last_modified(path) < older_than:
                continue
            if staging:
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:  # gone already (another import cleaning up), or not ours to remove
            continue
        removed.append(path)
    return removed


def verify_import(name: str, source: str | Path) -> dict:
    """Check a whole file as ``data import`` does, without importing it: decompressed fully and
    read by the dataset's own check (``DatasetEntry.verify``: every rating / row / review
    parsed, ranges and required columns checked), or, for a dataset that declares none, only
    decompressed. Raises ``DataFormatError`` naming the file; returns the check's summary."""
    entry = _entry(name)
    source = Path(source).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    check = entry.verify_function()
    if check is None:
        size = read_through(source)
        if size == 0:
            raise DataFormatError(source, "is empty")
        return {"bytes_read": size}
    return dict(check(source) or {})


def import_file(name: str, source: str | Path, *, root: str | Path | None = None,
                link: bool = False, force: bool = False) -> Path:
    """Copy (or symlink) a local file into ``<data dir>/<name>/`` after verifying all of it
    (``verify_import``).

    A file that does not verify is not imported (``DataFormatError``; a copy already in place
    under that name is kept as it was), unless ``force``: then it is imported anyway, with an
    ``UnverifiedImportWarning``. The copy is written to a hidden temporary file and renamed into
    place only when complete; hidden temporary files a killed import left behind are removed
    first (``remove_stale_temporaries``).
    """
    _entry(name)
    source = Path(source).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    target_dir = data_dir(root) / name
    target = target_dir / source.name
    try:
        verify_import(name, source)
    except DataFormatError as error:
        kept = (f"; the copy already in place, {target}, is kept as it was"
                if target.exists() or target.is_symlink() else "")
        if not force:
            raise DataFormatError(
                source, f"was not imported: {error}{kept}. Import a good copy, or pass "
                        f"--force (force=True) to import this file anyway") from error
        warnings.warn(f"{source} does not verify ({error}); imported anyway (force)",
                      UnverifiedImportWarning, stacklevel=2)
    return import_copy(source, target, link=link)


def import_copy(source: Path, target: Path, *, link: bool = False) -> Path:
    """Copy (or symlink) ``source`` to ``target`` atomically, removing the stale temporaries
    of killed imports in its folder first (the writing half of ``import_file``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    if link:
        tmp = target.with_name(f".{target.name}.link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(source.resolve())
        os.replace(tmp, target)
        return target

    def copy(out):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, out)

    return atomic_write(target, copy)


def import_files(name: str, sources: Sequence[str | Path], *, set_name: str | None = None,
                 root: str | Path | None = None, link: bool = False, force: bool = False
                 ) -> list[Path]:
    """``data import``: one file (``import_file``), or, for a dataset whose loader has an
    ``import_set`` (``features``: X.npy + y.npy), a named set of files into
    ``<data dir>/<name>/<set_name>/``. Returns the files written."""
    entry = _entry(name)
    importer = getattr(entry.load_function(), "import_set", None)
    if importer is not None:
        return list(importer(sources, name=set_name, root=root, link=link, force=force))
    if set_name is not None:
        raise ValueError(f"--name is for datasets imported as a named set of files; dataset "
                         f"{name!r} keeps each file's own name")
    if len(sources) != 1:
        raise ValueError(f"dataset {name!r} imports one file at a time, got {len(sources)}")
    return [import_file(name, sources[0], root=root, link=link, force=force)]


def inventory(root: str | Path | None = None) -> dict[str, list[dict]]:
    """Files present for each file-backed dataset in the data directory (name, bytes)."""
    base = data_dir(root)
    out: dict[str, list[dict]] = {}
    for name in DATASETS.named(importable=True):
        folder = base / name
        # subfolders too (features keeps one set per folder), hidden temporaries not
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts)) \
            if folder.is_dir() else []
        out[name] = [{"file": str(p), "bytes": p.stat().st_size} for p in files]
    return out
