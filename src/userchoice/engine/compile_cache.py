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
from pathlib import Path

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
