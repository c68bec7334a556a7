"""The package version (run ids and sweep hashes include it).

Written once, as ``version`` in ``pyproject.toml``; read here from the installed distribution's
metadata (``importlib.metadata``), so ``userchoice --version``, ``__version__`` and the wheel
agree. A source tree used without installing has no metadata: ``0+unknown`` then (a local
version label, so results of such a tree never pass for a release's).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("userchoice")
except PackageNotFoundError:  # not installed (e.g. PYTHONPATH=src): no metadata to read
    __version__ = "0+unknown"
