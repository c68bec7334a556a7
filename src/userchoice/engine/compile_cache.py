"""Compiled programs kept across processes: ours, and JAX's persistent compilation cache.

Compiling one static shape of the engine costs seconds; the compiled program depends only on
the shapes, the spec and the JAX version (all part of JAX's cache key), so a second process
running any config of the same shape loads it from disk instead (measured in
``benchmarks/bench_engine.py``: cold vs warm). JAX's cache is looked up only after tracing
and lowering (≈ 0.7 of the ≈ 0.9 s a census shape took warm), so ``ProgramCache`` also keeps
the compiled executables themselves, under a digest of its key and of everything else the
program depends on (``fingerprint``); a warm process then neither traces nor lowers.

``$USERCHOICE_COMPILATION_CACHE``: unset → ``<user cache dir>/userchoice/jax`` (platformdirs);
``0``, ``off``, ``false`` or ``no`` → off; any other value → that folder. A cache folder the
user set on JAX itself (``jax_compilation_cache_dir``) is respected and left as it is.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import os
import pickle
import platform
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import jaxlib
import numpy as np
from jax.experimental import serialize_executable

from userchoice.atomic import atomic_write

ENV = "USERCHOICE_COMPILATION_CACHE"
_OFF = frozenset({"0", "off", "false", "no"})
# Programs that compile faster than this are not worth a disk round trip.
MIN_COMPILE_SECONDS = 0.3

_lock = threading.Lock()
_done = False


def cache_dir() -> Path | None:
    """The folder the cache uses (or would use), None when turned off by ``$ENV``."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("userchoice", appauthor=False)) / "jax"


def enable() -> Path | None:
    """Turn the persistent cache on (once per process); the folder in use, or None.

    An unwritable folder turns it off with one warning: compiling is slower, never wrong.
    """
    global _done
    with _lock:
        configured = jax.config.jax_compilation_cache_dir
        if _done or configured:
            return Path(configured) if configured else None
        _done = True
        folder = cache_dir()
        if folder is None:
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            warnings.warn(f"compilation cache off: cannot create {folder} ({error}); set "
                          f"${ENV}=off to silence this or point it at a writable folder",
                          RuntimeWarning, stacklevel=2)
            return None
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
        return folder


# --------------------------------------------------------------------------- on disk
# A stored program is only as right as its key: it is used only when every object in the key
# is plain data or a dataclass, enum or named tuple of this package (a plug-in's code could
# change without the key seeing it: those compile, through JAX's cache), and the digest also
# covers this package's source, JAX, the backend, the machine and the JAX options that change
# a traced program.
STORE_VERSION = 1
STORE_FOLDER = "programs"
MAX_STORED = 256  # files; the least recently used beyond this (or MAX_STORED_BYTES) are removed
MAX_STORED_BYTES = 1 << 30
_CONFIG = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_rank_promotion",
           "jax_numpy_dtype_promotion", "jax_default_prng_impl", "jax_threefry_partitionable",
           "jax_debug_nans", "jax_debug_infs", "jax_enable_checks")
_OURS = __name__.split(".")[0] + "."


def canonical(obj: Any) -> str | None:
    """A text that stands for ``obj`` in every process, or None where we cannot vouch for it
    (an object of another package, a function, anything without a stable value)."""
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, np.dtype)):
        return repr(obj)
    kind = type(obj)
    ours = kind.__module__.startswith(_OURS)
    if isinstance(obj, enum.Enum):
        return f"{kind.__qualname__}.{obj.name}" if ours else None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        parts = [(f.name, canonical(getattr(obj, f.name))) for f in dataclasses.fields(obj)]
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):
        parts = list(zip(obj._fields, map(canonical, obj), strict=True))
    elif kind in (tuple, list, frozenset, set):
        items = [canonical(item) for item in obj]
        if None in items:
            return None
        if kind in (frozenset, set):  # iteration order differs between processes
            items.sort()  # type: ignore[call-arg]
        return f"{kind.__name__}[{', '.join(items)}]"  # type: ignore[arg-type]
    else:
        return None
    if not ours or any(text is None for _, text in parts):
        return None
    return f"{kind.__qualname__}({', '.join(f'{k}={v}' for k, v in parts)})"


