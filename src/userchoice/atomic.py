"""Writing files so readers see the old content or the new, never half of either.

The content goes to ``.<name>.<random>.tmp`` in the target's folder, is flushed to disk, given
the mode a plain ``open`` would give (``0o666`` less the process umask: ``mkstemp`` creates
``0o600``), then renamed over the target (atomic on POSIX); on any failure the temporary file
is removed. An ``OSError`` of the write, the flush or the rename (ENOSPC, EIO, EISDIR,
ENAMETOOLONG, …) is raised again naming the target, not the temporary file.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_TMP_PREFIX_CHARS = 64  # temp names stay short even when the target's name is near NAME_MAX
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, without changing it where the system says (Linux's
    ``/proc/self/status``); elsewhere set and restored under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            match = re.search(r"^Umask:\s*([0-7]+)", status.read(), re.M)
        if match:
            return int(match.group(1), 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create or replace ``path`` with what ``write`` writes to a binary file object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name[:_TMP_PREFIX_CHARS]}.",
                                       suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as error:
        if error.filename is None or error.filename == tmp or tmp is None:
            # A failed write, flush or rename, or no temp file at all: name the target, not
            # the temporary file (the errno keeps its subclass: PermissionError, …).
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
