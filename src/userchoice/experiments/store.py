"""The results directory: a manifest and tidy Parquet tables, written atomically per chunk.

    DIR/manifest.json              config, config hash, input files, versions, provenance, …
    DIR/learners/<chunk>.parquet   run_id, step, learner, per-learner metrics
    DIR/market/<chunk>.parquet     run_id, step, market-wide metrics
    DIR/runs/<chunk>.parquet       run_id, group, knobs, static values, status, reason, …
    DIR/groups/, allocations/, phases/   population dynamics only: per sub-population
                                   (user_group), per learner × sub-population, per equilibrium
    DIR/writer.lock                the sweep writing into DIR (pid, host, start), while it runs

A chunk's ``runs`` part is written last and marks its runs finished (the commit marker); it
records the row counts of the chunk's ``learners`` and ``market`` parts in its Parquet
key-value metadata, and every read verifies each part (a readable footer, the recorded row
counts), so a damaged or truncated part makes its chunk not committed: ``damaged_chunks``
names it and the next sweep computes its runs again. Parts are first written completely into
the writer's own staging folder (``.writer-<host>-<pid>/``) and then renamed into place, so a
killed sweep leaves either a whole part or none of it, and no writer removes another's.

One sweep writes into a directory at a time: ``ResultsDir.lock()`` takes ``writer.lock`` (an
exclusive ``flock`` on it, with the owner's pid, host and start time inside); a second writer
gets ``ResultsLocked`` naming the owner; a lock left by a process of this host that no longer
runs is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from userchoice.atomic import atomic_write
from userchoice.frames import FrameKind, stored_dataset, stored_frame, table_order
from userchoice.reprs import SummaryRepr, short_list

if TYPE_CHECKING:
    import xarray as xr

try:  # POSIX; elsewhere the lock falls back to exclusive creation of the lock file
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

TABLES = ("runs", "learners", "market")  # every chunk has these parts
# Parts only some dynamics write (population dynamics: per sub-population, per learner and
# sub-population, per equilibrium); a chunk's marker records which it has.
EXTRA_TABLES = ("groups", "allocations", "phases")
ALL_TABLES = TABLES + EXTRA_TABLES
RUN_STATUSES = ("done", "diverged", "failed")  # a run's status in the runs table
MANIFEST = "manifest.json"
LOCK = "writer.lock"
STAGING_PREFIX = ".writer-"
PARTS_KEY = b"userchoice.parts"  # Parquet key-value metadata of a runs part: the row counts
REQUIRED_MANIFEST_FIELDS = {"name": str, "config": dict, "n_runs": int}
RECOVER = ("run the config again into a fresh folder (userchoice run CONFIG --out NEW_FOLDER)")


class ResultsError(ValueError):
    """A results directory that cannot be used as asked (the message says why and what to do)."""


class DamagedResults(ResultsError):
    """A damaged ``manifest.json``."""


class ResultsLocked(ResultsError):
    """Another sweep is writing into the directory."""


def atomic_write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=_jsonable)
    atomic_write(path, lambda out: out.write(text.encode()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda out: frame.to_parquet(out, index=False))


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import jax
    import sklearn

    from userchoice.version import __version__

    return {"userchoice": __version__, "python": platform.python_version(),
            "jax": jax.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "backend": jax.default_backend()}


# ------------------------------------------------------------------------------ the lock

def _host() -> str:
    return socket.gethostname() or "unknown-host"


def _host_tag() -> str:
    """The host name as it appears in file names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", _host())[:64]


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _describe(owner: dict[str, Any]) -> str:
    return (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started "
            f"{owner.get('started', '?')}")