@functools.cache
def _source_digest() -> str:
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cpu_flags() -> str:
    """The host's instruction set extensions: XLA:CPU compiles for the machine it runs on."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fingerprint() -> str:
    """What a compiled program depends on besides its key: this package's source, JAX, the
    backend and its devices, the machine, XLA's flags and the JAX options that change a
    traced program."""
    from userchoice.engine import threefry

    device = jax.devices()[0]
    parts = (STORE_VERSION, _source_digest(), jax.__version__, jaxlib.__version__,
             device.platform, device.device_kind, device.client.platform_version,
             jax.device_count(), platform.machine(), _cpu_flags(),
             os.environ.get("XLA_FLAGS", ""), threefry.STATUS,
             tuple(str(getattr(jax.config, name, None)) for name in _CONFIG))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def store_path(name: str, key: Hashable) -> Path | None:
    """Where ``ProgramCache(name)`` keeps the programs of ``key``; None when the cache is off
    or the key is not something we can vouch for (``canonical``)."""
    text = canonical(key)
    folder = enable()
    if text is None or folder is None:
        return None
    digest = hashlib.sha256(f"{name}\n{text}\n{fingerprint()}".encode()).hexdigest()
    return folder / STORE_FOLDER / f"{name}-{digest[:40]}.programs"


def named(fun: Callable, name: str) -> Callable:
    """``fun`` renamed: a jitted function's name is its program's name, which JAX's cache key
    and XLA's profiles show."""
    fun.__name__ = fun.__qualname__ = name
    return fun


# XLA:CPU executables that JAX loaded from its own cache lack kernels once serialised again
# ("Function … not found" when run after loading; jaxlib 0.10.2), so only programs compiled in
# this process are stored. So that JAX's cache does not answer for a program we mean to store
# (same program text after an edit of this package or an upgrade), ``build`` receives a tag
# from the store digest to name its programs with (``named``), which changes JAX's key too.
# JAX reports a cache hit in the thread that compiles.
_HIT = "/jax/compilation_cache/cache_hits"
_thread = threading.local()


def _count_hits(event: str, **_: Any) -> None:
    if event == _HIT:
        _thread.hits = getattr(_thread, "hits", 0) + 1


jax.monitoring.register_event_listener(_count_hits)


def _hits_in_this_thread() -> int:
    return getattr(_thread, "hits", 0)


def compile_aside(lowered: jax.stages.Lowered) -> Callable[[], jax.stages.Compiled]:
    """Start compiling ``lowered`` on a thread of its own (XLA compiles without the GIL) so
    the caller can trace and lower its next program meanwhile; returns a function that waits
    for the compiled program. JAX cache hits on that thread count as the caller's (what JAX's
    cache loaded is never stored)."""
    x64 = bool(jax.config.jax_enable_x64)  # the mode is thread-local

    def work() -> tuple[jax.stages.Compiled, int]:
        before = _hits_in_this_thread()
        with jax.enable_x64(x64):
            compiled = lowered.compile()
        return compiled, _hits_in_this_thread() - before

    pool = ThreadPoolExecutor(1, thread_name_prefix="userchoice-compile")
    future = pool.submit(work)
    pool.shutdown(wait=False)

    def result() -> jax.stages.Compiled:
        compiled, hits = future.result()
        _thread.hits = _hits_in_this_thread() + hits
        return compiled

    return result


def _pack(programs: Any) -> Any:
    if isinstance(programs, jax.stages.Compiled):
        return ("compiled", serialize_executable.serialize(programs))
    if isinstance(programs, tuple) and hasattr(programs, "_fields"):
        return ("fields", type(programs), [_pack(item) for item in programs])
    return ("value", programs)


def _unpack(packed: Any) -> Any:
    kind, *rest = packed
    if kind == "compiled":
        return serialize_executable.deserialize_and_load(
            *rest[0], execution_devices=jax.devices()[:1])  # our programs run on the default
    if kind == "fields":
        return rest[0]._make(_unpack(item) for item in rest[1])
    return rest[0]


