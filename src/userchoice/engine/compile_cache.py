"""JAX's persistent compilation cache, on by default in the user cache folder.

Compiling one static shape of the engine costs seconds; the compiled program depends only on
the shapes, the spec and the JAX version (all part of JAX's cache key), so a second process
running any config of the same shape loads it from disk instead (measured in
``benchmarks/bench_engine.py``: cold vs warm).

``$USERCHOICE_COMPILATION_CACHE``: unset → ``<user cache dir>/userchoice/jax`` (platformdirs);
``0``, ``off``, ``false`` or ``no`` → off; any other value → that folder. A cache folder the
user set on JAX itself (``jax_compilation_cache_dir``) is respected and left as it is.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import jax

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
    key, so threads running chunks of one shape compile it once."""

    def __init__(self, maxsize: int = MAX_PROGRAMS) -> None:
        self.maxsize = maxsize
        self._programs: OrderedDict[Hashable, Any] = OrderedDict()
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        _caches.append(self)

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The programs under ``key``, from ``build()`` (with the disk cache on) if absent."""
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
            programs = build()
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