@dataclass
class WriterLock:
    """The held ``writer.lock`` of one results directory (see :meth:`ResultsDir.lock`)."""

    path: Path
    fd: int
    owner: dict[str, Any]
    created_folder: bool = False
    took_over: dict[str, Any] | None = None  # the stale owner it replaced, if any

    @property
    def held(self) -> bool:
        return self.fd >= 0

    @classmethod
    def acquire(cls, folder: Path, warn: Callable[[str], None] | None = None) -> WriterLock:
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK
        for _attempt in range(50):
            if fcntl is None:  # pragma: no cover - non-POSIX
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    owner = _read_owner(path)
                    if owner is not None and _stale(owner):
                        path.unlink(missing_ok=True)
                        continue
                    raise ResultsLocked(_locked_message(folder, path, owner)) from None
                previous = None
            else:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # held by a running sweep
                    os.close(fd)
                    raise ResultsLocked(_locked_message(folder, path, _read_owner(path))) \
                        from None
                except OSError:  # no flock on this filesystem: the recorded owner decides
                    pass
                try:  # the file locked must still be the lock file (its owner unlinks it)
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                previous = _parse_owner(os.pread(fd, 1 << 16, 0))
            try:
                if previous is not None and not _stale(previous):
                    raise ResultsLocked(_locked_message(folder, path, previous))
                owner = {"pid": os.getpid(), "host": _host(),
                         "started": datetime.datetime.now(datetime.UTC).isoformat(
                             timespec="seconds")}
                text = json.dumps(owner).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, text, 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            if previous is not None and warn is not None:
                warn(f"took over the stale lock {path} of a sweep that no longer runs "
                     f"({_describe(previous)})")
            return cls(path, fd, owner, created, previous)
        raise ResultsLocked(f"could not take the lock {path}: it keeps changing hands")

    def release(self) -> None:
        if not self.held:
            return
        try:
            with contextlib.suppress(OSError):
                if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                    self.path.unlink()
        finally:
            os.close(self.fd)
            self.fd = -1
        if self.created_folder:  # nothing was written (e.g. the data could not be loaded)
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


def _parse_owner(raw: bytes) -> dict[str, Any] | None:
    """The owner recorded in a lock file; None for an empty file (a free lock), ``{}`` for
    one that cannot be read (left by a writer killed while writing it: stale)."""
    if not raw.strip():
        return None
    try:
        owner = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        return _parse_owner(path.read_bytes())
    except OSError:
        return None


def _stale(owner: dict[str, Any]) -> bool:
    """A lock whose owner is known not to run: a dead process of this host (or no readable
    owner at all). A live pid, or another host's process (which this host cannot check), is
    taken to be running."""
    if not owner:
        return True
    pid = owner.get("pid")
    if owner.get("host") != _host() or not isinstance(pid, int):
        return False
    return not pid_alive(pid)


def _locked_message(folder: Path, path: Path, owner: dict[str, Any] | None) -> str:
    who = "another sweep" if not owner else f"another sweep ({_describe(owner)})"
    remote = bool(owner) and owner.get("host") != _host()
    check = (" (on another host: this one cannot check whether it still runs)" if remote
             else "")
    return (f"{folder} is being written by {who}{check}. One sweep writes into a results "
            f"folder at a time: wait for it to finish, or choose another --out folder; if no "
            f"such sweep is running, delete the lock file {path}")


# --------------------------------------------------------------------------- verification

@dataclass
class Scan:
    """What the ``runs`` parts of a directory hold, each part verified."""

    committed: dict[str, pd.DataFrame] = field(default_factory=dict)  # key → runs rows
    damaged: dict[str, str] = field(default_factory=dict)  # key → what is wrong

    def run_ids(self) -> set[str]:
        return {rid for runs in self.committed.values() for rid in runs["run_id"]}

    def failed(self) -> set[str]:
        """Chunks holding runs that failed (an exception, not divergence): to be retried."""
        return {key for key, runs in self.committed.items()
                if len(runs) and (runs["status"] == "failed").any()}


def _footer(path: Path) -> pq.FileMetaData:
    return pq.read_metadata(path)


def _recorded_counts(meta: pq.FileMetaData) -> dict[str, int] | None:
    raw = (meta.metadata or {}).get(PARTS_KEY)
    if raw is None:
        return None  # written before row counts were recorded: footers are checked only
    counts = json.loads(raw.decode())
    return {name: int(counts[name]) for name in ALL_TABLES if name in counts}