def _load(path: Path) -> Any | None:
    try:
        programs = _unpack(pickle.loads(path.read_bytes()))
        os.utime(path)  # recently used: kept by _prune
    except FileNotFoundError:
        return None
    except Exception as error:  # a stale or broken file only costs a compile
        warnings.warn(f"compiling again: cannot load the stored program {path} ({error}); "
                      "removed it", RuntimeWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        return None
    jax.monitoring.record_event("/userchoice/program_store/hits")
    return programs


def _save(path: Path, programs: Any) -> None:
    try:
        blob = pickle.dumps(_pack(programs), protocol=pickle.HIGHEST_PROTOCOL)
    except (ValueError, NotImplementedError, TypeError, pickle.PicklingError):
        return  # not serialisable (e.g. closed-over constants): JAX's cache still has it
    try:
        atomic_write(path, lambda out: out.write(blob))
        _prune(path.parent)
    except OSError as error:
        warnings.warn(f"program not stored ({error}); set ${ENV}=off to silence this",
                      RuntimeWarning, stacklevel=3)
    jax.monitoring.record_event("/userchoice/program_store/writes")


def _prune(folder: Path) -> None:
    """Remove the least recently used stored programs beyond MAX_STORED / MAX_STORED_BYTES."""
    entries = []
    for path in folder.glob("*.programs"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    entries.sort(reverse=True)
    total = 0
    for count, (_, size, path) in enumerate(entries, 1):
        total += size
        if count > MAX_STORED or total > MAX_STORED_BYTES:
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- in memory
# Compiled programs of this process, per dynamics. Bounded: one engine shape's programs hold
# about 250 memory maps on XLA:CPU, and a long process (a notebook, a test suite) that kept
# every shape it ever compiled would reach the kernel's per-process map limit
# (vm.max_map_count, 65530) and crash inside the next C++ exception (a compile that could not
# map memory). An evicted shape is loaded back from the disk cache.
MAX_PROGRAMS = 32

_caches: list[ProgramCache] = []


class ProgramCache:
    """Compiled programs by key, least recently used evicted beyond ``maxsize``; one lock per
    key, so threads running chunks of one shape compile it once. With a ``name`` (a namespace:
    one per dynamics) they are also stored on disk (``store_path``) and a later process loads
    them instead of tracing, lowering and compiling."""

    def __init__(self, name: str | None = None, maxsize: int = MAX_PROGRAMS) -> None:
        self.name = name
        self.maxsize = maxsize
        self._programs: OrderedDict[Hashable, Any] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        _caches.append(self)

    def get(self, key: Hashable, build: Callable[[str], Any]) -> Any:
        """The programs under ``key``, from ``build(tag)`` (with the disk cache on) if absent;
        ``tag`` ("" or ``_<digest>``, for a stored key) goes into the names of the programs
        it compiles (``named``)."""
        with self._guard:
            if key in self._programs:
                self._programs.move_to_end(key)
                return self._programs[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._programs:
                    return self._programs[key]
            enable()
            path = None if self.name is None else store_path(self.name, key)
            programs = None if path is None else _load(path)
            if programs is None:
                hits = _hits_in_this_thread()
                programs = build("" if path is None else "_" + path.stem.rsplit("-", 1)[1][:16])
                if path is not None and _hits_in_this_thread() == hits:
                    _save(path, programs)
            with self._guard:
                self._programs[key] = programs
                while len(self._programs) > self.maxsize:
                    self._programs.popitem(last=False)
                self._locks.pop(key, None)
        return programs

    def keys(self) -> list[Hashable]:
        """The keys held, least recently used first."""
        with self._guard:
            return list(self._programs)

    def clear(self) -> None:
        with self._guard:
            self._programs.clear()


def clear_programs() -> None:
    """Drop every compiled program this process holds (ours and JAX's own caches), freeing
    their memory; the next run of a shape loads it from the disk cache or compiles it."""
    for programs in _caches:
        programs.clear()
    jax.clear_caches()