def _verify(folder: Path, key: str) -> tuple[pd.DataFrame | None, str | None]:
    """The runs rows of chunk ``key`` if every part of it is whole, else why not."""
    runs_part = folder / "runs" / f"{key}.parquet"
    try:
        meta = _footer(runs_part)
        counts = _recorded_counts(meta)
    except Exception as error:  # truncated, garbage, wrong metadata: not committed
        return None, f"runs part {runs_part.name} is unreadable ({type(error).__name__})"
    if counts is not None and meta.num_rows != counts["runs"]:
        return None, (f"runs part {runs_part.name} has {meta.num_rows} rows, its marker "
                      f"records {counts['runs']}")
    extra = [name for name in EXTRA_TABLES if counts is not None and name in counts]
    for name in ("learners", "market", *extra):
        part = folder / name / f"{key}.parquet"
        if not part.is_file():
            return None, f"{name} part {part.name} is missing"
        try:
            rows = _footer(part).num_rows
        except Exception as error:
            return None, f"{name} part {part.name} is unreadable ({type(error).__name__})"
        if counts is not None and rows != counts[name]:
            return None, (f"{name} part {part.name} has {rows} rows, the chunk's runs part "
                          f"records {counts[name]}")
    columns = [c for c in ("run_id", "status") if c in meta.schema.names]
    if "run_id" not in columns:
        return None, f"runs part {runs_part.name} has no run_id column"
    try:
        runs = pd.read_parquet(runs_part, columns=columns)
    except Exception as error:
        return None, f"runs part {runs_part.name} is unreadable ({type(error).__name__})"
    if "status" not in runs.columns:
        runs["status"] = "done"
    return runs, None


@dataclass(repr=False)
class ResultsDir(SummaryRepr):
    """A results directory on disk: its manifest and its tables, written per chunk by a sweep
    (see the module docstring), read as tidy frames (:meth:`to_dataframe`) or an xarray
    Dataset (:meth:`to_xarray`)."""

    path: Path
    _lock: WriterLock | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    # --------------------------------------------------------------------------- manifest

    def read_manifest(self) -> dict[str, Any]:
        """The manifest; ``FileNotFoundError`` without one, ``DamagedResults`` (naming the
        file and how to recover) for one that is not a JSON object with ``name``, ``config``
        and ``n_runs``."""
        if not self.manifest_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a results directory (no {MANIFEST})")
        try:
            manifest = json.loads(self.manifest_path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self._damaged(f"not valid JSON: {error}")
        except OSError as error:
            self._damaged(f"cannot be read: {error}")
        if not isinstance(manifest, dict):
            self._damaged(f"a JSON {type(manifest).__name__}, not an object")
        for name, kind in REQUIRED_MANIFEST_FIELDS.items():
            if name not in manifest:
                self._damaged(f"no {name!r} field")
            if not isinstance(manifest[name], kind) or isinstance(manifest[name], bool):
                self._damaged(f"its {name!r} is a {type(manifest[name]).__name__}, not a "
                              f"{kind.__name__}")
        return manifest

    def _damaged(self, why: str):
        raise DamagedResults(f"{self.manifest_path} is damaged ({why}); the results in "
                             f"{self.path} cannot be checked against their config: {RECOVER}")

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    # ------------------------------------------------------------------------------- lock

    @contextlib.contextmanager
    def lock(self, warn: Callable[[str], None] | None = None) -> Iterator[WriterLock]:
        """Hold ``writer.lock`` for the block (released on any exit, Ctrl-C included)."""
        if self._lock is not None and self._lock.held:
            raise ResultsLocked(f"{self.path} is already locked by this ResultsDir")
        lock = WriterLock.acquire(self.path, warn)
        self._lock = lock
        try:
            yield lock
        finally:
            self._lock = None
            with contextlib.suppress(OSError):
                shutil.rmtree(self._staging())
            lock.release()

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.held

    # ------------------------------------------------------------------------------ parts

    def _staging(self) -> Path:
        """This writer's folder for parts being written (named by host and pid)."""
        return self.path / f"{STAGING_PREFIX}{_host_tag()}-{os.getpid()}"

    def _place(self, table: str, key: str, write: Callable[[Any], object]) -> None:
        staging = self._staging()
        staged = atomic_write(staging / f"{table}-{key}.parquet", write)
        target = self.path / table / f"{key}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)

    def write_chunk(self, key: str, runs: pd.DataFrame, learners: pd.DataFrame,
                    market: pd.DataFrame, extra: dict[str, pd.DataFrame] | None = None
                    ) -> None:
        """The chunk's parts, its ``runs`` part (the commit marker, recording the row counts of
        every part) last. ``extra``: parts of ``EXTRA_TABLES`` (non-empty ones are written)."""
        parts = {"learners": learners, "market": market}
        for name, frame in (extra or {}).items():
            if name not in EXTRA_TABLES:
                raise ValueError(f"extra table must be one of {EXTRA_TABLES}, got {name!r}")
            if len(frame):
                parts[name] = frame
        for name, frame in parts.items():
            self._place(name, key, lambda out, frame=frame: frame.to_parquet(out, index=False))
        table = pa.Table.from_pandas(runs, preserve_index=False)
        counts = json.dumps({"runs": len(runs),
                             **{name: len(frame) for name, frame in parts.items()}}).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               PARTS_KEY: counts})
        self._place("runs", key, lambda out: pq.write_table(table, out))

    def remove_chunk(self, key: str) -> None:
        """Delete a chunk's parts, its commit marker first."""
        for name in ALL_TABLES:
            (self.path / name / f"{key}.parquet").unlink(missing_ok=True)

    def remove_temporary(self) -> int:
        """Delete what killed writers left half-written: other writers' staging folders (not
        one of a live process of this host) and old-style temporary parts
        (``.name.parquet.XXXX``). Only while holding the lock (``ResultsDir.lock()``)."""
        if not self.locked:
            raise RuntimeError(f"remove_temporary needs the lock of {self.path} "
                               f"(ResultsDir.lock())")
        removed = 0
        for staging in self.path.glob(f"{STAGING_PREFIX}*"):
            match = re.fullmatch(rf"{re.escape(STAGING_PREFIX)}(.*)-(\d+)", staging.name)
            if match and match.group(1) == _host_tag() and (
                    int(match.group(2)) == os.getpid() or pid_alive(int(match.group(2)))):
                continue  # ours, or a live writer's of this host
            shutil.rmtree(staging, ignore_errors=True)
            removed += 1
        for name in ALL_TABLES:
            for stale in (self.path / name).glob(".*.parquet.*"):
                stale.unlink(missing_ok=True)
                removed += 1
        return removed

    def remove_orphans(self, committed: set[str]) -> int:
        """Delete ``learners``/``market`` parts of chunks that have no commit marker (a sweep
        killed between a chunk's parts); only while holding the lock."""
        if not self.locked:
            raise RuntimeError(f"remove_orphans needs the lock of {self.path}")
        removed = 0
        for name in ("learners", "market", *EXTRA_TABLES):
            for part in (self.path / name).glob("*.parquet"):
                if part.stem not in committed:
                    part.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _keys(self) -> list[str]:
        folder = self.path / "runs"
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []

    def scan(self) -> Scan:
        """Every chunk with a ``runs`` part, verified: committed (its runs) or damaged."""
        out = Scan()
        for key in self._keys():
            runs, problem = _verify(self.path, key)
            if runs is None:
                out.damaged[key] = problem
            else:
                out.committed[key] = runs
        return out

    def damaged_chunks(self) -> dict[str, str]:
        """Chunks whose parts are damaged (truncated, unreadable, missing, other row counts
        than recorded) → what is wrong; they count as not committed."""
        return self.scan().damaged

    def failed_chunks(self) -> set[str]:
        """Chunks holding runs that failed (an exception, not divergence): to be retried."""
        return self.scan().failed()

    def finished_chunks(self) -> set[str]:
        """Committed chunks: a whole, verified set of parts."""
        return set(self.scan().committed)

    def joined(self, name: str = "learners") -> pd.DataFrame:
        """``learners`` or ``market`` rows with their run's knobs, static values and status."""
        frame, runs = self.table(name), self.table("runs")
        if not len(frame):
            return frame
        keep = [c for c in runs.columns if c not in ("chunk", "seconds")]
        return frame.merge(runs[keep], on="run_id", how="left", validate="many_to_one")

    def table(self, name: str) -> pd.DataFrame:
        """One table, rows of committed (verified) chunks only, in a canonical order."""
        if name not in ALL_TABLES:
            raise ValueError(f"table must be one of {ALL_TABLES}, got {name!r}")
        done = self.finished_chunks()
        parts = [pd.read_parquet(p) for p in sorted((self.path / name).glob("*.parquet"))
                 if p.stem in done]
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True)
        order = [c for c in ("group", "run_id", "phase", "step", "learner", "user_group")
                 if c in frame.columns]
        return frame.sort_values(order, kind="stable").reset_index(drop=True)

    # --------------------------------------------------------------------- results as data

    def _frames(self, done_only: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        runs, learners, market = (self.table(name) for name in TABLES)
        if done_only and len(runs):
            runs = runs[runs["status"] == RUN_STATUSES[0]].reset_index(drop=True)
            done = set(runs["run_id"])
            learners, market = (frame[frame["run_id"].isin(done)].reset_index(drop=True)
                                if len(frame) else frame for frame in (learners, market))
        return runs, learners, market

    def _prior(self) -> list[float] | None:
        try:
            prior = (self.read_manifest()["config"].get("knobs") or {}).get("prior")
        except FileNotFoundError:
            return None
        return None if prior is None else [float(v) for v in prior]

    def to_dataframe(self, kind: FrameKind = "all", done_only: bool = False) -> pd.DataFrame:
        """The stored runs as one tidy frame, as ``SimulationResult.to_dataframe``: one row per
        (run, evaluation step, learner) for ``kind="all"`` (default), ``"learner"`` or
        ``"prober"``, per (run, step) for ``"market"``.

        Differences from ``SimulationResult``: runs are named by ``run_id`` (their content
        hash; no ``run`` index) and ordered by ``group`` and ``run_id``; the runs table's
        columns come along (``group``, its knobs, ``prior`` from the config, one column per
        ``static_grid`` key, ``status``, ``reason``, ``diverged_step``); failed runs have no
        rows. ``done_only`` keeps the runs that finished without diverging (what every
        statistic of the figures, report and summary uses).
        """
        runs, learners, market = self._frames(done_only)
        frame = stored_frame(runs, learners, market, kind, self._prior())
        if "status" in frame:
            frame["status"] = pd.Categorical(frame["status"], categories=RUN_STATUSES)
        return frame

    def to_xarray(self, done_only: bool = False) -> xr.Dataset:
        """The stored runs as an ``xarray.Dataset``, as ``SimulationResult.to_xarray``: dims
        ``run`` (coordinate: the run ids), ``step``, ``learner``, ``prober``; the runs table's
        knobs, static values and status as coordinates along ``run``; the sweep's name and
        identity in ``attrs``. Steps no run of a group evaluated are NaN for that group."""
        runs, learners, market = self._frames(done_only)
        manifest = self.read_manifest()
        identity = manifest.get("identity") or {}
        attrs = {"name": manifest["name"], "n_runs": manifest["n_runs"],
                 "config_hash": str(manifest.get("config_hash", "")),
                 "sweep_id": str(identity.get("sweep_id", "")), "path": str(self.path)}
        description = manifest["config"].get("description")
        if description:
            attrs["description"] = str(description)
        return stored_dataset(runs, learners, market, self._prior(), attrs)

    def _summary_rows(self) -> list[tuple[str, str]]:
        rows = [("path", repr(str(self.path)))]
        if not self.manifest_path.is_file():
            return [*rows, ("manifest", "none (not a results directory yet)")]
        manifest = self.read_manifest()
        scan = self.scan()
        status = (pd.concat(scan.committed.values())["status"].value_counts()
                  if scan.committed else pd.Series(dtype=int))
        finished = int(status.sum())
        counts = ", ".join(f"{status.get(name, 0)} {name}" for name in RUN_STATUSES)
        rows += [("name", repr(manifest["name"])),
                 ("runs", f"{counts}, {max(0, manifest['n_runs'] - finished)} pending "
                          f"of {manifest['n_runs']}")]
        if scan.damaged:
            rows.append(("damaged chunks", str(len(scan.damaged))))
        rows.append(("varied", _varied(manifest["config"])))
        metrics = []
        for name in ("learners", "market"):
            parts = [self.path / name / f"{key}.parquet" for key in sorted(scan.committed)]
            if parts:
                metrics += [c for c in pq.read_schema(parts[0]).names
                            if c not in ("run_id", "step", "learner", "is_prober")]
        if metrics:
            rows.append(("metrics", short_list(table_order(metrics))))
        timings = manifest.get("timings") or {}
        timed = [f"{key.removesuffix('_seconds')} {value:.1f} s" for key, value in timings.items()
                 if isinstance(value, int | float)]
        if timed:
            rows.append(("timings", ", ".join(timed)))
        return rows


def _varied(config: dict[str, Any]) -> str:
    """What a sweep's config varies: knob axes with several values, the static grid."""
    parts = []
    for name, value in (config.get("knobs") or {}).items():
        if name == "seed" and isinstance(value, int):
            parts.append(f"seed: {value} values")
        elif isinstance(value, list) and len(value) > 1 and name != "prior":
            parts.append(f"{name}: {short_list(value)}")
    parts += [f"{key}: {short_list(values)}" for key, values in
              (config.get("static_grid") or {}).items()]
    return "; ".join(parts) or "nothing"
